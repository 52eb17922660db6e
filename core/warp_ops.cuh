// The few thread-, warp- and block-level operations longctx's tensor-core kernels use, kept in
// one place so that one kernel source compiles two ways:
//   - for the GPU (nvcc): threadIdx, __syncthreads, __shfl_xor_sync and PTX mma.sync;
//   - as host C++ with LONGCTX_KERNEL_EMU defined, run by core/kernel_emu.h, which executes a
//     block's threads on CPU threads and implements each operation from its definition in the
//     CUDA and PTX manuals. Tests use that to check the kernels' indexing (fragment layouts,
//     tiling, masking, merging) on machines without a GPU.
// Kernel code written against this header must use only these operations for anything that is
// not plain C++: no raw threadIdx, no inline asm, no __shared__ (dynamic shared memory only).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

#if defined(LONGCTX_KERNEL_EMU)
#define LC_KERNEL inline
#define LC_DEV inline
#define LC_BOUNDS(threads)
#else
#include <cuda_runtime.h>
#define LC_KERNEL __global__
#define LC_DEV __device__ __forceinline__
#define LC_BOUNDS(threads) __launch_bounds__(threads)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "the tensor-core kernels need sm_80 or newer (bf16 mma.sync)"
#endif
#endif

namespace longctx::cuda::wo {

// A launch's grid, as dim3 without the CUDA runtime.
struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

#if defined(LONGCTX_KERNEL_EMU)
// Implemented by core/kernel_emu.cpp for the thread that calls them.
int thread_x();      // threadIdx.x (blocks are one-dimensional)
int block_threads(); // blockDim.x, a multiple of 32
unsigned block_x();  // blockIdx.x
unsigned block_y();  // blockIdx.y
unsigned block_z();  // blockIdx.z
void sync_block();   // __syncthreads(): every thread of the block must call it
// __shfl_xor_sync(0xffffffff, v, lane_mask): every lane of the warp must call it.
float shfl_xor(float v, int lane_mask);
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 with d = c (in place): c += A·B for the
// warp's 16×16 A (row-major fragments, a[4]) and 16×8 B (column-major fragments, b[2]), each
// uint32 two bf16 (the lower 16 bits the lower column / row index), fp32 c[4]. Every lane of
// the warp must call it. Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with
// g = lane / 4 and t = lane % 4:
//   a[0]: A[g][2t, 2t+1]   a[1]: A[g+8][2t, 2t+1]   a[2]: A[g][2t+8, 2t+9]   a[3]: A[g+8][2t+8, 2t+9]
//   b[0]: B[2t, 2t+1][g]   b[1]: B[2t+8, 2t+9][g]
//   c[0], c[1]: C[g][2t, 2t+1]   c[2], c[3]: C[g+8][2t, 2t+1]
void mma_bf16_16816(float c[4], const uint32_t a[4], const uint32_t b[2]);
// The block's dynamic shared memory (extern __shared__), 16-byte aligned, uninitialised.
unsigned char* dynamic_smem();
// atomicAdd on a float in global memory.
void atomic_add(float* p, float v);
#else
__device__ __forceinline__ int thread_x() { return int(threadIdx.x); }
__device__ __forceinline__ int block_threads() { return int(blockDim.x); }
__device__ __forceinline__ unsigned block_x() { return blockIdx.x; }
__device__ __forceinline__ unsigned block_y() { return blockIdx.y; }
__device__ __forceinline__ unsigned block_z() { return blockIdx.z; }
__device__ __forceinline__ void sync_block() { __syncthreads(); }
__device__ __forceinline__ float shfl_xor(float v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}
__device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4],
                                               const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ unsigned char* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char lc_dynamic_smem[];
  return lc_dynamic_smem;
}
__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
#endif

LC_DEV int lane_id() { return thread_x() & 31; }
LC_DEV int warp_id() { return thread_x() >> 5; }

// Two floats rounded to bf16 (nearest even) in one uint32, lo in the lower 16 bits: the operand
// format of mma_bf16_16816.
LC_DEV uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

}  // namespace longctx::cuda::wo

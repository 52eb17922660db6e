// Runs kernels written against core/warp_ops.cuh on the CPU (compiled with LONGCTX_KERNEL_EMU),
// so that tests can check their indexing without a GPU.
//
// Execution model: the blocks of a launch run one after another (deterministic order: x fastest,
// then y, then z). Within a block every thread runs the kernel on its own OS thread, from a pool
// of `threads` threads created per launch and reused across its blocks. Each block's dynamic
// shared memory is filled with 0xFF bytes first (a NaN in every float), so that a kernel reading
// shared memory it never wrote produces NaNs instead of plausible numbers.
//
// Checked misuse, each an Error thrown from launch() (never a hang): a warp operation after a
// lane of the warp returned from the kernel, lanes of one warp calling different warp operations,
// and a block whose threads all wait at barriers that cannot complete (a divergent sync_block).
// An exception thrown by any thread of the kernel wakes every thread waiting at a barrier;
// launch() joins them all and rethrows the first exception.
//
// Cost (2-core machine, 128 threads per block): see kernel_emu.cpp's header comment.
#pragma once
#include <cstddef>
#include <functional>

#include "core/warp_ops.cuh"

namespace longctx::cuda::emu {

// Runs `body` as a CUDA kernel launch: grid.x*grid.y*grid.z blocks of `threads` threads
// (a multiple of 32, at most 1024), each block with `smem_bytes` of dynamic shared memory.
void launch(wo::Dim3 grid, int threads, size_t smem_bytes, const std::function<void()>& body);

// kernel<<<grid, threads, smem>>>(args...): every thread calls `kernel` with the arguments (the
// kernel takes them by value, so each thread gets its own copy, as on the GPU).
template <class... P, class... A>
void launch(void (*kernel)(P...), wo::Dim3 grid, int threads, size_t smem, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "launch: wrong number of kernel arguments");
  launch(grid, threads, smem, [&] { kernel(args...); });
}

}  // namespace longctx::cuda::emu

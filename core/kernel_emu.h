// Runs kernels written against core/warp_ops.cuh on the CPU (compiled with LONGCTX_KERNEL_EMU),
// so that tests can check their indexing without a GPU.
//
// Execution model: the blocks of a launch run one after another (x fastest, then y, then z), on
// the calling thread. A block's threads are fibers that run one at a time: one warp runs until
// all its lanes wait at sync_block or have returned, each lane in turn up to its next warp
// operation; then the next warp. Warps and lanes go in ascending order in even blocks and
// descending order in odd ones. Deterministic, and a kernel that lacks a sync_block reads shared
// memory that another warp has not written yet (or has already overwritten). A kernel thread
// that spins waiting for another thread's write, without a barrier, hangs. Each block's dynamic
// shared memory is filled with 0xFF bytes first (a NaN in every float), so a kernel reading
// shared memory it never wrote produces NaNs.
//
// Checked misuse, each an Error thrown from launch() (never a hang): a launch configuration the
// GPU refuses (threads, grid, more than sm_90's 227 KiB of shared memory), a warp operation
// after a lane of the warp returned from the kernel, lanes of one warp calling different warp
// operations, and a block whose threads all wait at barriers that cannot complete (divergent
// barriers; the message lists which threads wait where). An exception thrown by any kernel
// thread unwinds every other thread of the block (with a private exception type thrown from
// their barriers: kernel code must not swallow it with catch (...)), and no kernel code runs
// after it; launch() rethrows the first exception.
//
// Launches on different host threads run independently (atomic_add is atomic between them).
// Cost: a few microseconds per warp operation and per sync_block (kernel_emu.cpp has figures).
// Address sanitizer builds would need fiber annotations this emulator does not have.
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

// [B, Tn, H·D] ↔ [B, H, Tn, D] (attention/head_layout.h): pure copies, one thread per element
// of dst so the writes are coalesced; the reads move in runs of D.
#include <algorithm>

#include "core/cuda_check.h"
#include "core/cuda_device.cuh"
#include "model/cuda_ops.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;

// dst [B, H, Tn, D] from src [B, Tn, H, D].
template <class T>
__global__ void split_heads_kernel(T* dst, const T* src, int64_t B, int64_t Tn, int64_t H,
                                   int64_t D) {
  const int64_t n = B * Tn * H * D;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % D, t = (i / D) % Tn, h = (i / (D * Tn)) % H, b = i / (D * Tn * H);
    dst[i] = src[((b * Tn + t) * H + h) * D + d];
  }
}

// dst [B, Tn, H, D] from src [B, H, Tn, D].
template <class T>
__global__ void merge_heads_kernel(T* dst, const T* src, int64_t B, int64_t Tn, int64_t H,
                                   int64_t D) {
  const int64_t n = B * Tn * H * D;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % D, h = (i / D) % H, t = (i / (D * H)) % Tn, b = i / (D * H * Tn);
    dst[i] = src[((b * H + h) * Tn + t) * D + d];
  }
}

}  // namespace

template <class T>
void split_heads(T* dst, const T* src, int64_t B, int64_t Tn, int64_t H, int64_t D,
                 cudaStream_t stream) {
  const int64_t n = B * Tn * H * D;
  if (B <= 0 || Tn <= 0 || H <= 0 || D <= 0) return;
  split_heads_kernel<T><<<grid_blocks(n, kThreads), kThreads, 0, stream>>>(dst, src, B, Tn, H, D);
  LONGCTX_CUDA_LAUNCHED("split_heads_kernel");
}

template <class T>
void merge_heads(T* dst, const T* src, int64_t B, int64_t Tn, int64_t H, int64_t D,
                 cudaStream_t stream) {
  const int64_t n = B * Tn * H * D;
  if (B <= 0 || Tn <= 0 || H <= 0 || D <= 0) return;
  merge_heads_kernel<T><<<grid_blocks(n, kThreads), kThreads, 0, stream>>>(dst, src, B, Tn, H, D);
  LONGCTX_CUDA_LAUNCHED("merge_heads_kernel");
}

#define LONGCTX_HEADS_CUDA(T)                                                                   \
  template void split_heads<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, cudaStream_t); \
  template void merge_heads<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, cudaStream_t);
LONGCTX_HEADS_CUDA(float)
LONGCTX_HEADS_CUDA(bf16)

}  // namespace longctx::cuda

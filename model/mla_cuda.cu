// Launchers of MLA's kernels (model/mla_kernels.cuh) on the caller's stream.
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "core/error.h"
#include "model/cuda_ops.h"
#include "model/mla_kernels.cuh"

namespace longctx::cuda {

template <class T>
void rope_apply_slice(T* x, const float* cos, const float* sin, int64_t rows, int64_t Tn, int64_t D,
                      int64_t offset, int64_t R, bool inverse, cudaStream_t stream) {
  LONGCTX_CHECK(R > 0 && R % 2 == 0 && offset >= 0 && offset + R <= D, "rope slice [", offset, ", ",
                offset + R, ") must be an even, non-empty slice of a row of ", D);
  const int64_t n = rows * (R / 2);
  if (rows <= 0 || Tn <= 0) return;
  const int64_t blocks = mla::blocks_for(n);
  mla::rope_slice_kernel<T><<<unsigned(blocks), mla::kThreads, 0, stream>>>(mla::RopeSliceArgs<T>{
      x, cos, sin, rows, Tn, D, offset, R / 2, blocks, inverse ? -1.0f : 1.0f});
  LONGCTX_CUDA_LAUNCHED("rope_slice_kernel");
}

template <class T>
void mla_assemble_keys(T* k, const T* nope, const T* rope_key, int64_t B, int64_t Tn, int64_t H,
                       int64_t Dn, int64_t R, cudaStream_t stream) {
  const int64_t n = B * H * Tn * (Dn + R);
  if (n <= 0) return;
  const int64_t blocks = mla::blocks_for(n);
  mla::assemble_keys_kernel<T><<<unsigned(blocks), mla::kThreads, 0, stream>>>(
      mla::AssembleArgs<T>{k, nope, rope_key, B, Tn, H, Dn, R, blocks});
  LONGCTX_CUDA_LAUNCHED("assemble_keys_kernel");
}

template <class T>
void mla_split_key_grads(T* dnope, T* drope_key, const T* dk, int64_t B, int64_t Tn, int64_t H,
                         int64_t Dn, int64_t R, cudaStream_t stream) {
  const int64_t n = B * Tn * (H * Dn + R);
  if (n <= 0) return;
  const int64_t blocks = mla::blocks_for(n);
  mla::split_key_grads_kernel<T><<<unsigned(blocks), mla::kThreads, 0, stream>>>(
      mla::SplitArgs<T>{dnope, drope_key, dk, B, Tn, H, Dn, R, blocks});
  LONGCTX_CUDA_LAUNCHED("split_key_grads_kernel");
}

#define LONGCTX_MLA_CUDA(T)                                                                      \
  template void rope_apply_slice<T>(T*, const float*, const float*, int64_t, int64_t, int64_t,   \
                                    int64_t, int64_t, bool, cudaStream_t);                       \
  template void mla_assemble_keys<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                     int64_t, cudaStream_t);                                     \
  template void mla_split_key_grads<T>(T*, T*, const T*, int64_t, int64_t, int64_t, int64_t,     \
                                       int64_t, cudaStream_t);
LONGCTX_MLA_CUDA(float)
LONGCTX_MLA_CUDA(bf16)

}  // namespace longctx::cuda

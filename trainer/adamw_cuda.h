// The optimizer's kernels on the GPU (CUDA build only): AdamW on fp32 master weights and
// moments, refreshing the bf16 compute copy in the same pass, and the gradient norm.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace longctx::cuda {

using bf16 = __nv_bfloat16;

// The same update as trainer/adamw.cpp over w, g, m, v [n] (fp32), g first multiplied by
// grad_scale (clipping): m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²;
// w −= lr_c1·m / (√(v·ic2) + eps) + decay·w, with lr_c1 = lr / (1 − b1^t), ic2 = 1 / (1 − b2^t),
// decay = lr·weight_decay (0 for parameters without decay). copy, when not null, gets bf16(w).
void adamw_update(float* w, const float* g, float* m, float* v, bf16* copy, int64_t n, float lr_c1,
                  float ic2, float beta1, float beta2, float eps, float decay, float grad_scale,
                  cudaStream_t stream);

// Σ g² over g[n] in double on the device, into *out (a device pointer), with a fixed partition
// (the same bits on every run). `partial` holds sum_squares_scratch() doubles.
void sum_squares(const float* g, int64_t n, double* out, double* partial, cudaStream_t stream);
int64_t sum_squares_scratch();

}  // namespace longctx::cuda

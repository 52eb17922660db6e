// Materialized attention on the GPU: the products run through cuBLASLt, the row softmax and its
// backward are one block per score row. Grouped-query attention needs no copies of K and V:
// the G = H / Hkv query heads of kv head hk are contiguous in q, so per (sample, kv head) the
// group's queries are one [G·T, D] matrix, and one strided batch over B·Hkv covers every head.
#include <cmath>
#include <cstdint>

#include "attention/attention_cuda.h"
#include "core/cuda_check.h"
#include "core/cuda_device.cuh"
#include "core/error.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;  // per score row

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// The block's reduction of x, returned to every thread, in a fixed order (deterministic).
// shm: [32] floats of shared memory.
template <class Op>
__device__ float block_reduce(float x, float* shm, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) x = op(x, __shfl_xor_sync(0xffffffffu, x, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
  __syncthreads();  // a previous reduction's readers are done with shm
  if (lane == 0) shm[warp] = x;
  __syncthreads();
  float r = shm[0];
  for (int w = 1; w < n_warps; ++w) r = op(r, shm[w]);
  return r;
}

// Row r of B·H·T rows (query i = r % seq): probs = softmax(scores) over keys j ≤ i (causal) or
// all keys; masked entries 0.  scores: [rows, seq] fp32  probs: [rows, seq]
template <class T>
__global__ void __launch_bounds__(kThreads)
    softmax_rows_kernel(const float* scores, T* probs, int64_t seq, bool causal) {
  __shared__ float shm[32];
  const int64_t r = blockIdx.x, i = r % seq;
  const int64_t n_ok = causal ? i + 1 : seq;
  const float* s = scores + r * seq;
  T* p = probs + r * seq;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < n_ok; j += blockDim.x) mx = fmaxf(mx, s[j]);
  mx = block_reduce(mx, shm, MaxOp{});
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n_ok; j += blockDim.x) sum += expf(s[j] - mx);
  sum = block_reduce(sum, shm, SumOp{});
  const float inv = 1.0f / sum;
  for (int64_t j = threadIdx.x; j < seq; j += blockDim.x)
    p[j] = from_float<T>(j < n_ok ? expf(s[j] - mx) * inv : 0.0f);
}

// Per row: dS = P ∘ (dP − Σ_j P_j dP_j), masked entries 0.
// probs, ds: [rows, seq]  dp: [rows, seq] fp32
template <class T>
__global__ void __launch_bounds__(kThreads)
    softmax_backward_rows_kernel(const T* probs, const float* dp, T* ds, int64_t seq, bool causal) {
  __shared__ float shm[32];
  const int64_t r = blockIdx.x, i = r % seq;
  const int64_t n_ok = causal ? i + 1 : seq;
  const T* p = probs + r * seq;
  const float* g = dp + r * seq;
  T* out = ds + r * seq;
  float dot = 0.0f;
  for (int64_t j = threadIdx.x; j < n_ok; j += blockDim.x) dot += to_float(p[j]) * g[j];
  dot = block_reduce(dot, shm, SumOp{});
  for (int64_t j = threadIdx.x; j < seq; j += blockDim.x)
    out[j] = from_float<T>(j < n_ok ? to_float(p[j]) * (g[j] - dot) : 0.0f);
}

void check_dims(const AttnDims& d, const char* who) {
  LONGCTX_CHECK(d.B > 0 && d.H > 0 && d.Hkv > 0 && d.T > 0 && d.D > 0, who, ": bad shape B=", d.B,
                " H=", d.H, " Hkv=", d.Hkv, " T=", d.T, " D=", d.D);
  LONGCTX_CHECK(d.H % d.Hkv == 0, who, ": n_kv_head ", d.Hkv, " does not divide n_head ", d.H);
  LONGCTX_CHECK(d.B * d.H * d.T <= INT32_MAX, who, ": ", d.B * d.H * d.T,
                " score rows exceed the grid limit");
}

}  // namespace

// Per (sample, kv head) u, with G query heads: scores [G·T, T] = scale · Q_u Kᵀ,
// probs = softmax(scores), out [G·T, D] = probs V.
template <class T>
void dense_forward(CublasLt& blas, const AttnDims& d, const T* q, const T* k, const T* v, T* out,
                   T* probs, float* scores, float scale) {
  check_dims(d, "dense_forward");
  const int64_t G = d.H / d.Hkv, n = d.T, D = d.D, batch = d.B * d.Hkv;
  blas.matmul_batched<T, float>(false, true, G * n, n, D, q, G * n * D, k, n * D, scores, G * n * n,
                                batch, false, scale);
  softmax_rows_kernel<T>
      <<<unsigned(d.B * d.H * n), kThreads, 0, blas.stream()>>>(scores, probs, n, d.causal);
  LONGCTX_CUDA_LAUNCHED("softmax_rows_kernel");
  blas.matmul_batched<T, T>(false, false, G * n, D, n, probs, G * n * n, v, n * D, out, G * n * D,
                            batch);
}

// Per (sample, kv head) u: dV [T, D] = Pᵀ dO over the group's [G·T] rows (summing its heads),
// dP [G·T, T] = dO Vᵀ (fp32), dS = P ∘ (dP − rowsum(dP ∘ P)) into dscores,
// dQ [G·T, D] = scale · dS K, dK [T, D] = scale · dSᵀ Q.
template <class T>
void dense_backward(CublasLt& blas, const AttnDims& d, const T* q, const T* k, const T* v,
                    const T* probs, const T* dout, T* dq, T* dk, T* dv, float* dprobs, T* dscores,
                    float scale) {
  check_dims(d, "dense_backward");
  const int64_t G = d.H / d.Hkv, n = d.T, D = d.D, batch = d.B * d.Hkv;
  blas.matmul_batched<T, T>(true, false, n, D, G * n, probs, G * n * n, dout, G * n * D, dv, n * D,
                            batch);
  blas.matmul_batched<T, float>(false, true, G * n, n, D, dout, G * n * D, v, n * D, dprobs,
                                G * n * n, batch);
  softmax_backward_rows_kernel<T><<<unsigned(d.B * d.H * n), kThreads, 0, blas.stream()>>>(
      probs, dprobs, dscores, n, d.causal);
  LONGCTX_CUDA_LAUNCHED("softmax_backward_rows_kernel");
  blas.matmul_batched<T, T>(false, false, G * n, D, n, dscores, G * n * n, k, n * D, dq, G * n * D,
                            batch, false, scale);
  blas.matmul_batched<T, T>(true, false, n, D, G * n, dscores, G * n * n, q, G * n * D, dk, n * D,
                            batch, false, scale);
}

template void dense_forward<float>(CublasLt&, const AttnDims&, const float*, const float*,
                                   const float*, float*, float*, float*, float);
template void dense_forward<bf16>(CublasLt&, const AttnDims&, const bf16*, const bf16*, const bf16*,
                                  bf16*, bf16*, float*, float);
template void dense_backward<float>(CublasLt&, const AttnDims&, const float*, const float*,
                                    const float*, const float*, const float*, float*, float*,
                                    float*, float*, float*, float);
template void dense_backward<bf16>(CublasLt&, const AttnDims&, const bf16*, const bf16*,
                                   const bf16*, const bf16*, const bf16*, bf16*, bf16*, bf16*,
                                   float*, bf16*, float);

}  // namespace longctx::cuda

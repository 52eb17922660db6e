// Token + position embedding forward, and its gradient summed per token in a fixed row order
// (no atomics), so two runs give the same bits.
#include <algorithm>
#include <cstdint>
#include <numeric>

#include "core/cuda_check.h"
#include "core/cuda_device.cuh"
#include "core/error.h"
#include "model/cuda_ops.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;

// out [N, C]; one thread per element, consecutive threads along C.
template <class T>
__global__ void embedding_forward_kernel(T* out, const int32_t* tokens, const T* wte, const T* wpe,
                                         int64_t N, int64_t Tn, int64_t C) {
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < N * C;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = k / C, c = k % C;
    float v = to_float(wte[int64_t(tokens[r]) * C + c]);
    if (wpe) v += to_float(wpe[(r % Tn) * C + c]);
    out[k] = from_float<T>(v);
  }
}

// One thread per (group g, column c): dwte[token[g], c] += dout[rows of g, c], rows in
// ascending order, accumulated onto the old value as the CPU op does.
template <class T>
__global__ void embedding_backward_wte_kernel(float* dwte, const T* dout,
                                              const int32_t* group_token,
                                              const int32_t* group_start, const int32_t* group_rows,
                                              int64_t G, int64_t C) {
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < G * C;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = k / C, c = k % C;
    float* dst = dwte + int64_t(group_token[g]) * C + c;
    float acc = *dst;
    for (int32_t j = group_start[g]; j < group_start[g + 1]; ++j)
      acc += to_float(dout[int64_t(group_rows[j]) * C + c]);
    *dst = acc;
  }
}

// One thread per (position p, column c): dwpe[p, c] += Σ_b dout[b·Tn + p, c], b ascending.
template <class T>
__global__ void embedding_backward_wpe_kernel(float* dwpe, const T* dout, int64_t B, int64_t Tn,
                                              int64_t C) {
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < Tn * C;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t p = k / C, c = k % C;
    float acc = dwpe[k];
    for (int64_t b = 0; b < B; ++b) acc += to_float(dout[(b * Tn + p) * C + c]);
    dwpe[k] = acc;
  }
}

}  // namespace

template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t N,
                       int64_t Tn, int64_t C, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  LONGCTX_CHECK(Tn > 0, "embedding_forward: sequence length ", Tn);
  embedding_forward_kernel<T>
      <<<grid_blocks(N * C, kThreads), kThreads, 0, stream>>>(out, tokens, wte, wpe, N, Tn, C);
  LONGCTX_CUDA_LAUNCHED("embedding_forward_kernel");
}

TokenGroups group_rows_by_token(const int32_t* tokens, int64_t N) {
  LONGCTX_CHECK(N <= INT32_MAX, "group_rows_by_token: ", N, " rows exceed int32 row ids");
  TokenGroups g;
  // Rows sorted by token; the stable sort keeps each token's rows ascending.
  g.rows.resize(size_t(std::max<int64_t>(N, 0)));
  std::iota(g.rows.begin(), g.rows.end(), 0);
  std::stable_sort(g.rows.begin(), g.rows.end(),
                   [tokens](int32_t a, int32_t b) { return tokens[a] < tokens[b]; });
  for (size_t j = 0; j < g.rows.size(); ++j) {
    const int32_t tok = tokens[g.rows[j]];
    if (g.token.empty() || g.token.back() != tok) {
      g.token.push_back(tok);
      g.start.push_back(int32_t(j));
    }
  }
  g.start.push_back(int32_t(g.rows.size()));
  return g;
}

template <class T>
void embedding_backward(float* dwte, float* dwpe, const T* dout, const int32_t* group_token,
                        const int32_t* group_start, const int32_t* group_rows, int64_t G, int64_t N,
                        int64_t Tn, int64_t C, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  if (G > 0) {
    embedding_backward_wte_kernel<T><<<grid_blocks(G * C, kThreads), kThreads, 0, stream>>>(
        dwte, dout, group_token, group_start, group_rows, G, C);
    LONGCTX_CUDA_LAUNCHED("embedding_backward_wte_kernel");
  }
  if (!dwpe) return;
  LONGCTX_CHECK(Tn > 0 && N % Tn == 0, "embedding_backward: ", N,
                " rows are not whole sequences of ", Tn);
  embedding_backward_wpe_kernel<T>
      <<<grid_blocks(Tn * C, kThreads), kThreads, 0, stream>>>(dwpe, dout, N / Tn, Tn, C);
  LONGCTX_CUDA_LAUNCHED("embedding_backward_wpe_kernel");
}

#define LONGCTX_EMB_CUDA(T)                                                                     \
  template void embedding_forward<T>(T*, const int32_t*, const T*, const T*, int64_t, int64_t,  \
                                     int64_t, cudaStream_t);                                    \
  template void embedding_backward<T>(float*, float*, const T*, const int32_t*, const int32_t*, \
                                      const int32_t*, int64_t, int64_t, int64_t, int64_t,       \
                                      cudaStream_t);
LONGCTX_EMB_CUDA(float)
LONGCTX_EMB_CUDA(bf16)

}  // namespace longctx::cuda

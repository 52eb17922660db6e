// Launchers of the model's own CUDA kernels (CUDA build only), the GPU counterparts of
// model/{embedding,norm,rope,activation,cross_entropy}.h and attention/head_layout.h with the
// same shapes and formulas. T, the activation type, is float or bf16; every reduction and
// every statistic (mean, rstd, logsumexp, loss) is fp32, and parameter gradients are fp32.
// Each launch is asynchronous on `stream` and checked (a bad launch throws Error naming it).
// Kernels are deterministic: no floating-point atomics, fixed reduction orders.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace longctx::cuda {

using bf16 = __nv_bfloat16;

// out[N, C] = wte[tokens[r]] + (wpe ? wpe[r % Tn] : 0), N = B·Tn rows.
template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t N,
                       int64_t Tn, int64_t C, cudaStream_t stream);

// The rows of a micro-batch grouped by token, built on the host from its tokens: group g is
// token[g], whose rows are rows[start[g], start[g+1]) in ascending order. The embedding's
// gradient then sums each token's rows in a fixed order, without atomics.
struct TokenGroups {
  std::vector<int32_t> token, start, rows;
};
TokenGroups group_rows_by_token(const int32_t* tokens, int64_t N);

// dwte[token[g]] += Σ dout[rows of g] for the G groups (device copies of TokenGroups' arrays);
// dwpe[p] += Σ_b dout[b·Tn + p] when dwpe is not null.
template <class T>
void embedding_backward(float* dwte, float* dwpe, const T* dout, const int32_t* group_token,
                        const int32_t* group_start, const int32_t* group_rows, int64_t G, int64_t N,
                        int64_t Tn, int64_t C, cudaStream_t stream);

// LayerNorm over rows of C (eps 1e-5): out = (x − mean)·rstd·w + b; mean, rstd [N] fp32.
template <class T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* x, const T* w, const T* b,
                       int64_t N, int64_t C, cudaStream_t stream);
// dx += ∂L/∂x (accumulates, as the CPU op); dw, db (fp32, [C]) += the sums over rows, formed
// in `scratch` (norm_backward_scratch_floats(N, C) floats) and added in a fixed order.
template <class T>
void layernorm_backward(T* dx, float* dw, float* db, const T* dout, const T* x, const T* w,
                        const float* mean, const float* rstd, int64_t N, int64_t C, float* scratch,
                        cudaStream_t stream);
// RMSNorm (eps 1e-5): out = x·rstd·w.
template <class T>
void rmsnorm_forward(T* out, float* rstd, const T* x, const T* w, int64_t N, int64_t C,
                     cudaStream_t stream);
template <class T>
void rmsnorm_backward(T* dx, float* dw, const T* dout, const T* x, const T* w, const float* rstd,
                      int64_t N, int64_t C, float* scratch, cudaStream_t stream);
int64_t norm_backward_scratch_floats(int64_t N, int64_t C);

// RoPE in place on x [BH, Tn, D], row t at position t; cos, sin: [max_pos, D/2] fp32 tables
// (model/rope.h's RopeTable<float> copied to the device). Rotates pairs (i, i + D/2);
// inverse applies the transpose (the gradient of the rotation).
template <class T>
void rope_apply(T* x, const float* cos, const float* sin, int64_t BH, int64_t Tn, int64_t D,
                bool inverse, cudaStream_t stream);

// MLA's expanded form (attention/mla.h; kernels in model/mla_kernels.cuh).
// RoPE in place on dims [offset, offset + R) of every row of x [rows, D], rotate-half inside
// that slice; row r at position r % Tn; cos, sin: [max_pos, R/2] (RopeTable<float>(max_pos, R)).
// For q [B, H, Tn, D] (rows B·H·Tn, offset D − R) and the shared key [B·Tn, R] (offset 0).
template <class T>
void rope_apply_slice(T* x, const float* cos, const float* sin, int64_t rows, int64_t Tn, int64_t D,
                      int64_t offset, int64_t R, bool inverse, cudaStream_t stream);
// k [B, H, Tn, Dn + R]: head h of token t is concat(nope[b, t, h] (Dn), rope_key[b, t] (R)),
// nope [B, Tn, H·Dn], rope_key [B, Tn, R].
template <class T>
void mla_assemble_keys(T* k, const T* nope, const T* rope_key, int64_t B, int64_t Tn, int64_t H,
                       int64_t Dn, int64_t R, cudaStream_t stream);
// Its gradient: dnope [B, Tn, H·Dn] gets each head's content slice of dk; drope_key [B, Tn, R]
// the sum over heads (fp32, in head order) of their rope slices. Both overwritten.
template <class T>
void mla_split_key_grads(T* dnope, T* drope_key, const T* dk, int64_t B, int64_t Tn, int64_t H,
                         int64_t Dn, int64_t R, cudaStream_t stream);

// GELU (tanh form) and SwiGLU, forward and backward (dx, dgate, dup overwritten).
template <class T>
void gelu_forward(T* out, const T* x, int64_t n, cudaStream_t stream);
template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n, cudaStream_t stream);
template <class T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n, cudaStream_t stream);
template <class T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n,
                     cudaStream_t stream);

// out[n] = a + b (out may alias a or b).
template <class T>
void add(T* out, const T* a, const T* b, int64_t n, cudaStream_t stream);
// out[n] = in[n] converted (float ↔ bf16, or a copy).
template <class To, class From>
void convert(To* out, const From* in, int64_t n, cudaStream_t stream);

// [B, Tn, H·D] ↔ [B, H, Tn, D], as attention/head_layout.h.
template <class T>
void split_heads(T* dst, const T* src, int64_t B, int64_t Tn, int64_t H, int64_t D,
                 cudaStream_t stream);
template <class T>
void merge_heads(T* dst, const T* src, int64_t B, int64_t Tn, int64_t H, int64_t D,
                 cudaStream_t stream);

// Softmax cross-entropy over rows of V logits: losses[r] = lse[r] − logits[r, target[r]] (0 and
// lse 0 where target is kIgnoreIndex, −1). One block per row; fp32 throughout.
template <class T>
void cross_entropy_forward(float* losses, float* lse, const T* logits, const int32_t* targets,
                           int64_t N, int64_t V, cudaStream_t stream);
// dlogits = scale·(softmax(logits) − onehot(target)), 0 on ignored rows; dlogits may be logits
// (in place).
template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const float* lse, const int32_t* targets,
                            int64_t N, int64_t V, float scale, cudaStream_t stream);

}  // namespace longctx::cuda

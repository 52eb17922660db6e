// Attention cores on the GPU (CUDA build only), the counterparts of attention/dense.h and
// attention/flash.h for full (bidirectional) and causal attention. Layouts as on the CPU:
// q, out, dq, dout [B, H, T, D]; k, v, dk, dv [B, Hkv, T, D] with H a multiple of Hkv: query
// head h reads key/value head h / (H / Hkv), so gqa and mqa need no copies of K and V.
// lse [B, H, T] fp32, natural log. T (the element type) is float or bf16; scores, softmax
// statistics and accumulators are fp32.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/gemm_cuda.h"

namespace longctx::cuda {

struct AttnDims {
  int64_t B = 1, H = 1, Hkv = 1, T = 1, D = 64;
  bool causal = true;  // query i sees keys j ≤ i
};

// Tiled exact attention with an online softmax (FlashAttention): no T × T buffer. Any T; D even
// and ≤ 128.
template <class T>
void flash_forward(const AttnDims& d, const T* q, const T* k, const T* v, T* out, float* lse,
                   float scale, cudaStream_t stream);
// dq, dk, dv are overwritten. scratch: flash_backward_scratch_floats(d) floats (the rows'
// Σ dout·out). dQ has a pass of its own over query tiles, dK and dV one over key tiles: no
// atomics, the same bits on every run.
template <class T>
void flash_backward(const AttnDims& d, const T* q, const T* k, const T* v, const T* out,
                    const float* lse, const T* dout, T* dq, T* dk, T* dv, float scale,
                    float* scratch, cudaStream_t stream);
int64_t flash_backward_scratch_floats(const AttnDims& d);

// Dense attention through cuBLASLt: scores = scale·Q·Kᵀ in fp32 (`scores`, B·H·T·T floats,
// scratch), masked softmax into probs [B, H, T, T] (kept for backward), out = probs·V.
template <class T>
void dense_forward(CublasLt& blas, const AttnDims& d, const T* q, const T* k, const T* v, T* out,
                   T* probs, float* scores, float scale);
// dq, dk, dv overwritten. Scratch, B·H·T·T each: dprobs (fp32: dP = dO·Vᵀ, kept in fp32 until
// the softmax's backward subtracts its row sum) and dscores (T: dS for the last two GEMMs); the
// forward's `scores` may serve as dprobs.
template <class T>
void dense_backward(CublasLt& blas, const AttnDims& d, const T* q, const T* k, const T* v,
                    const T* probs, const T* dout, T* dq, T* dk, T* dv, float* dprobs, T* dscores,
                    float scale);

}  // namespace longctx::cuda

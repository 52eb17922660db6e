// Exact attention as tiled online softmax over a BlockMask (FlashAttention-2's algorithm on the
// CPU). Forward keeps only the output and the logsumexp per query row; backward recomputes
// each tile's probabilities from the saved logsumexp and uses D = rowsum(dO ∘ O).
// Memory beyond inputs and outputs: per-thread tiles, O(block × (block + D)).
#pragma once
#include "attention/attn_shape.h"
#include "attention/block_mask.h"

namespace longctx::attn {

// out = softmax(scale · q kᵀ restricted to the mask) v;  lse = log Σ exp(scale · q kᵀ) per row.
// A query row with no allowed key gets out = 0 and lse = -inf.
template <class T>
void flash_forward(const AttnShape& s, const BlockMask& mask, const T* q, const T* k, const T* v,
                   T* out, T* lse, T scale);

// Gradients with respect to q, k, v (overwritten, not accumulated).
template <class T>
void flash_backward(const AttnShape& s, const BlockMask& mask, const T* q, const T* k,
                    const T* v, const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv,
                    T scale);

}  // namespace longctx::attn

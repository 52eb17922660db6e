// Exact attention as tiled online softmax over a block mask per (sample, head) (FlashAttention-2's
// algorithm on the CPU). Forward keeps only the output and the logsumexp per query row;
// backward recomputes each tile's probabilities from the saved logsumexp and uses
// D = rowsum(dO ∘ O). A mask with several parts runs part by part; later parts merge their
// partial softmax into the rows through the logsumexp, and backward runs every part against the
// merged output and logsumexp, which is exact because the parts' scores are disjoint. A part
// with an order reads query rows through it and key rows through its key order (sub-masks
// between two ranks' shares of the sequence have one of each).
// Memory beyond inputs and outputs: per-thread tiles, O(block × (block + D)).
#pragma once
#include "attention/attn_shape.h"
#include "attention/block_mask.h"

namespace longctx::attn {

// out = softmax(scale · q kᵀ restricted to masks.get(b, h)) v;  lse = log Σ exp(scale · q kᵀ)
// per row. A query row with no allowed key gets out = 0 and lse = -inf.
// q, out: [B, H, Tq, D]  k, v: [B, Hkv, Tk, D]  lse: [B, H, Tq]
template <class T>
void flash_forward(const AttnShape& s, const MaskSet& masks, const T* q, const T* k, const T* v,
                   T* out, T* lse, T scale);

// Gradients with respect to q, k, v (overwritten, not accumulated).
// q, out, dout, dq: [B, H, Tq, D]  k, v, dk, dv: [B, Hkv, Tk, D]  lse: [B, H, Tq]
template <class T>
void flash_backward(const AttnShape& s, const MaskSet& masks, const T* q, const T* k,
                    const T* v, const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv,
                    T scale);

}  // namespace longctx::attn

// Materialized attention: the n×n probabilities are computed and kept for backward. The
// reference every other pattern is checked against, and the baseline benchmarks compare with.
#pragma once
#include "attention/attn_shape.h"
#include "attention/block_mask.h"

namespace longctx::attn {

// Scores are allowed where masks.get(b, h).allowed(i, j), built a row at a time (whole blocks
// at once where they are full), so any pattern's mask runs here unchanged.
// q, out: [B, H, Tq, D]  k, v: [B, Hkv, Tk, D]
// probs: [B, H, Tq, Tk], saved for backward (disallowed entries hold 0).
template <class T>
void dense_forward(const AttnShape& s, const MaskSet& masks, const T* q, const T* k, const T* v,
                   T* out, T* probs, T scale);

// Gradients with respect to q, k, v (overwritten). Uses `probs` from the forward.
template <class T>
void dense_backward(const AttnShape& s, const T* q, const T* k, const T* v, const T* probs,
                    const T* dout, T* dq, T* dk, T* dv, T scale);

}  // namespace longctx::attn

// Sequence-parallel attention by head exchange (DeepSpeed-Ulysses), at the level of the kernel:
// an all-to-all turns "this rank's rows of the sequence, every head" into "every row, this
// rank's share of the heads", the block-sparse flash kernel runs the full-sequence mask on those
// heads, and a second all-to-all turns the result back. Any mask works unchanged, since each
// rank sees whole sequences; the cost is two all-to-alls of q, k, v, out per call.
//
// Heads: rank s computes query heads [s·H/sp, (s+1)·H/sp) (n_head must be divisible by sp).
// K/V heads follow their query heads' groups: with H/sp a multiple of the group H/Hkv (e.g.
// Hkv divisible by sp) each rank receives only its Hkv/sp kv heads; otherwise the kv heads a
// rank needs are replicated to it (one copy, or one per query head when its heads straddle two
// groups), and their gradients are summed back over the copies.
#pragma once
#include "attention/attn_shape.h"
#include "attention/block_mask.h"
#include "attention/sp_layout.h"
#include "core/comm.h"

namespace longctx::attn {

// All functions here are collective over `comm` (size layout.sp, rank r holding
// layout.ranges(r)); `local` is this rank's shape: Tq = Tk = layout.local_len(), all H and Hkv
// heads. `masks` is the full-sequence MaskSet (T × T, heads 0..H−1), the same on every rank.
// Results equal flash_forward / flash_backward on the whole sequence, rows in local layout.
// Throws (before any communication) when n_head is not divisible by sp, suggesting ring.

// q, out: [B, H, Tl, D]  k, v: [B, Hkv, Tl, D]  lse: [B, H, Tl]
template <class T>
void ulysses_forward(Comm& comm, const SpLayout& layout, const AttnShape& local,
                     const MaskSet& masks, const T* q, const T* k, const T* v, T* out, T* lse,
                     T scale);

// Gradients in local layout (overwritten). out and lse are ulysses_forward's.
template <class T>
void ulysses_backward(Comm& comm, const SpLayout& layout, const AttnShape& local,
                      const MaskSet& masks, const T* q, const T* k, const T* v, const T* out,
                      const T* lse, const T* dout, T* dq, T* dk, T* dv, T scale);

// Forward and backward that keep the head layout in between, so that backward moves only dout
// in and dq, dk, dv out (4 tensors, as forward) instead of gathering q, k, v, out again. Only
// when no kv head is replicated (ulysses_keeps_head_layout): the head-layout tensors then have
// the local ones' sizes and replace them in place.
bool ulysses_keeps_head_layout(int64_t n_head, int64_t n_kv_head, int sp);

// q, k, v: local layout in, head layout [B, H/sp | Hkv/sp, T, D] out (in place). out_local:
// the result in local layout [B, H, Tl, D]; out_heads [B, H/sp, T, D] and lse_heads
// [B, H/sp, T] are kept for ulysses_backward_kept.
template <class T>
void ulysses_forward_kept(Comm& comm, const SpLayout& layout, const AttnShape& local,
                          const MaskSet& masks, T* q, T* k, T* v, T* out_local, T* out_heads,
                          T* lse_heads, T scale);

// q, k, v, out, lse: what ulysses_forward_kept left (head layout); dout and the gradients in
// local layout.
template <class T>
void ulysses_backward_kept(Comm& comm, const SpLayout& layout, const AttnShape& local,
                           const MaskSet& masks, const T* q_heads, const T* k_heads,
                           const T* v_heads, const T* out_heads, const T* lse_heads,
                           const T* dout, T* dq, T* dk, T* dv, T scale);

}  // namespace longctx::attn

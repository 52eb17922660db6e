// Sequence-parallel attention by passing keys and values (ring attention), at the level of the
// kernel: each rank keeps its queries; K/V of other ranks arrive over Comm::send_recv; for each
// (my queries, their keys) pair the flash kernel runs the full-sequence mask restricted to that
// pair (restrict_to_positions: local rows, true positions), and the partial results merge in
// the stable logsumexp form
//   out = out − sigmoid(lse_b − lse) · (out − out_b),   lse = lse − logsigmoid(lse − lse_b).
// Backward recomputes every pair with flash_backward against the final out and lse (exact:
// P = exp(S − lse) and D = rowsum(dO ∘ O) are those of the whole row) and sends each dK/dV
// contribution back to the rank that owns those keys.
//
// Steps: step t moves K/V from rank r − t to rank r (mod sp; one batched send_recv, so no ring
// size can deadlock). A plan computes from the mask, the same on every rank, which distances t
// any rank needs and runs only those: a sliding window on contiguous chunks does ceil(window /
// chunk) steps per side, global tokens or full attention need every step.
#pragma once
#include <vector>

#include "attention/attn_shape.h"
#include "attention/block_mask.h"
#include "attention/sp_layout.h"
#include "core/comm.h"

namespace longctx::attn {

struct RingPlan {
  SpLayout layout;
  int rank = 0;
  std::vector<int> distances;    // ascending, 0 first: step i uses K/V of rank − distances[i]
  std::vector<MaskSet> masks;    // per step: my queries × that rank's keys, local rows
  std::vector<uint8_t> compute;  // per step: this rank has any block there

  // K/V exchanges per pass (forward; backward does twice as many send_recvs: K/V out, dK/dV
  // back); at most sp − 1.
  int exchanges() const { return int(distances.size()) - 1; }
};

// Collective over `comm` (size layout.sp): restricts the full-sequence MaskSet (T × T) to every
// pair of this rank's queries with another rank's keys and agrees with the other ranks (one
// all-reduce of sp counts) on the distances needed. Build once per mask and reuse it for
// forward and backward.
RingPlan make_ring_plan(Comm& comm, const SpLayout& layout, const MaskSet& masks);

// Collective. local: this rank's shape (Tq = Tk = layout.local_len(), all heads).
// q, out: [B, H, Tl, D]  k, v: [B, Hkv, Tl, D]  lse: [B, H, Tl]. Rows with no allowed key:
// out = 0, lse = −inf (as flash_forward).
template <class T>
void ring_forward(Comm& comm, const RingPlan& plan, const AttnShape& local, const T* q, const T* k,
                  const T* v, T* out, T* lse, T scale);

// Collective. Gradients in local layout (overwritten); out and lse are ring_forward's.
template <class T>
void ring_backward(Comm& comm, const RingPlan& plan, const AttnShape& local, const T* q, const T* k,
                   const T* v, const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv,
                   T scale);

}  // namespace longctx::attn

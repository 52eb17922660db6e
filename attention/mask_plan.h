// The block lists the GPU attention kernels read, built from the CPU engine's masks
// (attention/block_mask.h) so that both evaluate exactly the same scores: the plan is a flat
// copy of each part's block lists, its transpose (for the dK/dV pass over key blocks), one
// 64 × 64 bitmask per partial block (the part's element rule evaluated on the host, so the GPU
// never re-implements windows, dilation, strides, globals or documents) and the part's order
// (index -> row of q/k/v) when it has one.
#pragma once
#include <cstdint>
#include <vector>

#include "attention/block_mask.h"

namespace longctx::attn {

// The GPU kernels' tile: a plan needs masks with this block size.
inline constexpr int kPlanBlock = 64;

// One part of one mask, as the kernels see it. Plain pointers (device memory on the GPU, host
// memory under kernel emulation) into a plan's flat arrays; a (mask, part) that does not exist
// has n_q == 0.
struct PartView {
  int32_t n_q = 0, n_k = 0;    // index-space lengths (BlockMask::n_q, n_k)
  int32_t n_qb = 0, n_kb = 0;  // blocks of kPlanBlock
  // By query block qb: entries q_ptr[qb] .. q_ptr[qb + 1] - 1, key block q_col[e] ascending,
  // q_bits[e] the index of its bitmask (-1: every score of the block allowed).
  const int32_t *q_ptr = nullptr, *q_col = nullptr, *q_bits = nullptr;
  // By key block kb (the transpose): query block k_row[e] ascending, k_bits[e] as above.
  const int32_t *k_ptr = nullptr, *k_row = nullptr, *k_bits = nullptr;
  // Index -> row of q/out/lse (q_rows) or of k/v (k_rows) in the head's [T, D] tensors; -1 is
  // padding (read as zeros, never allowed, never written). Null: the index is the row.
  const int32_t *q_rows = nullptr, *k_rows = nullptr;
  // Bitmask m (64 words from bits + 64·m): bit c of word r set when query index
  // qb·64 + r may see key index kb·64 + c. Bits past n_q / n_k are clear.
  const uint64_t* bits = nullptr;
};

// Every part of every mask of a MaskSet, flattened into two arrays so that a plan moves to the
// GPU in two copies. Parts of mask i are entries [i · n_parts, (i + 1) · n_parts) of views();
// the mask of (sample b, head h) is b · b_stride + h · h_stride, as in MaskSet::get.
struct MaskPlan {
  int64_t n_masks = 0, n_parts = 0;  // n_parts: the most parts any mask has (1 + parts.size())
  int64_t b_stride = 0, h_stride = 0;
  int64_t seq_q = 0, seq_k = 0;  // rows of the q and k tensors the masks are for
  std::vector<int32_t> ints;    // every part's lists, orders
  std::vector<uint64_t> words;  // every partial block's bitmask
  // Per (mask, part): where its arrays start in `ints` / `words` (-1: absent or null).
  struct Offsets {
    int32_t n_q = 0, n_k = 0, n_qb = 0, n_kb = 0;
    int64_t q_ptr = -1, q_col = -1, q_bits = -1, k_ptr = -1, k_row = -1, k_bits = -1;
    int64_t q_rows = -1, k_rows = -1, bits = -1;
  };
  std::vector<Offsets> offsets;  // [n_masks · n_parts]

  // The parts as views, for `ints` and `words` living at the given addresses (the host vectors
  // themselves, or their copies on the GPU).
  std::vector<PartView> views(const int32_t* ints_at, const uint64_t* words_at) const;
  int64_t blocks_computed() const;  // blocks over every part of every mask
  // The most query / key blocks of any part (the kernels' grid sizes).
  int32_t max_qblocks() const;
  int32_t max_kblocks() const;
};

// Throws longctx::Error unless every mask uses block kPlanBlock and fits int32 indices.
MaskPlan make_mask_plan(const MaskSet& masks);

}  // namespace longctx::attn

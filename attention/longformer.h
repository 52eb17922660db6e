// Longformer (Beltagy et al. 2020): a sliding window, optionally dilated per head, plus global
// tokens. Lowered to a block mask over the sequence whose element rule carries the window,
// dilation and globals, so partial blocks are masked by the kernel row by row.
#pragma once
#include <cstdint>
#include <vector>

#include "attention/block_mask.h"

namespace longctx::attn {

// Query i sees key j when |i − j| ≤ window (causal: 0 ≤ i − j ≤ window) and (i − j) is a
// multiple of `dilation`; global positions see every key and are seen by every query (still
// subject to causal). The window is one-sided and counts positions, so a dilated head attends
// to window / dilation keys per side. Global positions outside [0, n) throw, naming the
// position and n.
BlockMask longformer_mask(int64_t n, int block, int64_t window, int64_t dilation,
                          const std::vector<int64_t>& global_positions, bool causal);

// One dilation per head: a shared mask when they are all equal, one per head otherwise.
MaskSet longformer_masks(int64_t n, int block, int64_t window,
                         const std::vector<int64_t>& dilation_per_head,
                         const std::vector<int64_t>& global_positions, bool causal);

// As above with global positions per sample (the loader's): masks per sample, and per
// (sample, head) when dilations differ.
MaskSet longformer_masks_per_sample(
    int64_t n, int block, int64_t window, const std::vector<int64_t>& dilation_per_head,
    const std::vector<std::vector<int64_t>>& global_positions_per_sample, bool causal);

}  // namespace longctx::attn

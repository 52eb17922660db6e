// Sparse Transformer's strided pattern (Child et al. 2019): each query sees the previous
// `stride` positions and every position a multiple of `stride` away.
//
// In sequence order the "multiple of stride" scores lie one per row on scattered diagonals, so
// nearly every block holding one would be computed for 1/block of its scores. The mask
// therefore has two parts: the window (i − j < stride) in sequence order, and the rest in an
// order grouped by position mod stride, where each group of n / stride positions attends to
// itself: dense blocks. Cost O(n · stride + n² / stride), O(n^1.5) at stride_auto.
#pragma once
#include <cstdint>

#include "attention/block_mask.h"

namespace longctx::attn {

// round(sqrt(n)), at least 1: balances the window's n · stride against the groups' n² / stride.
int64_t stride_auto(int64_t n);

// Causal: 0 ≤ i − j < stride or (i − j) mod stride == 0 (with j ≤ i).
// Bidirectional: |i − j| < stride or |i − j| mod stride == 0.
BlockMask strided_mask(int64_t n, int block, int64_t stride, bool causal);

}  // namespace longctx::attn

// The masks an attention pattern gives one layer, and their per-batch form (documents,
// per-sample global tokens): one builder for the CPU attention layer and the GPU model, so both
// attend over the same scores.
#pragma once
#include <cstdint>
#include <vector>

#include "attention/block_mask.h"
#include "core/config.h"

namespace longctx::attn {

// The pattern's masks for sequences of Tn positions: dense and flash give the full or causal
// mask; longformer, bigbird and strided their own (bigbird's random blocks are drawn from
// seed, layer and head, and from step when step >= 0).
MaskSet pattern_masks(const AttentionConfig& cfg, int64_t Tn, int64_t H, bool causal, uint64_t seed,
                      int layer, int64_t step);

// The masks of one micro-batch of B samples: per-sample global tokens (globals, longformer
// only; empty: none) rebuild longformer's masks, then documents (doc [B, Tn], null: none)
// restrict every (sample, head) mask. `pattern` is pattern_masks' result for Tn. Returns an
// empty set when there is neither.
MaskSet batch_masks(const AttentionConfig& cfg, const MaskSet& pattern, const int32_t* doc,
                    const std::vector<std::vector<int64_t>>& globals, int64_t B, int64_t Tn,
                    int64_t H, bool causal);

}  // namespace longctx::attn

// BigBird (Zaheer et al. 2020), ITC variant, decided per block of `block` tokens: query block qb
// sees its own block and `window_blocks` neighbours per side, the first `global_blocks` blocks
// (and the last ones when bidirectional), and `random_blocks` key blocks drawn without
// replacement from outside those. Global blocks are symmetric: their queries see every key
// block. Inside listed blocks only causal cuts scores.
//
// The draws differ per layer and head and are seeded from the run seed; with a step they are
// redrawn every step (resample: per_step). Causal draws come only from the past (key blocks
// below the window), so the first query blocks, with fewer past blocks than random_blocks, see
// their whole past instead.
#pragma once
#include <cstdint>

#include "attention/block_mask.h"

namespace longctx::attn {

struct BigBirdSpec {
  int block = 64;
  int64_t window_blocks = 1, global_blocks = 1, random_blocks = 3;
  bool causal = false;
};

// The shortest sequence the pattern exists for: enough blocks that a query block's window,
// the global blocks and its random blocks are all distinct, i.e.
//   bidirectional: 2·global + 2·window + 1 + random blocks (every non-global query block can
//                  then draw random_blocks outside its window and the globals),
//   causal:        global + window + 1 + random blocks (the last query block can),
// and the last block may be partial: (blocks − 1) · block + 1 tokens.
int64_t bigbird_min_length(const BigBirdSpec& spec);

// One head's mask. A sequence shorter than bigbird_min_length throws longctx::Error stating the
// minimum; there is no fallback to full attention. step_or_minus1 < 0: fixed for the run.
BlockMask bigbird_mask(int64_t n, const BigBirdSpec& spec, uint64_t seed, int layer, int head,
                       int64_t step_or_minus1);

// One mask per head of `layer` (MaskSet::per_head).
MaskSet bigbird_masks(int64_t n, int block, int64_t window_blocks, int64_t global_blocks,
                      int64_t random_blocks, bool causal, uint64_t seed, int layer, int n_heads,
                      int64_t step_or_minus1);

}  // namespace longctx::attn

#include "attention/bigbird.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/rng.h"

namespace longctx::attn {

namespace {

constexpr uint64_t kBigBirdStream = 0xB16B1Dull;

int64_t min_blocks(const BigBirdSpec& s) {
  return s.causal ? s.global_blocks + s.window_blocks + 1 + s.random_blocks
                  : 2 * s.global_blocks + 2 * s.window_blocks + 1 + s.random_blocks;
}

// Draws up to `count` distinct values from [0, hi) outside `excluded` (ascending, distinct,
// inside [0, hi)), appending them to `out`. The t-th value not excluded is found by stepping
// over the excluded ones in order, so each draw is uniform over what is left.
void draw_outside(Rng& rng, int64_t hi, std::vector<int64_t> excluded, int64_t count,
                  std::vector<int32_t>& out) {
  for (int64_t left = hi - int64_t(excluded.size()); count > 0 && left > 0; --count, --left) {
    int64_t v = int64_t(rng.below(uint64_t(left)));
    for (int64_t x : excluded)
      if (x <= v) ++v;
    excluded.insert(std::upper_bound(excluded.begin(), excluded.end(), v), v);
    out.push_back(int32_t(v));
  }
}

}  // namespace

int64_t bigbird_min_length(const BigBirdSpec& spec) {
  return (min_blocks(spec) - 1) * spec.block + 1;
}

BlockMask bigbird_mask(int64_t n, const BigBirdSpec& spec, uint64_t seed, int layer, int head,
                       int64_t step_or_minus1) {
  const int64_t bs = spec.block, wb = spec.window_blocks, g = spec.global_blocks;
  LONGCTX_CHECK(n > 0 && bs > 0, "bigbird: length and block must be positive, got n=", n,
                " block=", bs);
  LONGCTX_CHECK(wb >= 0 && g >= 0 && spec.random_blocks >= 0,
                "bigbird: window_blocks, global_blocks and random_blocks must be >= 0, got ", wb,
                ", ", g, ", ", spec.random_blocks);
  BlockMask m;
  m.n_q = m.n_k = n;
  m.block = spec.block;
  m.rule.causal = spec.causal;
  const int64_t nb = m.n_qblocks();
  if (nb < min_blocks(spec))
    throw Error(str("bigbird: a sequence of ", n, " tokens is too short for block ", bs,
                    ", window_blocks ", wb, ", global_blocks ", g, ", random_blocks ",
                    spec.random_blocks, spec.causal ? " (causal)" : " (bidirectional)",
                    ": the minimum length is ", bigbird_min_length(spec), " tokens (",
                    min_blocks(spec), " blocks)"));

  auto is_global = [&](int64_t b) { return b < g || (!spec.causal && b >= nb - g); };
  std::vector<int32_t> row;
  std::vector<int64_t> excluded;
  m.row_ptr.resize(nb + 1);
  for (int64_t qb = 0; qb < nb; ++qb) {
    m.row_ptr[qb] = int64_t(m.col.size());
    const int64_t last = spec.causal ? qb : nb - 1;  // key blocks past this hold nothing allowed
    row.clear();
    if (is_global(qb)) {
      for (int64_t kb = 0; kb <= last; ++kb) row.push_back(int32_t(kb));
    } else {
      excluded.clear();
      for (int64_t kb = 0; kb < g; ++kb) excluded.push_back(kb);
      for (int64_t kb = std::max<int64_t>(0, qb - wb); kb <= std::min(last, qb + wb); ++kb)
        excluded.push_back(kb);
      if (!spec.causal)
        for (int64_t kb = nb - g; kb < nb; ++kb) excluded.push_back(kb);
      std::sort(excluded.begin(), excluded.end());
      excluded.erase(std::unique(excluded.begin(), excluded.end()), excluded.end());
      row.assign(excluded.begin(), excluded.end());
      const int64_t hi = spec.causal ? std::max<int64_t>(0, qb - wb) : nb;
      excluded.erase(std::lower_bound(excluded.begin(), excluded.end(), hi), excluded.end());
      Rng rng = Rng::stream(seed, kBigBirdStream, uint64_t(layer), uint64_t(head),
                            uint64_t(step_or_minus1), uint64_t(qb));
      draw_outside(rng, hi, excluded, spec.random_blocks, row);
      std::sort(row.begin(), row.end());
    }
    const int64_t first_query = qb * bs;
    for (int32_t kb : row) {
      const int64_t last_key = std::min(n, (int64_t(kb) + 1) * bs) - 1;
      m.col.push_back(kb);
      m.full.push_back(!spec.causal || last_key <= first_query);
    }
  }
  m.row_ptr[nb] = int64_t(m.col.size());
  return m;
}

MaskSet bigbird_masks(int64_t n, int block, int64_t window_blocks, int64_t global_blocks,
                      int64_t random_blocks, bool causal, uint64_t seed, int layer, int n_heads,
                      int64_t step_or_minus1) {
  LONGCTX_CHECK(n_heads > 0, "bigbird: n_heads must be positive, got ", n_heads);
  const BigBirdSpec spec{block, window_blocks, global_blocks, random_blocks, causal};
  std::vector<BlockMask> masks;
  for (int h = 0; h < n_heads; ++h)
    masks.push_back(bigbird_mask(n, spec, seed, layer, h, step_or_minus1));
  return MaskSet::per_head(std::move(masks));
}

}  // namespace longctx::attn

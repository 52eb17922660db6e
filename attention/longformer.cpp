#include "attention/longformer.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace longctx::attn {

BlockMask longformer_mask(int64_t n, int block, int64_t window, int64_t dilation,
                          const std::vector<int64_t>& global_positions, bool causal) {
  LONGCTX_CHECK(n > 0 && block > 0, "longformer: length and block must be positive, got n=", n,
                " block=", block);
  LONGCTX_CHECK(window >= 0, "longformer: window must be >= 0, got ", window);
  LONGCTX_CHECK(dilation >= 1, "longformer: dilation must be >= 1, got ", dilation);
  ElementRule rule;
  rule.causal = causal;
  rule.window = window;
  rule.dilation = dilation;
  if (!global_positions.empty()) rule.globals = make_global_set(n, global_positions);
  return mask_from_rule(n, block, rule);
}

// Heads with equal dilation get copies of one built mask: building is the costly part.
MaskSet longformer_masks_per_sample(
    int64_t n, int block, int64_t window, const std::vector<int64_t>& dilation_per_head,
    const std::vector<std::vector<int64_t>>& global_positions_per_sample, bool causal) {
  LONGCTX_CHECK(!dilation_per_head.empty(), "longformer: no heads (empty dilation list)");
  LONGCTX_CHECK(!global_positions_per_sample.empty(),
                "longformer: no samples (empty list of global positions per sample)");
  const bool one_dilation =
      std::all_of(dilation_per_head.begin(), dilation_per_head.end(),
                  [&](int64_t d) { return d == dilation_per_head.front(); });
  const std::vector<int64_t> dilations =
      one_dilation ? std::vector<int64_t>{dilation_per_head.front()} : dilation_per_head;
  std::vector<BlockMask> masks;
  for (const auto& globals : global_positions_per_sample) {
    std::map<int64_t, BlockMask> built;
    for (int64_t d : dilations) {
      auto it = built.find(d);
      if (it == built.end())
        it = built.emplace(d, longformer_mask(n, block, window, d, globals, causal)).first;
      masks.push_back(it->second);
    }
  }
  const bool one_sample = global_positions_per_sample.size() == 1;
  if (one_sample) return one_dilation ? MaskSet::shared(masks[0]) : MaskSet::per_head(masks);
  if (one_dilation) return MaskSet::per_sample(std::move(masks));
  return MaskSet::per_sample_head(std::move(masks), int64_t(dilation_per_head.size()));
}

MaskSet longformer_masks(int64_t n, int block, int64_t window,
                         const std::vector<int64_t>& dilation_per_head,
                         const std::vector<int64_t>& global_positions, bool causal) {
  return longformer_masks_per_sample(n, block, window, dilation_per_head, {global_positions},
                                     causal);
}

}  // namespace longctx::attn

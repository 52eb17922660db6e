#include "attention/pattern_masks.h"

#include <memory>
#include <utility>

#include "attention/bigbird.h"
#include "attention/longformer.h"
#include "attention/strided.h"
#include "core/error.h"

namespace longctx::attn {

namespace {

std::vector<int64_t> dilations(const AttentionConfig& cfg, int64_t H) {
  std::vector<int64_t> d(cfg.dilation.begin(), cfg.dilation.end());
  if (d.size() == 1) d.assign(size_t(H), d[0]);
  return d;
}

}  // namespace

MaskSet pattern_masks(const AttentionConfig& cfg, int64_t Tn, int64_t H, bool causal, uint64_t seed,
                      int layer, int64_t step) {
  const int block = cfg.block_size;
  switch (cfg.pattern) {
    case Pattern::longformer: {
      const std::vector<int64_t> globals(cfg.global_tokens.begin(), cfg.global_tokens.end());
      return longformer_masks(Tn, block, cfg.window, dilations(cfg, H), globals, causal);
    }
    case Pattern::bigbird: {
      const BigBirdConfig& b = cfg.bigbird;
      return bigbird_masks(Tn, block, b.window_blocks, b.global_blocks, b.random_blocks, causal,
                           seed, layer, static_cast<int>(H), step);
    }
    case Pattern::strided: {
      const int64_t stride =
          cfg.strided.stride.is_auto() ? stride_auto(Tn) : cfg.strided.stride.value;
      return MaskSet::shared(strided_mask(Tn, block, stride, causal));
    }
    default:
      return MaskSet::shared(causal ? causal_mask(Tn, block) : full_mask(Tn, Tn, block));
  }
}

MaskSet batch_masks(const AttentionConfig& cfg, const MaskSet& pattern, const int32_t* doc,
                    const std::vector<std::vector<int64_t>>& globals, int64_t B, int64_t Tn,
                    int64_t H, bool causal) {
  if (!doc && globals.empty()) return {};
  MaskSet base;
  if (!globals.empty()) {
    LONGCTX_CHECK(cfg.pattern == Pattern::longformer && !cfg.separate_global_proj,
                  "per-sample global tokens need 'attention.pattern: longformer' without "
                  "'separate_global_proj'");
    LONGCTX_CHECK(int64_t(globals.size()) == B, "per-sample globals: ", globals.size(),
                  " samples given, the batch has ", B);
    std::vector<std::vector<int64_t>> all(globals);
    for (auto& g : all) g.insert(g.end(), cfg.global_tokens.begin(), cfg.global_tokens.end());
    base =
        longformer_masks_per_sample(Tn, cfg.block_size, cfg.window, dilations(cfg, H), all, causal);
  } else {
    base = pattern;
  }
  if (!doc) return base;
  const bool per_head = base.h_stride != 0;
  std::vector<BlockMask> masks;
  for (int64_t b = 0; b < B; ++b) {
    auto d = std::make_shared<const std::vector<int32_t>>(doc + b * Tn, doc + (b + 1) * Tn);
    for (int64_t h = 0; h < (per_head ? H : 1); ++h)
      masks.push_back(restrict_to_documents(base.get(b, h), d));
  }
  return per_head ? MaskSet::per_sample_head(std::move(masks), H)
                  : MaskSet::per_sample(std::move(masks));
}

}  // namespace longctx::attn

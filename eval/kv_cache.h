// The cache of incremental decoding: per layer, one row of values per token seen so far.
//   mha/gqa/mqa: [K | V] of the n_kv_head heads, after RoPE   2·Hkv·D values
//   mla:         [c | k_rope], the latent and the roped shared key   kv_lora_rank + rope_dim
// Rows are token-major and contiguous per layer ([tokens, row_values]), so a query head reads
// its K/V head (gqa/mqa: shared by H / Hkv query heads) in place, without copies. Storage grows
// as tokens are appended (reserve() sets it once for a known length); bytes() counts the values
// held, so the size a caller reports is measured from the cache, not computed from a formula.
#pragma once
#include <cstdint>
#include <vector>

#include "core/config.h"

namespace longctx {

// Where each part of a token's row sits.
struct KvLayout {
  HeadScheme heads = HeadScheme::mha;
  int64_t n_kv_head = 0, head_dim = 0;    // mha/gqa/mqa
  int64_t kv_lora_rank = 0, rope_dim = 0;  // mla

  // The layout a model of this config caches.
  static KvLayout of(const ModelConfig& model, const AttentionConfig& attn);
  bool latent() const { return heads == HeadScheme::mla; }
  int64_t row_values() const;
  // Offsets inside a row: K head g, V head g (mha/gqa/mqa); the latent, the rope key (mla).
  int64_t key(int64_t g) const { return g * head_dim; }
  int64_t value(int64_t g) const { return (n_kv_head + g) * head_dim; }
  int64_t rope_key() const { return kv_lora_rank; }
};

class KvCache {
 public:
  KvCache(int64_t n_layer, const KvLayout& layout);

  // Storage for `tokens` rows per layer, so that appending up to there never reallocates.
  void reserve(int64_t tokens);
  // Appends a row to layer l and returns it (row_values() values, to be filled by the caller).
  // Pointers into the cache stay valid until the next append. Every layer gets one row per
  // token, in order: layer l may not run ahead of layer l − 1.
  float* append(int64_t layer);
  const float* row(int64_t layer, int64_t t) const {
    return rows_[layer].data() + t * layout_.row_values();
  }
  void clear();

  const KvLayout& layout() const { return layout_; }
  int64_t n_layer() const { return static_cast<int64_t>(rows_.size()); }
  // Tokens held (the rows of the last layer: those of a fully processed token).
  int64_t tokens() const;
  // Bytes of the values held over all layers, and of the storage allocated for them.
  int64_t bytes() const;
  int64_t capacity_bytes() const;
  // bytes() / (tokens() · n_layer()); 0 when empty.
  double bytes_per_token_per_layer() const;

 private:
  KvLayout layout_;
  std::vector<std::vector<float>> rows_;  // [n_layer][tokens · row_values]
};

}  // namespace longctx

#include "eval/kv_cache.h"

#include "core/error.h"

namespace longctx {

KvLayout KvLayout::of(const ModelConfig& m, const AttentionConfig& a) {
  KvLayout l;
  l.heads = a.heads;
  l.head_dim = m.d_model / m.n_head;
  if (a.heads == HeadScheme::mla) {
    l.kv_lora_rank = a.mla.kv_lora_rank;
    l.rope_dim = a.mla.rope_dim;
  } else {
    l.n_kv_head = a.heads == HeadScheme::mqa ? 1 : a.n_kv_head > 0 ? a.n_kv_head : m.n_head;
  }
  return l;
}

int64_t KvLayout::row_values() const {
  return latent() ? kv_lora_rank + rope_dim : 2 * n_kv_head * head_dim;
}

KvCache::KvCache(int64_t n_layer, const KvLayout& layout)
    : layout_(layout), rows_(static_cast<size_t>(n_layer)) {
  LONGCTX_CHECK(n_layer > 0 && layout.row_values() > 0, "kv cache: ", n_layer, " layers of ",
                layout.row_values(), " values per token");
}

void KvCache::reserve(int64_t tokens) {
  for (auto& r : rows_) r.reserve(static_cast<size_t>(tokens * layout_.row_values()));
}

float* KvCache::append(int64_t layer) {
  std::vector<float>& r = rows_[layer];
  const size_t n = r.size();
  LONGCTX_CHECK(layer == 0 || rows_[layer - 1].size() > n, "kv cache: layer ", layer,
                " appended before layer ", layer - 1, " holds that token");
  r.resize(n + static_cast<size_t>(layout_.row_values()));
  return r.data() + n;
}

void KvCache::clear() {
  for (auto& r : rows_) r.clear();
}

int64_t KvCache::tokens() const {
  return static_cast<int64_t>(rows_.back().size()) / layout_.row_values();
}

int64_t KvCache::bytes() const {
  int64_t n = 0;
  for (const auto& r : rows_) n += static_cast<int64_t>(r.size() * sizeof(float));
  return n;
}

int64_t KvCache::capacity_bytes() const {
  int64_t n = 0;
  for (const auto& r : rows_) n += static_cast<int64_t>(r.capacity() * sizeof(float));
  return n;
}

double KvCache::bytes_per_token_per_layer() const {
  const int64_t t = tokens();
  return t == 0 ? 0.0 : double(bytes()) / double(t * n_layer());
}

}  // namespace longctx

#include "eval/kvcache_eval.h"

#include <chrono>

#include "attention/mla.h"
#include "core/error.h"
#include "core/rng.h"
#include "eval/decoder.h"

namespace longctx {

nlohmann::json kvcache_eval(const Config& cfg, const ParamStore<float>& weights, int tokens) {
  const ModelConfig& m = cfg.model;
  if (tokens < 1 || tokens > m.max_seq_len)
    throw Error(str("kvcache: tokens must be in [1, model.max_seq_len = ", m.max_seq_len,
                    "], got ", tokens));
  Decoder dec(cfg, weights, decode_context_len(cfg, tokens));
  dec.cache().reserve(tokens);
  Rng rng = Rng::stream(cfg.run.seed, 0x6b76636163686500ull);  // "kvcache"
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < tokens; ++t)
    dec.step(static_cast<int32_t>(rng.below(static_cast<uint64_t>(m.vocab_size))));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const KvCache& cache = dec.cache();
  const int64_t f = sizeof(float), D = m.d_model / m.n_head;
  const int64_t n_kv = cfg.attention.heads == HeadScheme::mqa ? 1
                       : cfg.attention.n_kv_head > 0          ? cfg.attention.n_kv_head
                                                              : m.n_head;
  const int64_t formula = cfg.attention.heads == HeadScheme::mla
                              ? f * (cfg.attention.mla.kv_lora_rank + cfg.attention.mla.rope_dim)
                              : f * mha_kv_cache_values_per_token(n_kv, D);
  const int64_t mha = f * mha_kv_cache_values_per_token(m.n_head, D);
  const double measured = cache.bytes_per_token_per_layer();
  return {{"heads", name_of(cfg.attention.heads)},
          {"pattern", name_of(cfg.attention.pattern)},
          {"n_layer", m.n_layer},
          {"tokens", cache.tokens()},
          {"context_len", dec.context_len()},
          {"cache_bytes", cache.bytes()},
          {"bytes_per_token_per_layer", measured},
          {"formula_bytes_per_token_per_layer", formula},
          {"mha_bytes_per_token_per_layer", mha},
          {"ratio_vs_mha", measured / double(mha)},
          {"decode_tokens_per_s", s > 0 ? tokens / s : 0.0}};
}

}  // namespace longctx

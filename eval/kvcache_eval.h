// The `kvcache` evaluation: how many bytes a model's KV cache holds per token, measured on a
// cache actually built by decoding, next to the formula of its head scheme and to mha's.
#pragma once
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/param_store.h"

namespace longctx {

// Decodes `tokens` tokens (a fixed seeded random prompt; 1 ≤ tokens ≤ model.max_seq_len) with
// a Decoder over `weights` (a live model's or a checkpoint's, see param_store_of) and measures
// its cache:
//   {"heads": "gqa", "pattern": "flash", "n_layer": L, "tokens": n, "context_len": Lctx,
//    "cache_bytes": ..., "bytes_per_token_per_layer": ...,      measured: bytes / (n · L)
//    "formula_bytes_per_token_per_layer": ...,  4·(kv_lora_rank + rope_dim), 4·2·Hkv·D
//    "mha_bytes_per_token_per_layer": 4·2·H·D, "ratio_vs_mha": measured / mha,
//    "decode_tokens_per_s": ...}
// Errors as Decoder (a model that cannot decode, weights that do not fit the config).
nlohmann::json kvcache_eval(const Config& cfg, const ParamStore<float>& weights, int tokens);

}  // namespace longctx

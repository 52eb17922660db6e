// Incremental decoding of a causal LM with a KV cache: step(token) runs one token through the
// model at the next position and returns its next-token logits. The layers are the training
// model's (norms, MLP, RoPE table, embedding, parameter names); attention reads the cache:
//   mha/gqa/mqa  query head h against the cached post-RoPE K, V of head h / (H / Hkv)
//   mla          absorbed form, per head h: q_lat = W_uk[h]·q_nope (r values), score_j =
//                (q_lat·c_j + q_rope·k_rope_j) / √D, out_h = (Σ_j p_j c_j)·W_uv[h]; K and V
//                are never expanded per token
// The new query at position t attends to exactly the keys of row t of the layer's pattern
// mask, built for a fixed context length (see decode_context_len): causal dense/flash all
// j ≤ t; longformer, bigbird, strided the allowed set of that row. BigBird's random blocks are
// the run's fixed draw (resample: per_step models decode with that draw too).
// A prompt is prefilled by stepping through it token by token (no batched prefill).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "attention/attention_layer.h"
#include "core/config.h"
#include "core/param_store.h"
#include "eval/kv_cache.h"
#include "model/mlp.h"
#include "model/norm.h"
#include "model/rope.h"

namespace longctx {

struct CheckpointState;

// Throws Error saying why a model of this config cannot decode token by token: a classifier
// (objective: classify), linformer (it mixes future tokens into every key), longformer's
// separate_global_proj (not supported: the global rows would need a second cache of their own
// keys and values).
void check_decodable(const Config& cfg);

// The length the attention masks are built for when `needed` positions will be decoded:
// data.seq_len, the length the model was trained at (so every pattern decodes with exactly its
// training masks), or, when `needed` is longer, `needed` rounded up to attention.block_size and
// capped at model.max_seq_len. Causal dense, flash and longformer rows do not depend on it;
// BigBird's and strided's (stride: auto) do. Error when `needed` exceeds model.max_seq_len.
int64_t decode_context_len(const Config& cfg, int64_t needed);

// A ParamStore holding a checkpoint's parameters under their names (for callers that take one).
ParamStore<float> param_store_of(const CheckpointState& s);

class Decoder {
 public:
  // `infos` and `values` are the weights in ParamStore's layout (a ParamStore's, or a
  // checkpoint's): they are copied, by name, into the decoder's own store; a missing, extra or
  // misshapen parameter is an Error naming it. Masks are built for `context_len` positions
  // (1 ≤ context_len ≤ model.max_seq_len); positions beyond it cannot be decoded.
  Decoder(const Config& cfg, const std::vector<ParamInfo>& infos, const float* values,
          int64_t context_len);
  Decoder(const Config& cfg, const ParamStore<float>& weights, int64_t context_len)
      : Decoder(cfg, weights.infos(), weights.values.data(), context_len) {}
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Appends `token` at position position() and returns the logits [vocab_size] of the token
  // after it; valid until the next call. Error for a token outside the vocabulary or a full
  // context.
  const float* step(int32_t token);
  // Forgets every token: the next step is position 0 again.
  void reset();

  int64_t position() const { return pos_; }
  int64_t context_len() const { return ctx_; }
  int64_t vocab_size() const { return V_; }
  const KvCache& cache() const { return cache_; }
  KvCache& cache() { return cache_; }

 private:
  // The attention weights' ids in store_.
  struct AttnIds {
    int wq = -1, wo = -1;
    int wk = -1, wv = -1;                              // mha/gqa/mqa
    int w_dkv = -1, w_uk = -1, w_uv = -1, w_kr = -1;  // mla
  };
  struct Layer {
    NormLayer<float> ln1;
    AttentionLayer<float> attn;  // its masks, and the registration of its parameters
    NormLayer<float> ln2;
    Mlp<float> mlp;
    AttnIds w;
  };

  // y[C] = attention of the current token (at pos_) for layer l; appends its cache row.
  void attention(int l, const float* x, float* y);
  // keys_ = the key positions row pos_ of the mask allows (Error if any is later than pos_).
  void allowed_keys(const attn::BlockMask& m);
  // out[H·D] from q_ and layer l's cache: per head over keys_, mha/gqa/mqa or mla (absorbed).
  void attend_heads(int l, float* out);
  void attend_latent(int l, float* out);

  ModelConfig model_;
  AttentionConfig attn_cfg_;
  int64_t C_, H_, D_, V_, F_, ctx_;
  int64_t pos_ = 0;
  ParamStore<float> store_;
  int wte_ = -1, wpe_ = -1, head_ = -1;  // head_: lm_head, or wte when tied
  std::vector<Layer> layers_;
  std::unique_ptr<NormLayer<float>> ln_f_;
  std::unique_ptr<RopeTable<float>> rope_;
  KvCache cache_;

  // Buffers for one token.
  std::vector<float> x_, h_, y_, q_, out_, logits_, qlat_, lat_;
  std::vector<float> pre_, up_, act_;  // the MLP's [F]
  float mean_ = 0, rstd_ = 0;
  std::vector<uint8_t> ok_;     // [ctx_] one mask row
  std::vector<int64_t> keys_;   // allowed key positions of the current row
  std::vector<float> scores_;   // [ctx_]
};

}  // namespace longctx

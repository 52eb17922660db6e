#include "eval/decoder.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <unordered_map>

#include "core/error.h"
#include "core/gemm.h"
#include "model/embedding.h"
#include "trainer/checkpoint_file.h"

namespace longctx {

namespace {

// Copies every parameter of `dst` from the same name in (infos, values), checking shapes; a
// parameter on one side only is an Error naming it.
void copy_weights(ParamStore<float>& dst, const std::vector<ParamInfo>& infos,
                  const float* values) {
  std::unordered_map<std::string, const ParamInfo*> src;
  for (const ParamInfo& p : infos) src[p.name] = &p;
  for (const ParamInfo& p : dst.infos()) {
    auto it = src.find(p.name);
    if (it == src.end())
      throw Error(str("the weights lack parameter '", p.name, "' ", p.shape.str(),
                      " that the config's model has"));
    if (!(it->second->shape == p.shape))
      throw Error(str("parameter '", p.name, "' has shape ", it->second->shape.str(),
                      "; the config's model expects ", p.shape.str()));
    std::copy_n(values + it->second->offset, p.shape.numel(), dst.values.data() + p.offset);
    src.erase(it);
  }
  for (const ParamInfo& p : infos)
    if (src.count(p.name))
      throw Error(str("the weights hold parameter '", p.name, "' ", p.shape.str(),
                      ", which a causal LM of the config does not have"));
}

void add_into(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

float dot(const float* a, const float* b, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// scores[0, n) -> probabilities, in place (max subtracted, as the kernels do).
void softmax(float* s, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, s[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (s[i] = std::exp(s[i] - mx));
  for (int64_t i = 0; i < n; ++i) s[i] /= sum;
}

}  // namespace

void check_decodable(const Config& cfg) {
  if (cfg.attention.pattern == Pattern::linformer)
    throw Error("'attention.pattern: linformer' projects keys and values along the whole "
                "sequence (bidirectional only): it cannot decode token by token");
  if (cfg.objective == Objective::classify)
    throw Error("'objective: classify': a classifier has no LM head and cannot generate; "
                "generation needs a causal_lm model");
  if (cfg.attention.separate_global_proj)
    throw Error("'attention.separate_global_proj' is not supported for generation (the global "
                "rows' own queries, keys and values would need a second cache)");
}

int64_t decode_context_len(const Config& cfg, int64_t needed) {
  const int64_t max_len = cfg.model.max_seq_len;
  if (needed > max_len)
    throw Error(str(needed, " positions to decode exceed model.max_seq_len ", max_len));
  if (needed <= cfg.data.seq_len) return cfg.data.seq_len;
  const int64_t b = cfg.attention.block_size;
  return std::min(max_len, (needed + b - 1) / b * b);
}

ParamStore<float> param_store_of(const CheckpointState& s) {
  ParamStore<float> st;
  for (const ParamInfo& p : s.infos) st.add(p.name, p.shape, p.decay);
  st.allocate();
  for (size_t i = 0; i < s.infos.size(); ++i)
    std::copy_n(s.values.data() + s.infos[i].offset, s.infos[i].shape.numel(),
                st.value(static_cast<int>(i)));
  return st;
}

Decoder::Decoder(const Config& cfg, const std::vector<ParamInfo>& infos, const float* values,
                 int64_t context_len)
    : model_(cfg.model),
      attn_cfg_(cfg.attention),
      C_(cfg.model.d_model),
      H_(cfg.model.n_head),
      D_(cfg.model.d_model / cfg.model.n_head),
      V_(cfg.model.vocab_size),
      F_(cfg.model.d_ff),
      ctx_(context_len),
      cache_(cfg.model.n_layer, KvLayout::of(cfg.model, cfg.attention)) {
  check_decodable(cfg);
  if (ctx_ < 1 || ctx_ > model_.max_seq_len)
    throw Error(str("decoder: context length ", ctx_, " outside [1, model.max_seq_len = ",
                    model_.max_seq_len, "]"));
  const bool mla = attn_cfg_.heads == HeadScheme::mla;
  // Registered in the training model's order and names (model/transformer.cpp).
  wte_ = store_.add("wte", {V_, C_}, false);
  if (model_.position == Position::learned)
    wpe_ = store_.add("wpe", {model_.max_seq_len, C_}, false);
  layers_.reserve(model_.n_layer);
  for (int l = 0; l < model_.n_layer; ++l) {
    const std::string p = "blocks." + std::to_string(l), a = p + ".attn";
    layers_.push_back(Layer{NormLayer<float>(store_, p + ".ln1", model_.norm, C_),
                            AttentionLayer<float>(store_, a, model_, attn_cfg_, /*causal=*/true, l,
                                                  cfg.run.seed),
                            NormLayer<float>(store_, p + ".ln2", model_.norm, C_),
                            Mlp<float>(store_, p + ".mlp", model_), AttnIds{}});
    AttnIds& w = layers_.back().w;
    w.wq = store_.find(a + ".wq");
    w.wo = store_.find(a + ".wo");
    if (mla) {
      w.w_dkv = store_.find(a + ".w_dkv");
      w.w_uk = store_.find(a + ".w_uk");
      w.w_uv = store_.find(a + ".w_uv");
      w.w_kr = store_.find(a + ".w_kr");
    } else {
      w.wk = store_.find(a + ".wk");
      w.wv = store_.find(a + ".wv");
    }
  }
  ln_f_ = std::make_unique<NormLayer<float>>(store_, "ln_f", model_.norm, C_);
  head_ = model_.tie_embeddings ? wte_ : store_.add("lm_head", {V_, C_}, true);
  store_.allocate();
  copy_weights(store_, infos, values);
  store_.grads = {};  // never used: inference only
  if (model_.position == Position::rope)
    rope_ = std::make_unique<RopeTable<float>>(model_.max_seq_len,
                                               mla ? attn_cfg_.mla.rope_dim : D_);

  for (Layer& L : layers_) {
    // The prompt starts a document: with global_doc_starts, training made such a token global.
    if (attn_cfg_.global_doc_starts) {
      BatchStructure bs;
      bs.globals = {{0}};
      L.attn.set_batch(bs, 1, ctx_);
    }
    L.attn.masks_for(ctx_);  // a pattern that cannot exist at this length fails here
  }
  x_.resize(C_);
  h_.resize(C_);
  y_.resize(C_);
  q_.resize(H_ * D_);
  out_.resize(H_ * D_);
  logits_.resize(V_);
  pre_.resize(F_);
  act_.resize(F_);
  if (model_.activation == Activation::swiglu) up_.resize(F_);
  if (mla) {
    qlat_.resize(attn_cfg_.mla.kv_lora_rank);
    lat_.resize(attn_cfg_.mla.kv_lora_rank);
  }
  ok_.resize(ctx_);
  keys_.reserve(ctx_);
  scores_.resize(ctx_);
}

Decoder::~Decoder() = default;

void Decoder::reset() {
  pos_ = 0;
  cache_.clear();
}

const float* Decoder::step(int32_t token) {
  if (token < 0 || token >= V_)
    throw Error(str("token id ", token, " is outside the vocabulary [0, ", V_,
                    ") (model.vocab_size)"));
  if (pos_ >= ctx_)
    throw Error(str("decoder: position ", pos_, " is past the context length ", ctx_,
                    " its attention masks were built for"));
  const int64_t p = pos_;
  embedding_forward(x_.data(), &token, store_.value(wte_),
                    wpe_ >= 0 ? store_.value(wpe_) : nullptr, 1, 1, C_, &p);
  for (int l = 0; l < model_.n_layer; ++l) {
    const Layer& L = layers_[l];
    L.ln1.forward(store_, h_.data(), &mean_, &rstd_, x_.data(), 1);
    attention(l, h_.data(), y_.data());
    add_into(x_.data(), y_.data(), C_);
    L.ln2.forward(store_, h_.data(), &mean_, &rstd_, x_.data(), 1);
    MlpActs<float> acts{pre_.data(), up_.empty() ? nullptr : up_.data(), act_.data()};
    L.mlp.forward(store_, h_.data(), y_.data(), acts, 1);
    add_into(x_.data(), y_.data(), C_);
  }
  ln_f_->forward(store_, h_.data(), &mean_, &rstd_, x_.data(), 1);
  matmul<float>(false, true, 1, V_, C_, h_.data(), store_.value(head_), logits_.data());
  ++pos_;
  return logits_.data();
}

// q = x·wq; the cache row gets this token's [K | V] (or [c | k_rope]); y = attend(q)·wo.
void Decoder::attention(int l, const float* x, float* y) {
  const AttnIds& w = layers_[l].w;
  const KvLayout& kl = cache_.layout();
  matmul<float>(false, false, 1, H_ * D_, C_, x, store_.value(w.wq), q_.data());
  float* row = cache_.append(l);
  if (!kl.latent()) {
    const int64_t KD = kl.n_kv_head * D_;
    matmul<float>(false, false, 1, KD, C_, x, store_.value(w.wk), row + kl.key(0));
    matmul<float>(false, false, 1, KD, C_, x, store_.value(w.wv), row + kl.value(0));
    if (rope_) {  // [H, 1, D] and [Hkv, 1, D]: one token's heads
      rope_apply(q_.data(), *rope_, 1, H_, 1, D_, pos_, false);
      rope_apply(row + kl.key(0), *rope_, 1, kl.n_kv_head, 1, D_, pos_, false);
    }
    attend_heads(l, out_.data());
  } else {
    const int64_t r = kl.kv_lora_rank, R = kl.rope_dim;
    matmul<float>(false, false, 1, r, C_, x, store_.value(w.w_dkv), row);
    matmul<float>(false, false, 1, R, C_, x, store_.value(w.w_kr), row + kl.rope_key());
    if (rope_) {  // each head's rope slice of q, and the shared key
      rope_apply_slice(q_.data(), *rope_, 1, 1, H_, D_, D_ - R, pos_, false);
      rope_apply_slice(row + kl.rope_key(), *rope_, 1, 1, 1, R, 0, pos_, false);
    }
    attend_latent(l, out_.data());
  }
  matmul<float>(false, false, 1, C_, H_ * D_, out_.data(), store_.value(w.wo), y);
}

void Decoder::allowed_keys(const attn::BlockMask& m) {
  LONGCTX_CHECK(m.seq_k() == ctx_, "decoder: a mask over ", m.seq_k(), " keys for context ",
                ctx_);
  m.allowed_row(pos_, ok_.data());
  keys_.clear();
  for (int64_t j = 0; j <= pos_; ++j)
    if (ok_[j]) keys_.push_back(j);
  for (int64_t j = pos_ + 1; j < ctx_; ++j)
    if (ok_[j])
      throw Error(str("the attention mask lets position ", pos_, " see the later position ", j,
                      ": a pattern that is not causal cannot decode token by token"));
}

// out[h] = Σ_j softmax_j(q_h·k_j / √D) v_j over the allowed keys, K/V head h / (H / Hkv).
void Decoder::attend_heads(int l, float* out) {
  const KvLayout& kl = cache_.layout();
  const attn::MaskSet& masks = layers_[l].attn.masks_for(ctx_);
  const int64_t group = H_ / kl.n_kv_head;
  const float scale = 1.0f / std::sqrt(float(D_));
  const attn::BlockMask* last = nullptr;
  for (int64_t h = 0; h < H_; ++h) {
    const attn::BlockMask* m = &masks.get(0, h);
    if (m != last) allowed_keys(*m);
    last = m;
    const int64_t g = h / group, n = static_cast<int64_t>(keys_.size());
    const float* qh = q_.data() + h * D_;
    for (int64_t i = 0; i < n; ++i)
      scores_[i] = dot(qh, cache_.row(l, keys_[i]) + kl.key(g), D_) * scale;
    softmax(scores_.data(), n);
    float* o = out + h * D_;
    std::fill(o, o + D_, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      const float* v = cache_.row(l, keys_[i]) + kl.value(g);
      for (int64_t d = 0; d < D_; ++d) o[d] += scores_[i] * v[d];
    }
  }
}

// MLA, absorbed: q_nope·k_nope_j = q_nope·(c_j·W_uk[h]) = (W_uk[h]·q_nope)·c_j, and
// Σ_j p_j v_j = (Σ_j p_j c_j)·W_uv[h]: the cache holds only c and the shared rope key.
void Decoder::attend_latent(int l, float* out) {
  const AttnIds& w = layers_[l].w;
  const KvLayout& kl = cache_.layout();
  const attn::MaskSet& masks = layers_[l].attn.masks_for(ctx_);
  const int64_t r = kl.kv_lora_rank, R = kl.rope_dim, Dn = D_ - R;
  const float* w_uk = store_.value(w.w_uk);  // [r, H·Dn]
  const float* w_uv = store_.value(w.w_uv);  // [r, H·D]
  const float scale = 1.0f / std::sqrt(float(D_));
  const attn::BlockMask* last = nullptr;
  for (int64_t h = 0; h < H_; ++h) {
    const attn::BlockMask* m = &masks.get(0, h);
    if (m != last) allowed_keys(*m);
    last = m;
    const int64_t n = static_cast<int64_t>(keys_.size());
    const float* qh = q_.data() + h * D_;  // [q_nope (Dn) | q_rope (R)]
    // qlat[r] = W_uk[:, h·Dn : (h+1)·Dn] · q_nope
    gemm<float>(false, true, 1, r, Dn, 1.0f, qh, Dn, w_uk + h * Dn, H_ * Dn, 0.0f, qlat_.data(),
                r);
    for (int64_t i = 0; i < n; ++i) {
      const float* c = cache_.row(l, keys_[i]);
      scores_[i] = (dot(qlat_.data(), c, r) + dot(qh + Dn, c + kl.rope_key(), R)) * scale;
    }
    softmax(scores_.data(), n);
    std::fill(lat_.begin(), lat_.end(), 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      const float* c = cache_.row(l, keys_[i]);
      for (int64_t a = 0; a < r; ++a) lat_[a] += scores_[i] * c[a];
    }
    // out_h[D] = lat · W_uv[:, h·D : (h+1)·D]
    gemm<float>(false, false, 1, D_, r, 1.0f, lat_.data(), r, w_uv + h * D_, H_ * D_, 0.0f,
                out + h * D_, D_);
  }
}

}  // namespace longctx

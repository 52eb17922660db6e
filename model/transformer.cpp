#include "model/transformer.h"

#include <cmath>

#include "core/gemm.h"
#include "core/rng.h"
#include "model/cross_entropy.h"
#include "model/embedding.h"

namespace longctx {

namespace {
template <class T>
void add(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
}  // namespace

template <class T>
Transformer<T>::Transformer(const ModelConfig& m, const AttentionConfig& attn, int64_t B,
                            int64_t Tn, Recompute recompute, Objective objective, uint64_t seed,
                            const SeqParallel& sp)
    : cfg_(m),
      sp_(sp),
      positions_(sp.positions()),
      B_(B),
      T_(Tn),
      N_(B * Tn),
      C_(m.d_model),
      V_(m.vocab_size),
      recompute_(recompute == Recompute::block),
      classify_(objective == Objective::classify),
      holds_first_(positions_.empty() || positions_[0] == 0) {
  LONGCTX_CHECK(!sp.active() || (Tn == sp.layout.local_len() && sp.comm->size() == sp.layout.sp),
                "sequence parallel: ", Tn, " local positions for a layout of ",
                sp.active() ? sp.layout.local_len() : 0, " over ", sp.active() ? sp.layout.sp : 0,
                " ranks");
  LONGCTX_CHECK(sp.full_len(Tn) <= m.max_seq_len, "sequence length ", sp.full_len(Tn),
                " exceeds model.max_seq_len ", m.max_seq_len);
  wte_ = store_.add("wte", {V_, C_}, false);
  if (m.position == Position::learned) wpe_ = store_.add("wpe", {m.max_seq_len, C_}, false);
  int linformer_e = -1;  // one projection for every layer when linformer.share is layerwise
  if (attn.pattern == Pattern::linformer && attn.linformer.share == LinformerShare::layerwise) {
    linformer_global_ = linformer_add_global(store_, attn.linformer.k, m.max_seq_len);
    linformer_e = linformer_global_.e;
  }
  layers_.reserve(m.n_layer);
  for (int l = 0; l < m.n_layer; ++l) {
    const std::string p = "blocks." + std::to_string(l);
    block_lo_.push_back(store_.size());
    layers_.push_back(Layer{NormLayer<T>(store_, p + ".ln1", m.norm, C_),
                            AttentionLayer<T>(store_, p + ".attn", m, attn, /*causal=*/!classify_, l,
                                              seed, linformer_e),
                            NormLayer<T>(store_, p + ".ln2", m.norm, C_),
                            Mlp<T>(store_, p + ".mlp", m)});
  }
  for (Layer& l : layers_) l.attn.set_sequence_parallel(sp);
  lnf_lo_ = store_.size();
  ln_f_ = std::make_unique<NormLayer<T>>(store_, "ln_f", m.norm, C_);
  if (classify_)
    cls_head_ = store_.add("cls_head", {m.n_classes, C_}, true);
  else if (!m.tie_embeddings)
    lm_head_ = store_.add("lm_head", {V_, C_}, true);
  labels_.resize(B_);
  store_.allocate();
  if (m.position == Position::rope)  // mla rotates only its decoupled rope_dim slice
    rope_ = std::make_unique<RopeTable<T>>(
        m.max_seq_len, attn.heads == HeadScheme::mla ? attn.mla.rope_dim : m.d_model / m.n_head);

  layout(arena_);  // measure
  arena_.commit();
  layout(arena_);  // bind
}

template <class T>
void Transformer<T>::layout(Arena<T>& ar) {
  const int64_t L = cfg_.n_layer;
  res_.assign(L + 1, nullptr);
  for (auto& r : res_) r = ar.take(N_ * C_);
  acts_.assign(recompute_ ? 1 : L, BlockActs{});
  for (size_t l = 0; l < acts_.size(); ++l) {
    BlockActs& a = acts_[l];
    a.ln1 = ar.take(N_ * C_);
    a.ln1_mean = ar.take(N_);
    a.ln1_rstd = ar.take(N_);
    layers_[l].attn.layout(ar, a.attn, B_, T_);
    a.mid = ar.take(N_ * C_);
    a.ln2 = ar.take(N_ * C_);
    a.ln2_mean = ar.take(N_);
    a.ln2_rstd = ar.take(N_);
    layers_[l].mlp.layout(ar, a.mlp, N_);
  }
  lnf_ = ar.take(N_ * C_);
  lnf_mean_ = ar.take(N_);
  lnf_rstd_ = ar.take(N_);
  logits_ = ar.take(classify_ ? B_ * cfg_.n_classes : N_ * V_);
  losses_ = ar.take(classify_ ? B_ : N_);
  if (classify_) pooled_ = ar.take(B_ * C_ + B_);  // + the labels, reduced with it under sp
  branch_ = ar.take(N_ * C_);
  dres_ = ar.take(N_ * C_);
  dbranch_ = ar.take(N_ * C_);
  layers_[0].attn.layout_scratch(ar, attn_scratch_, B_, T_);
  layers_[0].mlp.layout_scratch(ar, mlp_scratch_, N_);
}

template <class T>
void Transformer<T>::init(uint64_t seed) {
  Rng rng = Rng::stream(seed, 0x1417ull);
  const double std = cfg_.init_std, out_std = std / std::sqrt(2.0 * cfg_.n_layer);
  auto fill = [&](int id) {
    T* w = store_.value(id);
    for (int64_t i = 0; i < store_.infos()[id].shape.numel(); ++i)
      w[i] = static_cast<T>(std * rng.normal());
  };
  fill(wte_);
  if (wpe_ >= 0) fill(wpe_);
  if (linformer_global_.e >= 0) {
    linformer_global_.owned = true;  // the model owns it; layers only borrow it
    linformer_init(store_, linformer_global_, rng,
                   linformer_default_std(store_.infos()[linformer_global_.e].shape[0],
                                         cfg_.max_seq_len));
  }
  for (const Layer& layer : layers_) {
    layer.ln1.init(store_);
    layer.attn.init(store_, rng, std, out_std);
    layer.ln2.init(store_);
    layer.mlp.init(store_, rng, std, out_std);
  }
  ln_f_->init(store_);
  if (lm_head_ >= 0) fill(lm_head_);
  if (cls_head_ >= 0) fill(cls_head_);
}

template <class T>
const T* Transformer<T>::head_weight() {
  return store_.value(lm_head_ >= 0 ? lm_head_ : wte_);
}

template <class T>
void Transformer<T>::check_inputs(const int32_t* inputs, const int32_t* targets) const {
  auto pos = [&](int64_t i) { return positions_.empty() ? i % T_ : positions_[i % T_]; };
  auto where = [&](int64_t i) { return str(" at batch row ", i / T_, ", position ", pos(i)); };
  for (int64_t i = 0; i < N_; ++i)
    if (inputs[i] < 0 || inputs[i] >= V_)
      throw Error(str("input token id ", inputs[i], where(i), " is outside the vocabulary [0, ",
                      V_, ") (model.vocab_size)"));
  for (int64_t i = 0; i < N_; ++i) {
    const int32_t t = targets[i];
    if (t == kIgnoreIndex) continue;
    if (classify_ && pos(i) != 0)
      throw Error(str("classification target", where(i), ": only position 0 may hold a label"));
    const int64_t limit = classify_ ? cfg_.n_classes : V_;
    if (t < 0 || t >= limit)
      throw Error(str(classify_ ? "class label " : "target token id ", t, where(i),
                      " is outside [0, ", limit, ") (",
                      classify_ ? "model.n_classes" : "model.vocab_size", ")"));
  }
}

template <class T>
void Transformer<T>::block_forward(int l, BlockActs& a) {
  const Layer& L = layers_[l];
  L.ln1.forward(store_, a.ln1, a.ln1_mean, a.ln1_rstd, res_[l], N_);
  L.attn.forward(store_, a.ln1, branch_, a.attn, attn_scratch_, B_, T_, rope_.get());
  add(a.mid, res_[l], branch_, N_ * C_);
  L.ln2.forward(store_, a.ln2, a.ln2_mean, a.ln2_rstd, a.mid, N_);
  L.mlp.forward(store_, a.ln2, branch_, a.mlp, N_);
  add(res_[l + 1], a.mid, branch_, N_ * C_);
}

// On entry dres_ = ∂L/∂res[l+1]; on exit ∂L/∂res[l].
template <class T>
void Transformer<T>::block_backward(int l, BlockActs& a) {
  const Layer& L = layers_[l];
  L.mlp.backward(store_, a.ln2, dres_, dbranch_, a.mlp, mlp_scratch_, N_);
  L.ln2.backward(store_, dres_, dbranch_, a.mid, a.ln2_mean, a.ln2_rstd, N_);
  L.attn.backward(store_, a.ln1, dres_, dbranch_, a.attn, attn_scratch_, B_, T_, rope_.get());
  L.ln1.backward(store_, dres_, dbranch_, res_[l], a.ln1_mean, a.ln1_rstd, N_);
}

template <class T>
double Transformer<T>::forward(const int32_t* inputs, const int32_t* targets, int64_t* count) {
  check_inputs(inputs, targets);
  embedding_forward(res_[0], inputs, store_.value(wte_), wpe_ >= 0 ? store_.value(wpe_) : nullptr,
                    B_, T_, C_, positions_.empty() ? nullptr : positions_.data());
  for (int l = 0; l < cfg_.n_layer; ++l) block_forward(l, acts_[recompute_ ? 0 : l]);
  ln_f_->forward(store_, lnf_, lnf_mean_, lnf_rstd_, res_[cfg_.n_layer], N_);
  if (classify_) return classify_forward(targets, count);
  matmul<T>(false, true, N_, V_, C_, lnf_, head_weight(), logits_);  // logits = lnf · Wᵀ
  return cross_entropy_forward(losses_, logits_, targets, N_, V_, count);
}

// pooled[B, C] = mean over t < length[b] of lnf[b, t] (or lnf[b, 0]);
// logits[B, n_classes] = pooled · W_clsᵀ. Padding (t ≥ length[b]) takes no part in the mean.
// Under sp each rank pools its own rows (mean: the sum of its real rows; cls: position 0's row on
// the rank that holds it, zeros elsewhere) and one all-reduce over the group completes it; the
// labels, which the loader serves with position 0 only, travel in the same all-reduce (small
// integers, exact in T). Head and loss then run identically on every sp rank; only the rank
// holding position 0 reports the loss and its count, so the grid sum counts them once.
template <class T>
double Transformer<T>::classify_forward(const int32_t* targets, int64_t* count) {
  T* labels = pooled_ + B_ * C_;
  for (int64_t b = 0; b < B_; ++b) {
    T* p = pooled_ + b * C_;
    const T* rows = lnf_ + b * T_ * C_;
    if (cfg_.pool == Pool::cls) {
      if (holds_first_)
        std::copy(rows, rows + C_, p);
      else
        std::fill(p, p + C_, T(0));
    } else {
      std::fill(p, p + C_, T(0));
      for (int64_t t = 0; t < T_; ++t)
        if (is_real(b, t))
          for (int64_t c = 0; c < C_; ++c) p[c] += rows[t * C_ + c];
    }
    labels[b] = holds_first_ ? T(targets[b * T_]) : T(0);
  }
  if (sp_.active()) sp_.comm->all_reduce_sum(pooled_, B_ * C_ + B_);
  for (int64_t b = 0; b < B_; ++b) {
    if (cfg_.pool == Pool::mean)
      for (int64_t c = 0; c < C_; ++c) pooled_[b * C_ + c] /= T(real_len(b));
    labels_[b] = static_cast<int32_t>(std::lround(labels[b]));
  }
  matmul<T>(false, true, B_, cfg_.n_classes, C_, pooled_, store_.value(cls_head_), logits_);
  int64_t n = 0;
  const double loss =
      cross_entropy_forward(losses_, logits_, labels_.data(), B_, cfg_.n_classes, &n);
  *count = holds_first_ ? n : 0;
  return holds_first_ ? loss : 0.0;
}

// Leaves ∂L/∂lnf in dbranch_. dpooled is the same on every sp rank; each rank sends it into
// its own rows. The head's gradient is added by the rank holding position 0 alone: the grid
// sum then adds exact zeros from the others, so it counts once with no extra rounding, where a
// 1/sp scale would round for an sp that is not a power of two.
template <class T>
void Transformer<T>::classify_backward(T scale) {
  const int64_t K = cfg_.n_classes;
  T* dlogits = logits_;
  cross_entropy_backward(dlogits, logits_, labels_.data(), B_, K, scale);
  if (holds_first_)
    matmul<T>(true, false, K, C_, B_, dlogits, pooled_, store_.grad(cls_head_), true);
  matmul<T>(false, false, B_, C_, K, dlogits, store_.value(cls_head_), pooled_);  // dpooled
  std::fill(dbranch_, dbranch_ + N_ * C_, T(0));
  for (int64_t b = 0; b < B_; ++b) {
    const T* dp = pooled_ + b * C_;
    T* rows = dbranch_ + b * T_ * C_;
    if (cfg_.pool == Pool::cls) {
      if (holds_first_) std::copy(dp, dp + C_, rows);
    } else {
      for (int64_t t = 0; t < T_; ++t)
        if (is_real(b, t))
          for (int64_t c = 0; c < C_; ++c) rows[t * C_ + c] = dp[c] / T(real_len(b));
    }
  }
}

template <class T>
void Transformer<T>::backward(const int32_t* inputs, const int32_t* targets, T scale) {
  if (classify_) {
    classify_backward(scale);
  } else {
    T* dlogits = logits_;  // in place: the logits are not needed once their gradient exists
    cross_entropy_backward(dlogits, logits_, targets, N_, V_, scale);
    T* dhead = store_.grad(lm_head_ >= 0 ? lm_head_ : wte_);
    matmul<T>(true, false, V_, C_, N_, dlogits, lnf_, dhead, true);
    matmul<T>(false, false, N_, C_, V_, dlogits, head_weight(), dbranch_);
  }
  std::fill(dres_, dres_ + N_ * C_, T(0));
  ln_f_->backward(store_, dres_, dbranch_, res_[cfg_.n_layer], lnf_mean_, lnf_rstd_, N_);
  if (grad_ready_) grad_ready_(lnf_lo_);
  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    BlockActs& a = acts_[recompute_ ? 0 : l];
    if (recompute_) block_forward(l, a);  // rewrites res_[l+1] with identical values
    block_backward(l, a);
    if (grad_ready_) grad_ready_(block_lo_[l]);
  }
  embedding_backward(store_.grad(wte_), wpe_ >= 0 ? store_.grad(wpe_) : nullptr, dres_, inputs, B_,
                     T_, C_, positions_.empty() ? nullptr : positions_.data());
}

template <class T>
void Transformer<T>::set_batch(const BatchStructure& bs) {
  const int64_t Tfull = sp_.full_len(T_);
  LONGCTX_CHECK(bs.lengths.empty() || int64_t(bs.lengths.size()) == B_, "batch structure: ",
                bs.lengths.size(), " sample lengths for a batch of ", B_);
  for (int64_t len : bs.lengths)
    LONGCTX_CHECK(len >= 1 && len <= Tfull, "batch structure: a sample of ", len,
                  " real tokens, outside [1, ", Tfull, "]");
  lengths_ = bs.lengths;
  for (const Layer& l : layers_) l.attn.set_batch(bs, B_, Tfull);
}

template <class T>
void Transformer<T>::set_step(int64_t step) {
  for (const Layer& l : layers_) l.attn.set_step(step);
}

template <class T>
int64_t Transformer<T>::kv_activation_bytes() const {
  int64_t values = 0;
  for (const Layer& l : layers_) values += l.attn.kv_saved_values_per_token();
  return values * N_ * static_cast<int64_t>(sizeof(T));
}

template <class T>
int64_t Transformer<T>::non_embedding_params() const {
  int64_t n = 0;
  for (const ParamInfo& p : store_.infos())
    if (p.name != "wte" && p.name != "wpe") n += p.shape.numel();
  return n;
}

template <class T>
double Transformer<T>::train_flops_per_token(int64_t seq_len) const {
  // 6 FLOPs per weight per token (forward 2, backward 4), plus the LM head when tied (its
  // weights are counted as embedding), plus attention: 4·D per score forward, 8·D backward,
  // over the scores the layer's pattern allows.
  const double head = lm_head_ >= 0 || classify_ ? 0.0 : 6.0 * double(V_) * double(C_);
  double attn = 0;
  for (const Layer& l : layers_)
    attn += 12.0 * double(cfg_.d_model) *
            l.attn.scores_per_query(seq_len > 0 ? seq_len : sp_.full_len(T_));
  return 6.0 * double(non_embedding_params()) + head + attn;
}

template class Transformer<float>;
template class Transformer<double>;

}  // namespace longctx

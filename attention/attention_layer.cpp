#include "attention/attention_layer.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "attention/dense.h"
#include "attention/flash.h"
#include "attention/head_layout.h"
#include "attention/pattern_masks.h"
#include "attention/ulysses.h"
#include "core/gemm.h"

namespace longctx {

bool samples_padded(const Config& cfg) {
  return (cfg.data.source == DataSource::hdf5 && cfg.data.packing == Packing::doc) ||
         (cfg.data.source == DataSource::synthetic &&
          cfg.data.synthetic.task == SyntheticTask::listops);
}

BatchStructure batch_structure_for(const Config& cfg, const int32_t* doc, int64_t B, int64_t T,
                                   bool padded) {
  BatchStructure bs;
  if ((cfg.data.doc_mask || padded) && cfg.attention.pattern != Pattern::linformer) bs.doc = doc;
  if (padded) bs.lengths = BatchStructure::first_doc_lengths(doc, B, T);
  if (cfg.attention.global_doc_starts) {
    bs.globals.resize(size_t(B));
    for (int64_t i = 0; i < B; ++i)
      for (int64_t p = 0; p < T; ++p)
        if (p == 0 || doc[i * T + p] != doc[i * T + p - 1]) bs.globals[size_t(i)].push_back(p);
  }
  return bs;
}

namespace {

template <class T>
void init_normal(T* w, int64_t n, Rng& rng, double std) {
  for (int64_t i = 0; i < n; ++i) w[i] = static_cast<T>(std * rng.normal());
}

}  // namespace

template <class T>
AttentionLayer<T>::AttentionLayer(ParamStore<T>& store, const std::string& prefix,
                                  const ModelConfig& model, const AttentionConfig& attn,
                                  bool causal, int layer, uint64_t seed, int linformer_e)
    : C_(model.d_model),
      H_(model.n_head),
      Hkv_(attn.heads == HeadScheme::mqa ? 1 : attn.n_kv_head > 0 ? attn.n_kv_head : model.n_head),
      D_(model.d_model / model.n_head),
      pattern_(attn.pattern),
      block_(attn.block_size),
      causal_(causal),
      cfg_(attn),
      layer_(layer),
      seed_(seed) {
  if (attn.heads == HeadScheme::mla) {
    Hkv_ = H_;  // the latent expands to every head
    mla_ = std::make_unique<MlaProjection<T>>(store, prefix, C_, H_, attn.mla.kv_lora_rank,
                                              attn.mla.rope_dim);
  } else {
    wq_ = store.add(prefix + ".wq", {C_, H_ * D_}, true);
    wk_ = store.add(prefix + ".wk", {C_, Hkv_ * D_}, true);
    wv_ = store.add(prefix + ".wv", {C_, Hkv_ * D_}, true);
  }
  wo_ = store.add(prefix + ".wo", {H_ * D_, C_}, true);
  if (attn.separate_global_proj) {
    LONGCTX_CHECK(pattern_ == Pattern::longformer && !mla_,
                  "attention.separate_global_proj needs longformer and mha/gqa/mqa");
    wqg_ = store.add(prefix + ".wq_global", {C_, H_ * D_}, true);
    wkg_ = store.add(prefix + ".wk_global", {C_, Hkv_ * D_}, true);
    wvg_ = store.add(prefix + ".wv_global", {C_, Hkv_ * D_}, true);
    globals_.assign(attn.global_tokens.begin(), attn.global_tokens.end());
    std::sort(globals_.begin(), globals_.end());
    globals_.erase(std::unique(globals_.begin(), globals_.end()), globals_.end());
  }
  if (pattern_ == Pattern::linformer) {
    LONGCTX_CHECK(!causal_, "linformer mixes future tokens into every key; it needs a "
                            "bidirectional objective");
    lin_k_ = attn.linformer.k;
    max_len_ = model.max_seq_len;
    lin_ = linformer_add(store, prefix, attn.linformer.share, lin_k_, max_len_, linformer_e);
  }
}

template <class T>
void AttentionLayer<T>::init(ParamStore<T>& store, Rng& rng, double std, double out_std) const {
  if (mla_)
    mla_->init(store, rng, std);
  else
    for (int id : {wq_, wk_, wv_})
      init_normal(store.value(id), store.infos()[id].shape.numel(), rng, std);
  init_normal(store.value(wo_), store.infos()[wo_].shape.numel(), rng, out_std);
  if (wqg_ >= 0)  // initialised as copies of the local projections (Longformer, section 3.1)
    for (auto [g, l] : {std::pair{wqg_, wq_}, {wkg_, wk_}, {wvg_, wv_}})
      std::copy_n(store.value(l), store.infos()[l].shape.numel(), store.value(g));
  if (pattern_ == Pattern::linformer)
    linformer_init(store, lin_, rng, linformer_default_std(lin_k_, max_len_));
}

template <class T>
double AttentionLayer<T>::scores_per_query(int64_t Tn) const {
  if (pattern_ == Pattern::linformer) return double(lin_k_);
  if (pattern_ == Pattern::dense) return causal_ ? (Tn + 1) / 2.0 : double(Tn);
  const attn::MaskSet& set = mask(Tn);
  double total = 0;
  for (int64_t h = 0; h < H_; ++h) total += double(set.get(0, h).allowed_scores());
  return total / double(H_) / double(Tn);
}

template <class T>
int64_t AttentionLayer<T>::kv_saved_values_per_token() const {
  return mla_ ? mla_->kv_lora_rank() : 2 * Hkv_ * D_;
}

template <class T>
attn::AttnShape AttentionLayer<T>::shape(int64_t B, int64_t Tn) const {
  attn::AttnShape s;
  s.B = B;
  s.H = H_;
  s.Hkv = Hkv_;
  s.Tq = s.Tk = Tn;
  s.D = D_;
  return s;
}

template <class T>
attn::MaskSet AttentionLayer<T>::build_mask(int64_t Tn) const {
  return attn::pattern_masks(cfg_, Tn, H_, causal_, seed_, layer_, step_);
}

template <class T>
const attn::MaskSet& AttentionLayer<T>::pattern_mask(int64_t Tn) const {
  if (mask_.masks.empty() || mask_.masks[0].n_q != Tn) {
    mask_ = build_mask(Tn);
    ++mask_gen_;
  }
  return mask_;
}

template <class T>
void AttentionLayer<T>::set_sequence_parallel(const SeqParallel& sp) {
  // The global rows' own queries attend to every key, and their positions live on any rank:
  // that needs its own exchange of those rows, which the sp cores do not provide.
  LONGCTX_CHECK(!sp.active() || wqg_ < 0,
                "sequence parallelism cannot serve separate_global_proj (the global rows' own "
                "attention spans every rank)");
  // Linformer projects this rank's columns E[:, a:b]: one range of positions.
  LONGCTX_CHECK(!sp.active() || pattern_ != Pattern::linformer ||
                    (sp.layout.kind == attn::SpLayoutKind::contiguous && sp.layout.T <= max_len_),
                "linformer under sequence parallelism needs the contiguous layout and a sequence "
                "of at most max_seq_len (", max_len_, ")");
  LONGCTX_CHECK(!sp.active() || sp.rank == sp.comm->rank(), "sequence parallel: rank ", sp.rank,
                " given for the group's rank ", sp.active() ? sp.comm->rank() : 0);
  sp_ = sp;
  rows_ = sp.positions();
  // Ulysses keeps q, k, v, out in head layout from forward to backward where they fit the
  // local buffers; MLA rebuilds K and V in backward and linformer has its own path.
  ulysses_kept_ = sp.active() && sp.mode == SpMode::ulysses && !mla_ &&
                  pattern_ != Pattern::linformer &&
                  attn::ulysses_keeps_head_layout(H_, Hkv_, sp.layout.sp);
  ++mask_gen_;  // a plan belongs to one layout
  plan_masks_ = nullptr;
}

std::vector<int64_t> SeqParallel::positions() const {
  return active() ? *layout.held(rank).pos : std::vector<int64_t>{};
}

template <class T>
void AttentionLayer<T>::rotate(T* x, const RopeTable<T>& rope, int64_t B, int64_t Hh, int64_t Tn,
                               bool inverse) const {
  if (sp_.active())
    rope_apply_at(x, rope, B, Hh, Tn, D_, rows_.data(), inverse);
  else
    rope_apply(x, rope, B, Hh, Tn, D_, 0, inverse);
}

template <class T>
const attn::RingPlan& AttentionLayer<T>::ring_plan(const attn::MaskSet& m) const {
  if (plan_masks_ != &m || plan_gen_ != mask_gen_) {
    plan_ = attn::make_ring_plan(*sp_.comm, sp_.layout, m);
    plan_masks_ = &m;
    plan_gen_ = mask_gen_;
  }
  return plan_;
}

template <class T>
const T* AttentionLayer<T>::core_forward(const attn::AttnShape& sh, const attn::MaskSet& m, T* q,
                                         T* k, T* v, T* out, T* lse, T scale, T* scratch) const {
  if (ulysses_kept_) {
    attn::ulysses_forward_kept(*sp_.comm, sp_.layout, sh, m, q, k, v, scratch, out, lse, scale);
    return scratch;
  }
  if (!sp_.active())
    attn::flash_forward(sh, m, q, k, v, out, lse, scale);
  else if (sp_.mode == SpMode::ulysses)
    attn::ulysses_forward(*sp_.comm, sp_.layout, sh, m, q, k, v, out, lse, scale);
  else
    attn::ring_forward(*sp_.comm, ring_plan(m), sh, q, k, v, out, lse, scale);
  return out;
}

template <class T>
void AttentionLayer<T>::core_backward(const attn::AttnShape& sh, const attn::MaskSet& m,
                                      const T* q, const T* k, const T* v, const T* out,
                                      const T* lse, const T* dout, T* dq, T* dk, T* dv,
                                      T scale) const {
  if (ulysses_kept_)
    attn::ulysses_backward_kept(*sp_.comm, sp_.layout, sh, m, q, k, v, out, lse, dout, dq, dk, dv,
                                scale);
  else if (!sp_.active())
    attn::flash_backward(sh, m, q, k, v, out, lse, dout, dq, dk, dv, scale);
  else if (sp_.mode == SpMode::ulysses)
    attn::ulysses_backward(*sp_.comm, sp_.layout, sh, m, q, k, v, out, lse, dout, dq, dk, dv,
                           scale);
  else
    attn::ring_backward(*sp_.comm, ring_plan(m), sh, q, k, v, out, lse, dout, dq, dk, dv, scale);
}

template <class T>
const attn::MaskSet& AttentionLayer<T>::mask(int64_t Tn) const {
  if (!batch_mask_.masks.empty() && batch_mask_.masks[0].n_q == Tn) return batch_mask_;
  return pattern_mask(Tn);
}

// Per-sample globals rebuild the longformer masks; documents then restrict every (sample, head)
// mask, and the global rows' mask of separate_global_proj per sample.
template <class T>
void AttentionLayer<T>::set_batch(const BatchStructure& bs, int64_t B, int64_t Tn) const {
  // An empty structure after an empty one changes nothing: keep the masks (and the ring plan
  // built from them, whose rebuilding is collective and costs a mask restriction per rank).
  if (pattern_ == Pattern::linformer) lin_lengths_ = bs.lengths;
  if (bs.empty() && batch_mask_.masks.empty()) return;
  batch_mask_ = {};
  batch_global_mask_ = {};
  ++mask_gen_;
  if (bs.empty()) return;
  LONGCTX_CHECK(pattern_ != Pattern::linformer || !bs.doc,
                "a document mask cannot apply to linformer: its projections mix the documents");
  batch_mask_ = attn::batch_masks(cfg_, pattern_mask(Tn), bs.doc, bs.globals, B, Tn, H_, causal_);
  if (!bs.doc || wqg_ < 0) return;
  std::vector<attn::BlockMask> rows;
  for (int64_t b = 0; b < B; ++b) {
    auto doc = std::make_shared<const std::vector<int32_t>>(bs.doc + b * Tn, bs.doc + (b + 1) * Tn);
    rows.push_back(attn::restrict_to_documents(global_rows_mask(Tn).get(0, 0), doc));
  }
  batch_global_mask_ = attn::MaskSet::per_sample(std::move(rows));
}

template <class T>
void AttentionLayer<T>::set_step(int64_t step) const {
  if (pattern_ != Pattern::bigbird || cfg_.bigbird.resample != Resample::per_step) return;
  if (step_ != step) {  // rebuilt on next use with the new draws
    mask_ = {};
    ++mask_gen_;
  }
  step_ = step;
}

template <class T>
const attn::MaskSet& AttentionLayer<T>::linformer_mask(int64_t Tn) const {
  if (lin_mask_.masks.empty() || lin_mask_.masks[0].n_q != Tn)
    lin_mask_ = attn::MaskSet::shared(attn::full_mask(Tn, lin_k_, block_));
  return lin_mask_;
}

template <class T>
void AttentionLayer<T>::layout(Arena<T>& arena, AttentionActs<T>& a, int64_t B, int64_t Tn) const {
  a.q = arena.take(B * H_ * Tn * D_);
  if (mla_) {
    mla_->layout(arena, a.mla, B, Tn);
  } else {
    a.k = arena.take(B * Hkv_ * Tn * D_);
    a.v = arena.take(B * Hkv_ * Tn * D_);
  }
  a.out = arena.take(B * H_ * Tn * D_);
  a.merged = arena.take(B * Tn * H_ * D_);
  if (dense_probs())
    a.probs = arena.take(B * H_ * Tn * Tn);
  else
    a.lse = arena.take(B * H_ * Tn);
  // A pattern that cannot exist fails here, early.
  if (pattern_ != Pattern::linformer) mask(sp_.full_len(Tn));
  if (wqg_ >= 0) {
    const int64_t G = static_cast<int64_t>(globals_.size());
    a.xg = arena.take(B * G * C_);
    a.qg = arena.take(B * H_ * G * D_);
    a.kg = arena.take(B * Hkv_ * Tn * D_);
    a.vg = arena.take(B * Hkv_ * Tn * D_);
    a.outg = arena.take(B * H_ * G * D_);
    a.lseg = arena.take(B * H_ * G);
  }
}

template <class T>
void AttentionLayer<T>::layout_scratch(Arena<T>& arena, AttentionScratch<T>& s, int64_t B,
                                       int64_t Tn) const {
  s.proj = arena.take(B * Tn * H_ * D_);
  if (mla_) {
    s.k = arena.take(B * H_ * Tn * D_);
    s.v = arena.take(B * H_ * Tn * D_);
    mla_->layout_scratch(arena, s.mla, B, Tn);
    s.mla.proj = s.proj;  // free whenever MLA runs
  }
  if (pattern_ == Pattern::linformer) {  // adjacent pairs: one all-reduce each under sp
    const int64_t n = B * Hkv_ * lin_k_ * D_;
    s.kp = arena.take(2 * n);
    s.vp = s.kp + n;
    s.dkp = arena.take(2 * n);
    s.dvp = s.dkp + n;
  }
  if (wqg_ >= 0) {
    s.doutg = arena.take(B * H_ * static_cast<int64_t>(globals_.size()) * D_);
    s.dqg = arena.take(B * H_ * static_cast<int64_t>(globals_.size()) * D_);
    s.dkg = arena.take(B * Hkv_ * Tn * D_);
    s.dvg = arena.take(B * Hkv_ * Tn * D_);
  }
  s.dq = arena.take(B * H_ * Tn * D_);
  s.dk = arena.take(B * Hkv_ * Tn * D_);
  s.dv = arena.take(B * Hkv_ * Tn * D_);
  s.dout = arena.take(B * H_ * Tn * D_);
}

template <class T>
void AttentionLayer<T>::project_qkv(ParamStore<T>& st, const T* x, T* q, T*& k, T*& v,
                                    AttentionActs<T>& a, AttentionScratch<T>& s, int64_t B,
                                    int64_t Tn, const RopeTable<T>* rope) const {
  if (mla_) {
    k = s.k;
    v = s.v;
    mla_->forward(st, x, q, k, v, a.mla, s.mla, B, Tn, rope, sp_.active() ? rows_.data() : nullptr);
    return;
  }
  const int64_t N = B * Tn;
  k = a.k;
  v = a.v;
  matmul<T>(false, false, N, H_ * D_, C_, x, st.value(wq_), s.proj);
  split_heads(q, s.proj, B, Tn, H_, D_);
  matmul<T>(false, false, N, Hkv_ * D_, C_, x, st.value(wk_), s.proj);
  split_heads(k, s.proj, B, Tn, Hkv_, D_);
  matmul<T>(false, false, N, Hkv_ * D_, C_, x, st.value(wv_), s.proj);
  split_heads(v, s.proj, B, Tn, Hkv_, D_);
  if (rope) {
    rotate(q, *rope, B, H_, Tn, false);
    rotate(k, *rope, B, Hkv_, Tn, false);
  }
}

// K' = E[:, mine]·K and V' = F[:, mine]·V; under sp this rank's positions are one range
// [c0, c0 + Tn) (contiguous layout) and one all-reduce sums the partial projections.
template <class T>
void AttentionLayer<T>::zero_padding(T* x, int64_t B, int64_t Tn) const {
  if (lin_lengths_.empty()) return;
  LONGCTX_CHECK(int64_t(lin_lengths_.size()) == B, "linformer: ", lin_lengths_.size(),
                " sample lengths for a batch of ", B);
  const int64_t c0 = sp_.active() ? rows_[0] : 0;  // linformer's sp layout is contiguous
  for (int64_t b = 0; b < B; ++b) {
    const int64_t first = std::clamp<int64_t>(lin_lengths_[size_t(b)] - c0, 0, Tn);
    for (int64_t h = 0; h < Hkv_; ++h) {
      T* rows = x + ((b * Hkv_ + h) * Tn) * D_;
      std::fill(rows + first * D_, rows + Tn * D_, T(0));
    }
  }
}

template <class T>
void AttentionLayer<T>::linformer_kv(ParamStore<T>& st, T* k, T* v, AttentionScratch<T>& s,
                                     int64_t B, int64_t Tn) const {
  const int64_t c0 = sp_.active() ? rows_[0] : 0;
  zero_padding(k, B, Tn);
  zero_padding(v, B, Tn);
  linformer_project_forward(st.value(lin_.e) + c0, max_len_, lin_k_, Tn, k, s.kp, B, Hkv_, D_);
  linformer_project_forward(st.value(lin_.f) + c0, max_len_, lin_k_, Tn, v, s.vp, B, Hkv_, D_);
  if (sp_.active()) sp_.comm->all_reduce_sum(s.kp, 2 * B * Hkv_ * lin_k_ * D_);  // kp, vp
}

template <class T>
void AttentionLayer<T>::forward(ParamStore<T>& st, const T* x, T* y, AttentionActs<T>& a,
                                AttentionScratch<T>& s, int64_t B, int64_t Tn,
                                const RopeTable<T>* rope) const {
  const int64_t N = B * Tn;
  T *k = nullptr, *v = nullptr;
  project_qkv(st, x, a.q, k, v, a, s, B, Tn, rope);
  const T scale = T(1) / std::sqrt(T(D_));
  const T* out = a.out;  // the core's output in local layout
  if (pattern_ == Pattern::linformer) {
    linformer_kv(st, k, v, s, B, Tn);
    attn::AttnShape sh = shape(B, Tn);
    sh.Tk = lin_k_;
    attn::flash_forward(sh, linformer_mask(Tn), a.q, s.kp, s.vp, a.out, a.lse, scale);
  } else if (dense_probs()) {
    attn::dense_forward(shape(B, Tn), mask(Tn), a.q, k, v, a.out, a.probs, scale);
  } else {
    // s.dout is free until backward: Ulysses may return the local-layout output there.
    out = core_forward(shape(B, Tn), mask(sp_.full_len(Tn)), a.q, k, v, a.out, a.lse, scale,
                       s.dout);
  }
  if (wqg_ >= 0) global_forward(st, x, a, s, B, Tn, rope);
  merge_heads(a.merged, out, B, Tn, H_, D_);
  matmul<T>(false, false, N, C_, H_ * D_, a.merged, st.value(wo_), y);
}

template <class T>
void AttentionLayer<T>::backward(ParamStore<T>& st, const T* x, const T* dy, T* dx,
                                 AttentionActs<T>& a, AttentionScratch<T>& s, int64_t B,
                                 int64_t Tn, const RopeTable<T>* rope) const {
  const int64_t N = B * Tn, HD = H_ * D_, KD = Hkv_ * D_;
  // y = merged · wo
  matmul<T>(true, false, HD, C_, N, a.merged, dy, st.grad(wo_), true);
  matmul<T>(false, true, N, HD, C_, dy, st.value(wo_), s.proj);
  split_heads(s.dout, s.proj, B, Tn, H_, D_);
  if (wqg_ >= 0) global_core_backward(a, s, B, Tn);
  const T scale = T(1) / std::sqrt(T(D_));
  T* k = a.k;
  T* v = a.v;
  if (mla_) {  // rebuild K and V from the saved latent; q lands in dq, which is free until the core
    mla_->forward(st, x, s.dq, s.k, s.v, a.mla, s.mla, B, Tn, rope, sp_.active() ? rows_.data() : nullptr);
    k = s.k;
    v = s.v;
  }
  if (pattern_ == Pattern::linformer) {
    linformer_kv(st, k, v, s, B, Tn);  // recomputed (collective under sp)
    attn::AttnShape sh = shape(B, Tn);
    sh.Tk = lin_k_;
    attn::flash_backward(sh, linformer_mask(Tn), a.q, s.kp, s.vp, a.out, a.lse, s.dout, s.dq, s.dkp,
                         s.dvp, scale);
    // Every rank's queries reach every projected key: sum dK', dV' over the sp group before
    // they go back through this rank's columns of E and F.
    if (sp_.active()) sp_.comm->all_reduce_sum(s.dkp, 2 * B * Hkv_ * lin_k_ * D_);
    // With shared projections (kv, layerwise) both gradients accumulate into the one E; under
    // sp only this rank's columns, which the gradient sum over the grid puts together.
    const int64_t c0 = sp_.active() ? rows_[0] : 0;
    linformer_project_backward(st.value(lin_.e) + c0, max_len_, lin_k_, Tn, k, s.dkp, s.dk,
                               st.grad(lin_.e) + c0, B, Hkv_, D_);
    linformer_project_backward(st.value(lin_.f) + c0, max_len_, lin_k_, Tn, v, s.dvp, s.dv,
                               st.grad(lin_.f) + c0, B, Hkv_, D_);
    zero_padding(s.dk, B, Tn);  // padding took no part in the projections
    zero_padding(s.dv, B, Tn);
  } else if (dense_probs()) {
    attn::dense_backward(shape(B, Tn), a.q, k, v, a.probs, s.dout, s.dq, s.dk, s.dv, scale);
  } else {
    core_backward(shape(B, Tn), mask(sp_.full_len(Tn)), a.q, k, v, a.out, a.lse, s.dout, s.dq,
                  s.dk, s.dv, scale);
  }
  if (mla_) {
    mla_->backward(st, x, s.dq, s.dk, s.dv, dx, a.mla, s.mla, B, Tn, rope, sp_.active() ? rows_.data() : nullptr);
    return;
  }
  if (rope) {  // the rotation is orthogonal: its gradient is the inverse rotation
    rotate(s.dq, *rope, B, H_, Tn, true);
    rotate(s.dk, *rope, B, Hkv_, Tn, true);
  }
  // q = x · wq, k = x · wk, v = x · wv
  merge_heads(s.proj, s.dq, B, Tn, H_, D_);
  matmul<T>(true, false, C_, HD, N, x, s.proj, st.grad(wq_), true);
  matmul<T>(false, true, N, C_, HD, s.proj, st.value(wq_), dx);
  merge_heads(s.proj, s.dk, B, Tn, Hkv_, D_);
  matmul<T>(true, false, C_, KD, N, x, s.proj, st.grad(wk_), true);
  matmul<T>(false, true, N, C_, KD, s.proj, st.value(wk_), dx, true);
  merge_heads(s.proj, s.dv, B, Tn, Hkv_, D_);
  matmul<T>(true, false, C_, KD, N, x, s.proj, st.grad(wv_), true);
  matmul<T>(false, true, N, C_, KD, s.proj, st.value(wv_), dx, true);
  if (wqg_ >= 0) global_proj_backward(st, x, dx, a, s, B, Tn, rope);
}

template <class T>
const attn::MaskSet& AttentionLayer<T>::global_rows_mask(int64_t Tn) const {
  if (!batch_global_mask_.masks.empty() && batch_global_mask_.masks[0].n_k == Tn)
    return batch_global_mask_;
  if (global_mask_.masks.empty() || global_mask_.masks[0].n_k != Tn)
    global_mask_ = attn::MaskSet::shared(attn::rows_mask(globals_, Tn, block_, causal_));
  return global_mask_;
}

template <class T>
void AttentionLayer<T>::rope_global_rows(T* x, const RopeTable<T>& rope, int64_t B, int64_t Hh,
                                         bool inverse) const {
  const int64_t G = static_cast<int64_t>(globals_.size());
  for (int64_t r = 0; r < B * Hh * G; ++r)
    rope_apply(x + r * D_, rope, 1, 1, 1, D_, globals_[r % G], inverse);
}

// xg = x's global rows; qg = xg·wq_global, kg, vg = x·wk_global, x·wv_global; the global rows
// attend to every token: outg, lseg [B, H, G, ...]; then outg replaces those rows of a.out.
template <class T>
void AttentionLayer<T>::global_forward(ParamStore<T>& st, const T* x, AttentionActs<T>& a,
                                       AttentionScratch<T>& s, int64_t B, int64_t Tn,
                                       const RopeTable<T>* rope) const {
  const int64_t G = static_cast<int64_t>(globals_.size()), N = B * Tn;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < G; ++g)
      std::copy_n(x + (b * Tn + globals_[g]) * C_, C_, a.xg + (b * G + g) * C_);
  // Token-major projections pass through s.proj, free once the local path has run.
  matmul<T>(false, false, B * G, H_ * D_, C_, a.xg, st.value(wqg_), s.proj);
  split_heads(a.qg, s.proj, B, G, H_, D_);
  matmul<T>(false, false, N, Hkv_ * D_, C_, x, st.value(wkg_), s.proj);
  split_heads(a.kg, s.proj, B, Tn, Hkv_, D_);
  matmul<T>(false, false, N, Hkv_ * D_, C_, x, st.value(wvg_), s.proj);
  split_heads(a.vg, s.proj, B, Tn, Hkv_, D_);
  if (rope) {
    rope_global_rows(a.qg, *rope, B, H_, false);
    rope_apply(a.kg, *rope, B, Hkv_, Tn, D_, 0, false);
  }
  attn::AttnShape sh = shape(B, Tn);
  sh.Tq = G;
  attn::flash_forward(sh, global_rows_mask(Tn), a.qg, a.kg, a.vg,
                      a.outg, a.lseg, T(1) / std::sqrt(T(D_)));
  for (int64_t bh = 0; bh < B * H_; ++bh)
    for (int64_t g = 0; g < G; ++g)
      std::copy_n(a.outg + (bh * G + g) * D_, D_, a.out + (bh * Tn + globals_[g]) * D_);
}

template <class T>
void AttentionLayer<T>::global_core_backward(const AttentionActs<T>& a, AttentionScratch<T>& s,
                                             int64_t B, int64_t Tn) const {
  const int64_t G = static_cast<int64_t>(globals_.size());
  for (int64_t bh = 0; bh < B * H_; ++bh)
    for (int64_t g = 0; g < G; ++g) {  // these rows' outputs came from the global path only
      T* row = s.dout + (bh * Tn + globals_[g]) * D_;
      std::copy_n(row, D_, s.doutg + (bh * G + g) * D_);
      std::fill(row, row + D_, T(0));
    }
  attn::AttnShape sh = shape(B, Tn);
  sh.Tq = G;
  attn::flash_backward(sh, global_rows_mask(Tn), a.qg, a.kg,
                       a.vg, a.outg, a.lseg, s.doutg, s.dqg, s.dkg, s.dvg,
                       T(1) / std::sqrt(T(D_)));
}

template <class T>
void AttentionLayer<T>::global_proj_backward(ParamStore<T>& st, const T* x, T* dx,
                                             const AttentionActs<T>& a, AttentionScratch<T>& s,
                                             int64_t B, int64_t Tn,
                                             const RopeTable<T>* rope) const {
  const int64_t G = static_cast<int64_t>(globals_.size()), N = B * Tn, KD = Hkv_ * D_;
  if (rope) {
    rope_global_rows(s.dqg, *rope, B, H_, true);
    rope_apply(s.dkg, *rope, B, Hkv_, Tn, D_, 0, true);
  }
  // qg = xg · wq_global: its dx lands on the global rows. s.dq is free by now and holds
  // [B, H, T, D] >= [B, G, C] values.
  T* dxg = s.dq;
  merge_heads(s.proj, s.dqg, B, G, H_, D_);
  matmul<T>(true, false, C_, H_ * D_, B * G, a.xg, s.proj, st.grad(wqg_), true);
  matmul<T>(false, true, B * G, C_, H_ * D_, s.proj, st.value(wqg_), dxg);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < G; ++g) {
      const T* src = dxg + (b * G + g) * C_;
      T* dst = dx + (b * Tn + globals_[g]) * C_;
      for (int64_t c = 0; c < C_; ++c) dst[c] += src[c];
    }
  merge_heads(s.proj, s.dkg, B, Tn, Hkv_, D_);
  matmul<T>(true, false, C_, KD, N, x, s.proj, st.grad(wkg_), true);
  matmul<T>(false, true, N, C_, KD, s.proj, st.value(wkg_), dx, true);
  merge_heads(s.proj, s.dvg, B, Tn, Hkv_, D_);
  matmul<T>(true, false, C_, KD, N, x, s.proj, st.grad(wvg_), true);
  matmul<T>(false, true, N, C_, KD, s.proj, st.value(wvg_), dx, true);
}

template class AttentionLayer<float>;
template class AttentionLayer<double>;

}  // namespace longctx

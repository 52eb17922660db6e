// GpuTransformer<T>: model/transformer.cpp's decoder, layer for layer, on one GPU. T is the
// compute type (bf16, or float for checks). Master weights, gradients and moments are fp32
// flat buffers with the host store's offsets; with bf16 a compute copy of the weights is
// refreshed by every AdamW step. GEMMs go through cuBLASLt (fp32 accumulate); parameter
// gradients accumulate in fp32 straight from the bf16 activations.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "attention/attention_cuda.h"
#include "attention/flash_tc_cuda.h"
#include "attention/mask_plan.h"
#include "attention/pattern_masks.h"
#include "core/cuda_check.h"
#include "core/cuda_env.h"
#include "core/device_buffer.h"
#include "core/error.h"
#include "core/gemm_cuda.h"
#include "model/cross_entropy.h"
#include "model/cuda_ops.h"
#include "model/gpu_model.h"
#include "model/rope.h"
#include "trainer/adamw_cuda.h"

namespace longctx {

namespace {

using cuda::bf16;
using cuda::DeviceBuffer;

// Device memory laid out twice, as core/arena.h: the first pass measures (null pointers), the
// second, after commit(), binds. One allocation per element type for the whole run.
template <class E>
class DeviceArena {
 public:
  E* take(int64_t n) {
    used_ = (used_ + 63) / 64 * 64;  // 128-byte alignment or better for every buffer
    E* p = buf_.get() ? buf_.get() + used_ : nullptr;
    used_ += n;
    LONGCTX_CHECK(!buf_.get() || used_ <= buf_.size(), "GPU arena overflow: layout changed");
    return p;
  }
  void commit(cudaStream_t stream) {
    buf_.resize(std::max<int64_t>(used_, 1));
    buf_.zero(stream);
    used_ = 0;
  }
  int64_t bytes() const { return int64_t(buf_.bytes()); }

 private:
  DeviceBuffer<E> buf_;
  int64_t used_ = 0;
};

template <class T>
class GpuTransformer final : public GpuModel {
 public:
  GpuTransformer(const Config& cfg, const ParamStore<float>& layout, int64_t B, int64_t Tn,
                 int device);

  void upload_params(const float* values) override {
    master_.upload(values, n_, stream_);
    refresh_copy();
    sync();
  }
  void download_params(float* values) const override { master_.download(values, n_, stream_); }
  void upload_moments(const float* m, const float* v) override {
    m_.upload(m, n_, stream_);
    v_.upload(v, n_, stream_);
  }
  void download_moments(float* m, float* v) const override {
    m_.download(m, n_, stream_);
    v_.download(v, n_, stream_);
  }
  void download_grads(float* g) const override { grads_.download(g, n_, stream_); }
  void zero_grads() override { grads_.zero(stream_); }
  void set_step(int64_t step) override;
  void set_batch(const BatchStructure& bs) override;
  double forward(const int32_t* inputs, const int32_t* targets, int64_t* count) override;
  void backward(const int32_t* inputs, const int32_t* targets, float scale) override;
  double reduce_gradients(Comm* comm) override;
  void update(double grad_norm, double lr, int64_t t) override;
  int64_t size() const override { return n_; }
  int64_t activation_bytes() const override { return acts_t_.bytes() + acts_f_.bytes(); }
  int64_t device_bytes() const override {
    return int64_t(master_.bytes() + grads_.bytes() + m_.bytes() + v_.bytes() + copy_.bytes() +
                   ints_.bytes() + rope_cos_.bytes() + rope_sin_.bytes() + norm_.bytes()) +
           activation_bytes();
  }
  double peak_device_mb() const override { return peak_mb_; }

 private:
  struct LayerParams {  // flat offsets; -1: absent
    int64_t ln1_w = -1, ln1_b = -1, wq = -1, wk = -1, wv = -1, wo = -1;
    int64_t w_dkv = -1, w_uk = -1, w_uv = -1, w_kr = -1;  // mla
    int64_t ln2_w = -1, ln2_b = -1, w_in = -1, w_up = -1, w_proj = -1;
  };
  struct Acts {
    T *ln1 = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr;
    T* latent = nullptr;  // mla: [N, r], all that k and v need
    T *probs = nullptr, *merged = nullptr, *mid = nullptr, *ln2 = nullptr;
    T *pre = nullptr, *up = nullptr, *act = nullptr;
    float *ln1_mean = nullptr, *ln1_rstd = nullptr, *lse = nullptr;
    float *ln2_mean = nullptr, *ln2_rstd = nullptr;
  };

  void layout();
  const T* W(int64_t off) const { return weights_ + off; }
  float* G(int64_t off) { return grads_.get() + off; }
  void refresh_copy() {
    if constexpr (std::is_same_v<T, bf16>) cuda::convert(copy_.get(), master_.get(), n_, stream_);
  }
  void sync() const { LONGCTX_CUDA_CHECK("GPU model", cudaStreamSynchronize(stream_)); }
  void note_peak();
  void check_inputs(const int32_t* inputs, const int32_t* targets) const;
  void norm_forward(int64_t w, int64_t b, T* out, float* mean, float* rstd, const T* x);
  void norm_backward(int64_t w, int64_t b, T* dx, const T* dout, const T* x, const float* mean,
                     const float* rstd);
  void refresh_masks();
  const cuda::DeviceMaskPlan& plan(int l) const { return *plans_[plans_.size() == 1 ? 0 : l]; }
  void block_forward(int l);
  void block_backward(int l);
  void attention_forward(int l, const LayerParams& p, Acts& a);
  void attention_backward(int l, const LayerParams& p, Acts& a);
  // q [B, H, T, D], k, v [B, Hkv, T, D] from a.ln1, RoPE applied.
  void project_qkv(const LayerParams& p, Acts& a);
  // The same with Hkv = H in MLA's expanded form (attention/mla.h); keeps a.latent.
  void mla_project(const LayerParams& p, Acts& a);
  // Their gradients from dq_, dk_, dv_ (rotated back in place): parameter gradients accumulate,
  // dbranch_ = ∂L/∂ln1.
  void project_qkv_backward(const LayerParams& p, const Acts& a);
  void mla_project_backward(const LayerParams& p, const Acts& a);
  void tc_forward(int l, Acts& a, float scale);
  void tc_backward(int l, const Acts& a, float scale);
  const T* head() const { return W(lm_head_ >= 0 ? lm_head_ : wte_); }

  Config cfg_;
  int64_t B_, T_, N_, C_, V_, H_, Hkv_, D_, F_, L_;
  bool layernorm_, swiglu_, dense_, mla_;
  // mla: the latent's rank, the RoPE slice of each head (its last R_ dims) and the rest.
  int64_t r_ = 0, R_ = 0, Dn_ = 0;
  // The tensor-core kernels over mask plans (bf16, every pattern but dense); otherwise fp32's
  // CUDA-core causal flash or cuBLASLt dense attention.
  bool tc_;
  int64_t n_;
  std::vector<ParamInfo> infos_;
  int64_t wte_ = -1, wpe_ = -1, lm_head_ = -1, lnf_w_ = -1, lnf_b_ = -1;
  std::vector<LayerParams> layers_;

  // The compute stream, destroyed last (after cuBLASLt and the buffers that use it), also when
  // the constructor throws.
  struct Stream {
    cudaStream_t s = nullptr;
    ~Stream() {
      if (s) (void)cudaStreamDestroy(s);
    }
  } owned_stream_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::CublasLt> blas_;
  DeviceBuffer<float> master_, grads_, m_, v_;
  DeviceBuffer<bf16> copy_;     // bf16 compute weights (T = bf16 only)
  const T* weights_ = nullptr;  // what the layers read: copy_ (bf16) or master_ (fp32)
  DeviceBuffer<float> rope_cos_, rope_sin_;
  DeviceBuffer<double> norm_;   // [0]: Σ g²; then sum_squares' partials
  DeviceBuffer<int32_t> ints_;  // tokens, targets, token groups (token, start, rows)
  int32_t *tokens_ = nullptr, *targets_ = nullptr;
  int32_t *g_token_ = nullptr, *g_start_ = nullptr, *g_rows_ = nullptr;
  int64_t groups_ = 0;

  DeviceArena<T> acts_t_;
  DeviceArena<float> acts_f_;
  std::vector<T*> res_;  // L + 1 residual streams [N, C]
  std::vector<Acts> acts_;
  T *lnf_ = nullptr, *logits_ = nullptr;
  float *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr, *losses_ = nullptr, *lse_ = nullptr;
  T *branch_ = nullptr, *dres_ = nullptr, *dbranch_ = nullptr, *proj_ = nullptr;
  T *dq_ = nullptr, *dk_ = nullptr, *dv_ = nullptr, *dout_ = nullptr;
  T *dact_ = nullptr, *dpre_ = nullptr, *dup_ = nullptr, *dscores_ = nullptr;
  T *rope_key_ = nullptr, *dlatent_ = nullptr;  // mla: [N, R] (then its gradient), [N, r]
  float *norm_scratch_ = nullptr, *flash_scratch_ = nullptr, *scores_ = nullptr;
  // The attention masks (tc_): the CPU engine's masks for the pattern and the batch, as plans on
  // the device, one per layer (bigbird draws per layer) or one shared; rebuilt when the step's
  // draws or the batch's structure change.
  std::vector<std::unique_ptr<cuda::DeviceMaskPlan>> plans_;
  std::vector<attn::MaskSet> pattern_masks_;  // per plan; empty until built or after set_step
  bool masks_stale_ = true;
  int64_t step_ = -1;
  std::vector<int32_t> doc_;                   // [B, T]; empty: no document mask
  std::vector<std::vector<int64_t>> globals_;  // per-sample global tokens; empty: none
  std::vector<float> host_losses_;
  double peak_mb_ = 0;
};

template <class T>
GpuTransformer<T>::GpuTransformer(const Config& cfg, const ParamStore<float>& store, int64_t B,
                                  int64_t Tn, int device)
    : cfg_(cfg),
      B_(B),
      T_(Tn),
      N_(B * Tn),
      C_(cfg.model.d_model),
      V_(cfg.model.vocab_size),
      H_(cfg.model.n_head),
      D_(cfg.model.d_model / cfg.model.n_head),
      F_(cfg.model.d_ff),
      L_(cfg.model.n_layer),
      layernorm_(cfg.model.norm == Norm::layernorm),
      swiglu_(cfg.model.activation == Activation::swiglu),
      dense_(cfg.attention.pattern == Pattern::dense),
      mla_(cfg.attention.heads == HeadScheme::mla),
      tc_(std::is_same_v<T, bf16> && !dense_),
      n_(store.size()),
      infos_(store.infos()) {
  // The config's check_device refuses these with the key named; a direct caller gets the same.
  LONGCTX_CHECK(cfg.objective == Objective::causal_lm, "GPU model: causal_lm only");
  LONGCTX_CHECK(
      tc_ ? cfg.attention.pattern != Pattern::linformer
          : cfg.attention.pattern == Pattern::dense || cfg.attention.pattern == Pattern::flash,
      "GPU model: attention.pattern ", name_of(cfg.attention.pattern), " in ",
      tc_ ? "bf16" : "fp32");
  LONGCTX_CHECK(!cfg.attention.separate_global_proj, "GPU model: no separate_global_proj");
  LONGCTX_CHECK(Tn >= 1 && Tn <= cfg.model.max_seq_len, "GPU model: sequence length ", Tn,
                " outside [1, model.max_seq_len ", cfg.model.max_seq_len, "]");
  check_gpu_device(device);
  LONGCTX_CUDA_CHECK("GPU model", cudaSetDevice(device));
  LONGCTX_CUDA_CHECK("GPU model",
                     cudaStreamCreateWithFlags(&owned_stream_.s, cudaStreamNonBlocking));
  stream_ = owned_stream_.s;
  blas_ = std::make_unique<cuda::CublasLt>(stream_);

  auto off = [&](const std::string& name) { return store.infos()[store.find(name)].offset; };
  auto maybe = [&](const std::string& name) { return store.has(name) ? off(name) : -1; };
  const auto dim = [&](const std::string& name, int i) {
    return store.infos()[store.find(name)].shape[i];
  };
  if (mla_) {  // shapes as the CPU layer chose them: w_dkv [C, r], w_kr [C, R]
    Hkv_ = H_;
    r_ = dim("blocks.0.attn.w_dkv", 1);
    R_ = dim("blocks.0.attn.w_kr", 1);
    Dn_ = D_ - R_;
    LONGCTX_CHECK(R_ > 0 && R_ % 2 == 0 && Dn_ > 0, "GPU model: mla rope_dim ", R_,
                  " must be even and in (0, head_dim = ", D_, ")");
  } else {  // K/V heads as the CPU layer chose them (wk: [C, Hkv·D])
    Hkv_ = dim("blocks.0.attn.wk", 1) / D_;
  }
  wte_ = off("wte");
  wpe_ = maybe("wpe");
  lm_head_ = maybe("lm_head");
  lnf_w_ = off("ln_f.w");
  lnf_b_ = maybe("ln_f.b");
  for (int64_t l = 0; l < L_; ++l) {
    const std::string p = "blocks." + std::to_string(l);
    LayerParams lp;
    lp.ln1_w = off(p + ".ln1.w");
    lp.ln1_b = maybe(p + ".ln1.b");
    lp.wq = off(p + ".attn.wq");
    if (mla_) {
      lp.w_dkv = off(p + ".attn.w_dkv");
      lp.w_uk = off(p + ".attn.w_uk");
      lp.w_uv = off(p + ".attn.w_uv");
      lp.w_kr = off(p + ".attn.w_kr");
    } else {
      lp.wk = off(p + ".attn.wk");
      lp.wv = off(p + ".attn.wv");
    }
    lp.wo = off(p + ".attn.wo");
    lp.ln2_w = off(p + ".ln2.w");
    lp.ln2_b = maybe(p + ".ln2.b");
    lp.w_in = off(p + (swiglu_ ? ".mlp.w_gate" : ".mlp.w_fc"));
    lp.w_up = maybe(p + ".mlp.w_up");
    lp.w_proj = off(p + ".mlp.w_proj");
    layers_.push_back(lp);
  }

  master_.resize(n_);
  grads_.resize(n_);
  m_.resize(n_);
  v_.resize(n_);
  master_.zero(stream_);
  grads_.zero(stream_);
  m_.zero(stream_);
  v_.zero(stream_);
  if constexpr (std::is_same_v<T, bf16>) {
    copy_.resize(n_);
    weights_ = copy_.get();
  } else {
    weights_ = master_.get();
  }
  if (cfg.model.position == Position::rope) {  // mla rotates only its rope_dim slice
    const RopeTable<float> table(cfg.model.max_seq_len, mla_ ? R_ : D_);
    rope_cos_.resize(int64_t(table.cos.size()));
    rope_sin_.resize(int64_t(table.sin.size()));
    rope_cos_.upload(table.cos.data(), int64_t(table.cos.size()), stream_);
    rope_sin_.upload(table.sin.data(), int64_t(table.sin.size()), stream_);
  }
  norm_.resize(1 + cuda::sum_squares_scratch());
  // tokens, targets [N]; groups: token [N], start [N + 1], rows [N]
  ints_.resize(5 * N_ + 1);
  tokens_ = ints_.get();
  targets_ = tokens_ + N_;
  g_token_ = targets_ + N_;
  g_start_ = g_token_ + N_;
  g_rows_ = g_start_ + N_ + 1;
  host_losses_.resize(size_t(N_));
  if (tc_) {
    const size_t n_plans = cfg.attention.pattern == Pattern::bigbird ? size_t(L_) : 1;
    for (size_t i = 0; i < n_plans; ++i) plans_.push_back(std::make_unique<cuda::DeviceMaskPlan>());
  }

  layout();  // measure
  acts_t_.commit(stream_);
  acts_f_.commit(stream_);
  layout();        // bind
  refresh_copy();  // zeros until upload_params
  sync();
  note_peak();
}

template <class T>
void GpuTransformer<T>::layout() {
  DeviceArena<T>& t = acts_t_;
  DeviceArena<float>& f = acts_f_;
  const int64_t NC = N_ * C_, HD = H_ * D_, KD = Hkv_ * D_, NF = N_ * F_;
  const int64_t scores = B_ * H_ * T_ * T_;
  res_.assign(size_t(L_ + 1), nullptr);
  for (T*& r : res_) r = t.take(NC);
  acts_.assign(size_t(L_), Acts{});
  for (Acts& a : acts_) {
    a.ln1 = t.take(NC);
    a.ln1_mean = f.take(N_);
    a.ln1_rstd = f.take(N_);
    a.q = t.take(N_ * HD);
    a.k = t.take(N_ * KD);
    a.v = t.take(N_ * KD);
    if (mla_) a.latent = t.take(N_ * r_);
    a.out = t.take(N_ * HD);
    if (dense_)
      a.probs = t.take(scores);
    else
      a.lse = f.take(B_ * H_ * T_);
    a.merged = t.take(N_ * HD);
    a.mid = t.take(NC);
    a.ln2 = t.take(NC);
    a.ln2_mean = f.take(N_);
    a.ln2_rstd = f.take(N_);
    a.pre = t.take(NF);
    if (swiglu_) a.up = t.take(NF);
    a.act = t.take(NF);
  }
  lnf_ = t.take(NC);
  lnf_mean_ = f.take(N_);
  lnf_rstd_ = f.take(N_);
  logits_ = t.take(N_ * V_);
  losses_ = f.take(N_);
  lse_ = f.take(N_);
  branch_ = t.take(NC);
  dres_ = t.take(NC);
  dbranch_ = t.take(NC);
  proj_ = t.take(N_ * HD);
  dq_ = t.take(N_ * HD);
  dk_ = t.take(N_ * KD);
  dv_ = t.take(N_ * KD);
  dout_ = t.take(N_ * HD);
  dact_ = t.take(NF);
  dpre_ = t.take(NF);
  if (swiglu_) dup_ = t.take(NF);
  if (mla_) {
    rope_key_ = t.take(N_ * R_);
    dlatent_ = t.take(N_ * r_);
  }
  norm_scratch_ = f.take(cuda::norm_backward_scratch_floats(N_, C_));
  const cuda::AttnDims dims{B_, H_, Hkv_, T_, D_, true};
  if (dense_) {
    scores_ = f.take(scores);
    dscores_ = t.take(scores);
  } else if (tc_) {
    flash_scratch_ = f.take(cuda::flash_tc_backward_scratch_floats(
        attn::AttnShape{B_, H_, Hkv_, T_, T_, D_}, cfg_.train.deterministic));
  } else {
    flash_scratch_ = f.take(cuda::flash_backward_scratch_floats(dims));
  }
}

template <class T>
void GpuTransformer<T>::note_peak() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
    peak_mb_ = std::max(peak_mb_, double(total_b - free_b) / 1048576.0);
}

// The CPU model's checks and messages (model/transformer.cpp), before anything reaches the GPU.
template <class T>
void GpuTransformer<T>::check_inputs(const int32_t* inputs, const int32_t* targets) const {
  auto where = [&](int64_t i) { return str(" at batch row ", i / T_, ", position ", i % T_); };
  for (int64_t i = 0; i < N_; ++i)
    if (inputs[i] < 0 || inputs[i] >= V_)
      throw Error(str("input token id ", inputs[i], where(i), " is outside the vocabulary [0, ", V_,
                      ") (model.vocab_size)"));
  for (int64_t i = 0; i < N_; ++i)
    if (targets[i] != kIgnoreIndex && (targets[i] < 0 || targets[i] >= V_))
      throw Error(str("target token id ", targets[i], where(i), " is outside [0, ", V_,
                      ") (model.vocab_size)"));
}

template <class T>
void GpuTransformer<T>::norm_forward(int64_t w, int64_t b, T* out, float* mean, float* rstd,
                                     const T* x) {
  if (layernorm_)
    cuda::layernorm_forward(out, mean, rstd, x, W(w), W(b), N_, C_, stream_);
  else
    cuda::rmsnorm_forward(out, rstd, x, W(w), N_, C_, stream_);
}

template <class T>
void GpuTransformer<T>::norm_backward(int64_t w, int64_t b, T* dx, const T* dout, const T* x,
                                      const float* mean, const float* rstd) {
  if (layernorm_)
    cuda::layernorm_backward(dx, G(w), G(b), dout, x, W(w), mean, rstd, N_, C_, norm_scratch_,
                             stream_);
  else
    cuda::rmsnorm_backward(dx, G(w), dout, x, W(w), rstd, N_, C_, norm_scratch_, stream_);
}

template <class T>
void GpuTransformer<T>::set_step(int64_t step) {
  const AttentionConfig& a = cfg_.attention;
  if (a.pattern != Pattern::bigbird || a.bigbird.resample != Resample::per_step) return;
  if (step != step_) {
    masks_stale_ = true;
    pattern_masks_.clear();  // new draws
  }
  step_ = step;
}

template <class T>
void GpuTransformer<T>::set_batch(const BatchStructure& bs) {
  LONGCTX_CHECK(tc_ || bs.empty(),
                "GPU model: documents and per-sample global tokens need the "
                "tensor-core kernels (train.precision: bf16, not dense)");
  if (bs.empty() && doc_.empty() && globals_.empty()) return;
  if (bs.doc)
    doc_.assign(bs.doc, bs.doc + N_);
  else
    doc_.clear();
  globals_ = bs.globals;
  masks_stale_ = true;
}

// The CPU engine builds the masks (attention/pattern_masks.h) and their plans; the plans' copies
// run on the compute stream ahead of the kernels that read them.
template <class T>
void GpuTransformer<T>::refresh_masks() {
  if (!tc_ || !masks_stale_) return;
  // Blocks of the kernels' tile: the block size tiles the scores without changing which exist
  // (bigbird's, which would, is 64 already: check_device).
  AttentionConfig tiled = cfg_.attention;
  tiled.block_size = attn::kPlanBlock;
  // The pattern's masks change only with the step's draws; documents change every batch.
  if (pattern_masks_.empty())
    for (size_t l = 0; l < plans_.size(); ++l)
      pattern_masks_.push_back(
          attn::pattern_masks(tiled, T_, H_, /*causal=*/true, cfg_.run.seed, int(l), step_));
  for (size_t l = 0; l < plans_.size(); ++l) {
    const attn::MaskSet& pattern = pattern_masks_[l];
    const attn::MaskSet batch =
        attn::batch_masks(tiled, pattern, doc_.empty() ? nullptr : doc_.data(), globals_, B_, T_,
                          H_, /*causal=*/true);
    plans_[l]->upload(attn::make_mask_plan(batch.masks.empty() ? pattern : batch), stream_);
  }
  masks_stale_ = false;
}

template <class T>
void GpuTransformer<T>::tc_forward(int l, Acts& a, float scale) {
  if constexpr (std::is_same_v<T, bf16>)
    cuda::flash_tc_forward(attn::AttnShape{B_, H_, Hkv_, T_, T_, D_}, plan(l), a.q, a.k, a.v, a.out,
                           a.lse, scale, stream_);
  else
    throw Error("GPU model: the tensor-core kernels run bf16 only");
}

template <class T>
void GpuTransformer<T>::tc_backward(int l, const Acts& a, float scale) {
  if constexpr (std::is_same_v<T, bf16>)
    cuda::flash_tc_backward(attn::AttnShape{B_, H_, Hkv_, T_, T_, D_}, plan(l), a.q, a.k, a.v,
                            a.out, a.lse, dout_, dq_, dk_, dv_, scale, cfg_.train.deterministic,
                            flash_scratch_, stream_);
  else
    throw Error("GPU model: the tensor-core kernels run bf16 only");
}

template <class T>
void GpuTransformer<T>::project_qkv(const LayerParams& p, Acts& a) {
  cuda::CublasLt& blas = *blas_;
  const int64_t HD = H_ * D_, KD = Hkv_ * D_;
  blas.matmul<T, T>(false, false, N_, HD, C_, a.ln1, W(p.wq), proj_);
  cuda::split_heads(a.q, proj_, B_, T_, H_, D_, stream_);
  blas.matmul<T, T>(false, false, N_, KD, C_, a.ln1, W(p.wk), proj_);
  cuda::split_heads(a.k, proj_, B_, T_, Hkv_, D_, stream_);
  blas.matmul<T, T>(false, false, N_, KD, C_, a.ln1, W(p.wv), proj_);
  cuda::split_heads(a.v, proj_, B_, T_, Hkv_, D_, stream_);
  if (rope_cos_.get()) {
    cuda::rope_apply(a.q, rope_cos_.get(), rope_sin_.get(), B_ * H_, T_, D_, false, stream_);
    cuda::rope_apply(a.k, rope_cos_.get(), rope_sin_.get(), B_ * Hkv_, T_, D_, false, stream_);
  }
}

// q = x·wq (RoPE on each head's last R dims); c = x·w_dkv; k[h] = [(c·w_uk)[h] | RoPE(x·w_kr)];
// v = c·w_uv. Without RoPE the rope dims stay unrotated, as the CPU layer with no table.
template <class T>
void GpuTransformer<T>::mla_project(const LayerParams& p, Acts& a) {
  cuda::CublasLt& blas = *blas_;
  const float *cos = rope_cos_.get(), *sin = rope_sin_.get();
  blas.matmul<T, T>(false, false, N_, H_ * D_, C_, a.ln1, W(p.wq), proj_);
  cuda::split_heads(a.q, proj_, B_, T_, H_, D_, stream_);
  blas.matmul<T, T>(false, false, N_, r_, C_, a.ln1, W(p.w_dkv), a.latent);
  blas.matmul<T, T>(false, false, N_, R_, C_, a.ln1, W(p.w_kr), rope_key_);
  if (cos) {
    cuda::rope_apply_slice(a.q, cos, sin, B_ * H_ * T_, T_, D_, Dn_, R_, false, stream_);
    cuda::rope_apply_slice(rope_key_, cos, sin, N_, T_, R_, 0, R_, false, stream_);
  }
  blas.matmul<T, T>(false, false, N_, H_ * Dn_, r_, a.latent, W(p.w_uk), proj_);
  cuda::mla_assemble_keys(a.k, proj_, rope_key_, B_, T_, H_, Dn_, R_, stream_);
  blas.matmul<T, T>(false, false, N_, H_ * D_, r_, a.latent, W(p.w_uv), proj_);
  cuda::split_heads(a.v, proj_, B_, T_, H_, D_, stream_);
}

template <class T>
void GpuTransformer<T>::attention_forward(int l, const LayerParams& p, Acts& a) {
  cuda::CublasLt& blas = *blas_;
  if (mla_)
    mla_project(p, a);
  else
    project_qkv(p, a);
  const int64_t HD = H_ * D_;
  const cuda::AttnDims dims{B_, H_, Hkv_, T_, D_, true};
  const float scale = 1.0f / std::sqrt(float(D_));
  if (tc_)
    tc_forward(l, a, scale);
  else if (dense_)
    cuda::dense_forward(blas, dims, a.q, a.k, a.v, a.out, a.probs, scores_, scale);
  else
    cuda::flash_forward(dims, a.q, a.k, a.v, a.out, a.lse, scale, stream_);
  cuda::merge_heads(a.merged, a.out, B_, T_, H_, D_, stream_);
  blas.matmul<T, T>(false, false, N_, C_, HD, a.merged, W(p.wo), branch_);
}

// dres_ holds ∂L/∂y of the attention branch; leaves ∂L/∂ln1 in dbranch_.
template <class T>
void GpuTransformer<T>::attention_backward(int l, const LayerParams& p, Acts& a) {
  cuda::CublasLt& blas = *blas_;
  const int64_t HD = H_ * D_;
  blas.matmul<T, float>(true, false, HD, C_, N_, a.merged, dres_, G(p.wo), true);
  blas.matmul<T, T>(false, true, N_, HD, C_, dres_, W(p.wo), proj_);
  cuda::split_heads(dout_, proj_, B_, T_, H_, D_, stream_);
  const cuda::AttnDims dims{B_, H_, Hkv_, T_, D_, true};
  const float scale = 1.0f / std::sqrt(float(D_));
  if (tc_)
    tc_backward(l, a, scale);
  else if (dense_)
    cuda::dense_backward(blas, dims, a.q, a.k, a.v, a.probs, dout_, dq_, dk_, dv_, scores_,
                         dscores_, scale);
  else
    cuda::flash_backward(dims, a.q, a.k, a.v, a.out, a.lse, dout_, dq_, dk_, dv_, scale,
                         flash_scratch_, stream_);
  if (mla_)
    mla_project_backward(p, a);
  else
    project_qkv_backward(p, a);
}

template <class T>
void GpuTransformer<T>::project_qkv_backward(const LayerParams& p, const Acts& a) {
  cuda::CublasLt& blas = *blas_;
  const int64_t HD = H_ * D_, KD = Hkv_ * D_;
  if (rope_cos_.get()) {  // the rotation is orthogonal: its gradient is the inverse rotation
    cuda::rope_apply(dq_, rope_cos_.get(), rope_sin_.get(), B_ * H_, T_, D_, true, stream_);
    cuda::rope_apply(dk_, rope_cos_.get(), rope_sin_.get(), B_ * Hkv_, T_, D_, true, stream_);
  }
  cuda::merge_heads(proj_, dq_, B_, T_, H_, D_, stream_);
  blas.matmul<T, float>(true, false, C_, HD, N_, a.ln1, proj_, G(p.wq), true);
  blas.matmul<T, T>(false, true, N_, C_, HD, proj_, W(p.wq), dbranch_);
  cuda::merge_heads(proj_, dk_, B_, T_, Hkv_, D_, stream_);
  blas.matmul<T, float>(true, false, C_, KD, N_, a.ln1, proj_, G(p.wk), true);
  blas.matmul<T, T>(false, true, N_, C_, KD, proj_, W(p.wk), dbranch_, true);
  cuda::merge_heads(proj_, dv_, B_, T_, Hkv_, D_, stream_);
  blas.matmul<T, float>(true, false, C_, KD, N_, a.ln1, proj_, G(p.wv), true);
  blas.matmul<T, T>(false, true, N_, C_, KD, proj_, W(p.wv), dbranch_, true);
}

// attention/mla.cpp's backward: the latent collects the gradients of k's content part and of v;
// the shared key's gradient is the sum over heads of dk's rope slices.
template <class T>
void GpuTransformer<T>::mla_project_backward(const LayerParams& p, const Acts& a) {
  cuda::CublasLt& blas = *blas_;
  const float *cos = rope_cos_.get(), *sin = rope_sin_.get();
  const int64_t HD = H_ * D_, HDn = H_ * Dn_;
  // q = x·wq, then RoPE (orthogonal: its gradient is the inverse rotation)
  if (cos) cuda::rope_apply_slice(dq_, cos, sin, B_ * H_ * T_, T_, D_, Dn_, R_, true, stream_);
  cuda::merge_heads(proj_, dq_, B_, T_, H_, D_, stream_);
  blas.matmul<T, float>(true, false, C_, HD, N_, a.ln1, proj_, G(p.wq), true);
  blas.matmul<T, T>(false, true, N_, C_, HD, proj_, W(p.wq), dbranch_);
  // k_rope = RoPE(x·w_kr) (rope_key_ now holds its gradient), k_nope = c·w_uk
  cuda::mla_split_key_grads(proj_, rope_key_, dk_, B_, T_, H_, Dn_, R_, stream_);
  if (cos) cuda::rope_apply_slice(rope_key_, cos, sin, N_, T_, R_, 0, R_, true, stream_);
  blas.matmul<T, float>(true, false, C_, R_, N_, a.ln1, rope_key_, G(p.w_kr), true);
  blas.matmul<T, T>(false, true, N_, C_, R_, rope_key_, W(p.w_kr), dbranch_, true);
  blas.matmul<T, float>(true, false, r_, HDn, N_, a.latent, proj_, G(p.w_uk), true);
  blas.matmul<T, T>(false, true, N_, r_, HDn, proj_, W(p.w_uk), dlatent_);
  // v = c·w_uv
  cuda::merge_heads(proj_, dv_, B_, T_, H_, D_, stream_);
  blas.matmul<T, float>(true, false, r_, HD, N_, a.latent, proj_, G(p.w_uv), true);
  blas.matmul<T, T>(false, true, N_, r_, HD, proj_, W(p.w_uv), dlatent_, true);
  // c = x·w_dkv
  blas.matmul<T, float>(true, false, C_, r_, N_, a.ln1, dlatent_, G(p.w_dkv), true);
  blas.matmul<T, T>(false, true, N_, C_, r_, dlatent_, W(p.w_dkv), dbranch_, true);
}

template <class T>
void GpuTransformer<T>::block_forward(int l) {
  const LayerParams& p = layers_[size_t(l)];
  Acts& a = acts_[size_t(l)];
  cuda::CublasLt& blas = *blas_;
  norm_forward(p.ln1_w, p.ln1_b, a.ln1, a.ln1_mean, a.ln1_rstd, res_[size_t(l)]);
  attention_forward(l, p, a);
  cuda::add(a.mid, res_[size_t(l)], branch_, N_ * C_, stream_);
  norm_forward(p.ln2_w, p.ln2_b, a.ln2, a.ln2_mean, a.ln2_rstd, a.mid);
  blas.matmul<T, T>(false, false, N_, F_, C_, a.ln2, W(p.w_in), a.pre);
  if (swiglu_) {
    blas.matmul<T, T>(false, false, N_, F_, C_, a.ln2, W(p.w_up), a.up);
    cuda::swiglu_forward(a.act, a.pre, a.up, N_ * F_, stream_);
  } else {
    cuda::gelu_forward(a.act, a.pre, N_ * F_, stream_);
  }
  blas.matmul<T, T>(false, false, N_, C_, F_, a.act, W(p.w_proj), branch_);
  cuda::add(res_[size_t(l) + 1], a.mid, branch_, N_ * C_, stream_);
}

// On entry dres_ = ∂L/∂res[l+1]; on exit ∂L/∂res[l] (as Transformer::block_backward).
template <class T>
void GpuTransformer<T>::block_backward(int l) {
  const LayerParams& p = layers_[size_t(l)];
  Acts& a = acts_[size_t(l)];
  cuda::CublasLt& blas = *blas_;
  blas.matmul<T, float>(true, false, F_, C_, N_, a.act, dres_, G(p.w_proj), true);
  blas.matmul<T, T>(false, true, N_, F_, C_, dres_, W(p.w_proj), dact_);
  if (swiglu_) {
    cuda::swiglu_backward(dpre_, dup_, dact_, a.pre, a.up, N_ * F_, stream_);
    blas.matmul<T, float>(true, false, C_, F_, N_, a.ln2, dup_, G(p.w_up), true);
  } else {
    cuda::gelu_backward(dpre_, dact_, a.pre, N_ * F_, stream_);
  }
  blas.matmul<T, float>(true, false, C_, F_, N_, a.ln2, dpre_, G(p.w_in), true);
  blas.matmul<T, T>(false, true, N_, C_, F_, dpre_, W(p.w_in), dbranch_);
  if (swiglu_) blas.matmul<T, T>(false, true, N_, C_, F_, dup_, W(p.w_up), dbranch_, true);
  norm_backward(p.ln2_w, p.ln2_b, dres_, dbranch_, a.mid, a.ln2_mean, a.ln2_rstd);
  attention_backward(l, p, a);
  norm_backward(p.ln1_w, p.ln1_b, dres_, dbranch_, res_[size_t(l)], a.ln1_mean, a.ln1_rstd);
}

template <class T>
double GpuTransformer<T>::forward(const int32_t* inputs, const int32_t* targets, int64_t* count) {
  check_inputs(inputs, targets);
  refresh_masks();
  const auto up = [&](int32_t* dst, const int32_t* src, int64_t n) {
    LONGCTX_CUDA_CHECK(
        "copying a batch to the GPU",
        cudaMemcpyAsync(dst, src, size_t(n) * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  };
  up(tokens_, inputs, N_);
  up(targets_, targets, N_);

  cuda::embedding_forward(res_[0], tokens_, W(wte_), wpe_ >= 0 ? W(wpe_) : nullptr, N_, T_, C_,
                          stream_);
  for (int l = 0; l < L_; ++l) block_forward(l);
  norm_forward(lnf_w_, lnf_b_, lnf_, lnf_mean_, lnf_rstd_, res_[size_t(L_)]);
  blas_->matmul<T, T>(false, true, N_, V_, C_, lnf_, head(), logits_);  // logits = lnf · Wᵀ
  cuda::cross_entropy_forward(losses_, lse_, logits_, targets_, N_, V_, stream_);
  // The rows of each token, for the embedding's deterministic gradient in backward: sorted on
  // the host while the GPU runs the forward.
  const cuda::TokenGroups g = cuda::group_rows_by_token(inputs, N_);
  groups_ = int64_t(g.token.size());
  up(g_token_, g.token.data(), groups_);
  up(g_start_, g.start.data(), groups_ + 1);
  up(g_rows_, g.rows.data(), N_);
  // The copy synchronizes (pageable host memory); the sum runs in the CPU model's order.
  LONGCTX_CUDA_CHECK("copying the losses from the GPU",
                     cudaMemcpyAsync(host_losses_.data(), losses_, size_t(N_) * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream_));
  sync();
  double sum = 0;
  int64_t n = 0;
  for (int64_t r = 0; r < N_; ++r) {
    sum += double(host_losses_[size_t(r)]);
    n += targets[r] != kIgnoreIndex;
  }
  *count = n;
  note_peak();
  return sum;
}

template <class T>
void GpuTransformer<T>::backward(const int32_t*, const int32_t*, float scale) {
  // The batch forward() uploaded is still on the device.
  T* dlogits = logits_;  // in place: the logits are not needed once their gradient exists
  cuda::cross_entropy_backward(dlogits, logits_, lse_, targets_, N_, V_, scale, stream_);
  blas_->matmul<T, float>(true, false, V_, C_, N_, dlogits, lnf_,
                          G(lm_head_ >= 0 ? lm_head_ : wte_), true);
  blas_->matmul<T, T>(false, false, N_, C_, V_, dlogits, head(), dbranch_);
  LONGCTX_CUDA_CHECK("GPU model", cudaMemsetAsync(dres_, 0, size_t(N_ * C_) * sizeof(T), stream_));
  norm_backward(lnf_w_, lnf_b_, dres_, dbranch_, res_[size_t(L_)], lnf_mean_, lnf_rstd_);
  for (int l = int(L_) - 1; l >= 0; --l) block_backward(l);
  cuda::embedding_backward(G(wte_), wpe_ >= 0 ? G(wpe_) : nullptr, dres_, g_token_, g_start_,
                           g_rows_, groups_, N_, T_, C_, stream_);
}

template <class T>
double GpuTransformer<T>::reduce_gradients(Comm* comm) {
  sync();  // NCCL runs on its own stream: the gradients must be complete
  if (comm && comm->size() > 1) comm->all_reduce_sum(grads_.get(), n_, DType::f32);
  cuda::sum_squares(grads_.get(), n_, norm_.get(), norm_.get() + 1, stream_);
  double ss = 0;
  LONGCTX_CUDA_CHECK(
      "copying the gradient norm from the GPU",
      cudaMemcpyAsync(&ss, norm_.get(), sizeof(double), cudaMemcpyDeviceToHost, stream_));
  sync();
  return std::sqrt(ss);
}

template <class T>
void GpuTransformer<T>::update(double norm, double lr, int64_t t) {
  const TrainConfig& tc = cfg_.train;
  const double clip = tc.clip > 0 && norm > tc.clip ? tc.clip / (norm + 1e-6) : 1.0;
  const double c1 = 1.0 - std::pow(tc.beta1, double(t)), c2 = 1.0 - std::pow(tc.beta2, double(t));
  bf16* copy = nullptr;
  if constexpr (std::is_same_v<T, bf16>) copy = copy_.get();
  for (const ParamInfo& p : infos_) {
    const int64_t o = p.offset;
    cuda::adamw_update(master_.get() + o, grads_.get() + o, m_.get() + o, v_.get() + o,
                       copy ? copy + o : nullptr, p.shape.numel(), float(lr / c1), float(1.0 / c2),
                       float(tc.beta1), float(tc.beta2), float(tc.eps),
                       float(p.decay ? lr * tc.weight_decay : 0.0), float(clip), stream_);
  }
  sync();
}

}  // namespace

void check_gpu_device(int device) {
  const int count = cuda_device_count();
  if (count == 0)
    throw Error("'run.device: cuda': no CUDA device is visible (no GPU or no driver)");
  if (device < 0 || device >= count)
    throw Error(str("'run.device: cuda': this rank's device ", device, " (its local rank) does "
                    "not exist; the node has ", count, " visible: start at most ", count,
                    " ranks per node"));
}

std::unique_ptr<GpuModel> make_gpu_model(const Config& cfg, const ParamStore<float>& layout,
                                         int64_t B, int64_t T, int device) {
  if (cfg.train.precision == Precision::bf16)
    return std::make_unique<GpuTransformer<bf16>>(cfg, layout, B, T, device);
  return std::make_unique<GpuTransformer<float>>(cfg, layout, B, T, device);
}

}  // namespace longctx

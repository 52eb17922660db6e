// The attention layer: Q/K/V projections, RoPE, the attention core chosen by the config's
// pattern (dense or flash over a block mask), and the output projection.
// Parameters: wq [C, H·D], wk [C, Hkv·D], wv [C, Hkv·D], wo [H·D, C] (y = x·W).
#pragma once
#include <string>

#include "attention/attn_shape.h"
#include "attention/block_mask.h"
#include "core/arena.h"
#include "core/config.h"
#include "core/param_store.h"
#include "core/rng.h"
#include "model/rope.h"

namespace longctx {

// What forward keeps for backward, per layer.
template <class T>
struct AttentionActs {
  T* q = nullptr;      // [B, H, T, D], after RoPE
  T* k = nullptr;      // [B, Hkv, T, D], after RoPE
  T* v = nullptr;      // [B, Hkv, T, D]
  T* out = nullptr;    // [B, H, T, D], the core's output
  T* lse = nullptr;    // [B, H, T]          (flash)
  T* probs = nullptr;  // [B, H, T, T]       (dense)
  T* merged = nullptr; // [B, T, H·D], input of wo
};

// Buffers backward needs only while it runs; shared by all layers.
template <class T>
struct AttentionScratch {
  T* proj = nullptr;  // [B, T, H·D]
  T* dq = nullptr;    // [B, H, T, D]
  T* dk = nullptr;    // [B, Hkv, T, D]
  T* dv = nullptr;    // [B, Hkv, T, D]
  T* dout = nullptr;  // [B, H, T, D]
};

template <class T>
class AttentionLayer {
 public:
  AttentionLayer(ParamStore<T>& store, const std::string& prefix, const ModelConfig& model,
                 const AttentionConfig& attn, bool causal);
  void init(ParamStore<T>& store, Rng& rng, double std, double out_std) const;

  // Binds this layer's saved activations (and, once, the shared scratch) for a [B, T] batch.
  void layout(Arena<T>& arena, AttentionActs<T>& acts, int64_t B, int64_t Tn) const;
  void layout_scratch(Arena<T>& arena, AttentionScratch<T>& s, int64_t B, int64_t Tn) const;

  // y[B·T, C] = Attention(x[B·T, C]). `proj` is scratch [B·T, H·D].
  void forward(ParamStore<T>& store, const T* x, T* y, AttentionActs<T>& acts, T* proj,
               int64_t B, int64_t Tn, const RopeTable<T>* rope) const;
  // dx[B·T, C] = ∂L/∂x (overwritten); parameter gradients accumulate into the store.
  void backward(ParamStore<T>& store, const T* x, const T* dy, T* dx, const AttentionActs<T>& acts,
                AttentionScratch<T>& s, int64_t B, int64_t Tn, const RopeTable<T>* rope) const;

  int64_t n_head() const { return H_; }
  int64_t n_kv_head() const { return Hkv_; }
  int64_t head_dim() const { return D_; }

 private:
  attn::AttnShape shape(int64_t B, int64_t Tn) const;
  // The block mask for length Tn, built on first use and kept (one per layer is cheap).
  const attn::BlockMask& mask(int64_t Tn) const;

  int wq_, wk_, wv_, wo_;
  int64_t C_, H_, Hkv_, D_;
  Pattern pattern_;
  int block_;
  bool causal_;
  mutable attn::BlockMask mask_;
};

}  // namespace longctx

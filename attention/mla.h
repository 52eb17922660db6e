// Multi-head latent attention (DeepSeek-V2), the Q/K/V side, trained in the expanded form: it
// produces ordinary per-head q, k, v [B, H, T, D] so the attention core runs unchanged (Hkv = H).
// Each head vector of q and k is [nope | rope]: D − rope_dim content dims, then rope_dim dims
// that carry RoPE. Keys and values come from one low-rank latent per token, plus one RoPE key
// shared by all heads (RoPE cannot pass through the latent: it would make w_uk position-dependent
// and stop it from being absorbed into wq at inference).
//   q         = x·wq                      [N, H·D], RoPE on each head's rope slice
//   c         = x·w_dkv                   [N, r]    the latent (what a cache stores)
//   k_nope[h] = (c·w_uk)[:, h·Dn, (h+1)·Dn) [N, Dn]   Dn = D − rope_dim
//   k_rope    = RoPE(x·w_kr)              [N, rope_dim], the same for every head
//   k[h]      = concat(k_nope[h], k_rope)
//   v         = c·w_uv                    [N, H·D]
// Parameters: wq [C, H·D], w_dkv [C, r], w_uk [r, H·Dn], w_uv [r, H·D], w_kr [C, rope_dim].
#pragma once
#include <string>

#include "core/arena.h"
#include "core/param_store.h"
#include "core/rng.h"
#include "model/rope.h"

namespace longctx {

// What forward keeps for backward, per layer.
template <class T>
struct MlaActs {
  T* latent = nullptr;  // [B·T, r]: c = x·w_dkv
};

// Buffers used only while forward or backward runs; can be shared by all layers.
template <class T>
struct MlaScratch {
  T* proj = nullptr;      // [B·T, H·D]: token-major projections and their gradients
  T* rope_key = nullptr;  // [B·T, rope_dim]: x·w_kr, then its gradient
  T* dlatent = nullptr;   // [B·T, r]
};

template <class T>
class MlaProjection {
 public:
  // D = d_model / n_head; rope_dim must be even and 0 < rope_dim < D.
  MlaProjection(ParamStore<T>& store, const std::string& prefix, int64_t d_model, int64_t n_head,
                int64_t kv_lora_rank, int64_t rope_dim);
  // Every matrix normal(0, std).
  void init(ParamStore<T>& store, Rng& rng, double std) const;

  void layout(Arena<T>& arena, MlaActs<T>& acts, int64_t B, int64_t Tn) const;
  void layout_scratch(Arena<T>& arena, MlaScratch<T>& s, int64_t B, int64_t Tn) const;

  // x [B·T, C] -> q, k, v [B, H, T, D] (overwritten); acts.latent is saved. Token t has
  // position pos[t] (pos == nullptr: t). `rope` is a table built for head_dim = rope_dim; nullptr leaves the
  // rope dims unrotated (for models without RoPE).
  void forward(ParamStore<T>& store, const T* x, T* q, T* k, T* v, MlaActs<T>& acts,
               MlaScratch<T>& s, int64_t B, int64_t Tn, const RopeTable<T>* rope,
               const int64_t* pos) const;
  // dq, dk, dv [B, H, T, D] -> dx [B·T, C] (overwritten); parameter gradients accumulate.
  void backward(ParamStore<T>& store, const T* x, const T* dq, const T* dk, const T* dv, T* dx,
                const MlaActs<T>& acts, MlaScratch<T>& s, int64_t B, int64_t Tn,
                const RopeTable<T>* rope, const int64_t* pos) const;

  // What an inference cache keeps per token per layer: the latent and the roped shared key
  // (w_uk and w_uv are absorbed into wq and wo at inference).
  int64_t kv_cache_values_per_token() const { return r_ + R_; }

  int64_t n_head() const { return H_; }
  int64_t head_dim() const { return D_; }
  int64_t kv_lora_rank() const { return r_; }
  int64_t rope_dim() const { return R_; }
  int wq() const { return wq_; }
  int w_dkv() const { return w_dkv_; }
  int w_uk() const { return w_uk_; }
  int w_uv() const { return w_uv_; }
  int w_kr() const { return w_kr_; }

 private:
  int64_t C_, H_, D_, r_, R_, Dn_;  // Dn_ = D_ − R_
  int wq_, w_dkv_, w_uk_, w_uv_, w_kr_;
};

// The same count for multi-head attention with full K and V heads: 2·n_kv_head·head_dim.
inline int64_t mha_kv_cache_values_per_token(int64_t n_kv_head, int64_t head_dim) {
  return 2 * n_kv_head * head_dim;
}

}  // namespace longctx

// The feed-forward layer. gelu: y = gelu(x·w_fc)·w_proj;  swiglu: y = (silu(x·w_gate) ∘ x·w_up)·w_proj.
// w_fc, w_gate, w_up: [C, F];  w_proj: [F, C].
#pragma once
#include <string>

#include "core/arena.h"
#include "core/config.h"
#include "core/param_store.h"
#include "core/rng.h"

namespace longctx {

template <class T>
struct MlpActs {
  T* pre = nullptr;  // [N, F]: x·w_fc (gelu) or x·w_gate (swiglu)
  T* up = nullptr;   // [N, F]: x·w_up (swiglu only)
  T* act = nullptr;  // [N, F]: input of w_proj
};

template <class T>
struct MlpScratch {
  T* dact = nullptr;  // [N, F]
  T* dpre = nullptr;  // [N, F]
  T* dup = nullptr;   // [N, F] (swiglu only)
};

template <class T>
class Mlp {
 public:
  Mlp(ParamStore<T>& store, const std::string& prefix, const ModelConfig& model);
  void init(ParamStore<T>& store, Rng& rng, double std, double out_std) const;
  void layout(Arena<T>& arena, MlpActs<T>& acts, int64_t N) const;
  void layout_scratch(Arena<T>& arena, MlpScratch<T>& s, int64_t N) const;

  // y[N, C] = Mlp(x[N, C])
  void forward(ParamStore<T>& store, const T* x, T* y, MlpActs<T>& acts, int64_t N) const;
  // dx[N, C] = ∂L/∂x (overwritten); parameter gradients accumulate.
  void backward(ParamStore<T>& store, const T* x, const T* dy, T* dx, const MlpActs<T>& acts,
                MlpScratch<T>& s, int64_t N) const;

 private:
  bool swiglu_;
  int64_t C_, F_;
  int w_in_, w_up_ = -1, w_proj_;  // w_in is w_fc (gelu) or w_gate (swiglu)
};

}  // namespace longctx

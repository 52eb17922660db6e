// Pre-norm layers over the last dimension C of N rows: LayerNorm and RMSNorm.
#pragma once
#include <algorithm>
#include <cstdint>

namespace longctx {

// out[N,C] = (x - mean) * rstd * w + b;  saves mean[N], rstd[N].
template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t N,
                       int64_t C);
// dx[N,C] += ...;  dw[C] += ...;  db[C] += ...
template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dout, const T* x, const T* w, const T* mean,
                        const T* rstd, int64_t N, int64_t C);

// out[N,C] = x * rstd * w, rstd = 1 / sqrt(mean(x²) + eps);  saves rstd[N].
template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* w, int64_t N, int64_t C);
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dout, const T* x, const T* w, const T* rstd, int64_t N,
                      int64_t C);

}  // namespace longctx

#include <string>

#include "core/config.h"
#include "core/param_store.h"

namespace longctx {

// A norm layer with its parameters: LayerNorm (w, b) or RMSNorm (w).
template <class T>
class NormLayer {
 public:
  NormLayer(ParamStore<T>& store, const std::string& prefix, Norm kind, int64_t C)
      : kind_(kind), C_(C) {
    w_ = store.add(prefix + ".w", {C}, false);
    if (kind_ == Norm::layernorm) b_ = store.add(prefix + ".b", {C}, false);
  }
  void init(ParamStore<T>& store) const {
    std::fill(store.value(w_), store.value(w_) + C_, T(1));
    if (b_ >= 0) std::fill(store.value(b_), store.value(b_) + C_, T(0));
  }
  // out[N, C]; mean[N] (unused by RMSNorm), rstd[N] saved for backward.
  void forward(ParamStore<T>& st, T* out, T* mean, T* rstd, const T* x, int64_t N) const {
    if (kind_ == Norm::layernorm)
      layernorm_forward(out, mean, rstd, x, st.value(w_), st.value(b_), N, C_);
    else
      rmsnorm_forward(out, rstd, x, st.value(w_), N, C_);
  }
  // dx[N, C] += ∂L/∂x; parameter gradients accumulate.
  void backward(ParamStore<T>& st, T* dx, const T* dout, const T* x, const T* mean, const T* rstd,
                int64_t N) const {
    if (kind_ == Norm::layernorm)
      layernorm_backward(dx, st.grad(w_), st.grad(b_), dout, x, st.value(w_), mean, rstd, N, C_);
    else
      rmsnorm_backward(dx, st.grad(w_), dout, x, st.value(w_), rstd, N, C_);
  }

 private:
  Norm kind_;
  int64_t C_;
  int w_ = -1, b_ = -1;
};

}  // namespace longctx

#include "model/mlp.h"

#include "core/gemm.h"
#include "model/activation.h"

namespace longctx {

template <class T>
Mlp<T>::Mlp(ParamStore<T>& store, const std::string& prefix, const ModelConfig& m)
    : swiglu_(m.activation == Activation::swiglu), C_(m.d_model), F_(m.d_ff) {
  w_in_ = store.add(prefix + (swiglu_ ? ".w_gate" : ".w_fc"), {C_, F_}, true);
  if (swiglu_) w_up_ = store.add(prefix + ".w_up", {C_, F_}, true);
  w_proj_ = store.add(prefix + ".w_proj", {F_, C_}, true);
}

template <class T>
void Mlp<T>::init(ParamStore<T>& store, Rng& rng, double std, double out_std) const {
  auto fill = [&](int id, double s) {
    T* w = store.value(id);
    for (int64_t i = 0; i < store.infos()[id].shape.numel(); ++i)
      w[i] = static_cast<T>(s * rng.normal());
  };
  fill(w_in_, std);
  if (swiglu_) fill(w_up_, std);
  fill(w_proj_, out_std);
}

template <class T>
void Mlp<T>::layout(Arena<T>& arena, MlpActs<T>& a, int64_t N) const {
  a.pre = arena.take(N * F_);
  if (swiglu_) a.up = arena.take(N * F_);
  a.act = arena.take(N * F_);
}

template <class T>
void Mlp<T>::layout_scratch(Arena<T>& arena, MlpScratch<T>& s, int64_t N) const {
  s.dact = arena.take(N * F_);
  s.dpre = arena.take(N * F_);
  if (swiglu_) s.dup = arena.take(N * F_);
}

template <class T>
void Mlp<T>::forward(ParamStore<T>& st, const T* x, T* y, MlpActs<T>& a, int64_t N) const {
  matmul<T>(false, false, N, F_, C_, x, st.value(w_in_), a.pre);
  if (swiglu_) {
    matmul<T>(false, false, N, F_, C_, x, st.value(w_up_), a.up);
    swiglu_forward(a.act, a.pre, a.up, N * F_);
  } else {
    gelu_forward(a.act, a.pre, N * F_);
  }
  matmul<T>(false, false, N, C_, F_, a.act, st.value(w_proj_), y);
}

template <class T>
void Mlp<T>::backward(ParamStore<T>& st, const T* x, const T* dy, T* dx, const MlpActs<T>& a,
                      MlpScratch<T>& s, int64_t N) const {
  matmul<T>(true, false, F_, C_, N, a.act, dy, st.grad(w_proj_), true);
  matmul<T>(false, true, N, F_, C_, dy, st.value(w_proj_), s.dact);
  if (swiglu_) {
    swiglu_backward(s.dpre, s.dup, s.dact, a.pre, a.up, N * F_);
    matmul<T>(true, false, C_, F_, N, x, s.dup, st.grad(w_up_), true);
  } else {
    gelu_backward(s.dpre, s.dact, a.pre, N * F_);
  }
  matmul<T>(true, false, C_, F_, N, x, s.dpre, st.grad(w_in_), true);
  matmul<T>(false, true, N, C_, F_, s.dpre, st.value(w_in_), dx);
  if (swiglu_) matmul<T>(false, true, N, C_, F_, s.dup, st.value(w_up_), dx, true);
}

template class Mlp<float>;
template class Mlp<double>;

}  // namespace longctx

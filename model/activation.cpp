#include "model/activation.h"

#include <cmath>

namespace longctx {

namespace {
constexpr double kGeluC = 0.7978845608028654;  // √(2/π)
}

template <class T>
void gelu_forward(T* out, const T* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T u = T(kGeluC) * (x[i] + T(0.044715) * x[i] * x[i] * x[i]);
    out[i] = T(0.5) * x[i] * (T(1) + std::tanh(u));
  }
}

template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T u = T(kGeluC) * (v + T(0.044715) * v * v * v);
    const T t = std::tanh(u);
    const T du = T(kGeluC) * (T(1) + T(3 * 0.044715) * v * v);
    dx[i] = dout[i] * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
  }
}

template <class T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T sig = T(1) / (T(1) + std::exp(-gate[i]));
    out[i] = gate[i] * sig * up[i];
  }
}

template <class T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    const T sig = T(1) / (T(1) + std::exp(-g));
    const T silu = g * sig;
    dup[i] = dout[i] * silu;
    dgate[i] = dout[i] * up[i] * sig * (T(1) + g * (T(1) - sig));
  }
}

#define LONGCTX_ACT(T)                                                         \
  template void gelu_forward<T>(T*, const T*, int64_t);                        \
  template void gelu_backward<T>(T*, const T*, const T*, int64_t);             \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t);            \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t);
LONGCTX_ACT(float)
LONGCTX_ACT(double)

}  // namespace longctx

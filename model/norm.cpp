#include "model/norm.h"

#include <cmath>
#include <vector>

namespace longctx {

namespace {
constexpr double kEps = 1e-5;
}

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t N,
                       int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * C;
    T m = 0;
    for (int64_t c = 0; c < C; ++c) m += xr[c];
    m /= T(C);
    T var = 0;
    for (int64_t c = 0; c < C; ++c) var += (xr[c] - m) * (xr[c] - m);
    const T s = T(1) / std::sqrt(var / T(C) + T(kEps));
    T* o = out + r * C;
    for (int64_t c = 0; c < C; ++c) o[c] = (xr[c] - m) * s * w[c] + b[c];
    mean[r] = m;
    rstd[r] = s;
  }
}

// Row gradients in parallel; dw/db summed over rows in a fixed order (deterministic).
template <class T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dout, const T* x, const T* w, const T* mean,
                        const T* rstd, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* d = dout + r * C;
    const T* xr = x + r * C;
    T sum_g = 0, sum_gx = 0;  // Σ dout·w and Σ dout·w·x̂
    for (int64_t c = 0; c < C; ++c) {
      const T xhat = (xr[c] - mean[r]) * rstd[r];
      sum_g += d[c] * w[c];
      sum_gx += d[c] * w[c] * xhat;
    }
    sum_g /= T(C);
    sum_gx /= T(C);
    T* g = dx + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const T xhat = (xr[c] - mean[r]) * rstd[r];
      g[c] += rstd[r] * (d[c] * w[c] - sum_g - xhat * sum_gx);
    }
  }
  for (int64_t r = 0; r < N; ++r) {
    const T* d = dout + r * C;
    const T* xr = x + r * C;
    for (int64_t c = 0; c < C; ++c) {
      dw[c] += d[c] * (xr[c] - mean[r]) * rstd[r];
      db[c] += d[c];
    }
  }
}

template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* w, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * C;
    T ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
    const T s = T(1) / std::sqrt(ss / T(C) + T(kEps));
    T* o = out + r * C;
    for (int64_t c = 0; c < C; ++c) o[c] = xr[c] * s * w[c];
    rstd[r] = s;
  }
}

template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dout, const T* x, const T* w, const T* rstd, int64_t N,
                      int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* d = dout + r * C;
    const T* xr = x + r * C;
    T dot = 0;  // Σ dout·w·x
    for (int64_t c = 0; c < C; ++c) dot += d[c] * w[c] * xr[c];
    const T s = rstd[r], k = s * s * s * dot / T(C);
    T* g = dx + r * C;
    for (int64_t c = 0; c < C; ++c) g[c] += d[c] * w[c] * s - xr[c] * k;
  }
  for (int64_t r = 0; r < N; ++r) {
    const T* d = dout + r * C;
    const T* xr = x + r * C;
    for (int64_t c = 0; c < C; ++c) dw[c] += d[c] * xr[c] * rstd[r];
  }
}

#define LONGCTX_NORM(T)                                                                      \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,      \
                                     int64_t);                                               \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,    \
                                      const T*, int64_t, int64_t);                           \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t);            \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, \
                                    int64_t);
LONGCTX_NORM(float)
LONGCTX_NORM(double)

}  // namespace longctx

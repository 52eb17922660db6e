#include "model/rope.h"

#include <cmath>

#include "core/error.h"

namespace longctx {

template <class T>
RopeTable<T>::RopeTable(int64_t max_pos_, int64_t head_dim, double base)
    : max_pos(max_pos_), half(head_dim / 2), cos(max_pos_ * half), sin(max_pos_ * half) {
  for (int64_t p = 0; p < max_pos; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = p * std::pow(base, -2.0 * i / head_dim);  // in double: exact tables
      cos[p * half + i] = static_cast<T>(std::cos(angle));
      sin[p * half + i] = static_cast<T>(std::sin(angle));
    }
}

template <class T>
void rope_apply(T* x, const RopeTable<T>& table, int64_t B, int64_t H, int64_t Tn, int64_t D,
                int64_t pos0, bool inverse) {
  const int64_t half = D / 2;
  LONGCTX_CHECK(half == table.half && pos0 + Tn <= table.max_pos, "rope table too small");
  const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < B * H * Tn; ++row) {
    const int64_t p = pos0 + row % Tn;
    const T* c = table.cos.data() + p * half;
    const T* s = table.sin.data() + p * half;
    T* a = x + row * D;
    T* b = a + half;
    for (int64_t i = 0; i < half; ++i) {
      const T x0 = a[i], x1 = b[i];
      a[i] = x0 * c[i] - sign * x1 * s[i];
      b[i] = x1 * c[i] + sign * x0 * s[i];
    }
  }
}

template <class T>
void rope_apply_slice(T* x, const RopeTable<T>& table, int64_t B, int64_t Tn, int64_t Hh, int64_t D,
                      int64_t offset, int64_t pos0, bool inverse) {
  const int64_t half = table.half;
  LONGCTX_CHECK(offset >= 0 && offset + 2 * half <= D, "rope slice [", offset, ", ",
                offset + 2 * half, ") outside a head of ", D);
  LONGCTX_CHECK(pos0 >= 0 && pos0 + Tn <= table.max_pos, "rope table too small");
  const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static)
  for (int64_t token = 0; token < B * Tn; ++token) {
    const int64_t p = pos0 + token % Tn;
    const T* c = table.cos.data() + p * half;
    const T* s = table.sin.data() + p * half;
    for (int64_t h = 0; h < Hh; ++h) {
      T* a = x + (token * Hh + h) * D + offset;
      T* b = a + half;
      for (int64_t i = 0; i < half; ++i) {
        const T x0 = a[i], x1 = b[i];
        a[i] = x0 * c[i] - sign * x1 * s[i];
        b[i] = x1 * c[i] + sign * x0 * s[i];
      }
    }
  }
}

template struct RopeTable<float>;
template struct RopeTable<double>;
template void rope_apply<float>(float*, const RopeTable<float>&, int64_t, int64_t, int64_t, int64_t,
                                int64_t, bool);
template void rope_apply<double>(double*, const RopeTable<double>&, int64_t, int64_t, int64_t,
                                 int64_t, int64_t, bool);
template void rope_apply_slice<float>(float*, const RopeTable<float>&, int64_t, int64_t, int64_t,
                                      int64_t, int64_t, int64_t, bool);
template void rope_apply_slice<double>(double*, const RopeTable<double>&, int64_t, int64_t, int64_t,
                                       int64_t, int64_t, int64_t, bool);

}  // namespace longctx

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

namespace {

// Row t of every [Tn, D] block sits at position pos(t).
template <class T, class Pos>
void rotate_rows(T* x, const RopeTable<T>& table, int64_t B, int64_t H, int64_t Tn, int64_t D,
                 Pos pos, bool inverse) {
  const int64_t half = D / 2;
  LONGCTX_CHECK(half == table.half, "rope table built for head_dim ", 2 * table.half, ", not ", D);
  for (int64_t t = 0; t < Tn; ++t)
    LONGCTX_CHECK(pos(t) >= 0 && pos(t) < table.max_pos, "rope: position ", pos(t),
                  " outside the table's [0, ", table.max_pos, ")");
  const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < B * H * Tn; ++row) {
    const int64_t p = pos(row % Tn);
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

// Token t of every batch row sits at position pos(t).
template <class T, class Pos>
void rotate_slices(T* x, const RopeTable<T>& table, int64_t B, int64_t Tn, int64_t Hh, int64_t D,
                   int64_t offset, Pos pos, bool inverse) {
  const int64_t half = table.half;
  LONGCTX_CHECK(offset >= 0 && offset + 2 * half <= D, "rope slice [", offset, ", ",
                offset + 2 * half, ") outside a head of ", D);
  for (int64_t t = 0; t < Tn; ++t)
    LONGCTX_CHECK(pos(t) >= 0 && pos(t) < table.max_pos, "rope: position ", pos(t),
                  " outside the table's [0, ", table.max_pos, ")");
  const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static)
  for (int64_t token = 0; token < B * Tn; ++token) {
    const int64_t p = pos(token % Tn);
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

}  // namespace

template <class T>
void rope_apply(T* x, const RopeTable<T>& table, int64_t B, int64_t H, int64_t Tn, int64_t D,
                int64_t pos0, bool inverse) {
  rotate_rows(x, table, B, H, Tn, D, [pos0](int64_t t) { return pos0 + t; }, inverse);
}

template <class T>
void rope_apply_at(T* x, const RopeTable<T>& table, int64_t B, int64_t H, int64_t Tn, int64_t D,
                   const int64_t* pos, bool inverse) {
  rotate_rows(x, table, B, H, Tn, D, [pos](int64_t t) { return pos[t]; }, inverse);
}

template <class T>
void rope_apply_slice(T* x, const RopeTable<T>& table, int64_t B, int64_t Tn, int64_t Hh, int64_t D,
                      int64_t offset, int64_t pos0, bool inverse) {
  rotate_slices(x, table, B, Tn, Hh, D, offset, [pos0](int64_t t) { return pos0 + t; }, inverse);
}

template <class T>
void rope_apply_slice_at(T* x, const RopeTable<T>& table, int64_t B, int64_t Tn, int64_t Hh,
                         int64_t D, int64_t offset, const int64_t* pos, bool inverse) {
  rotate_slices(x, table, B, Tn, Hh, D, offset, [pos](int64_t t) { return pos[t]; }, inverse);
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
template void rope_apply_at<float>(float*, const RopeTable<float>&, int64_t, int64_t, int64_t,
                                   int64_t, const int64_t*, bool);
template void rope_apply_at<double>(double*, const RopeTable<double>&, int64_t, int64_t, int64_t,
                                    int64_t, const int64_t*, bool);
template void rope_apply_slice_at<float>(float*, const RopeTable<float>&, int64_t, int64_t,
                                         int64_t, int64_t, int64_t, const int64_t*, bool);
template void rope_apply_slice_at<double>(double*, const RopeTable<double>&, int64_t, int64_t,
                                          int64_t, int64_t, int64_t, const int64_t*, bool);

}  // namespace longctx

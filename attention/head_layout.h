// Moves between the token-major layout of projections, [B, T, H, D], and the head-major layout
// the attention core works in, [B, H, T, D].
#pragma once
#include <cstdint>

namespace longctx {

// [B, T, Hh, D] -> [B, Hh, T, D]
template <class T>
void split_heads(T* dst, const T* src, int64_t B, int64_t Tn, int64_t Hh, int64_t D) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hh; ++h)
      for (int64_t t = 0; t < Tn; ++t) {
        const T* s = src + ((b * Tn + t) * Hh + h) * D;
        T* d = dst + ((b * Hh + h) * Tn + t) * D;
        for (int64_t i = 0; i < D; ++i) d[i] = s[i];
      }
}

// [B, Hh, T, D] -> [B, T, Hh, D]
template <class T>
void merge_heads(T* dst, const T* src, int64_t B, int64_t Tn, int64_t Hh, int64_t D) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t h = 0; h < Hh; ++h) {
        const T* s = src + ((b * Hh + h) * Tn + t) * D;
        T* d = dst + ((b * Tn + t) * Hh + h) * D;
        for (int64_t i = 0; i < D; ++i) d[i] = s[i];
      }
}

}  // namespace longctx

#include "model/cross_entropy.h"

#include <algorithm>
#include <cmath>

namespace longctx {

namespace {
template <class T>
T row_logsumexp(const T* x, int64_t V) {
  const T m = *std::max_element(x, x + V);
  T s = 0;
  for (int64_t j = 0; j < V; ++j) s += std::exp(x[j] - m);
  return m + std::log(s);
}
}  // namespace

template <class T>
double cross_entropy_forward(T* losses, const T* logits, const int32_t* targets, int64_t N,
                             int64_t V, int64_t* count) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* x = logits + r * V;
    losses[r] = targets[r] == kIgnoreIndex ? T(0) : row_logsumexp(x, V) - x[targets[r]];
  }
  double sum = 0;  // serial: a fixed summation order
  int64_t n = 0;
  for (int64_t r = 0; r < N; ++r) {
    sum += double(losses[r]);
    n += targets[r] != kIgnoreIndex;
  }
  *count = n;
  return sum;
}

template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, int64_t N,
                            int64_t V, T scale) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    const T* x = logits + r * V;
    T* d = dlogits + r * V;
    if (targets[r] == kIgnoreIndex) {
      std::fill(d, d + V, T(0));
      continue;
    }
    const T lse = row_logsumexp(x, V);
    for (int64_t j = 0; j < V; ++j) d[j] = scale * std::exp(x[j] - lse);
    d[targets[r]] -= scale;
  }
}

template double cross_entropy_forward<float>(float*, const float*, const int32_t*, int64_t, int64_t,
                                             int64_t*);
template double cross_entropy_forward<double>(double*, const double*, const int32_t*, int64_t,
                                              int64_t, int64_t*);
template void cross_entropy_backward<float>(float*, const float*, const int32_t*, int64_t, int64_t,
                                            float);
template void cross_entropy_backward<double>(double*, const double*, const int32_t*, int64_t,
                                             int64_t, double);

}  // namespace longctx

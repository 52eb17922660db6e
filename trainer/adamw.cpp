#include "trainer/adamw.h"

#include <algorithm>
#include <cmath>

namespace longctx {

template <class T>
AdamW<T>::AdamW(const ParamStore<T>& store, const TrainConfig& cfg, int64_t lo, int64_t hi)
    : cfg_(cfg), lo_(lo), hi_(hi < 0 ? store.size() : std::min<int64_t>(hi, store.size())) {
  m.assign(size_t(std::max<int64_t>(hi_ - lo_, 0)), T(0));
  v.assign(m.size(), T(0));
}

template <class T>
void AdamW<T>::step(ParamStore<T>& store, double lr, int64_t t) {
  const double b1 = cfg_.beta1, b2 = cfg_.beta2;
  const double c1 = 1.0 - std::pow(b1, double(t)), c2 = 1.0 - std::pow(b2, double(t));
  for (const ParamInfo& p : store.infos()) {
    // This parameter's part of the range.
    const int64_t first = std::max<int64_t>(p.offset, lo_);
    const int64_t last = std::min<int64_t>(p.offset + p.shape.numel(), hi_);
    if (first >= last) continue;
    T* w = store.values.data() + first;
    const T* g = store.grads.data() + first;
    T* mp = m.data() + (first - lo_);
    T* vp = v.data() + (first - lo_);
    const T decay = T(p.decay ? lr * cfg_.weight_decay : 0.0);
    const T a = T(lr / c1), ic2 = T(1.0 / c2), eps = T(cfg_.eps), B1 = T(b1), B2 = T(b2);
    const int64_t n = last - first;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      mp[i] = B1 * mp[i] + (T(1) - B1) * g[i];
      vp[i] = B2 * vp[i] + (T(1) - B2) * g[i] * g[i];
      w[i] -= a * mp[i] / (std::sqrt(vp[i] * ic2) + eps) + decay * w[i];
    }
  }
}

template <class T>
double grad_norm(const std::vector<T>& g) {
  return std::sqrt(sum_squares(g.data(), static_cast<int64_t>(g.size())));
}

template <class T>
double sum_squares(const T* g, int64_t n) {
  constexpr int64_t kChunks = 64;  // fixed partition: same sum for any thread count
  const int64_t per = (n + kChunks - 1) / kChunks;
  double partial[kChunks] = {};
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < kChunks; ++c) {
    double s = 0;
    for (int64_t i = c * per; i < std::min(n, (c + 1) * per); ++i) s += double(g[i]) * double(g[i]);
    partial[c] = s;
  }
  double s = 0;
  for (double p : partial) s += p;
  return s;
}

template <class T>
double clip_grads(std::vector<T>& g, double norm, double max_norm) {
  return clip_grads(g.data(), static_cast<int64_t>(g.size()), norm, max_norm);
}

template <class T>
double clip_grads(T* g, int64_t n, double norm, double max_norm) {
  if (max_norm <= 0 || norm <= max_norm) return 1.0;
  const double f = max_norm / (norm + 1e-6);
  const T tf = T(f);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) g[i] *= tf;
  return f;
}

template class AdamW<float>;
template class AdamW<double>;
template double grad_norm<float>(const std::vector<float>&);
template double grad_norm<double>(const std::vector<double>&);
template double clip_grads<float>(std::vector<float>&, double, double);
template double clip_grads<double>(std::vector<double>&, double, double);
template double sum_squares<float>(const float*, int64_t);
template double sum_squares<double>(const double*, int64_t);
template double clip_grads<float>(float*, int64_t, double, double);
template double clip_grads<double>(double*, int64_t, double, double);

}  // namespace longctx

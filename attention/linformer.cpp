#include "attention/linformer.h"

#include <omp.h>

#include "core/error.h"
#include "core/gemm.h"

namespace longctx {

namespace {

// One (batch, head) per thread when there are enough of them; otherwise a serial loop, so that
// each GEMM can use all threads (Eigen runs single-threaded inside a parallel region).
bool parallel_over_heads(int64_t BH) { return BH >= omp_get_max_threads(); }

void check_lengths(int64_t max_len, int64_t k, int64_t n) {
  LONGCTX_CHECK(k > 0, "linformer: k must be positive, got ", k);
  LONGCTX_CHECK(n > 0 && n <= max_len, "linformer: sequence of ", n,
                " tokens does not fit E, F of max_seq_len ", max_len);
}

template <class T>
void init_normal(T* w, int64_t n, Rng& rng, double std) {
  for (int64_t i = 0; i < n; ++i) w[i] = static_cast<T>(std * rng.normal());
}

}  // namespace

template <class T>
void linformer_project_forward(const T* E, int64_t max_len, int64_t k, int64_t n, const T* X, T* Xp,
                               int64_t B, int64_t Hkv, int64_t D) {
  check_lengths(max_len, k, n);
  const int64_t BH = B * Hkv;
#pragma omp parallel for schedule(static) if (parallel_over_heads(BH))
  for (int64_t bh = 0; bh < BH; ++bh)
    gemm<T>(false, false, k, D, n, T(1), E, max_len, X + bh * n * D, D, T(0), Xp + bh * k * D, D);
}

template <class T>
void linformer_project_backward(const T* E, int64_t max_len, int64_t k, int64_t n, const T* X,
                                const T* dXp, T* dX, T* dE, int64_t B, int64_t Hkv, int64_t D) {
  check_lengths(max_len, k, n);
  const int64_t BH = B * Hkv;
#pragma omp parallel for schedule(static) if (parallel_over_heads(BH))
  for (int64_t bh = 0; bh < BH; ++bh)
    gemm<T>(true, false, n, D, k, T(1), E, max_len, dXp + bh * k * D, D, T(0), dX + bh * n * D, D);
  // Every (b, h) adds into the same dE: one GEMM after another, in (b, h) order, so no two
  // threads ever add into one element and runs with the same thread count agree bit for bit.
  for (int64_t bh = 0; bh < BH; ++bh)
    gemm<T>(false, true, k, n, D, T(1), dXp + bh * k * D, D, X + bh * n * D, D, T(1), dE, max_len);
}

template <class T>
LinformerParams linformer_add_global(ParamStore<T>& store, int64_t k, int64_t max_len) {
  LinformerParams p;
  p.e = p.f = store.add("linformer.E", {k, max_len}, true);
  return p;
}

template <class T>
LinformerParams linformer_add(ParamStore<T>& store, const std::string& prefix, LinformerShare share,
                              int64_t k, int64_t max_len, int global_e) {
  LinformerParams p;
  switch (share) {
    case LinformerShare::headwise:
      p.e = store.add(prefix + ".linformer_E", {k, max_len}, true);
      p.f = store.add(prefix + ".linformer_F", {k, max_len}, true);
      break;
    case LinformerShare::kv:
      p.e = p.f = store.add(prefix + ".linformer_E", {k, max_len}, true);
      break;
    case LinformerShare::layerwise: {
      LONGCTX_CHECK(global_e >= 0, "linformer: share = layerwise needs the model-wide E (", prefix,
                    ")");
      const Shape& s = store.infos()[global_e].shape;
      LONGCTX_CHECK(s == Shape({k, max_len}), "linformer: the model-wide E is ", s.str(),
                    ", this layer needs [", k, ", ", max_len, "]");
      p.e = p.f = global_e;
      p.owned = false;
      break;
    }
  }
  return p;
}

template <class T>
void linformer_init(ParamStore<T>& store, const LinformerParams& p, Rng& rng, double std) {
  if (!p.owned) return;
  init_normal(store.value(p.e), store.infos()[p.e].shape.numel(), rng, std);
  if (p.f != p.e) init_normal(store.value(p.f), store.infos()[p.f].shape.numel(), rng, std);
}

#define LONGCTX_LINFORMER(T)                                                                    \
  template void linformer_project_forward<T>(const T*, int64_t, int64_t, int64_t, const T*, T*, \
                                             int64_t, int64_t, int64_t);                        \
  template void linformer_project_backward<T>(const T*, int64_t, int64_t, int64_t, const T*,    \
                                              const T*, T*, T*, int64_t, int64_t, int64_t);     \
  template LinformerParams linformer_add_global<T>(ParamStore<T>&, int64_t, int64_t);           \
  template LinformerParams linformer_add<T>(ParamStore<T>&, const std::string&, LinformerShare, \
                                            int64_t, int64_t, int);                             \
  template void linformer_init<T>(ParamStore<T>&, const LinformerParams&, Rng&, double);
LONGCTX_LINFORMER(float)
LONGCTX_LINFORMER(double)
#undef LONGCTX_LINFORMER

}  // namespace longctx

// AdamW (Loshchilov & Hutter): Adam moments with decoupled weight decay applied to the
// parameters marked `decay` in the store. Moments are flat buffers with the store's offsets,
// so they shard and checkpoint the same way as the parameters.
#pragma once
#include <vector>

#include "core/config.h"
#include "core/param_store.h"

namespace longctx {

template <class T>
class AdamW {
 public:
  // Owns the moments of the flat range [lo, hi) of the store (hi < 0: to the end); ZeRO-1 gives
  // each replica its own range.
  AdamW(const ParamStore<T>& store, const TrainConfig& cfg, int64_t lo = 0, int64_t hi = -1);
  // One update of the range with learning rate `lr`, from store.grads over the range; `t`
  // counts updates from 1 (bias correction).
  void step(ParamStore<T>& store, double lr, int64_t t);

  int64_t lo() const { return lo_; }
  int64_t hi() const { return hi_; }
  std::vector<T> m, v;  // [hi − lo]

 private:
  TrainConfig cfg_;
  int64_t lo_, hi_;
};

// ‖g‖₂ over the whole gradient buffer, summed in a fixed order (reproducible bit for bit).
template <class T>
double grad_norm(const std::vector<T>& grads);
// Σ g² over g[0, n), in the same fixed order.
template <class T>
double sum_squares(const T* g, int64_t n);

// Scales the gradients so that their norm is at most `max_norm`; returns the factor applied.
template <class T>
double clip_grads(std::vector<T>& grads, double norm, double max_norm);
template <class T>
double clip_grads(T* g, int64_t n, double norm, double max_norm);

}  // namespace longctx

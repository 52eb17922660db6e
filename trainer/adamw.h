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
  AdamW(const ParamStore<T>& store, const TrainConfig& cfg);
  // One update with learning rate `lr`; `t` counts updates from 1 (bias correction).
  void step(ParamStore<T>& store, double lr, int64_t t);

  std::vector<T> m, v;

 private:
  TrainConfig cfg_;
};

// ‖g‖₂ over the whole gradient buffer, summed in a fixed order (reproducible bit for bit).
template <class T>
double grad_norm(const std::vector<T>& grads);

// Scales the gradients so that their norm is at most `max_norm`; returns the factor applied.
template <class T>
double clip_grads(std::vector<T>& grads, double norm, double max_norm);

}  // namespace longctx

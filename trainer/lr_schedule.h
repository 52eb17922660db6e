// Linear warm-up to `lr` over `warmup` steps, then cosine decay to `min_lr` at the last step.
#pragma once
#include <cmath>

#include "core/config.h"

namespace longctx {

// step is 0-based; the step `step` uses this rate.
inline double learning_rate(const TrainConfig& c, int step) {
  if (step < c.warmup) return c.lr * (step + 1) / c.warmup;
  const int decay_steps = c.steps - c.warmup;
  if (decay_steps <= 1) return c.lr;
  const double progress = double(step - c.warmup) / (decay_steps - 1);
  return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace longctx

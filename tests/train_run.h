// Training runs compared with one process, shared by the distributed tests: the losses of each
// step and the final parameters of a Trainer on a grid (or alone).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "core/config.h"
#include "core/process_grid.h"
#include "trainer/trainer.h"

namespace longctx::test {

struct RunLog {
  std::vector<double> losses, norms;  // per step: loss, gradient norm before clipping
  std::vector<float> params;          // at the end (copied back from the GPU when there)
};

// cfg.train.steps steps on `grid`, or in one process when grid is null.
inline RunLog train_run(const Config& cfg, ProcessGrid* grid) {
  std::unique_ptr<Trainer> t = grid ? std::make_unique<Trainer>(cfg, *grid)
                                    : std::make_unique<Trainer>(cfg);
  RunLog r;
  for (int s = 0; s < cfg.train.steps; ++s) {
    const StepStats st = t->step();
    r.losses.push_back(st.loss);
    r.norms.push_back(st.grad_norm);
  }
  r.params = t->host_params().values;
  return r;
}

// Losses within 1e-5 relative; parameters within 1e-4 absolute: Adam divides by √v, so where a
// gradient is near zero its rounding (another summation order across ranks) moves the update
// by a fraction of lr.
inline void expect_same_run(const RunLog& got, const RunLog& want) {
  ASSERT_EQ(got.params.size(), want.params.size());
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (size_t s = 0; s < want.losses.size(); ++s)
    EXPECT_NEAR(got.losses[s], want.losses[s], 1e-5 * want.losses[s]) << "step " << s;
  double worst = 0;
  for (size_t i = 0; i < want.params.size(); ++i) {
    const double d = std::abs(double(got.params[i]) - double(want.params[i]));
    worst = std::max(worst, std::isfinite(d) ? d : 1e30);  // a NaN must not pass
  }
  EXPECT_LT(worst, 1e-4) << "largest parameter difference";
}

}  // namespace longctx::test

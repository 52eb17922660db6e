// Central finite differences in double: the independent oracle for hand-written backwards.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/rng.h"

namespace longctx::test {

// Compares analytic[i] with (f(x+h) - f(x-h)) / 2h at `samples` positions of x (all when
// n <= samples), perturbing x in place and restoring it.
inline void expect_grad_matches(const std::string& what, const std::function<double()>& f, double* x,
                                int64_t n, const double* analytic, int samples = 8,
                                double tol = 1e-6, double h = 1e-5) {
  Rng rng(0x5eedull + n);
  for (int s = 0; s < std::min<int64_t>(samples, n); ++s) {
    const int64_t i = n <= samples ? s : static_cast<int64_t>(rng.below(n));
    const double keep = x[i];
    x[i] = keep + h;
    const double up = f();
    x[i] = keep - h;
    const double down = f();
    x[i] = keep;
    const double fd = (up - down) / (2 * h);
    const double scale = std::max({1.0, std::abs(fd), std::abs(analytic[i])});
    EXPECT_NEAR(analytic[i] / scale, fd / scale, tol)
        << what << "[" << i << "]: analytic " << analytic[i] << " vs finite difference " << fd;
  }
}

}  // namespace longctx::test

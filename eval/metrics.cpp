#include "eval/metrics.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace longctx {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

double BucketStats::loss() const { return tokens > 0 ? loss_sum / double(tokens) : kNaN; }
double BucketStats::ppl() const { return std::exp(loss()); }

PositionLoss::PositionLoss(int64_t seq_len, int buckets) : T_(seq_len) {
  LONGCTX_CHECK(seq_len > 0 && buckets > 0, "PositionLoss: seq_len ", seq_len, ", buckets ",
                buckets);
  const int64_t n = std::min<int64_t>(buckets, seq_len);
  width_ = (seq_len + n - 1) / n;
  for (int64_t s = 0; s < seq_len; s += width_)
    buckets_.push_back({s, std::min(seq_len, s + width_), 0.0, 0});
}

void PositionLoss::add(int64_t position, double loss) {
  LONGCTX_CHECK(position >= 0 && position < T_, "PositionLoss: position ", position,
                " outside [0, ", T_, ")");
  BucketStats& b = buckets_[size_t(position / width_)];
  b.loss_sum += loss;
  ++b.tokens;
  loss_sum_ += loss;
  ++tokens_;
}

void PositionLoss::add(const float* losses, const uint8_t* counted) {
  for (int64_t t = 0; t < T_; ++t)
    if (counted[t]) add(t, losses[t]);
}

double PositionLoss::loss() const { return tokens_ > 0 ? loss_sum_ / double(tokens_) : kNaN; }
double PositionLoss::ppl() const { return std::exp(loss()); }

Confusion::Confusion(int classes) : K_(classes), counts_(size_t(classes) * classes, 0) {
  LONGCTX_CHECK(classes > 0, "Confusion: ", classes, " classes");
}

void Confusion::add(int truth, int predicted) {
  if (truth < 0 || truth >= K_ || predicted < 0 || predicted >= K_)
    throw Error(str("class ", truth < 0 || truth >= K_ ? truth : predicted, " is outside [0, ",
                    K_, ")"));
  ++counts_[size_t(truth) * K_ + predicted];
}

int64_t Confusion::total() const {
  int64_t n = 0;
  for (const int64_t c : counts_) n += c;
  return n;
}

double Confusion::accuracy() const {
  int64_t right = 0;
  for (int k = 0; k < K_; ++k) right += at(k, k);
  const int64_t n = total();
  return n > 0 ? double(right) / double(n) : kNaN;
}

std::vector<double> Confusion::f1() const {
  std::vector<double> out(size_t(K_), kNaN);
  for (int k = 0; k < K_; ++k) {
    int64_t fp = 0, fn = 0;
    for (int j = 0; j < K_; ++j) {
      if (j == k) continue;
      fp += at(j, k);
      fn += at(k, j);
    }
    const int64_t tp = at(k, k);
    if (tp + fp + fn > 0) out[size_t(k)] = 2.0 * double(tp) / double(2 * tp + fp + fn);
  }
  return out;
}

double Confusion::macro_f1() const {
  double sum = 0;
  int n = 0;
  for (const double f : f1())
    if (!std::isnan(f)) {
      sum += f;
      ++n;
    }
  return n > 0 ? sum / n : kNaN;
}

std::vector<std::vector<int64_t>> Confusion::matrix() const {
  std::vector<std::vector<int64_t>> m(static_cast<size_t>(K_),
                                      std::vector<int64_t>(static_cast<size_t>(K_), 0));
  for (int t = 0; t < K_; ++t)
    for (int p = 0; p < K_; ++p) m[size_t(t)][size_t(p)] = at(t, p);
  return m;
}

int argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return int(best);
}

}  // namespace longctx

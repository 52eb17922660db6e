// The numbers evaluation reports, as plain functions over plain inputs so that each can be
// checked against values computed by hand.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace longctx {

// Mean loss and perplexity of a token stream, overall and per position bucket: bucket k holds
// positions [k·width, (k+1)·width) of each sequence. The per-bucket curve shows whether later
// tokens (which see more context) are predicted better.
struct BucketStats {
  int64_t start = 0, end = 0;  // positions [start, end)
  double loss_sum = 0;
  int64_t tokens = 0;
  double loss() const;  // mean (NaN when empty)
  double ppl() const;   // exp(loss)
};

class PositionLoss {
 public:
  // seq_len positions cut into `buckets` of width ceil(seq_len / buckets) (the last may be
  // shorter).
  PositionLoss(int64_t seq_len, int buckets);
  // losses[T], counted[T] (0: position not a target) of one sequence.
  void add(const float* losses, const uint8_t* counted);
  void add(int64_t position, double loss);
  double loss() const;  // mean over every counted token
  double ppl() const;
  int64_t tokens() const { return tokens_; }
  const std::vector<BucketStats>& buckets() const { return buckets_; }

 private:
  int64_t T_, width_;
  std::vector<BucketStats> buckets_;
  double loss_sum_ = 0;
  int64_t tokens_ = 0;
};

// Confusion matrix of a K-class classifier: counts[truth][predicted].
class Confusion {
 public:
  explicit Confusion(int classes);
  // Throws for a label outside [0, classes).
  void add(int truth, int predicted);
  int classes() const { return K_; }
  int64_t total() const;
  int64_t at(int truth, int predicted) const { return counts_[size_t(truth) * K_ + predicted]; }
  double accuracy() const;
  // Per-class F1 = 2·TP / (2·TP + FP + FN); a class that never occurs and is never predicted
  // has no F1 and is left out of the macro mean (scikit-learn would count it as 0 with a
  // warning; leaving it out keeps a small evaluation set from being punished for a class it
  // does not hold).
  std::vector<double> f1() const;  // NaN for such classes
  double macro_f1() const;
  std::vector<std::vector<int64_t>> matrix() const;

 private:
  int K_;
  std::vector<int64_t> counts_;
};

// Index of the largest of n values (the first on ties).
int argmax(const float* x, int64_t n);

}  // namespace longctx

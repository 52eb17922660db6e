// Helpers shared by the tests: seeded random tensors, error norms, running the CLI.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace longctx {
struct Config;
}

namespace longctx::test {

// Trains cfg.train.steps steps; returns the mean loss of the last `window` steps over that of
// the first `window` (below 1: the loss fell). The first values go to *first, *last if given.
double train_loss_ratio(const Config& cfg, int window, double* first = nullptr,
                        double* last = nullptr);

// Normal(0, std) values from a fixed seed.
template <class T>
std::vector<T> randn(int64_t n, uint64_t seed, double std = 1.0);

// ‖a − b‖ / max(‖b‖, tiny): the relative error of a against the reference b.
template <class A, class B>
double rel_err(const std::vector<A>& a, const std::vector<B>& b);

template <class A, class B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b);

// Σ a·b. With fixed random weights w, Σ w·out turns a layer into a scalar function to
// difference.
inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Runs a shell command; returns its exit status, and its stdout+stderr in *output.
int run_command(const std::string& cmd, std::string* output);

// Runs the longctx binary with `args`; its stdout+stderr, and the exit status in *code.
std::string run_cli(const std::string& args, int* code);

// The JSON objects of DIR/metrics.jsonl, one per line.
std::vector<nlohmann::json> read_metrics(const std::string& dir);

// Flips bit `bit` of the byte at offset `at` of the file (a negative `at`: the middle byte).
void flip_bit(const std::string& path, int64_t at, int bit);

// A fresh empty directory under the build tree's temp area.
std::string temp_dir(const std::string& name);

}  // namespace longctx::test

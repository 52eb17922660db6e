#include "tests/test_util.h"

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/rng.h"
#include "trainer/trainer.h"

namespace longctx::test {

template <class T>
std::vector<T> randn(int64_t n, uint64_t seed, double std) {
  Rng rng(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(std * rng.normal());
  return v;
}

template <class A, class B>
double rel_err(const std::vector<A>& a, const std::vector<B>& b) {
  if (a.size() != b.size()) throw std::runtime_error("rel_err: size mismatch");
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

template <class A, class B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b) {
  if (a.size() != b.size()) throw std::runtime_error("max_abs_diff: size mismatch");
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
  return m;
}

template std::vector<float> randn<float>(int64_t, uint64_t, double);
template std::vector<double> randn<double>(int64_t, uint64_t, double);
template double rel_err(const std::vector<float>&, const std::vector<float>&);
template double rel_err(const std::vector<float>&, const std::vector<double>&);
template double rel_err(const std::vector<double>&, const std::vector<double>&);
template double max_abs_diff(const std::vector<float>&, const std::vector<float>&);
template double max_abs_diff(const std::vector<float>&, const std::vector<double>&);
template double max_abs_diff(const std::vector<double>&, const std::vector<double>&);

int run_command(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  std::array<char, 4096> buf;
  std::string out;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

double train_loss_ratio(const Config& cfg, int window, double* first, double* last) {
  Trainer t(cfg);
  double a = 0, b = 0;
  for (int s = 0; s < cfg.train.steps; ++s) {
    const double loss = t.step().loss;
    if (s < window) a += loss / window;
    if (s >= cfg.train.steps - window) b += loss / window;
  }
  if (first) *first = a;
  if (last) *last = b;
  return b / a;
}

std::string run_cli(const std::string& args, int* code) {
  std::string out;
  *code = run_command(std::string(LONGCTX_BINARY) + " " + args, &out);
  return out;
}

std::vector<nlohmann::json> read_metrics(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

void flip_bit(const std::string& path, int64_t at, int bit) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  if (at < 0) {
    f.seekg(0, std::ios::end);
    at = int64_t(f.tellg()) / 2;
  }
  f.seekg(at);
  char c = 0;
  f.read(&c, 1);
  c = char(c ^ (1 << bit));
  f.seekp(at);
  f.write(&c, 1);
}

std::string temp_dir(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("longctx_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

}  // namespace longctx::test

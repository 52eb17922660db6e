#include "eval/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace longctx {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int32_t sample_token(const float* logits, int64_t V, const SamplingOptions& opt, Rng& rng) {
  LONGCTX_CHECK(V > 0, "sampling from an empty vocabulary");
  if (opt.temperature < 0 || opt.top_k < 0)
    throw Error(str("sampling needs temperature >= 0 and top_k >= 0, got ", opt.temperature,
                    " and ", opt.top_k));
  if (opt.temperature == 0)
    return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
  // The candidates, most likely first (ties: the lower id), cut to top_k.
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  const int64_t k = opt.top_k > 0 ? std::min<int64_t>(opt.top_k, V) : V;
  auto more_likely = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), more_likely);
  // p_i ∝ exp((l_i − l_max) / T), in double: a low temperature must not overflow or lose mass.
  std::vector<double> p(static_cast<size_t>(k));
  double sum = 0;
  for (int64_t i = 0; i < k; ++i)
    sum += p[i] = std::exp((double(logits[ids[i]]) - double(logits[ids[0]])) / opt.temperature);
  double u = rng.uniform() * sum;
  for (int64_t i = 0; i < k; ++i) {
    u -= p[i];
    if (u < 0) return ids[i];
  }
  return ids[k - 1];  // u landed on the rounding of the last subtraction
}

Generation generate(Decoder& dec, const std::vector<int32_t>& prompt, const SamplingOptions& opt) {
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n == 0) throw Error("the prompt is empty: generation needs at least one token");
  if (opt.max_new < 0) throw Error(str("max_new must be >= 0, got ", opt.max_new));
  if (n + opt.max_new > dec.context_len())
    throw Error(str("the prompt (", n, " tokens) plus ", opt.max_new, " new tokens is ",
                    n + opt.max_new, " positions, beyond the decoder's context length ",
                    dec.context_len()));
  Generation g;
  g.prompt_tokens = n;
  dec.reset();
  dec.cache().reserve(n + opt.max_new);
  Rng rng = Rng::stream(opt.seed, 0x73616d706c65ull);  // "sample"
  // One untimed step first: the first call pays for starting OpenMP's threads, which would
  // otherwise be charged to the prefill rate of a short prompt.
  dec.step(prompt[0]);
  dec.reset();

  auto t0 = std::chrono::steady_clock::now();
  const float* logits = nullptr;
  for (int32_t t : prompt) logits = dec.step(t);
  g.prefill_s = seconds_since(t0);

  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < opt.max_new; ++i) {
    const int32_t t = sample_token(logits, dec.vocab_size(), opt, rng);
    g.ids.push_back(t);
    logits = dec.step(t);
    if (t == opt.eos_id) {
      g.stopped_at_eos = true;
      break;
    }
  }
  g.decode_s = seconds_since(t0);
  g.prefill_tokens_per_s = g.prefill_s > 0 ? double(n) / g.prefill_s : 0.0;
  g.decode_tokens_per_s = g.decode_s > 0 ? double(g.ids.size()) / g.decode_s : 0.0;
  return g;
}

}  // namespace longctx

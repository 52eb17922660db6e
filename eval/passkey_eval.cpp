// passkey: can the model fetch a key planted anywhere in its context? The prompts have the
// synthetic passkey task's format (data/synthetic.h): a filler cycle over the alphabet with
// "KEY d1..d5" at a chosen depth, ending in "QUERY d1..d5". A prompt counts as retrieved when
// every key digit after QUERY is the model's top prediction; greedy decoding then writes the
// key exactly, so no decoding is needed.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "data/synthetic.h"
#include "eval/eval_model.h"
#include "eval/metrics.h"
#include "eval/tasks.h"
#include "model/cross_entropy.h"

namespace longctx {

namespace {

constexpr int kDigits = SyntheticData::kKeyDigits;
constexpr int64_t kMinLength = 2 * kDigits + 4;

std::vector<int> default_lengths(const Config& cfg) {
  if (!cfg.eval.passkey_lengths.empty()) return cfg.eval.passkey_lengths;
  std::vector<int> out;
  for (int div : {4, 2, 1}) {
    const int L = cfg.data.seq_len / div;
    if (L >= kMinLength && (out.empty() || out.back() != L)) out.push_back(L);
  }
  return out;
}

std::vector<double> depths(int n) {
  if (n == 1) return {0.5};
  std::vector<double> d;
  for (int k = 0; k < n; ++k) d.push_back(double(k) / double(n - 1));
  return d;
}

}  // namespace

PasskeyPrompt passkey_prompt(const Config& cfg, int64_t L, double depth, int64_t trial) {
  const int V = cfg.model.vocab_size, A = cfg.data.synthetic.alphabet;
  const int32_t key = V - 3, query = V - 2;  // SyntheticData's markers
  const int64_t n = L + 1;                   // the sequence; inputs are its first L tokens
  const int64_t body = n - 1 - kDigits;      // where QUERY goes
  Rng rng = Rng::stream(cfg.run.seed, 0x9A55ull, uint64_t(L), std::llround(depth * 1e6),
                        uint64_t(trial));
  std::vector<int32_t> seq(static_cast<size_t>(n));
  for (int64_t i = 0; i < body; ++i) seq[size_t(i)] = int32_t(i % A);  // the filler cycle
  const int64_t at = std::llround(depth * double(body - 1 - kDigits));
  seq[size_t(at)] = key;
  for (int i = 0; i < kDigits; ++i) {
    const int32_t d = int32_t(rng.below(A));
    seq[size_t(at + 1 + i)] = d;
    seq[size_t(body + 1 + i)] = d;
  }
  seq[size_t(body)] = query;
  PasskeyPrompt p;
  p.key_at = at;
  p.inputs.assign(seq.begin(), seq.begin() + L);
  p.targets.assign(size_t(L), kIgnoreIndex);
  for (int i = 0; i < kDigits; ++i) p.targets[size_t(body + i)] = seq[size_t(body + 1 + i)];
  return p;
}

ojson eval_passkey(const Config& cfg, const ParamStore<float>& params) {
  if (cfg.data.source != DataSource::synthetic)
    throw ConfigError(str("passkey uses the synthetic passkey format and its marker tokens; this "
                          "model was trained on 'data.source: ", name_of(cfg.data.source), "'"));
  const int V = cfg.model.vocab_size;
  const std::vector<int> lengths = default_lengths(cfg);
  if (lengths.empty())
    throw ConfigError(str("passkey needs contexts of at least ", kMinLength, " tokens; data.seq_len is ",
                          cfg.data.seq_len));
  const bool chosen = !cfg.eval.passkey_lengths.empty();
  std::vector<int> ran;
  ojson skipped = ojson::array();
  const std::vector<double> ds = depths(cfg.eval.passkey_depths);
  const int64_t trials = cfg.eval.passkey_trials;
  ojson grid = ojson::array();
  int64_t right = 0, total = 0, digits_right = 0;
  for (const int L : lengths) {
    if (L < kMinLength)
      throw ConfigError(str("'eval.passkey_lengths' holds ", L, "; a passkey prompt needs at least ",
                            kMinLength, " tokens"));
    if (L > cfg.model.max_seq_len)
      throw ConfigError(str("'eval.passkey_lengths' holds ", L, ", longer than model.max_seq_len (",
                            cfg.model.max_seq_len, ")"));
    std::unique_ptr<Transformer<float>> model;
    try {
      model = build_eval_model(cfg, params, trials, L);
    } catch (const Error& e) {
      // A default length the pattern cannot run (BigBird's minimum) is skipped and reported;
      // a length the user chose is an error.
      if (chosen) throw Error(str("passkey at length ", L, ": ", e.what()));
      skipped.push_back({{"length", L}, {"reason", e.what()}});
      continue;
    }
    ran.push_back(L);
    const int64_t body = L - kDigits;  // where QUERY is
    ojson row = ojson::array();
    for (size_t k = 0; k < ds.size(); ++k) {
      std::vector<int32_t> inputs(size_t(trials * L)), targets(size_t(trials * L), kIgnoreIndex);
      for (int64_t r = 0; r < trials; ++r) {
        const PasskeyPrompt p = passkey_prompt(cfg, L, ds[k], r);
        std::copy(p.inputs.begin(), p.inputs.end(), inputs.begin() + r * L);
        std::copy(p.targets.begin(), p.targets.end(), targets.begin() + r * L);
      }
      int64_t count = 0;
      model->forward(inputs.data(), targets.data(), &count);
      const float* logits = model->logits();
      int64_t cell = 0;
      for (int64_t r = 0; r < trials; ++r) {
        int ok = 0;
        for (int i = 0; i < kDigits; ++i) {
          const int64_t row = r * L + body + i;
          ok += argmax(logits + row * V, V) == targets[size_t(row)];
        }
        digits_right += ok;
        cell += ok == kDigits;
      }
      right += cell;
      total += trials;
      row.push_back(double(cell) / double(trials));
    }
    grid.push_back(row);
  }
  if (ran.empty())
    throw Error(str("passkey: the model runs at none of the lengths ", ojson(lengths).dump(),
                    " (", skipped[0]["reason"].get<std::string>(), ")"));
  ojson r = {{"task", "passkey"}, {"accuracy", double(right) / double(total)},
             {"digit_accuracy", double(digits_right) / double(total * kDigits)},
             {"lengths", ran}, {"depths", ds}, {"trials", trials}, {"grid", grid}};
  if (!skipped.empty()) r["skipped"] = skipped;
  return r;
}

}  // namespace longctx

#include "data/synthetic.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "model/cross_entropy.h"

namespace longctx {

SyntheticData::SyntheticData(const SyntheticConfig& cfg, int vocab_size, int seq_len,
                             uint64_t seed)
    : cfg_(cfg), vocab_(vocab_size), seq_len_(seq_len), seed_(seed) {
  if (cfg.task == SyntheticTask::listops) {  // its own vocabulary; the alphabet does not apply
    LONGCTX_CHECK(vocab_size >= kListOpsVocab, "the listops task needs model.vocab_size >= ",
                  kListOpsVocab, ", got ", vocab_size);
    listops_.min_len = cfg.min_len.is_auto() ? seq_len / 2 : cfg.min_len.value;
    listops_.max_len = seq_len;
    try {  // a range the generator cannot serve fails now, not at some later sample
      listops_check(listops_);
    } catch (const Error& e) {
      throw ConfigError(str("'data.synthetic.task: listops' draws expressions of "
                            "'data.synthetic.min_len' (", listops_.min_len, ") to 'data.seq_len' (",
                            seq_len, ") tokens: ", e.what()));
    }
    return;
  }
  LONGCTX_CHECK(cfg.alphabet >= 2 && cfg.alphabet <= vocab_size - 4,
                "data.synthetic.alphabet must be in [2, vocab_size - 4]");
  if (cfg.task == SyntheticTask::passkey)
    LONGCTX_CHECK(seq_len >= 2 * kKeyDigits + 4, "data.seq_len ", seq_len,
                  " is too short for the passkey task (minimum ", 2 * kKeyDigits + 4, ")");
  if (cfg.task == SyntheticTask::copy)
    LONGCTX_CHECK(seq_len >= 3, "data.seq_len must be at least 3 for the copy task");
}

void SyntheticData::sample(int64_t epoch, int64_t index, int32_t* inputs, int32_t* targets,
                           int32_t* doc) const {
  if (doc) std::fill(doc, doc + seq_len_, 0);
  if (cfg_.task == SyntheticTask::listops) {
    const uint64_t stream = Rng::stream(seed_, 0xDA7Aull, uint64_t(cfg_.task), epoch).next();
    const ListOpsSample s = listops_sample(listops_, stream, index);
    const int64_t n = int64_t(s.tokens.size());
    std::copy(s.tokens.begin(), s.tokens.end(), inputs);
    std::fill(inputs + n, inputs + seq_len_, kListOpsPad);
    std::fill(targets, targets + seq_len_, kIgnoreIndex);
    targets[0] = s.label;
    if (doc) std::fill(doc + n, doc + seq_len_, 1);  // padding: a document of its own
    return;
  }
  Rng rng = Rng::stream(seed_, 0xDA7Aull, static_cast<uint64_t>(cfg_.task), epoch, index);
  const int64_t n = seq_len_ + 1;  // inputs are seq[0, n-1), targets seq[1, n)
  std::vector<int32_t> seq(n);
  std::vector<uint8_t> is_target(n, 1);  // per position of seq: may it be predicted?
  const int32_t A = cfg_.alphabet;
  auto symbol = [&] { return static_cast<int32_t>(rng.below(A)); };

  if (cfg_.task == SyntheticTask::majority) {
    int64_t balance = 0, last = 0;  // count(0) - count(1); the last 0 or 1 breaks a tie
    for (int64_t t = 0; t < seq_len_; ++t) {
      inputs[t] = symbol();
      if (inputs[t] <= 1) {
        balance += inputs[t] == 0 ? 1 : -1;
        last = inputs[t] == 0 ? 1 : 0;
      }
      targets[t] = kIgnoreIndex;
    }
    targets[0] = balance > 0 || (balance == 0 && last == 1) ? 1 : 0;
    return;
  }
  switch (cfg_.task) {
    case SyntheticTask::majority:
    case SyntheticTask::listops:
      break;
    case SyntheticTask::random:
      for (auto& t : seq) t = static_cast<int32_t>(rng.below(vocab_));
      break;
    case SyntheticTask::copy: {
      const int64_t len = (n - 1) / 2;  // seg[len] SEP seg[len] (+ SEP padding when n is even)
      for (int64_t i = 0; i < len; ++i) seq[i] = seq[len + 1 + i] = symbol();
      for (int64_t i = 2 * len + 1; i < n; ++i) seq[i] = sep();
      seq[len] = sep();
      for (int64_t i = 0; i <= len; ++i) is_target[i] = 0;
      break;
    }
    case SyntheticTask::passkey: {
      const int64_t tail = 1 + kKeyDigits;                     // QUERY d1..d5
      const int64_t body = n - tail;                           // filler with the key inside
      const int64_t at = rng.below(body - (1 + kKeyDigits) + 1);  // where KEY goes
      int32_t digits[kKeyDigits];
      for (auto& d : digits) d = symbol();
      for (int64_t i = 0; i < body; ++i) seq[i] = static_cast<int32_t>(i % A);  // filler cycle
      seq[at] = key();
      for (int i = 0; i < kKeyDigits; ++i) {
        seq[at + 1 + i] = digits[i];
        is_target[at + 1 + i] = 0;  // unpredictable when first seen
      }
      // After the key, the filler resumes its cycle where it would have been.
      seq[body] = query();
      for (int i = 0; i < kKeyDigits; ++i) seq[body + 1 + i] = digits[i];
      break;
    }
  }
  for (int64_t t = 0; t + 1 < n; ++t) {
    inputs[t] = seq[t];
    targets[t] = is_target[t + 1] ? seq[t + 1] : kIgnoreIndex;
  }
}

}  // namespace longctx

#include "data/listops.h"

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"

namespace longctx {
namespace {

constexpr double kOperatorP = 0.25;  // LRA's VALUE_P: below max_depth, a node is an operator
constexpr int kMaxAttempts = 100000;  // draws per sample before giving up on the range
constexpr int kProbeDraws = 4096, kProbeHits = 4;  // listops_check: hits needed in so many draws
constexpr uint64_t kDrawStream = 0x11570B5ull, kProbeStream = 0x11570B5C4Eull;

int apply(int op, std::vector<int>& args) {
  switch (op) {
    case kListOpsMax:
      return *std::max_element(args.begin(), args.end());
    case kListOpsMin:
      return *std::min_element(args.begin(), args.end());
    case kListOpsMed: {  // int(np.median(args)): the values are non-negative, / truncates
      std::sort(args.begin(), args.end());
      const size_t n = args.size();
      return n % 2 ? args[n / 2] : (args[n / 2 - 1] + args[n / 2]) / 2;
    }
    default: {
      int sum = 0;
      for (int a : args) sum += a;
      return sum % 10;
    }
  }
}

// Appends a subtree at `depth` (the root: 1) to `out` and returns its value; -1 as soon as `out`
// holds more than `cap` tokens: the draw is then rejected, and finishing it would be wasted work.
int grow(Rng& rng, const ListOpsConfig& c, int depth, size_t cap, std::vector<int32_t>& out) {
  const bool op = depth == 1 || (depth < c.max_depth && rng.uniform() < kOperatorP);
  if (!op) {
    const int digit = static_cast<int>(rng.below(10));
    out.push_back(digit);
    return digit;
  }
  const int n = 2 + static_cast<int>(rng.below(uint64_t(c.max_args - 1)));  // 2..max_args
  const int which = kListOpsMax + static_cast<int>(rng.below(4));
  out.push_back(which);
  std::vector<int> args;
  args.reserve(size_t(n));
  for (int i = 0; i < n; ++i) {
    const int v = grow(rng, c, depth + 1, cap, out);
    if (v < 0 || out.size() > cap) return -1;
    args.push_back(v);
  }
  out.push_back(kListOpsEnd);
  if (out.size() > cap) return -1;
  return apply(which, args);
}

// One unconditioned draw; true when its length lies in the range.
bool draw(Rng rng, const ListOpsConfig& c, ListOpsSample& s) {
  s.tokens.clear();
  s.label = grow(rng, c, 1, size_t(c.max_len), s.tokens);
  return s.label >= 0 && int64_t(s.tokens.size()) >= c.min_len;
}

std::string range(const ListOpsConfig& c) { return str("[", c.min_len, ", ", c.max_len, "]"); }

void check_possible(const ListOpsConfig& c) {
  LONGCTX_CHECK(c.max_depth >= 1 && c.max_args >= 2, "ListOps needs max_depth >= 1 and "
                "max_args >= 2, got ", c.max_depth, " and ", c.max_args);
  if (c.max_len < kListOpsShortest || c.min_len > c.max_len)
    throw Error(str("ListOps: no expression has a length in ", range(c),
                    " tokens (the shortest, [MAX d d ], has ", kListOpsShortest, ")"));
}

}  // namespace

ListOpsSample listops_sample(const ListOpsConfig& cfg, uint64_t seed, int64_t index) {
  check_possible(cfg);
  ListOpsSample s;
  // Each attempt has its own stream: a draw abandoned early leaves the next one unchanged.
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt)
    if (draw(Rng::stream(seed, kDrawStream, index, attempt), cfg, s)) return s;
  throw Error(str("ListOps: none of ", kMaxAttempts, " expressions drawn for sample ", index,
                  " has a length in ", range(cfg), " tokens (max depth ", cfg.max_depth,
                  ", up to ", cfg.max_args, " arguments): choose a wider or shorter range"));
}

void listops_check(const ListOpsConfig& cfg) {
  check_possible(cfg);
  ListOpsSample s;
  int hits = 0;
  for (int i = 0; i < kProbeDraws && hits < kProbeHits; ++i)
    hits += draw(Rng::stream(0, kProbeStream, i), cfg, s);
  if (hits < kProbeHits)
    throw Error(str("ListOps: expressions with a length in ", range(cfg), " tokens are too rare "
                    "(", hits, " of ", kProbeDraws, " draws; max depth ", cfg.max_depth,
                    ", up to ", cfg.max_args, " arguments, so lengths beyond about 4000 "
                    "are rare): choose a wider or shorter range"));
}

std::string listops_text(const std::vector<int32_t>& tokens) {
  static const char* const names[] = {"[MAX", "[MIN", "[MED", "[SM", "]", "<pad>"};
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t >= kListOpsVocab)
      throw Error(str("ListOps token ", i, " is ", t, ", outside the vocabulary [0, ",
                      kListOpsVocab, ")"));
    if (i) out += ' ';
    out += t < 10 ? std::string(1, char('0' + t)) : std::string(names[t - 10]);
  }
  return out;
}

}  // namespace longctx

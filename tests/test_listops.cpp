// ListOps: every generated expression is re-read from its text by a parser written here from the
// task's definition (not from the generator) and must evaluate to the sample's label; lengths,
// determinism, label balance, the synthetic task's padding and documents, and its config keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "data/listops.h"
#include "data/sample_source.h"
#include "data/synthetic.h"
#include "model/cross_entropy.h"

namespace longctx {
namespace {

// The oracle: recursive descent over the words of the text rendering.
//   expr := digit | op expr expr... "]"      op := "[MAX" | "[MIN" | "[MED" | "[SM"
struct Parsed {
  int value = -1;
  int depth = 0;  // of the deepest node, the root at 1
  std::map<std::string, int> ops;  // operator -> how often
  std::set<int> arg_counts;
};

class Parser {
 public:
  explicit Parser(const std::string& text) {
    std::istringstream in(text);
    for (std::string w; in >> w;) words_.push_back(w);
  }
  // The value of the whole text; fails the test on anything malformed.
  Parsed parse() {
    Parsed p;
    p.value = expr(1, p);
    EXPECT_EQ(at_, words_.size()) << "words after the expression";
    return p;
  }

 private:
  int expr(int depth, Parsed& p) {
    p.depth = std::max(p.depth, depth);
    if (at_ >= words_.size()) {
      ADD_FAILURE() << "text ends inside an expression";
      return -1;
    }
    const std::string w = words_[at_++];
    if (w.size() == 1 && w[0] >= '0' && w[0] <= '9') return w[0] - '0';
    if (w != "[MAX" && w != "[MIN" && w != "[MED" && w != "[SM") {
      ADD_FAILURE() << "unexpected word '" << w << "'";
      return -1;
    }
    ++p.ops[w];
    std::vector<double> args;
    while (at_ < words_.size() && words_[at_] != "]") args.push_back(expr(depth + 1, p));
    if (at_ >= words_.size()) {
      ADD_FAILURE() << "unclosed " << w;
      return -1;
    }
    ++at_;  // "]"
    p.arg_counts.insert(int(args.size()));
    std::sort(args.begin(), args.end());
    const size_t n = args.size();
    if (w == "[MAX") return int(args.back());
    if (w == "[MIN") return int(args.front());
    if (w == "[SM") {
      double sum = 0;
      for (double a : args) sum += a;
      return int(std::fmod(sum, 10.0));
    }
    // The median as numpy takes it (the mean of the middle two for an even count), then int().
    const double med = n % 2 ? args[n / 2] : 0.5 * (args[n / 2 - 1] + args[n / 2]);
    return int(std::trunc(med));
  }

  std::vector<std::string> words_;
  size_t at_ = 0;
};

int value_of(const std::string& text) { return Parser(text).parse().value; }

// The oracle itself, on expressions worked out by hand.
TEST(ListOps, OracleEvaluatesKnownExpressions) {
  EXPECT_EQ(value_of("[MAX 2 9 [MIN 4 7 ] 0 ]"), 9);
  EXPECT_EQ(value_of("[MIN 5 [MAX 1 3 ] 8 ]"), 3);
  EXPECT_EQ(value_of("[MED 1 2 ]"), 1);          // 1.5 -> 1
  EXPECT_EQ(value_of("[MED 3 8 1 9 ]"), 5);      // (3 + 8) / 2 = 5.5 -> 5
  EXPECT_EQ(value_of("[MED 7 0 4 ]"), 4);
  EXPECT_EQ(value_of("[SM 9 9 9 ]"), 7);         // 27 mod 10
  EXPECT_EQ(value_of("[SM [MAX 9 1 ] [MED 8 9 ] 5 ]"), 2);  // 9 + 8 + 5 = 22
}

TEST(ListOps, TextRendersTheVocabulary) {
  EXPECT_EQ(listops_text({kListOpsMax, 2, 9, kListOpsMin, 4, 7, kListOpsEnd, 0, kListOpsEnd}),
            "[MAX 2 9 [MIN 4 7 ] 0 ]");
  EXPECT_EQ(listops_text({kListOpsMed, 1, 2, kListOpsEnd, kListOpsSum, kListOpsPad}),
            "[MED 1 2 ] [SM <pad>");
  try {
    listops_text({1, 16});
    FAIL() << "an id outside the vocabulary must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token 1 is 16"), std::string::npos) << e.what();
  }
}

// Every sample of several ranges, short to LRA's own [500, 2000]: parses, evaluates to its label,
// lies in the range, keeps to the generator's limits.
TEST(ListOps, EverySampleEvaluatesToItsLabel) {
  struct Range {
    int lo, hi, n;
  };
  for (const Range r : {Range{4, 6, 500}, Range{8, 32, 1500}, Range{100, 300, 400},
                        Range{500, 2000, 200}}) {
    const ListOpsConfig cfg{r.lo, r.hi};
    std::map<std::string, int> ops;
    std::set<int> arg_counts;
    int deepest = 0;
    for (int64_t i = 0; i < r.n; ++i) {
      const ListOpsSample s = listops_sample(cfg, 77, i);
      const std::string text = listops_text(s.tokens);
      SCOPED_TRACE(testing::Message() << "[" << r.lo << ", " << r.hi << "] sample " << i << ": "
                                      << text.substr(0, 200));
      const int64_t n = int64_t(s.tokens.size());
      ASSERT_GE(n, r.lo);
      ASSERT_LE(n, r.hi);
      ASSERT_GE(s.tokens[0], kListOpsMax);  // the root is an operator
      ASSERT_LE(s.tokens[0], kListOpsSum);
      ASSERT_EQ(std::count(s.tokens.begin(), s.tokens.end(), kListOpsPad), 0);
      const Parsed p = Parser(text).parse();
      ASSERT_EQ(p.value, s.label);
      ASSERT_GE(s.label, 0);
      ASSERT_LT(s.label, kListOpsClasses);
      for (const auto& [op, k] : p.ops) ops[op] += k;
      arg_counts.insert(p.arg_counts.begin(), p.arg_counts.end());
      deepest = std::max(deepest, p.depth);
    }
    EXPECT_LE(deepest, 10);
    EXPECT_EQ(ops.size(), 4u) << "every operator appears";
    EXPECT_GE(*arg_counts.begin(), 2);
    EXPECT_LE(*arg_counts.rbegin(), 10);
    if (r.lo >= 100) {  // long expressions use the whole range of argument counts and depth
      EXPECT_EQ(arg_counts.size(), 9u);
      EXPECT_EQ(deepest, 10);
    }
  }
}

TEST(ListOps, SamplesDependOnlyOnSeedAndIndex) {
  const ListOpsConfig cfg{16, 64};
  std::set<std::vector<int32_t>> distinct;
  for (int64_t i = 0; i < 200; ++i) {
    const ListOpsSample a = listops_sample(cfg, 5, i), b = listops_sample(cfg, 5, i);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.label, b.label);
    distinct.insert(a.tokens);
  }
  EXPECT_GE(distinct.size(), 195u);  // different indices: different samples, but for rare repeats
  int same = 0;
  for (int64_t i = 0; i < 50; ++i)
    same += listops_sample(cfg, 5, i).tokens == listops_sample(cfg, 6, i).tokens;
  EXPECT_LE(same, 2) << "another seed gives other samples";
  // Asking out of order changes nothing.
  EXPECT_EQ(listops_sample(cfg, 5, 123).tokens, listops_sample(cfg, 5, 123).tokens);
}

TEST(ListOps, LabelsAreNotDegenerate) {
  for (const ListOpsConfig cfg : {ListOpsConfig{8, 32}, ListOpsConfig{128, 256}}) {
    std::vector<int> count(kListOpsClasses, 0);
    const int n = 2000;
    for (int64_t i = 0; i < n; ++i) ++count[size_t(listops_sample(cfg, 9, i).label)];
    for (int k = 0; k < kListOpsClasses; ++k) {
      EXPECT_GT(count[k], 0) << "class " << k << " never appears in [" << cfg.min_len << ", "
                             << cfg.max_len << "]";
      EXPECT_LT(count[k], n / 2) << "class " << k << " dominates";
    }
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(ListOps, ImpossibleOrRareRangesNameTheRange) {
  std::string msg = error_of([] { listops_sample(ListOpsConfig{2, 3}, 1, 0); });
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shortest"), std::string::npos) << msg;
  msg = error_of([] { listops_sample(ListOpsConfig{40, 30}, 1, 0); });
  EXPECT_NE(msg.find("[40, 30]"), std::string::npos) << msg;
  // Depth 10 keeps expressions far below this: the check says so at once.
  msg = error_of([] { listops_check(ListOpsConfig{20000, 30000}); });
  EXPECT_NE(msg.find("[20000, 30000]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("too rare"), std::string::npos) << msg;
  EXPECT_EQ(error_of([] { listops_check(ListOpsConfig{4, 4}); }), "no error");
  EXPECT_EQ(error_of([] { listops_check(ListOpsConfig{2048, 4096}); }), "no error");
}

// The synthetic task: the expression, PAD to seq_len, the label in targets[0], padding as
// document 1.
TEST(ListOps, SyntheticTaskPadsAndMarksDocuments) {
  SyntheticConfig sc;
  sc.task = SyntheticTask::listops;
  const int T = 48;
  SyntheticData d(sc, 20, T, 3);
  EXPECT_TRUE(d.has_documents());
  std::set<int64_t> lengths;
  for (int64_t i = 0; i < 100; ++i) {
    std::vector<int32_t> in(T), tg(T), doc(T, -7);
    d.sample(0, i, in.data(), tg.data(), doc.data());
    const int64_t n = std::find(in.begin(), in.end(), kListOpsPad) - in.begin();
    ASSERT_GE(n, T / 2);  // min_len auto: seq_len / 2
    ASSERT_LE(n, T);
    lengths.insert(n);
    for (int64_t t = 0; t < T; ++t) {
      ASSERT_EQ(in[t] == kListOpsPad, t >= n) << t;
      ASSERT_EQ(doc[t], t < n ? 0 : 1) << t;
      if (t > 0) {
        ASSERT_EQ(tg[t], kIgnoreIndex) << t;
      }
    }
    ASSERT_EQ(value_of(listops_text(std::vector<int32_t>(in.begin(), in.begin() + n))), tg[0]);
    // The same sample again; another epoch is another sample.
    std::vector<int32_t> in2(T), tg2(T), in3(T), tg3(T);
    d.sample(0, i, in2.data(), tg2.data());
    EXPECT_EQ(in2, in);
    EXPECT_EQ(tg2, tg);
    d.sample(1, i, in3.data(), tg3.data());
    EXPECT_NE(in3, in);
  }
  EXPECT_GT(lengths.size(), 5u);

  sc.min_len = IntOrAuto{6};
  SyntheticData shorter(sc, 16, 10, 3);
  std::vector<int32_t> in(10), tg(10);
  for (int64_t i = 0; i < 50; ++i) {
    shorter.sample(0, i, in.data(), tg.data());
    const auto n = std::find(in.begin(), in.end(), kListOpsPad) - in.begin();
    EXPECT_GE(n, 6);
  }
  sc.min_len = IntOrAuto{9000};
  const std::string msg = error_of([&] { SyntheticData(sc, 16, 10000, 3); });
  EXPECT_NE(msg.find("data.synthetic.min_len"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[9000, 10000]"), std::string::npos) << msg;
}

const char* kListOpsConfig =
    "model: {vocab_size: 16, n_classes: 10, max_seq_len: 64}\nobjective: classify\n"
    "data: {seq_len: 64, synthetic: {task: listops}}\n";

// The listops config with `overrides` ("key=value"); its error message, or "no error".
std::string config_error(const std::vector<std::string>& overrides) {
  return error_of([&] { parse_config(kListOpsConfig, overrides); });
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(ListOps, ConfigKeys) {
  const Config c = parse_config(kListOpsConfig);
  EXPECT_EQ(c.data.synthetic.task, SyntheticTask::listops);
  EXPECT_TRUE(c.data.synthetic.min_len.is_auto());
  EXPECT_TRUE(contains(c.yaml, "task: listops\n    alphabet: 16\n    min_len: auto")) << c.yaml;
  const Config twenty = parse_config(kListOpsConfig, {"data.synthetic.min_len=20"});
  EXPECT_EQ(twenty.data.synthetic.min_len.value, 20);
  EXPECT_EQ(parse_config(twenty.yaml).data.synthetic.min_len.value, 20);

  std::string msg = config_error({"model.n_classes=2"});
  EXPECT_TRUE(contains(msg, "'data.synthetic.task: listops' has 10 classes")) << msg;
  EXPECT_TRUE(contains(msg, "'model.n_classes' is 2")) << msg;
  msg = config_error({"model.vocab_size=12"});
  EXPECT_TRUE(contains(msg, "'model.vocab_size' must be at least 16, got 12")) << msg;
  msg = config_error({"objective=causal_lm"});
  EXPECT_TRUE(contains(msg, "'objective: causal_lm' does not fit 'data.synthetic.task: listops'"))
      << msg;
  msg = config_error({"data.synthetic.min_len=65"});
  EXPECT_TRUE(contains(msg, "'data.synthetic.min_len' (65) must be at most 'data.seq_len' (64)"))
      << msg;
  msg = config_error({"data.seq_len=3"});
  EXPECT_TRUE(contains(msg, "'data.seq_len' of at least 4")) << msg;
  msg = config_error({"data.synthetic.min_len=0"});
  EXPECT_TRUE(contains(msg, "data.synthetic.min_len")) << msg;
  msg = error_of([] { parse_config("data: {synthetic: {task: copy, min_len: 8}}"); });
  EXPECT_TRUE(contains(msg, "'data.synthetic.min_len' applies to")) << msg;
  // The alphabet belongs to the other tasks: a vocabulary of 16 is enough for listops.
  EXPECT_EQ(config_error({}), "no error");
}

// The sample source hands out the documents, so that the trainer masks and pools them.
TEST(ListOps, SampleSourceHasDocuments) {
  const Config c = parse_config(kListOpsConfig);
  const auto src = make_sample_source(c, nullptr);
  EXPECT_TRUE(src->has_documents());
  std::vector<int32_t> in(64), tg(64), doc(64, -1);
  src->read(4, SampleView{in.data(), tg.data(), doc.data()});
  const auto n = std::find(in.begin(), in.end(), kListOpsPad) - in.begin();
  for (int64_t t = 0; t < 64; ++t) EXPECT_EQ(doc[t], t < n ? 0 : 1) << t;
  EXPECT_FALSE(make_sample_source(parse_config(""), nullptr)->has_documents());
}

}  // namespace
}  // namespace longctx

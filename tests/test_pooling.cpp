// The classifier on padded samples: with the padding as a document of its own and each sample's
// real length, a padded sample gives the logits and gradients of its document run alone at its
// own length, for both poolings and every pattern (linformer, which has no document mask, by
// keeping the padding out of its projections); and against finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/cross_entropy.h"
#include "model/transformer.h"
#include "tests/grad_check.h"

namespace longctx {
namespace {

constexpr int64_t kClasses = 3;

struct Tiny {
  ModelConfig m;
  AttentionConfig a;
  explicit Tiny(Pattern p, Pool pool) {
    m.vocab_size = 11;
    m.d_model = 8;
    m.n_layer = 2;
    m.n_head = 2;
    m.d_ff = 12;
    m.max_seq_len = 16;
    m.init_std = 0.3;  // large enough that every path carries a visible gradient
    m.n_classes = kClasses;
    m.pool = pool;
    a.pattern = p;
    a.block_size = 4;
    a.window = 3;
    a.global_tokens = {0};
    a.strided.stride = IntOrAuto{3};
    a.linformer.k = 3;
  }
};

// A batch of samples of T positions: random tokens everywhere (the padding too, so that it
// would show if it leaked), document 0 then 1, labels at position 0.
struct Padded {
  int64_t B, T;
  std::vector<int64_t> lengths;
  std::vector<int32_t> in, tg, doc;
  Padded(int64_t T, std::vector<int64_t> lens) : B(int64_t(lens.size())), T(T), lengths(lens) {
    Rng rng(17);
    in.resize(size_t(B * T));
    for (auto& x : in) x = int32_t(rng.below(11));
    tg.assign(size_t(B * T), kIgnoreIndex);
    doc.resize(size_t(B * T));
    for (int64_t b = 0; b < B; ++b) {
      tg[b * T] = int32_t(b % kClasses);
      for (int64_t t = 0; t < T; ++t) doc[b * T + t] = t < lengths[b] ? 0 : 1;
    }
  }
  BatchStructure structure(bool with_doc, bool with_lengths) const {
    BatchStructure bs;
    if (with_doc) bs.doc = doc.data();
    if (with_lengths) bs.lengths = lengths;
    return bs;
  }
};

double max_diff(const double* a, const double* b, int64_t n) {
  double d = 0;
  for (int64_t i = 0; i < n; ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// The oracle: each document alone, at its own length, with the same parameters. Logits row by
// row; gradients of the summed losses against the sum of the documents' gradients.
TEST(Pooling, PaddedSampleEqualsTheDocumentAlone) {
  for (Pattern p : {Pattern::dense, Pattern::flash, Pattern::longformer, Pattern::strided,
                    Pattern::linformer})
    for (Pool pool : {Pool::mean, Pool::cls}) {
      SCOPED_TRACE(testing::Message() << name_of(p) << " | pool " << name_of(pool));
      const Tiny t(p, pool);
      const Padded s(12, {5, 12, 9, 1});
      Transformer<double> padded(t.m, t.a, s.B, s.T, Recompute::none, Objective::classify);
      padded.init(3);
      padded.set_batch(s.structure(p != Pattern::linformer, true));
      int64_t count = 0;
      padded.forward(s.in.data(), s.tg.data(), &count);
      EXPECT_EQ(count, s.B);
      const std::vector<double> logits(padded.logits(), padded.logits() + s.B * kClasses);
      padded.params().zero_grads();
      padded.backward(s.in.data(), s.tg.data(), 1.0);

      std::vector<double> want_grads(padded.params().grads.size(), 0.0);
      for (int64_t b = 0; b < s.B; ++b) {
        const int64_t len = s.lengths[b];
        Transformer<double> alone(t.m, t.a, 1, len, Recompute::none, Objective::classify);
        alone.init(3);
        alone.forward(s.in.data() + b * s.T, s.tg.data() + b * s.T, &count);
        EXPECT_LT(max_diff(alone.logits(), logits.data() + b * kClasses, kClasses), 1e-12)
            << "sample " << b << " of length " << len;
        alone.params().zero_grads();
        alone.backward(s.in.data() + b * s.T, s.tg.data() + b * s.T, 1.0);
        for (size_t i = 0; i < want_grads.size(); ++i) want_grads[i] += alone.params().grads[i];
      }
      double scale = 0;
      for (double g : want_grads) scale = std::max(scale, std::abs(g));
      EXPECT_GT(scale, 1e-3);
      EXPECT_LT(max_diff(padded.params().grads.data(), want_grads.data(),
                         int64_t(want_grads.size())),
                1e-12 * scale);
    }
}

// Without the lengths, mean pooling averages the padding in as well: the oracle tells them apart
// (so the test above could fail); position 0's state (cls) does not change.
TEST(Pooling, WithoutLengthsThePaddingCounts) {
  for (Pool pool : {Pool::mean, Pool::cls}) {
    const Tiny t(Pattern::flash, pool);
    const Padded s(12, {5});
    Transformer<double> padded(t.m, t.a, 1, s.T, Recompute::none, Objective::classify);
    Transformer<double> alone(t.m, t.a, 1, 5, Recompute::none, Objective::classify);
    padded.init(4);
    alone.init(4);
    int64_t count = 0;
    alone.forward(s.in.data(), s.tg.data(), &count);
    padded.set_batch(s.structure(true, false));
    padded.forward(s.in.data(), s.tg.data(), &count);
    const double d = max_diff(alone.logits(), padded.logits(), kClasses);
    if (pool == Pool::mean)
      EXPECT_GT(d, 1e-6);
    else
      EXPECT_LT(d, 1e-12);
  }
}

// Every parameter's gradient of the mean loss with lengths set, against finite differences:
// dense with its document mask, and linformer, whose projections and pooling leave the
// padding out.
TEST(Pooling, FiniteDifferencesWithLengths) {
  for (Pattern p : {Pattern::dense, Pattern::linformer}) {
    SCOPED_TRACE(name_of(p));
    const Tiny t(p, Pool::mean);
    const Padded s(6, {3, 6});
    Transformer<double> model(t.m, t.a, s.B, s.T, Recompute::none, Objective::classify);
    model.init(7);
    model.set_batch(s.structure(p != Pattern::linformer, true));
    int64_t count = 0;
    auto loss = [&] { return model.forward(s.in.data(), s.tg.data(), &count) / double(count); };
    loss();
    ParamStore<double>& st = model.params();
    st.zero_grads();
    model.backward(s.in.data(), s.tg.data(), 1.0 / double(count));
    const std::vector<double> grads = st.grads;
    for (const ParamInfo& info : st.infos())
      test::expect_grad_matches(info.name, loss, st.values.data() + info.offset,
                                info.shape.numel(), grads.data() + info.offset, 6, 1e-6);
  }
}

TEST(Pooling, FirstDocumentLengths) {
  const std::vector<int32_t> doc = {0, 0, 0, 1, 1,  0, 0, 0, 0, 0,  3, 4, 4, 4, 4,  2, 2, 5, 2, 2};
  EXPECT_EQ(BatchStructure::first_doc_lengths(doc.data(), 4, 5),
            (std::vector<int64_t>{3, 5, 1, 2}));
}

TEST(Pooling, BadLengthsAreErrors) {
  const Tiny t(Pattern::flash, Pool::mean);
  Transformer<float> model(t.m, t.a, 2, 8, Recompute::none, Objective::classify);
  for (const std::vector<int64_t>& lengths :
       {std::vector<int64_t>{4}, std::vector<int64_t>{0, 8}, std::vector<int64_t>{3, 9}}) {
    BatchStructure bs;
    bs.lengths = lengths;
    EXPECT_THROW(model.set_batch(bs), Error);
  }
}

}  // namespace
}  // namespace longctx

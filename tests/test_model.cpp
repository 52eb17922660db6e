// The whole model: finite-difference gradients in double for every option, recomputation,
// and dense vs flash attention through training.
#include <gtest/gtest.h>

#include <vector>

#include "model/cross_entropy.h"
#include "model/transformer.h"
#include "tests/grad_check.h"
#include "tests/test_util.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

struct Tiny {
  ModelConfig m;
  AttentionConfig a;
  Tiny() {
    m.vocab_size = 11;
    m.d_model = 8;
    m.n_layer = 2;
    m.n_head = 2;
    m.d_ff = 12;
    m.max_seq_len = 16;
    m.init_std = 0.3;  // large enough that every path carries a visible gradient
    a.block_size = 4;
  }
};

std::vector<int32_t> tokens(int64_t n, int V, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng.below(V));
  return t;
}

// Every parameter's gradient of the mean loss against finite differences, on sampled entries.
// Every parameter must also receive a gradient (but wpe rows past the sequence).
void expect_model_gradients(Transformer<double>& model, const std::vector<int32_t>& in,
                            const std::vector<int32_t>& tg, const std::string& label) {
  int64_t count = 0;
  auto loss = [&] { return model.forward(in.data(), tg.data(), &count) / double(count); };
  loss();
  ParamStore<double>& st = model.params();
  st.zero_grads();
  model.backward(in.data(), tg.data(), 1.0 / double(count));
  const std::vector<double> grads = st.grads;
  for (const ParamInfo& p : st.infos()) {
    double gmax = 0;
    for (int64_t i = 0; i < p.shape.numel(); ++i)
      gmax = std::max(gmax, std::abs(grads[p.offset + i]));
    if (p.name != "wpe") {
      EXPECT_GT(gmax, 1e-8) << label << ": " << p.name << " has no gradient";
    }
    test::expect_grad_matches(label + " " + p.name, loss, st.values.data() + p.offset,
                              p.shape.numel(), grads.data() + p.offset, 6, 1e-6);
  }
}

void check_model_gradients(const ModelConfig& m, const AttentionConfig& a, Recompute rc,
                           const std::string& label) {
  const int64_t B = 2, Tn = 6;
  Transformer<double> model(m, a, B, Tn, rc);
  model.init(7);
  auto tg = tokens(B * Tn, m.vocab_size, 2);
  tg[3] = kIgnoreIndex;  // ignored targets must neither count nor carry gradient
  expect_model_gradients(model, tokens(B * Tn, m.vocab_size, 1), tg, label);
}

// Classification targets: sample b's class at position 0, every other position ignored.
std::vector<int32_t> class_targets(int64_t Tn, const std::vector<int32_t>& labels) {
  std::vector<int32_t> tg(labels.size() * Tn, kIgnoreIndex);
  for (size_t b = 0; b < labels.size(); ++b) tg[b * Tn] = labels[b];
  return tg;
}

TEST(Model, FiniteDifferenceEveryOption) {
  for (Norm n : {Norm::layernorm, Norm::rmsnorm})
    for (Activation act : {Activation::gelu, Activation::swiglu})
      for (Position pos : {Position::rope, Position::learned, Position::none}) {
        Tiny t;
        t.m.norm = n;
        t.m.activation = act;
        t.m.position = pos;
        t.m.tie_embeddings = pos != Position::learned;  // both head variants get covered
        check_model_gradients(t.m, t.a, Recompute::none,
                              str(name_of(n), "/", name_of(act), "/", name_of(pos)));
      }
}

TEST(Model, FiniteDifferenceDenseAndRecompute) {
  Tiny t;
  t.a.pattern = Pattern::dense;
  check_model_gradients(t.m, t.a, Recompute::none, "dense");
  t.a.pattern = Pattern::flash;
  check_model_gradients(t.m, t.a, Recompute::block, "flash+recompute");
}

TEST(Model, RecomputeGivesIdenticalGradients) {
  Tiny t;
  const int64_t B = 2, Tn = 9;
  Transformer<float> plain(t.m, t.a, B, Tn, Recompute::none), rec(t.m, t.a, B, Tn, Recompute::block);
  plain.init(3);
  rec.init(3);
  const auto in = tokens(B * Tn, t.m.vocab_size, 4), tg = tokens(B * Tn, t.m.vocab_size, 5);
  int64_t c1 = 0, c2 = 0;
  EXPECT_EQ(plain.forward(in.data(), tg.data(), &c1), rec.forward(in.data(), tg.data(), &c2));
  plain.backward(in.data(), tg.data(), 0.1f);
  rec.backward(in.data(), tg.data(), 0.1f);
  EXPECT_EQ(plain.params().grads, rec.params().grads);  // same operations, same order
  EXPECT_LT(rec.activation_bytes(), plain.activation_bytes());
}

TEST(Model, TokenOutsideVocabularyIsAnError) {
  Tiny t;
  Transformer<float> model(t.m, t.a, 1, 4);
  std::vector<int32_t> in = {1, 2, 11, 3}, tg = {2, 3, 4, 5};
  int64_t c = 0;
  try {
    model.forward(in.data(), tg.data(), &c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 11"), std::string::npos) << e.what();
  }
}

// Dense and flash are the same function: ten training steps of the quickstart model agree.
TEST(Model, DenseAndFlashTrainAlike) {
  Config cfg = parse_config("");
  cfg.model.n_layer = 2;
  cfg.data.seq_len = 100;  // not a multiple of the block
  cfg.train.micro_batch = 2;
  cfg.train.steps = 10;
  cfg.train.warmup = 2;
  cfg.train.lr = 1e-3;
  std::vector<double> losses[2];
  for (int p = 0; p < 2; ++p) {
    cfg.attention.pattern = p == 0 ? Pattern::dense : Pattern::flash;
    Trainer tr(cfg);
    for (int s = 0; s < cfg.train.steps; ++s) losses[p].push_back(tr.step().loss);
  }
  for (int s = 0; s < cfg.train.steps; ++s)
    EXPECT_NEAR(losses[1][s], losses[0][s], 1e-5 * losses[0][s]) << "step " << s;
  EXPECT_LT(losses[1].back(), losses[1].front());
}

// The classifier: bidirectional encoder, pooled head; both poolings by finite differences.
TEST(Model, ClassifierFiniteDifferences) {
  for (Pool pool : {Pool::mean, Pool::cls}) {
    Tiny t;
    t.m.n_classes = 3;
    t.m.pool = pool;
    const int64_t B = 2, Tn = 5;
    Transformer<double> model(t.m, t.a, B, Tn, Recompute::none, Objective::classify);
    model.init(9);
    expect_model_gradients(model, tokens(B * Tn, t.m.vocab_size, 3), class_targets(Tn, {2, 0}),
                           str("classify/", name_of(pool)));
  }
}

// Bidirectional: with classify, a change at the last position reaches position 0's state,
// which the decoder's causal mask forbids. Checked through the cls pooling of position 0.
TEST(Model, ClassifierSeesTheWholeSequence) {
  Tiny t;
  t.m.pool = Pool::cls;
  const int64_t B = 1, Tn = 6;
  Transformer<double> model(t.m, t.a, B, Tn, Recompute::none, Objective::classify);
  model.init(4);
  std::vector<int32_t> in = {1, 2, 3, 4, 5, 6}, tg(Tn, kIgnoreIndex);
  tg[0] = 1;
  int64_t c = 0;
  const double a = model.forward(in.data(), tg.data(), &c);
  in[5] = 7;
  EXPECT_NE(model.forward(in.data(), tg.data(), &c), a);
}

// The head schemes and linformer through the whole model, by finite differences.
TEST(Model, FiniteDifferenceHeadSchemes) {
  Tiny t;
  t.m.n_head = 2;
  t.m.d_model = 16;  // head dim 8: room for a rope slice
  t.a.heads = HeadScheme::gqa;
  t.a.n_kv_head = 1;
  check_model_gradients(t.m, t.a, Recompute::none, "gqa");
  t.a.heads = HeadScheme::mla;
  t.a.n_kv_head = 0;
  t.a.mla.kv_lora_rank = 6;
  t.a.mla.rope_dim = 4;
  check_model_gradients(t.m, t.a, Recompute::none, "mla");
  check_model_gradients(t.m, t.a, Recompute::block, "mla+recompute");
}

TEST(Model, FiniteDifferenceSparsePatterns) {
  Tiny t;
  t.m.max_seq_len = 32;
  t.a.block_size = 2;
  t.a.pattern = Pattern::longformer;
  t.a.window = 2;
  t.a.dilation = {1, 2};
  t.a.global_tokens = {1};
  check_model_gradients(t.m, t.a, Recompute::none, "longformer");
  t.a.pattern = Pattern::bigbird;
  t.a.bigbird.random_blocks = 1;
  t.a.bigbird.window_blocks = 0;
  check_model_gradients(t.m, t.a, Recompute::none, "bigbird");
  t.a.pattern = Pattern::strided;
  t.a.strided.stride.value = 2;
  check_model_gradients(t.m, t.a, Recompute::block, "strided+recompute");
}

TEST(Model, BigBirdTooShortStatesTheMinimum) {
  Tiny t;
  t.a.pattern = Pattern::bigbird;
  t.a.block_size = 4;
  try {
    Transformer<float> model(t.m, t.a, 1, 8);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("minimum"), std::string::npos) << e.what();
  }
}

TEST(Model, FiniteDifferenceLinformer) {
  for (LinformerShare share : {LinformerShare::headwise, LinformerShare::kv,
                               LinformerShare::layerwise}) {
    Tiny t;
    t.a.pattern = Pattern::linformer;
    t.a.linformer.k = 3;
    t.a.linformer.share = share;
    const int64_t B = 2, Tn = 6;
    Transformer<double> model(t.m, t.a, B, Tn, Recompute::none, Objective::classify);
    model.init(11);
    expect_model_gradients(model, tokens(B * Tn, t.m.vocab_size, 6), class_targets(Tn, {1, 0}),
                           str("linformer/", name_of(share)));
  }
}

Tiny longformer_globals(bool separate) {
  Tiny t;
  t.m.max_seq_len = 32;
  t.a.pattern = Pattern::longformer;
  t.a.block_size = 2;
  t.a.window = 1;
  t.a.global_tokens = {3, 0};
  t.a.separate_global_proj = separate;
  return t;
}

double classify_loss(Transformer<double>& model, int64_t B, int64_t Tn) {
  const auto in = tokens(B * Tn, 11, 12), tg = class_targets(Tn, {1, 0});
  int64_t count = 0;
  return model.forward(in.data(), tg.data(), &count) / double(count);
}

// Initialised as copies, the global projections compute what the shared ones did.
TEST(Model, SeparateGlobalProjectionStartsAsTheSharedOne) {
  const int64_t B = 2, Tn = 7;
  Tiny a = longformer_globals(false), b = longformer_globals(true);
  Transformer<double> shared(a.m, a.a, B, Tn, Recompute::none, Objective::classify);
  Transformer<double> separate(b.m, b.a, B, Tn, Recompute::none, Objective::classify);
  shared.init(5);
  separate.init(5);
  EXPECT_GT(separate.params().size(), shared.params().size());
  EXPECT_NEAR(classify_loss(separate, B, Tn), classify_loss(shared, B, Tn), 1e-12);
}

TEST(Model, FiniteDifferenceSeparateGlobalProjection) {
  const int64_t B = 2, Tn = 7;
  Tiny t = longformer_globals(true);
  t.a.heads = HeadScheme::gqa;
  t.a.n_kv_head = 1;
  Transformer<double> model(t.m, t.a, B, Tn, Recompute::none, Objective::classify);
  model.init(6);
  ParamStore<double>& st = model.params();
  Rng rng(7);  // move the global projections away from their copies
  for (const char* name : {"blocks.0.attn.wq_global", "blocks.1.attn.wk_global",
                           "blocks.1.attn.wv_global"}) {
    const ParamInfo& p = st.infos()[st.find(name)];
    for (int64_t i = 0; i < p.shape.numel(); ++i) st.values[p.offset + i] += 0.2 * rng.normal();
  }
  expect_model_gradients(model, tokens(B * Tn, 11, 12), class_targets(Tn, {1, 0}),
                         "separate_global_proj");
}

// Causal: a global row sees the keys up to its own position, through its own projections.
TEST(Model, FiniteDifferenceSeparateGlobalProjectionCausal) {
  const int64_t B = 2, Tn = 7;
  Tiny t = longformer_globals(true);
  Transformer<double> model(t.m, t.a, B, Tn);
  model.init(8);
  ParamStore<double>& st = model.params();
  Rng rng(9);
  for (const char* name : {"blocks.0.attn.wq_global", "blocks.0.attn.wk_global",
                           "blocks.1.attn.wv_global"}) {
    const ParamInfo& p = st.infos()[st.find(name)];
    for (int64_t i = 0; i < p.shape.numel(); ++i) st.values[p.offset + i] += 0.2 * rng.normal();
  }
  expect_model_gradients(model, tokens(B * Tn, 11, 13), tokens(B * Tn, 11, 14),
                         "separate_global_proj causal");
  // Nothing flows backwards in time: the first targets' losses ignore later inputs.
  auto in = tokens(B * Tn, 11, 13);
  std::vector<int32_t> tg(B * Tn, kIgnoreIndex);
  tg[0] = 1;
  tg[Tn] = 2;
  int64_t count = 0;
  const double before = model.forward(in.data(), tg.data(), &count);
  for (int64_t p = 1; p < Tn; ++p) in[p] = in[Tn + p] = int32_t((in[p] + 3) % 11);
  EXPECT_DOUBLE_EQ(model.forward(in.data(), tg.data(), &count), before);
}

// Two documents packed into one sample with a document mask give the logits each document gets
// alone (RoPE scores depend on relative positions only), for every pattern that has a mask.
TEST(Model, DocumentMaskEqualsSeparateDocuments) {
  const int64_t len1 = 5, len2 = 9, Tn = len1 + len2;
  for (Pattern p : {Pattern::dense, Pattern::flash, Pattern::longformer, Pattern::strided}) {
    Tiny t;
    t.m.max_seq_len = 16;
    t.a.pattern = p;
    t.a.window = 3;
    t.a.global_tokens = {};
    t.a.strided.stride = IntOrAuto{3};
    Transformer<double> packed(t.m, t.a, 1, Tn), alone(t.m, t.a, 1, len2);
    packed.init(3);
    alone.init(3);
    const auto in = tokens(Tn, 11, 21), tg = tokens(Tn, 11, 22);
    std::vector<int32_t> doc(Tn);
    for (int64_t i = 0; i < Tn; ++i) doc[i] = int32_t(i >= len1);
    BatchStructure bs;
    bs.doc = doc.data();
    packed.set_batch(bs);
    int64_t count = 0;
    packed.forward(in.data(), tg.data(), &count);
    alone.forward(in.data() + len1, tg.data() + len1, &count);
    const int64_t V = t.m.vocab_size;
    double err = 0;
    for (int64_t i = 0; i < len2 * V; ++i)
      err = std::max(err, std::abs(packed.logits()[len1 * V + i] - alone.logits()[i]));
    EXPECT_LT(err, 1e-12) << name_of(p);
    // Without the mask the second document sees the first: the oracle can tell them apart.
    packed.set_batch(BatchStructure{});
    packed.forward(in.data(), tg.data(), &count);
    double diff = 0;
    for (int64_t i = 0; i < len2 * V; ++i)
      diff = std::max(diff, std::abs(packed.logits()[len1 * V + i] - alone.logits()[i]));
    EXPECT_GT(diff, 1e-6) << name_of(p);
  }
}

// FLOPs per token: 6 per weight, 6·V·C for the tied head, 12·C per allowed score per layer.
TEST(Model, TrainFlopsCountTheAllowedScores) {
  Tiny t;
  const int64_t Tn = 12;
  t.a.pattern = Pattern::dense;
  Transformer<float> dense(t.m, t.a, 1, Tn);
  const double expect = 6.0 * double(dense.non_embedding_params()) + 6.0 * 11 * 8 +
                        t.m.n_layer * 12.0 * 8 * (Tn + 1) / 2.0;
  EXPECT_DOUBLE_EQ(dense.train_flops_per_token(), expect);
  t.a.pattern = Pattern::flash;
  EXPECT_DOUBLE_EQ(Transformer<float>(t.m, t.a, 1, Tn).train_flops_per_token(), expect);
  // Causal window 2 without globals: query i sees min(i, 2) + 1 keys.
  t.a.pattern = Pattern::longformer;
  t.a.window = 2;
  t.a.global_tokens = {};
  Transformer<float> lf(t.m, t.a, 1, Tn);
  const double scores = (1 + 2 + 3.0 * (Tn - 2)) / Tn;
  EXPECT_DOUBLE_EQ(lf.train_flops_per_token(), 6.0 * double(lf.non_embedding_params()) +
                                                   6.0 * 11 * 8 + t.m.n_layer * 12.0 * 8 * scores);
}

}  // namespace
}  // namespace longctx

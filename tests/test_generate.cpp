// Incremental decoding against the full model: for every head scheme and pattern, the logits
// the Decoder returns at each position equal row t of Transformer::forward on the same sequence
// (run in double, at the decoder's context length: causal masks make the later positions
// irrelevant); greedy generation with the cache equals greedy generation by recomputing the
// whole sequence each token; the cache holds the values per token per layer its head scheme
// should (counted here from the config, not from the cache's own layout); sampling follows the
// softmax it claims; models that cannot decode say why.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <vector>

#include "core/config.h"
#include "core/rng.h"
#include "eval/decoder.h"
#include "eval/generate.h"
#include "eval/kvcache_eval.h"
#include "model/cross_entropy.h"
#include "model/transformer.h"
#include "tests/test_util.h"
#include "trainer/checkpoint_file.h"

namespace longctx {
namespace {

// d_model 32 over 4 heads: head_dim 8. seq_len 40 is the decoder's context length; it is not a
// multiple of the longformer window or the stride, and spans 10 BigBird blocks of 4.
const char* kBaseYaml = R"(
run: {seed: 7}
model: {vocab_size: 37, d_model: 32, n_layer: 2, n_head: 4, d_ff: 48, max_seq_len: 64,
        init_std: 0.3}
attention: {pattern: flash, block_size: 8, mla: {kv_lora_rank: 10, rope_dim: 4}}
data: {seq_len: 40, synthetic: {alphabet: 8}}
)";
constexpr int64_t kL = 40;

struct Case {
  const char* name;
  std::vector<std::string> sets;
  int64_t cache_values;  // per token per layer: 2·Hkv·D, or kv_lora_rank + rope_dim
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

Config config_of(const Case& c) { return parse_config(kBaseYaml, c.sets); }

// A model initialized from the seed, then every value perturbed so that norms and biases are not
// the identity they start as.
ParamStore<float> random_weights(const Config& cfg) {
  Transformer<float> model(cfg.model, cfg.attention, 1, kL, Recompute::none, cfg.objective,
                           cfg.run.seed);
  model.init(cfg.run.seed);
  ParamStore<float> store = model.params();
  const std::vector<float> noise = test::randn<float>(store.size(), 99, 0.1);
  for (int64_t i = 0; i < store.size(); ++i) store.values[i] += noise[i];
  return store;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng.below(uint64_t(vocab)));
  return t;
}

// The full model's logits [kL, V] of `tokens` (padded with zeros to kL), in T.
template <class T>
std::vector<double> full_logits(const Config& cfg, const ParamStore<float>& w,
                                std::vector<int32_t> tokens) {
  tokens.resize(kL, 0);
  Transformer<T> model(cfg.model, cfg.attention, 1, kL, Recompute::none, cfg.objective,
                       cfg.run.seed);
  ParamStore<T>& store = model.params();
  EXPECT_EQ(store.size(), w.size());
  std::copy(w.values.begin(), w.values.end(), store.values.begin());
  const std::vector<int32_t> targets(kL, kIgnoreIndex);
  int64_t count = 0;
  model.forward(tokens.data(), targets.data(), &count);
  return std::vector<double>(model.logits(), model.logits() + kL * cfg.model.vocab_size);
}

int32_t argmax(const double* x, int64_t n) { return int32_t(std::max_element(x, x + n) - x); }

class Decode : public ::testing::TestWithParam<Case> {};

TEST_P(Decode, LogitsEqualTheFullForwardAtEveryPosition) {
  const Config cfg = config_of(GetParam());
  const ParamStore<float> w = random_weights(cfg);
  const int64_t V = cfg.model.vocab_size;
  const std::vector<int32_t> tokens = random_tokens(kL, V, 11);
  const std::vector<double> ref = full_logits<double>(cfg, w, tokens);
  double scale = 0;
  for (double x : ref) scale = std::max(scale, std::abs(x));
  ASSERT_GT(scale, 0.5);  // logits large enough for the comparison to mean something

  Decoder dec(cfg, w, decode_context_len(cfg, kL));
  ASSERT_EQ(dec.context_len(), kL);
  for (int64_t t = 0; t < kL; ++t) {
    const float* got = dec.step(tokens[t]);
    const std::vector<double> row(ref.begin() + t * V, ref.begin() + (t + 1) * V);
    EXPECT_LT(test::rel_err(std::vector<double>(got, got + V), row), 1e-4) << "position " << t;
  }
  EXPECT_EQ(dec.position(), kL);
  EXPECT_THROW(dec.step(0), Error);  // the context is full
}

TEST_P(Decode, GreedyWithTheCacheEqualsGreedyByRecomputation) {
  const Config cfg = config_of(GetParam());
  const ParamStore<float> w = random_weights(cfg);
  const int64_t V = cfg.model.vocab_size, new_tokens = 24;
  const std::vector<int32_t> prompt = random_tokens(6, V, 12);

  std::vector<int32_t> seq = prompt;
  for (int64_t i = 0; i < new_tokens; ++i) {
    const std::vector<double> logits = full_logits<float>(cfg, w, seq);
    seq.push_back(argmax(logits.data() + (seq.size() - 1) * V, V));
  }
  const std::vector<int32_t> want(seq.begin() + int64_t(prompt.size()), seq.end());
  // Not a constant run (without positions, a random model settles on repeating one token).
  if (cfg.model.position != Position::none) {
    ASSERT_GT(std::set<int32_t>(want.begin(), want.end()).size(), 2u);
  }

  Decoder dec(cfg, w, kL);
  SamplingOptions opt;
  opt.max_new = int(new_tokens);
  const Generation g = generate(dec, prompt, opt);
  EXPECT_EQ(g.ids, want);
  EXPECT_EQ(g.prompt_tokens, int64_t(prompt.size()));
  EXPECT_FALSE(g.stopped_at_eos);
  // A second run on the same decoder starts afresh.
  EXPECT_EQ(generate(dec, prompt, opt).ids, want);
  EXPECT_EQ(dec.cache().tokens(), int64_t(prompt.size()) + new_tokens);
}

TEST_P(Decode, CacheHoldsTheValuesOfItsHeadScheme) {
  const Config cfg = config_of(GetParam());
  const ParamStore<float> w = random_weights(cfg);
  Decoder dec(cfg, w, kL);
  const int64_t n = 17, L = cfg.model.n_layer;
  for (int32_t t : random_tokens(n, cfg.model.vocab_size, 13)) dec.step(t);
  const KvCache& c = dec.cache();
  EXPECT_EQ(c.tokens(), n);
  EXPECT_EQ(c.bytes(), n * L * GetParam().cache_values * int64_t(sizeof(float)));
  EXPECT_DOUBLE_EQ(c.bytes_per_token_per_layer(), double(GetParam().cache_values * 4));
  EXPECT_GE(c.capacity_bytes(), c.bytes());
}

TEST_P(Decode, KvcacheEvalMeasuresTheFormula) {
  const Config cfg = config_of(GetParam());
  const nlohmann::json j = kvcache_eval(cfg, random_weights(cfg), 23);
  const int64_t bytes = GetParam().cache_values * 4;
  EXPECT_EQ(j["heads"], name_of(cfg.attention.heads));
  EXPECT_EQ(j["n_layer"], cfg.model.n_layer);
  EXPECT_EQ(j["tokens"], 23);
  EXPECT_EQ(j["cache_bytes"], 23 * cfg.model.n_layer * bytes);
  EXPECT_EQ(double(j["bytes_per_token_per_layer"]), double(bytes));
  EXPECT_EQ(double(j["formula_bytes_per_token_per_layer"]), double(bytes));
  EXPECT_EQ(j["mha_bytes_per_token_per_layer"], 2 * 4 * 8 * 4);  // 2·H·D floats
  EXPECT_DOUBLE_EQ(double(j["ratio_vs_mha"]), double(bytes) / 256.0);
}

// Head schemes × patterns × positions, norms, activations. D = 8: mha 2·4·8, gqa 2·2·8, mqa 2·8,
// mla 10 + 4 values per token per layer.
INSTANTIATE_TEST_SUITE_P(
    Schemes, Decode,
    ::testing::Values(
        Case{"mha_flash_rope_layernorm_gelu", {"attention.heads=mha"}, 64},
        Case{"gqa_dense_learned_rmsnorm_swiglu_untied",
             {"attention.heads=gqa", "attention.n_kv_head=2", "attention.pattern=dense",
              "model.position=learned", "model.norm=rmsnorm", "model.activation=swiglu",
              "model.tie_embeddings=false"},
             32},
        Case{"mqa_flash_none_rmsnorm",
             {"attention.heads=mqa", "model.position=none", "model.norm=rmsnorm"}, 16},
        Case{"mla_flash_rmsnorm_swiglu",
             {"attention.heads=mla", "model.norm=rmsnorm", "model.activation=swiglu"}, 14},
        Case{"mha_longformer_dilated_rope",
             {"attention.pattern=longformer", "attention.window=5", "attention.dilation=[1,2,1,3]",
              "attention.global_tokens=[0]"},
             64},
        Case{"gqa_longformer_globals_learned",
             {"attention.heads=gqa", "attention.n_kv_head=2", "attention.pattern=longformer",
              "attention.window=3", "attention.global_tokens=[0,9]", "model.position=learned"},
             32},
        Case{"mqa_longformer_rmsnorm",
             {"attention.heads=mqa", "attention.pattern=longformer", "attention.window=6",
              "attention.global_tokens=[0]", "model.norm=rmsnorm"},
             16},
        Case{"mla_longformer_dilated",
             {"attention.heads=mla", "attention.pattern=longformer", "attention.window=4",
              "attention.dilation=[1,2,2,1]", "attention.global_tokens=[0]"},
             14},
        Case{"mha_bigbird_swiglu",
             {"attention.pattern=bigbird", "attention.block_size=4", "attention.bigbird.random_blocks=2",
              "model.activation=swiglu"},
             64},
        Case{"gqa_bigbird_learned",
             {"attention.heads=gqa", "attention.n_kv_head=2", "attention.pattern=bigbird",
              "attention.block_size=4", "attention.bigbird.random_blocks=1",
              "model.position=learned"},
             32},
        Case{"mla_bigbird",
             {"attention.heads=mla", "attention.pattern=bigbird", "attention.block_size=4",
              "attention.bigbird.random_blocks=2"},
             14},
        Case{"mha_strided_auto", {"attention.pattern=strided"}, 64},
        Case{"mqa_strided_learned_swiglu",
             {"attention.heads=mqa", "attention.pattern=strided", "attention.strided.stride=5",
              "model.position=learned", "model.activation=swiglu"},
             16},
        Case{"mla_strided_layernorm",
             {"attention.heads=mla", "attention.pattern=strided", "attention.strided.stride=7"},
             14},
        Case{"gqa_dense_rope", {"attention.heads=gqa", "attention.n_kv_head=2",
                                "attention.pattern=dense"}, 32}));

// The cases above decode through sparse masks: a decoder that ignored them (every j <= t) must
// differ from the full model there, or the tests could not see a mask mistake.
TEST(Decode, SparsePatternsDifferFromCausalAttention) {
  for (const char* p : {"longformer", "bigbird", "strided"}) {
    const Config sparse =
        parse_config(kBaseYaml, {std::string("attention.pattern=") + p, "attention.block_size=4",
                                 "attention.window=5", "attention.bigbird.random_blocks=1"});
    const Config causal = parse_config(kBaseYaml, {"attention.block_size=4"});
    const ParamStore<float> w = random_weights(causal);
    const std::vector<int32_t> tokens = random_tokens(kL, 37, 11);
    EXPECT_GT(test::rel_err(full_logits<double>(sparse, w, tokens),
                            full_logits<double>(causal, w, tokens)),
              1e-2)
        << p;
  }
}

// Longformer's global_doc_starts made each document's first token global in training; a prompt
// starts a document, so its position 0 is global (here it is not among global_tokens).
TEST(Decode, DocumentStartIsGlobal) {
  const Config cfg = parse_config(
      kBaseYaml, {"data.source=hdf5", "data.train=unused", "attention.pattern=longformer",
                  "attention.window=3", "attention.global_tokens=[7]",
                  "attention.global_doc_starts=true"});
  const ParamStore<float> w = random_weights(cfg);
  const std::vector<int32_t> tokens = random_tokens(kL, 37, 31);
  Transformer<double> model(cfg.model, cfg.attention, 1, kL, Recompute::none, cfg.objective,
                            cfg.run.seed);
  std::copy(w.values.begin(), w.values.end(), model.params().values.begin());
  BatchStructure bs;
  bs.globals = {{0}};
  model.set_batch(bs);
  const std::vector<int32_t> targets(kL, kIgnoreIndex);
  int64_t count = 0;
  model.forward(tokens.data(), targets.data(), &count);
  const std::vector<double> ref(model.logits(), model.logits() + kL * 37);
  EXPECT_GT(test::rel_err(ref, full_logits<double>(cfg, w, tokens)), 1e-2);  // 0 matters

  Decoder dec(cfg, w, kL);
  for (int64_t t = 0; t < kL; ++t) {
    const float* got = dec.step(tokens[t]);
    const std::vector<double> row(ref.begin() + t * 37, ref.begin() + (t + 1) * 37);
    EXPECT_LT(test::rel_err(std::vector<double>(got, got + 37), row), 1e-4) << t;
  }
}

TEST(Decode, ContextLengthIsTheTrainingLengthOrWhatIsNeeded) {
  const Config cfg = parse_config(kBaseYaml);
  EXPECT_EQ(decode_context_len(cfg, 1), 40);
  EXPECT_EQ(decode_context_len(cfg, 40), 40);
  EXPECT_EQ(decode_context_len(cfg, 41), 48);  // rounded up to block_size 8
  EXPECT_EQ(decode_context_len(cfg, 60), 64);  // capped at max_seq_len
  EXPECT_EQ(decode_context_len(cfg, 64), 64);
  try {
    decode_context_len(cfg, 65);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("65"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("max_seq_len 64"), std::string::npos) << e.what();
  }
}

// Beyond data.seq_len the masks are built for a longer context; causal flash rows do not
// depend on it, so a decoder over 64 positions still equals the full model at its own length.
TEST(Decode, LongerContextThanTraining) {
  const Config cfg = parse_config(kBaseYaml);
  const ParamStore<float> w = random_weights(cfg);
  Decoder dec(cfg, w, 64);
  const std::vector<int32_t> tokens = random_tokens(kL, 37, 21);
  const std::vector<double> ref = full_logits<double>(cfg, w, tokens);
  for (int64_t t = 0; t < kL; ++t) {
    const float* got = dec.step(tokens[t]);
    const std::vector<double> row(ref.begin() + t * 37, ref.begin() + (t + 1) * 37);
    EXPECT_LT(test::rel_err(std::vector<double>(got, got + 37), row), 1e-4) << t;
  }
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Decode, ModelsThatCannotDecodeSayWhy) {
  const Config lm = parse_config(kBaseYaml);
  const ParamStore<float> w = random_weights(lm);
  Config classify = parse_config(
      kBaseYaml, {"objective=classify", "data.synthetic.task=majority"});
  expect_error([&] { Decoder d(classify, w, kL); }, "classify");
  Config linformer = parse_config(kBaseYaml, {"objective=classify", "data.synthetic.task=majority",
                                              "attention.pattern=linformer",
                                              "attention.linformer.k=8"});
  expect_error([&] { Decoder d(linformer, w, kL); }, "linformer");
  Config separate = parse_config(kBaseYaml, {"attention.pattern=longformer",
                                             "attention.separate_global_proj=true"});
  expect_error([&] { Decoder d(separate, w, kL); }, "separate_global_proj");
}

TEST(Decode, WeightsThatDoNotFitAreNamed) {
  const Config cfg = parse_config(kBaseYaml);
  const ParamStore<float> w = random_weights(cfg);
  expect_error([&] { Decoder d(parse_config(kBaseYaml, {"model.tie_embeddings=false"}), w, kL); },
               "lack parameter 'lm_head'");
  expect_error([&] { Decoder d(parse_config(kBaseYaml, {"model.d_ff=40"}), w, kL); },
               "'blocks.0.mlp.w_fc' has shape [32, 48]");
  expect_error([&] { Decoder d(parse_config(kBaseYaml, {"model.position=rope"}),
                             random_weights(parse_config(kBaseYaml, {"model.position=learned"})),
                             kL); },
               "hold parameter 'wpe'");
  Decoder dec(cfg, w, kL);
  expect_error([&] { dec.step(37); }, "token id 37 is outside the vocabulary [0, 37)");
  expect_error([&] { Decoder d(cfg, w, 65); }, "context length 65");
}

// A checkpoint's values (ParamStore layout) give the same decoder as the store they came from.
TEST(Decode, FromCheckpointState) {
  const Config cfg = parse_config(kBaseYaml, {"attention.heads=mla"});
  const ParamStore<float> w = random_weights(cfg);
  CheckpointState s;
  s.infos = w.infos();
  s.values = w.values;
  const ParamStore<float> back = param_store_of(s);
  EXPECT_EQ(back.values, w.values);
  Decoder a(cfg, w, kL), b(cfg, s.infos, s.values.data(), kL);
  for (int32_t t : random_tokens(9, 37, 5)) {
    const float* la = a.step(t);
    const std::vector<float> ra(la, la + 37);
    const float* lb = b.step(t);
    EXPECT_EQ(ra, std::vector<float>(lb, lb + 37));
  }
}

TEST(Sampling, GreedyTopKAndTemperature) {
  const std::vector<float> logits = {0.5f, 2.0f, 1.0f, 2.0f, -1.0f};
  Rng rng(1);
  SamplingOptions greedy;
  EXPECT_EQ(sample_token(logits.data(), 5, greedy, rng), 1);  // a tie goes to the lower id
  SamplingOptions top1;
  top1.temperature = 5.0;
  top1.top_k = 1;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sample_token(logits.data(), 5, top1, rng), 1);

  // Frequencies follow softmax(logits / T) over the top k, and nothing else is drawn.
  SamplingOptions opt;
  opt.temperature = 0.7;
  opt.top_k = 3;
  std::vector<int> count(5, 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++count[sample_token(logits.data(), 5, opt, rng)];
  EXPECT_EQ(count[0] + count[4], 0);
  double z = 0;
  for (int i : {1, 2, 3}) z += std::exp(logits[i] / 0.7);
  for (int i : {1, 2, 3}) {
    const double p = std::exp(logits[i] / 0.7) / z;
    EXPECT_NEAR(count[i] / double(n), p, 4 * std::sqrt(p * (1 - p) / n)) << "token " << i;
  }
  // Every token appears without top_k.
  opt.top_k = 0;
  opt.temperature = 2.0;
  std::fill(count.begin(), count.end(), 0);
  for (int i = 0; i < 4000; ++i) ++count[sample_token(logits.data(), 5, opt, rng)];
  for (int c : count) EXPECT_GT(c, 0);
}

TEST(Sampling, SeededAndStopsAtEos) {
  const Config cfg = parse_config(kBaseYaml);
  const ParamStore<float> w = random_weights(cfg);
  Decoder dec(cfg, w, kL);
  SamplingOptions opt;
  opt.max_new = 20;
  opt.temperature = 1.5;
  opt.seed = 3;
  const std::vector<int32_t> prompt = {1, 2, 3};
  const Generation a = generate(dec, prompt, opt);
  EXPECT_EQ(generate(dec, prompt, opt).ids, a.ids);  // same seed, same text
  ASSERT_EQ(a.ids.size(), 20u);
  opt.seed = 4;
  EXPECT_NE(generate(dec, prompt, opt).ids, a.ids);
  opt.seed = 3;
  opt.eos_id = a.ids[5];
  const int64_t first = std::find(a.ids.begin(), a.ids.end(), a.ids[5]) - a.ids.begin();
  const Generation b = generate(dec, prompt, opt);
  EXPECT_TRUE(b.stopped_at_eos);
  EXPECT_EQ(b.ids, std::vector<int32_t>(a.ids.begin(), a.ids.begin() + first + 1));
  EXPECT_EQ(dec.cache().tokens(), 3 + first + 1);
  EXPECT_GT(b.prefill_tokens_per_s, 0);
  EXPECT_GT(b.decode_tokens_per_s, 0);
  opt.max_new = 38;
  expect_error([&] { generate(dec, prompt, opt); }, "41 positions");
  expect_error([&] { generate(dec, {}, opt); }, "prompt is empty");
}

}  // namespace
}  // namespace longctx

// `longctx generate` end to end: a small quickstart model trained a few steps with checkpoints;
// generate on its checkpoint prints one JSON object whose greedy ids equal those of the full
// model recomputed over the whole sequence at every token (read from the same checkpoint), and
// whose KV cache holds 2·H·D floats per token per layer; text prompts go through the byte
// tokenizer; every bad input stops the command with one message naming the problem.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "model/cross_entropy.h"
#include "model/transformer.h"
#include "tests/test_util.h"
#include "trainer/checkpoint_file.h"

namespace longctx {
namespace {

using nlohmann::json;

const std::string kSrc = LONGCTX_SOURCE_DIR;

// Trained once for the whole file: d_model 64 over 2 heads (D = 32), 2 layers, max_seq_len 64.
class GenerateCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::temp_dir("e2e_generate");
    int code = 0;
    const std::string out = test::run_cli(
        "train " + kSrc + "/configs/quickstart.yaml --set run.out_dir=" + dir_ +
            " --set model.n_layer=2 --set model.d_model=64 --set model.n_head=2"
            " --set model.d_ff=128 --set model.max_seq_len=64 --set data.seq_len=64"
            " --set train.micro_batch=2 --set train.steps=4 --set checkpoint.every=2"
            " --set log.every=1",
        &code);
    ASSERT_EQ(code, 0) << out;
    ckpt_ = dir_ + "/checkpoints/step_00000004.h5";
  }
  static std::string dir_, ckpt_;
};
std::string GenerateCli::dir_, GenerateCli::ckpt_;

std::string joined(const std::vector<int32_t>& t) {
  std::string s;
  for (size_t i = 0; i < t.size(); ++i) s += (i ? "," : "") + std::to_string(t[i]);
  return s;
}

// Greedy continuation by the full model: the whole sequence forward again for every token.
std::vector<int32_t> greedy_by_recomputation(const std::string& ckpt, std::vector<int32_t> seq,
                                             int new_tokens) {
  const CheckpointState s = read_checkpoint(ckpt);
  const Config cfg = parse_config(s.config_yaml);
  const int64_t T = cfg.model.max_seq_len, V = cfg.model.vocab_size;
  Transformer<float> model(cfg.model, cfg.attention, 1, T, Recompute::none, cfg.objective,
                           cfg.run.seed);
  EXPECT_EQ(model.params().size(), int64_t(s.values.size()));
  std::copy(s.values.begin(), s.values.end(), model.params().values.begin());
  const size_t n0 = seq.size();
  const std::vector<int32_t> targets(T, kIgnoreIndex);
  for (int i = 0; i < new_tokens; ++i) {
    std::vector<int32_t> in = seq;
    in.resize(T, 0);
    int64_t count = 0;
    model.forward(in.data(), targets.data(), &count);
    const float* row = model.logits() + (seq.size() - 1) * V;
    seq.push_back(int32_t(std::max_element(row, row + V) - row));
  }
  return std::vector<int32_t>(seq.begin() + n0, seq.end());
}

TEST_F(GenerateCli, JsonHasTheFieldsAndTheModelsGreedyIds) {
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5, 9, 2, 6};
  int code = 0;
  const std::string out =
      test::run_cli("generate " + ckpt_ + " --prompt-ids " + joined(prompt) + " --max-new 8 --json",
                    &code);
  ASSERT_EQ(code, 0) << out;
  const json j = json::parse(out);  // one object and nothing else
  for (const char* key : {"prompt_tokens", "new_tokens", "text", "ids", "prefill_tokens_per_s",
                          "decode_tokens_per_s", "kv_cache_bytes", "kv_bytes_per_token_per_layer"})
    EXPECT_TRUE(j.contains(key)) << key << " in " << out;
  EXPECT_EQ(j["prompt_tokens"], 8);
  EXPECT_EQ(j["new_tokens"], 8);  // the byte tokenizer's EOS (257) is outside vocab 256
  EXPECT_TRUE(j["text"].is_string());
  EXPECT_EQ(j["ids"].get<std::vector<int32_t>>(), greedy_by_recomputation(ckpt_, prompt, 8));
  EXPECT_GT(double(j["prefill_tokens_per_s"]), 0);
  EXPECT_GT(double(j["decode_tokens_per_s"]), 0);
  // Prompt and new tokens, 2 layers, K and V of 2 heads of 32 floats.
  EXPECT_EQ(j["kv_cache_bytes"], 16 * 2 * (2 * 2 * 32 * 4));
  EXPECT_EQ(double(j["kv_bytes_per_token_per_layer"]), 2 * 2 * 32 * 4);
}

TEST_F(GenerateCli, TextPromptAndSeededSampling) {
  int code = 0;
  const std::string args = "generate " + ckpt_ +
                           " --prompt 'hello' --max-new 6 --temperature 1.0 --top-k 5 --seed 9";
  const std::string a = test::run_cli(args + " --json", &code);
  ASSERT_EQ(code, 0) << a;
  const json j = json::parse(a);
  EXPECT_EQ(j["prompt_tokens"], 5);  // five bytes
  EXPECT_EQ(j["new_tokens"], 6);
  const std::string b = test::run_cli(args + " --json", &code);
  EXPECT_EQ(json::parse(b)["ids"], j["ids"]);  // same seed, same tokens
  // Plain output: the text, then the statistics.
  const std::string plain = test::run_cli(args, &code);
  ASSERT_EQ(code, 0) << plain;
  EXPECT_NE(plain.find("prefill"), std::string::npos) << plain;
  EXPECT_NE(plain.find("KV cache"), std::string::npos) << plain;
}

void expect_failure(const std::string& args, const std::string& needle) {
  int code = 0;
  const std::string out = test::run_cli(args, &code);
  EXPECT_NE(code, 0) << args << "\n" << out;
  EXPECT_NE(out.find(needle), std::string::npos) << args << "\n" << out;
  size_t errors = 0;
  for (size_t at = out.find("error:"); at != std::string::npos; at = out.find("error:", at + 1))
    ++errors;
  EXPECT_EQ(errors, 1u) << "one message: " << out;
}

TEST_F(GenerateCli, BadInputsAreNamed) {
  const std::string g = "generate " + ckpt_;
  std::vector<int32_t> long_prompt(65, 7);
  expect_failure(g + " --prompt-ids " + joined(long_prompt),
                 "the prompt has 65 tokens, more than model.max_seq_len 64");
  expect_failure(g + " --prompt-ids " + joined(std::vector<int32_t>(60, 7)) + " --max-new 8",
                 "68 tokens, more than model.max_seq_len 64");
  expect_failure(g + " --prompt-ids 1,256,3",
                 "token id 256 is outside the model's vocabulary [0, 256)");
  expect_failure(g + " --prompt-ids 1,x", "--prompt-ids expects an integer");
  expect_failure(g + " --max-new 4", "exactly one of --prompt TEXT and --prompt-ids");
  expect_failure(g + " --prompt-ids 1 --temperature -1", "--temperature expects a number >= 0");
  expect_failure("generate " + dir_ + "/missing.h5 --prompt-ids 1", dir_ + "/missing.h5");
  const std::string bad = dir_ + "/corrupt.h5";
  std::ofstream(bad) << "not a checkpoint";
  expect_failure("generate " + bad + " --prompt-ids 1", bad);
}

// A checkpoint of `yaml` with initialized weights, written in process.
std::string write_model(const std::string& dir, const std::string& name, const std::string& yaml,
                        const std::vector<std::string>& sets) {
  const Config cfg = parse_config(yaml, sets);
  Transformer<float> model(cfg.model, cfg.attention, 1, cfg.data.seq_len, Recompute::none,
                           cfg.objective, cfg.run.seed);
  model.init(cfg.run.seed);
  CheckpointState s;
  s.config_yaml = cfg.yaml;
  s.infos = model.params().infos();
  s.values = model.params().values;
  const std::string path = dir + "/" + name + ".h5";
  write_checkpoint(path, s);
  return path;
}

const char* kSmallYaml = R"(
model: {vocab_size: 40, d_model: 16, n_layer: 1, n_head: 2, d_ff: 32, max_seq_len: 32}
attention: {block_size: 8}
data: {seq_len: 32, synthetic: {alphabet: 8}}
)";

TEST_F(GenerateCli, CheckpointsThatCannotGenerate) {
  const std::string classify = write_model(
      dir_, "classify", kSmallYaml, {"objective=classify", "data.synthetic.task=majority"});
  expect_failure("generate " + classify + " --prompt-ids 1,2", "objective: classify");
  const std::string linformer =
      write_model(dir_, "linformer", kSmallYaml,
                  {"objective=classify", "data.synthetic.task=majority",
                   "attention.pattern=linformer", "attention.linformer.k=8"});
  expect_failure("generate " + linformer + " --prompt-ids 1,2", "linformer");
  // A vocabulary below the byte tokenizer's, and a dataset that cannot be opened: ids only.
  const std::string small = write_model(dir_, "small", kSmallYaml, {});
  expect_failure("generate " + small + " --prompt hi", "give the prompt as --prompt-ids");
  const std::string hdf5 = write_model(
      dir_, "hdf5", kSmallYaml, {"data.source=hdf5", "data.train=" + dir_ + "/no_dataset"});
  expect_failure("generate " + hdf5 + " --prompt hi", dir_ + "/no_dataset");
  int code = 0;
  const std::string out = test::run_cli("generate " + hdf5 + " --prompt-ids 1,2 --max-new 3 --json", &code);
  ASSERT_EQ(code, 0) << out;
  const json j = json::parse(out);
  EXPECT_TRUE(j["text"].is_null());
  EXPECT_EQ(j["ids"].size(), 3u);
}

}  // namespace
}  // namespace longctx

// `longctx eval` end to end: checkpoints written here, results parsed back, bad input refused
// with a message naming what is wrong; evaluation lines and summary.json from `longctx train`.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/config.h"
#include "core/fs.h"
#include "model/transformer.h"
#include "sweep/launcher.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"
#include "trainer/checkpoint_file.h"

namespace longctx {
namespace {

using nlohmann::json;

const char* kLmYaml = R"(
model: {vocab_size: 32, d_model: 16, n_layer: 1, n_head: 2, d_ff: 32, max_seq_len: 64}
attention: {pattern: flash, block_size: 8}
data: {seq_len: 32, synthetic: {task: passkey, alphabet: 8}}
train: {micro_batch: 2}
)";

// A checkpoint of a randomly initialised model of cfg.
std::string write_model(const Config& cfg, const std::string& dir) {
  Transformer<float> model(cfg.model, cfg.attention, 1, cfg.data.seq_len, Recompute::none,
                           cfg.objective, cfg.run.seed);
  model.init(3);
  CheckpointState s;
  s.step = 5;
  s.config_yaml = cfg.yaml;
  s.loader_json = R"({"next_sample":10,"samples_per_epoch":1000})";
  s.infos = model.params().infos();
  s.values = model.params().values;
  std::filesystem::create_directories(dir + "/checkpoints");
  const std::string path = dir + "/checkpoints/step_00000005.h5";
  write_checkpoint(path, s);
  return path;
}

std::vector<json> json_lines(const std::string& out) {
  std::vector<json> v;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) v.push_back(json::parse(line));
  return v;
}

TEST(EvalCli, PplAndPasskeyAsJson) {
  const std::string dir = test::temp_dir("e2e_eval_lm");
  write_model(parse_config(kLmYaml), dir);
  int code = 0;
  // A run directory stands for its newest checkpoint.
  const std::string out = test::run_cli(
      "eval " + dir + " --task ppl,passkey,kvcache --json --tokens 7 --samples 4 --lengths 16,32 --depths 2 "
      "--trials 3 --out " + dir + "/eval", &code);
  ASSERT_EQ(code, 0) << out;
  const std::vector<json> r = json_lines(out);  // --json: nothing but the objects on stdout
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0]["task"], "ppl");
  EXPECT_EQ(r[0]["samples"], 4);
  EXPECT_EQ(r[0]["step"], 5);
  EXPECT_GT(r[0]["ppl"].get<double>(), 1.0);
  EXPECT_EQ(r[1]["task"], "passkey");
  EXPECT_EQ(r[1]["lengths"], json::parse("[16, 32]"));
  EXPECT_EQ(r[1]["grid"].size(), 2u);
  EXPECT_EQ(r[1]["grid"][0].size(), 2u);
  EXPECT_EQ(r[2]["task"], "kvcache");  // mha: K and V of 2 heads of 8, fp32, per layer
  EXPECT_EQ(r[2]["tokens"], 7);
  EXPECT_EQ(r[2]["bytes_per_token_per_layer"].get<double>(), 2 * 2 * 8 * 4);
  EXPECT_EQ(json_lines(read_file(dir + "/eval/eval.jsonl")), r);
  std::string tried;
  if (find_python(&tried)) {  // the plots, where matplotlib is installed (tools/build.sh does)
    EXPECT_TRUE(std::filesystem::exists(dir + "/eval/ppl.png"));
    EXPECT_TRUE(std::filesystem::exists(dir + "/eval/passkey.png"));
  }
  // The table for people.
  const std::string table = test::run_cli("eval " + dir + " --task ppl --samples 2", &code);
  ASSERT_EQ(code, 0) << table;
  EXPECT_CONTAINS(table, "perplexity");
  EXPECT_CONTAINS(table, "[     0,      4)");
}

TEST(EvalCli, ClassifyOnLabeledShards) {
  const std::string dir = test::temp_dir("e2e_eval_cls");
  const ShardAttrs a = test::byte_attrs();
  const std::vector<test::Doc> docs = test::make_docs(5, 9, 200, 20);
  const std::vector<int32_t> labels = {0, 1, 2, 0, 1, 2, 0, 1, 2};
  std::filesystem::create_directories(dir + "/val");
  test::write_dataset(dir + "/val", a, {docs}, {labels}, {"a", "b", "c"});
  const Config cfg = parse_config(
      "model: {vocab_size: 260, d_model: 16, n_layer: 1, n_head: 2, d_ff: 32, max_seq_len: 32,"
      " n_classes: 3}\nobjective: classify\nattention: {pattern: flash, block_size: 8}\n"
      "data: {source: hdf5, train: " + dir + "/val, seq_len: 24, packing: doc}\n");
  const std::string ckpt = write_model(cfg, dir + "/run");
  int code = 0;
  std::string out = test::run_cli("eval " + ckpt + " --task classify --json", &code);
  ASSERT_EQ(code, 2) << out;  // data.val is not set: it says how to give one
  EXPECT_CONTAINS(out, "--data");
  out = test::run_cli("eval " + ckpt + " --task classify --json --data " + dir + "/val", &code);
  ASSERT_EQ(code, 0) << out;
  const json r = json::parse(out);
  EXPECT_EQ(r["samples"], 9);  // every document once (eval.samples is 64)
  int64_t total = 0;
  std::vector<int64_t> per_class(3, 0);
  for (int t = 0; t < 3; ++t)
    for (int p = 0; p < 3; ++p) {
      total += r["confusion"][t][p].get<int64_t>();
      per_class[t] += r["confusion"][t][p].get<int64_t>();
    }
  EXPECT_EQ(total, 9);
  EXPECT_EQ(per_class, (std::vector<int64_t>{3, 3, 3}));  // the shard's labels, each 3 times
}

TEST(EvalCli, BadInputIsNamed) {
  const std::string dir = test::temp_dir("e2e_eval_bad");
  const std::string ckpt = write_model(parse_config(kLmYaml), dir);
  int code = 0;
  std::string out = test::run_cli("eval " + ckpt + " --task bogus", &code);
  EXPECT_EQ(code, 2);
  EXPECT_CONTAINS(out, "unknown task 'bogus'; tasks: ppl, passkey, classify, listops, kvcache");
  out = test::run_cli("eval " + ckpt + " --task classify", &code);
  EXPECT_EQ(code, 2);
  EXPECT_CONTAINS(out, "'eval.tasks' holds classify, which evaluates a classifier, but 'objective' is causal_lm");
  out = test::run_cli("eval " + ckpt + " --task passkey --lengths 16,128", &code);
  EXPECT_EQ(code, 2);
  EXPECT_CONTAINS(out, "'eval.passkey_lengths' holds 128, longer than model.max_seq_len (64)");
  out = test::run_cli("eval " + dir + "/nothing.h5 --task ppl", &code);
  EXPECT_EQ(code, 1);
  EXPECT_CONTAINS(out, dir + "/nothing.h5");
  out = test::run_cli("eval " + ckpt + " --task ppl --data " + dir, &code);
  EXPECT_EQ(code, 2);
  EXPECT_CONTAINS(out, "'data.val', 'data.packing' and 'data.doc_mask' apply to 'data.source: hdf5'");
  out = test::run_cli("eval " + ckpt, &code);
  EXPECT_EQ(code, 2);
  EXPECT_CONTAINS(out, "eval needs --task");
}

TEST(TrainEval, EvalLinesAndSummary) {
  const std::string dir = test::temp_dir("e2e_train_eval");
  const std::string cfg_path = dir + "/cfg.yaml";
  write_file_atomic(cfg_path, kLmYaml);
  int code = 0;
  const std::string out = test::run_cli(
      "train " + cfg_path + " --set run.out_dir=" + dir + "/run --set train.steps=5 "
      "--set log.every=1 --set eval.tasks=[ppl,passkey] --set eval.every=2 --set eval.samples=2 "
      "--set eval.passkey_trials=1 --set eval.passkey_depths=1", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_CONTAINS(out, "eval after step 2 | ppl ");
  std::vector<int64_t> eval_steps;
  double last_loss = 0;
  for (const json& j : test::read_metrics(dir + "/run")) {
    if (j.contains("eval")) {
      eval_steps.push_back(j["step"].get<int64_t>());
      EXPECT_TRUE(j["eval"]["ppl"]["ppl"].is_number());
      EXPECT_TRUE(j["eval"]["passkey"]["accuracy"].is_number());
    } else {
      last_loss = j["loss"].get<double>();
    }
  }
  // After steps 2 and 4, and after the last one (steps are numbered from 1).
  EXPECT_EQ(eval_steps, (std::vector<int64_t>{2, 4, 5}));
  const json s = json::parse(read_file(dir + "/run/summary.json"));
  EXPECT_EQ(s["finished"], true);
  EXPECT_EQ(s["steps"], 5);
  EXPECT_DOUBLE_EQ(s["final_loss"].get<double>(), last_loss);
  EXPECT_GT(s["params"].get<int64_t>(), s["non_embedding_params"].get<int64_t>());
}

}  // namespace
}  // namespace longctx

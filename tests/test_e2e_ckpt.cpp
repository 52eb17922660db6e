// End to end: a model's checkpoint, exported by `longctx ckpt export`, gives through
// tools/reference.py (a float64 NumPy forward written from the model's definition) the logits
// of the C++ model; `ckpt inspect --json` and the safetensors file say what the checkpoint holds;
// a damaged checkpoint stops both commands with one message naming it.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/config.h"
#include "data/hdf5_util.h"
#include "model/cross_entropy.h"
#include "model/transformer.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"
#include "trainer/checkpoint_file.h"

namespace longctx {
namespace {

using nlohmann::json;

constexpr int64_t kT = 13;  // not a multiple of the block size

const char* kBaseYaml = R"(
run: {seed: 77}
model: {vocab_size: 37, d_model: 32, n_layer: 2, n_head: 4, d_ff: 48, max_seq_len: 64,
        init_std: 0.3}
attention: {pattern: flash, block_size: 8}
data: {seq_len: 16, synthetic: {alphabet: 8}}
)";

// A python3 that has numpy ("" when none): $LONGCTX_PYTHON, then the PATH's, then the system's.
std::string python_with_numpy() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("LONGCTX_PYTHON")) candidates.push_back(env);
  candidates.push_back("python3");
  candidates.push_back("/usr/bin/python3");
  for (const std::string& py : candidates) {
    std::string out;
    if (test::run_command(py + " -c 'import numpy'", &out) == 0) return py;
  }
  return "";
}

std::vector<int32_t> tokens(int64_t vocab) {
  std::vector<int32_t> t;
  for (int64_t i = 0; i < kT; ++i) t.push_back(int32_t((i * 7 + 3) % vocab));
  return t;
}

std::string joined(const std::vector<int32_t>& t) {
  std::string s;
  for (size_t i = 0; i < t.size(); ++i) s += (i ? "," : "") + std::to_string(t[i]);
  return s;
}

// Initialized, then every value perturbed, so that norm weights and biases are not the identity
// they start as (a reference that ignored them would still agree otherwise).
CheckpointState make_checkpoint(const Config& cfg) {
  Transformer<float> model(cfg.model, cfg.attention, 1, kT, Recompute::none, cfg.objective,
                           cfg.run.seed);
  model.init(cfg.run.seed);
  ParamStore<float>& store = model.params();
  const std::vector<float> noise = test::randn<float>(store.size(), 99, 0.1);
  for (int64_t i = 0; i < store.size(); ++i) store.values[i] += noise[i];
  CheckpointState s;
  s.step = 42;
  s.tokens_seen = 42 * 8 * 16;
  s.config_yaml = cfg.yaml;
  s.loader_json = R"({"next_sample":336,"samples_per_epoch":1000})";
  s.infos = store.infos();
  s.values = store.values;
  s.m = test::randn<float>(store.size(), 5, 0.01);
  s.v.assign(s.values.size(), 1e-4f);
  return s;
}

// The C++ model's logits [T, V] from the checkpoint's values, in float or in double.
template <class T>
std::vector<double> cpp_logits(const Config& cfg, const CheckpointState& s,
                               const std::vector<int32_t>& in) {
  Transformer<T> model(cfg.model, cfg.attention, 1, kT, Recompute::none, cfg.objective,
                       cfg.run.seed);
  ParamStore<T>& store = model.params();
  EXPECT_EQ(store.size(), int64_t(s.values.size()));
  std::copy(s.values.begin(), s.values.end(), store.values.begin());
  const std::vector<int32_t> targets(in.size(), kIgnoreIndex);
  int64_t count = 0;
  model.forward(in.data(), targets.data(), &count);
  return std::vector<double>(model.logits(), model.logits() + kT * cfg.model.vocab_size);
}

struct Case {
  const char* name;
  std::vector<std::string> sets;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class ReferenceLogits : public ::testing::TestWithParam<Case> {};

TEST_P(ReferenceLogits, MatchTheModel) {
  const std::string py = python_with_numpy();
  if (py.empty()) GTEST_SKIP() << "no python3 with numpy (install python3-numpy)";
  const Config cfg = parse_config(kBaseYaml, GetParam().sets);
  const std::string dir = test::temp_dir(std::string("e2e_ckpt_ref_") + GetParam().name);
  const std::string ckpt = dir + "/step_00000042.h5", out = dir + "/export";
  const CheckpointState s = make_checkpoint(cfg);
  write_checkpoint(ckpt, s);

  int code = 0;
  const std::string log = test::run_cli("ckpt export " + ckpt + " --out " + out, &code);
  ASSERT_EQ(code, 0) << log;
  const std::vector<int32_t> in = tokens(cfg.model.vocab_size);
  std::string text;
  code = test::run_command(py + " " + LONGCTX_SOURCE_DIR + "/tools/reference.py " + out +
                               " --tokens " + joined(in) + " --json",
                           &text);
  ASSERT_EQ(code, 0) << text;
  const json j = json::parse(text);
  std::vector<double> ref;
  for (const auto& row : j["logits"]) {
    ASSERT_EQ(row.size(), size_t(cfg.model.vocab_size));
    for (const auto& x : row) ref.push_back(x.get<double>());
  }
  ASSERT_EQ(ref.size(), size_t(kT * cfg.model.vocab_size));
  double scale = 0;
  for (double x : ref) scale = std::max(scale, std::abs(x));
  EXPECT_GT(scale, 0.1);  // logits large enough for the comparison to mean something
  // The fp32 model as trained; the same model in double leaves only rounding, so a small
  // slip in the definition (GELU's erf form for its tanh form) shows there too.
  const std::vector<double> f32 = cpp_logits<float>(cfg, s, in);
  EXPECT_LT(test::rel_err(f32, ref), 1e-4);
  EXPECT_LT(test::max_abs_diff(f32, ref), 1e-4 * scale);
  const std::vector<double> f64 = cpp_logits<double>(cfg, s, in);
  EXPECT_LT(test::rel_err(f64, ref), 1e-10);
  EXPECT_LT(test::max_abs_diff(f64, ref), 1e-10 * scale);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, ReferenceLogits,
    ::testing::Values(
        Case{"rope_layernorm_gelu_tied",
             {"model.position=rope", "model.norm=layernorm", "model.activation=gelu",
              "model.tie_embeddings=true"}},
        Case{"learned_rmsnorm_swiglu_untied",
             {"model.position=learned", "model.norm=rmsnorm", "model.activation=swiglu",
              "model.tie_embeddings=false", "attention.pattern=dense"}},
        Case{"gqa_rope_rmsnorm",
             {"attention.heads=gqa", "attention.n_kv_head=2", "model.norm=rmsnorm"}},
        Case{"mqa_dense_swiglu",
             {"attention.heads=mqa", "attention.pattern=dense", "model.activation=swiglu",
              "model.tie_embeddings=false"}}),
    [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(CkptCommand, InspectJsonAndSafetensorsExport) {
  const Config cfg = parse_config(kBaseYaml, {"attention.heads=gqa", "attention.n_kv_head=2"});
  const std::string dir = test::temp_dir("e2e_ckpt_inspect");
  const std::string ckpt = dir + "/c.h5", out = dir + "/export";
  const CheckpointState s = make_checkpoint(cfg);
  write_checkpoint(ckpt, s);

  int code = 0;
  const std::string text = test::run_cli("ckpt inspect " + ckpt + " --json", &code);
  ASSERT_EQ(code, 0) << text;
  const json j = json::parse(text);
  EXPECT_EQ(j["path"], ckpt);
  EXPECT_EQ(j["step"], 42);
  EXPECT_EQ(j["tokens_seen"], s.tokens_seen);
  EXPECT_EQ(j["objective"], "causal_lm");
  EXPECT_EQ(j["model"]["d_model"], 32);
  EXPECT_EQ(j["model"]["tie_embeddings"], true);
  EXPECT_EQ(j["attention"]["pattern"], "flash");
  EXPECT_EQ(j["attention"]["heads"], "gqa");
  EXPECT_EQ(j["attention"]["n_kv_head"], 2);
  ASSERT_EQ(j["tensors"].size(), s.infos.size());
  int64_t total = 0;
  for (size_t i = 0; i < s.infos.size(); ++i) {
    EXPECT_EQ(j["tensors"][i]["name"], s.infos[i].name);
    EXPECT_EQ(j["tensors"][i]["numel"], s.infos[i].shape.numel());
    EXPECT_EQ(j["tensors"][i]["shape"].size(), size_t(s.infos[i].shape.ndim));
    total += s.infos[i].shape.numel();
  }
  EXPECT_EQ(j["tensors"][1]["name"], "blocks.0.ln1.w");
  EXPECT_EQ(j["tensors"][3]["name"], "blocks.0.attn.wq");
  EXPECT_EQ(j["tensors"][4]["shape"], json::array({32, 16}));  // wk: 2 kv heads of 8
  EXPECT_EQ(j["parameters"], total);
  EXPECT_EQ(j["parameter_bytes"], 4 * total);
  EXPECT_EQ(j["optimizer_moments"], true);
  EXPECT_EQ(j["loader"]["next_sample"], 336);

  ASSERT_EQ(test::run_cli("ckpt export " + ckpt + " --format safetensors --out " + out, &code),
            "wrote " + out + "/model.safetensors (" + std::to_string(s.infos.size()) +
                " tensors, 53.9 KiB) and " + out + "/config.json\n");
  ASSERT_EQ(code, 0);
  std::ifstream f(out + "/model.safetensors", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | uint8_t(bytes[size_t(i)]);
  ASSERT_LE(8 + n, bytes.size());
  EXPECT_EQ(n % 8, 0u);
  const json h = json::parse(bytes.substr(8, n));
  EXPECT_EQ(h["__metadata__"]["format"], "pt");
  EXPECT_EQ(h["__metadata__"]["step"], "42");
  EXPECT_EQ(h.size(), s.infos.size() + 1);
  const char* data = bytes.data() + 8 + n;
  uint64_t end = 0;
  for (const ParamInfo& p : s.infos) {
    ASSERT_TRUE(h.contains(p.name)) << p.name;
    const json& t = h[p.name];
    EXPECT_EQ(t["dtype"], "F32");
    EXPECT_EQ(t["shape"], json(std::vector<int64_t>(p.shape.dim.begin(),
                                                    p.shape.dim.begin() + p.shape.ndim)));
    const uint64_t lo = t["data_offsets"][0], hi = t["data_offsets"][1];
    ASSERT_EQ(hi - lo, uint64_t(p.shape.numel()) * 4) << p.name;
    ASSERT_LE(8 + n + hi, bytes.size());
    EXPECT_EQ(std::memcmp(data + lo, s.values.data() + p.offset, hi - lo), 0) << p.name;
    end = std::max(end, hi);
  }
  EXPECT_EQ(8 + n + end, bytes.size());  // no moments, nothing else

  std::ifstream cf(out + "/config.json");
  const json c = json::parse(cf);
  EXPECT_EQ(c["model"]["vocab_size"], 37);
  EXPECT_EQ(c["model"]["init_std"], 0.3);
  EXPECT_EQ(c["attention"]["heads"], "gqa");
  EXPECT_EQ(c["run"]["seed"], 77);
  EXPECT_EQ(c["objective"], "causal_lm");
}

TEST(CkptCommand, DamagedMissingAndRefused) {
  const Config cfg = parse_config(kBaseYaml);
  const std::string dir = test::temp_dir("e2e_ckpt_damaged");
  const std::string ckpt = dir + "/c.h5";
  write_checkpoint(ckpt, make_checkpoint(cfg));
  uint64_t at = 0;
  {
    auto lock = hdf5_lock();
    H5Handle f = h5_file(H5Fopen(ckpt.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    H5Handle d = h5_dataset(H5Dopen2(f.get(), "/params/wte", H5P_DEFAULT));
    at = H5Dget_offset(d.get());
  }
  {
    std::fstream f(ckpt, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(at + 100));
    f.put('\x5a');
  }
  int code = 0;
  EXPECT_EQ(test::run_cli("ckpt export " + ckpt + " --out " + dir + "/export", &code),
            "error: checkpoint '" + ckpt + "': /params/wte fails its checksum (the file is damaged)\n");
  EXPECT_EQ(code, 1);
  EXPECT_FALSE(std::filesystem::exists(dir + "/export"));

  const std::string missing = dir + "/missing.h5";
  EXPECT_EQ(test::run_cli("ckpt inspect " + missing, &code),
            "error: checkpoint '" + missing + "': cannot open: No such file or directory\n");
  EXPECT_EQ(code, 1);

  std::string text = test::run_cli("ckpt export " + ckpt + " --format onnx --out " + dir, &code);
  EXPECT_EQ(code, 2);
  EXPECT_CONTAINS(text, "error: --format 'onnx' is not supported; the export format is safetensors");
  text = test::run_cli("ckpt --help", &code);
  EXPECT_EQ(code, 0);
  EXPECT_CONTAINS(text, "usage: longctx ckpt inspect PATH [--json]");
  text = test::run_cli("--help", &code);
  EXPECT_CONTAINS(text, "ckpt inspect|export PATH");
}

// The reference refuses what it does not implement instead of computing something else.
TEST(CkptCommand, ReferenceRefusesOtherModels) {
  const std::string py = python_with_numpy();
  if (py.empty()) GTEST_SKIP() << "no python3 with numpy (install python3-numpy)";
  const Config cfg = parse_config(kBaseYaml, {"attention.pattern=longformer",
                                              "attention.heads=mqa", "attention.window=4"});
  const std::string dir = test::temp_dir("e2e_ckpt_refuse");
  write_checkpoint(dir + "/c.h5", make_checkpoint(cfg));
  int code = 0;
  std::string text = test::run_cli("ckpt export " + dir + "/c.h5 --out " + dir + "/x", &code);
  ASSERT_EQ(code, 0) << text;
  code = test::run_command(py + " " + LONGCTX_SOURCE_DIR + "/tools/reference.py " + dir +
                               "/x --tokens 1,2,3",
                           &text);
  EXPECT_EQ(code, 1);
  EXPECT_CONTAINS(text, "does not implement attention.pattern longformer (only dense and flash)");
}

}  // namespace
}  // namespace longctx

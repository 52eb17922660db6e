#include "core/config.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

// The message of the ConfigError that parsing `text` throws; fails the test if none is thrown.
std::string config_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(text, overrides);
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.exit_code, 2);
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ConfigError, got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected ConfigError for:\n" << text;
  return "";
}

std::string write_file(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The message of the ConfigError `text` raises, or "no error".
std::string error_of(const std::string& text) {
  try {
    parse_config(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Config, ParallelKeys) {
  std::string msg = error_of("parallel: {sp: 0}");
  EXPECT_NE(msg.find("parallel.sp"), std::string::npos) << msg;
  msg = error_of("parallel: {zero: 2}");
  EXPECT_NE(msg.find("parallel.zero"), std::string::npos) << msg;
  msg = error_of("parallel: {sp_mode: zigzag}");
  EXPECT_NE(msg.find("ulysses"), std::string::npos) << msg;
  msg = error_of("parallel: {bucket_mb: 0}");
  EXPECT_NE(msg.find("parallel.bucket_mb"), std::string::npos) << msg;
  EXPECT_EQ(error_of("parallel: {sp: 2, sp_mode: ring, zero: 1, bucket_mb: 4}"), "no error");
  // Every pattern and both objectives run under sp; separate_global_proj does not.
  EXPECT_EQ(error_of("parallel: {sp: 2}\nattention: {pattern: dense}"), "no error");
  EXPECT_EQ(error_of("parallel: {sp: 2, sp_mode: ring}\nattention: {pattern: linformer}\n"
                     "objective: classify\ndata: {synthetic: {task: majority}}"),
            "no error");
  EXPECT_EQ(error_of("parallel: {sp: 2}\nobjective: classify\nmodel: {pool: cls}\n"
                     "data: {synthetic: {task: majority}}"),
            "no error");
  msg = error_of("parallel: {sp: 2}\nattention: {pattern: longformer, global_tokens: [0], "
                 "separate_global_proj: true}");
  EXPECT_NE(msg.find("parallel.sp"), std::string::npos) << msg;
  EXPECT_NE(msg.find("attention.separate_global_proj"), std::string::npos) << msg;
  msg = error_of("parallel: {sp: 8}\nmodel: {n_head: 4}");
  EXPECT_NE(msg.find("parallel.sp_mode: ring"), std::string::npos) << msg;
  EXPECT_EQ(error_of("parallel: {sp: 8, sp_mode: ring}\nmodel: {n_head: 4}"), "no error");
  msg = error_of("parallel: {sp: 3, sp_mode: ring}\ndata: {seq_len: 256}");
  EXPECT_NE(msg.find("'data.seq_len' (256) must be divisible by 'parallel.sp' (3)"),
            std::string::npos) << msg;
}

TEST(Config, DataKeys) {
  std::string msg = error_of("data: {source: hdf5}");
  EXPECT_NE(msg.find("data.train"), std::string::npos) << msg;
  msg = error_of("data: {train: some/dir}");
  EXPECT_NE(msg.find("data.source: hdf5"), std::string::npos) << msg;
  msg = error_of("data: {source: hdf5, train: d, packing: doc, doc_mask: true}");
  EXPECT_NE(msg.find("data.doc_mask"), std::string::npos) << msg;
  EXPECT_NE(msg.find("data.packing: pack"), std::string::npos) << msg;
  msg = error_of("data: {source: hdf5, train: d, packing: pack}\nobjective: classify");
  EXPECT_NE(msg.find("data.packing: doc"), std::string::npos) << msg;
  msg = error_of("data: {source: hdf5, train: d, doc_mask: true}\nattention: {pattern: linformer}"
                 "\nobjective: classify");
  EXPECT_NE(msg.find("data."), std::string::npos) << msg;
  msg = error_of("data: {source: hdf5, train: d, packing: packed}");
  EXPECT_NE(msg.find("data.packing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pack"), std::string::npos) << msg;
  msg = error_of("data: {source: hdf5, train: d, prefetch: 0}");
  EXPECT_NE(msg.find("data.prefetch"), std::string::npos) << msg;
  EXPECT_EQ(error_of("data: {source: hdf5, train: d, val: v, doc_mask: true, prefetch: 8}"),
            "no error");
  EXPECT_EQ(error_of("data: {source: hdf5, train: d, packing: doc}\nobjective: classify\n"
                     "model: {n_classes: 3}"),
            "no error");
}

TEST(Config, EmptyTextGivesDefaults) {
  const Config c = parse_config("");
  const Config d;
  EXPECT_EQ(c.run.name, d.run.name);
  EXPECT_EQ(c.run.seed, d.run.seed);
  EXPECT_EQ(c.model.d_model, d.model.d_model);
  EXPECT_EQ(c.model.position, Position::rope);
  EXPECT_EQ(c.attention.pattern, Pattern::flash);
  EXPECT_EQ(c.data.synthetic.task, SyntheticTask::copy);
  EXPECT_DOUBLE_EQ(c.train.lr, d.train.lr);
  EXPECT_EQ(c.log.every, d.log.every);
  // Defaults written out and read back are the defaults again.
  EXPECT_EQ(parse_config(c.yaml).yaml, c.yaml);
  EXPECT_EQ(parse_config("# only a comment\n").yaml, c.yaml);
  EXPECT_EQ(parse_config("model:\n").yaml, c.yaml);
}

const char* kFull = R"(
run: {name: ablation-7, out_dir: /tmp/runs/a7, seed: 18446744073709551615}
model:
  vocab_size: 512
  d_model: 96
  n_layer: 2
  n_head: 3
  d_ff: 384
  norm: rmsnorm
  activation: swiglu
  position: learned
  max_seq_len: 1024
  tie_embeddings: false
  init_std: 0.01
attention: {pattern: dense, heads: mha, n_kv_head: 3, block_size: 32}
objective: causal_lm
data:
  source: synthetic
  seq_len: 512
  synthetic: {task: passkey, alphabet: 100}
train:
  micro_batch: 8
  grad_accum: 2
  steps: 1e3
  lr: 1
  min_lr: 1e-5
  warmup: 0
  weight_decay: 0
  beta1: 0.8
  beta2: 0.99
  eps: 1.0e-6
  clip: 0
  recompute: block
  precision: fp32
  threads: 2
log: {every: 5}
)";

TEST(Config, FullConfigFillsEveryField) {
  const Config c = parse_config(kFull);
  EXPECT_EQ(c.run.name, "ablation-7");
  EXPECT_EQ(c.run.out_dir, "/tmp/runs/a7");
  EXPECT_EQ(c.run.seed, 18446744073709551615ull);
  EXPECT_EQ(c.model.vocab_size, 512);
  EXPECT_EQ(c.model.d_model, 96);
  EXPECT_EQ(c.model.n_layer, 2);
  EXPECT_EQ(c.model.n_head, 3);
  EXPECT_EQ(c.model.d_ff, 384);
  EXPECT_EQ(c.model.norm, Norm::rmsnorm);
  EXPECT_EQ(c.model.activation, Activation::swiglu);
  EXPECT_EQ(c.model.position, Position::learned);
  EXPECT_EQ(c.model.max_seq_len, 1024);
  EXPECT_FALSE(c.model.tie_embeddings);
  EXPECT_DOUBLE_EQ(c.model.init_std, 0.01);
  EXPECT_EQ(c.attention.pattern, Pattern::dense);
  EXPECT_EQ(c.attention.heads, HeadScheme::mha);
  EXPECT_EQ(c.attention.n_kv_head, 3);
  EXPECT_EQ(c.attention.block_size, 32);
  EXPECT_EQ(c.objective, Objective::causal_lm);
  EXPECT_EQ(c.data.source, DataSource::synthetic);
  EXPECT_EQ(c.data.seq_len, 512);
  EXPECT_EQ(c.data.synthetic.task, SyntheticTask::passkey);
  EXPECT_EQ(c.data.synthetic.alphabet, 100);
  EXPECT_EQ(c.train.micro_batch, 8);
  EXPECT_EQ(c.train.grad_accum, 2);
  EXPECT_EQ(c.train.steps, 1000);  // 1e3 is an exact integer
  EXPECT_DOUBLE_EQ(c.train.lr, 1.0);  // an integer is fine for a float key
  EXPECT_DOUBLE_EQ(c.train.min_lr, 1e-5);
  EXPECT_EQ(c.train.warmup, 0);
  EXPECT_DOUBLE_EQ(c.train.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(c.train.beta1, 0.8);
  EXPECT_DOUBLE_EQ(c.train.beta2, 0.99);
  EXPECT_DOUBLE_EQ(c.train.eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.train.clip, 0.0);
  EXPECT_EQ(c.train.recompute, Recompute::block);
  EXPECT_EQ(c.train.precision, Precision::fp32);
  EXPECT_EQ(c.train.threads, 2);
  EXPECT_EQ(c.log.every, 5);
}

TEST(Config, NumberForms) {
  EXPECT_DOUBLE_EQ(parse_config("train: {lr: 3e-4}").train.lr, 3e-4);
  EXPECT_DOUBLE_EQ(parse_config("train: {lr: .5}").train.lr, 0.5);
  EXPECT_DOUBLE_EQ(parse_config("train: {lr: +2.5E-3}").train.lr, 2.5e-3);
  EXPECT_EQ(parse_config("model: {n_layer: +6}").model.n_layer, 6);
  EXPECT_EQ(parse_config("model: {n_layer: 8.0}").model.n_layer, 8);
  EXPECT_EQ(parse_config("run: {name: 42}").run.name, "42");
  EXPECT_EQ(parse_config("attention: {pattern: \"dense\"}").attention.pattern, Pattern::dense);
}

TEST(Config, UnknownKeyNamesPathAndSuggests) {
  std::string msg = config_error("model: {d_modle: 64}");
  EXPECT_TRUE(contains(msg, "config error: unknown key 'model.d_modle' "
                            "(did you mean 'model.d_model'?); allowed keys in 'model': "
                            "vocab_size, d_model, n_layer"))
      << msg;

  msg = config_error("modle: {d_model: 64}");
  EXPECT_TRUE(contains(msg, "unknown key 'modle' (did you mean 'model'?); allowed top-level "
                            "keys: run, model, attention, objective, data, train, parallel, log"))
      << msg;

  msg = config_error("data: {synthetic: {tsk: copy}}");
  EXPECT_TRUE(contains(msg, "unknown key 'data.synthetic.tsk' (did you mean "
                            "'data.synthetic.task'?); allowed keys in 'data.synthetic': "
                            "task, alphabet"))
      << msg;

  // A key that lives in another section is pointed to there.
  msg = config_error("model: {seq_len: 64}");
  EXPECT_TRUE(contains(msg, "unknown key 'model.seq_len' (did you mean 'data.seq_len'?)")) << msg;

  // Nothing close: no guess, just the list.
  msg = config_error("train: {optimizer: adamw}");
  EXPECT_TRUE(contains(msg, "unknown key 'train.optimizer'; allowed keys in 'train': ")) << msg;
}

TEST(Config, WrongTypes) {
  std::string msg = config_error("train: {lr: fast}");
  EXPECT_TRUE(contains(msg, "config error: 'train.lr' must be a number, got 'fast'")) << msg;

  msg = config_error("model: {n_layer: 3.5}");
  EXPECT_TRUE(contains(msg, "'model.n_layer' must be an integer, got '3.5'")) << msg;
  msg = config_error("model: {n_layer: abc}");
  EXPECT_TRUE(contains(msg, "'model.n_layer' must be an integer, got 'abc'")) << msg;
  msg = config_error("model: {n_layer: 0x10}");
  EXPECT_TRUE(contains(msg, "'model.n_layer' must be an integer")) << msg;

  msg = config_error("model: {tie_embeddings: yes}");
  EXPECT_TRUE(contains(msg, "'model.tie_embeddings' must be true or false, got 'yes'")) << msg;
  msg = config_error("model: {tie_embeddings: 1}");
  EXPECT_TRUE(contains(msg, "'model.tie_embeddings' must be true or false")) << msg;

  // Quoting makes a string, even if it looks like a number.
  msg = config_error("train: {lr: \"1e-3\"}");
  EXPECT_TRUE(contains(msg, "'train.lr' must be a number, got the string '1e-3'")) << msg;

  msg = config_error("train: {lr: [1, 2]}");
  EXPECT_TRUE(contains(msg, "'train.lr' must be a number, got a list")) << msg;
  msg = config_error("train: {steps: {a: 1}}");
  EXPECT_TRUE(contains(msg, "'train.steps' must be an integer, got a map")) << msg;
  msg = config_error("train: {steps: }");
  EXPECT_TRUE(contains(msg, "'train.steps' must be an integer, got nothing")) << msg;
  msg = config_error("train: {lr: .inf}");
  EXPECT_TRUE(contains(msg, "'train.lr' must be a number, got '.inf'")) << msg;

  msg = config_error("run: {seed: -1}");
  EXPECT_TRUE(contains(msg, "'run.seed' must be an integer between 0 and 18446744073709551615"))
      << msg;
  msg = config_error("run: {name: \"\"}");
  EXPECT_TRUE(contains(msg, "'run.name' must be a non-empty string")) << msg;
}

TEST(Config, UnknownEnumValue) {
  std::string msg = config_error("attention: {pattern: sparse}");
  EXPECT_TRUE(contains(msg, "config error: 'attention.pattern' must be one of "
                            "dense|flash|longformer|bigbird|strided|linformer, got 'sparse'"))
      << msg;
  msg = config_error("model: {norm: batchnorm}");
  EXPECT_TRUE(contains(msg, "'model.norm' must be one of layernorm|rmsnorm")) << msg;
  msg = config_error("model: {position: alibi}");
  EXPECT_TRUE(contains(msg, "'model.position' must be one of rope|learned|none")) << msg;
  msg = config_error("objective: translate");
  EXPECT_TRUE(contains(msg, "'objective' must be one of causal_lm|classify, got 'translate'"))
      << msg;
  msg = config_error("objective: classify");  // the default task, copy, has no labels
  EXPECT_TRUE(contains(msg, "data.synthetic.task")) << msg;
  msg = config_error("data: {synthetic: {task: sort}}");
  EXPECT_TRUE(contains(msg, "'data.synthetic.task' must be one of copy|passkey|random")) << msg;
  msg = config_error("train: {precision: fp16}");
  EXPECT_TRUE(contains(msg, "'train.precision' must be one of fp32|bf16, got 'fp16'")) << msg;
  msg = config_error("run: {device: tpu}");
  EXPECT_TRUE(contains(msg, "'run.device' must be one of cpu|cuda, got 'tpu'")) << msg;
}

TEST(Config, OutOfRange) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"model: {d_model: 0}", "'model.d_model' must be between 1 and 65536, got '0'"},
      {"model: {vocab_size: 1}", "'model.vocab_size' must be between 2 and"},
      {"model: {n_layer: -1}", "'model.n_layer' must be between 1 and"},
      {"model: {n_head: 0}", "'model.n_head' must be between 1 and"},
      {"model: {d_ff: 0}", "'model.d_ff' must be between 1 and"},
      {"model: {max_seq_len: 0}", "'model.max_seq_len' must be between 1 and"},
      {"model: {init_std: 0}", "'model.init_std' must be > 0, got '0'"},
      {"attention: {block_size: 0}", "'attention.block_size' must be between 1 and"},
      {"attention: {n_kv_head: -1}", "'attention.n_kv_head' must be between 0 and"},
      {"data: {seq_len: 0}", "'data.seq_len' must be between 1 and"},
      {"data: {synthetic: {alphabet: 1}}", "'data.synthetic.alphabet' must be between 2 and"},
      {"train: {micro_batch: 0}", "'train.micro_batch' must be between 1 and"},
      {"train: {grad_accum: 0}", "'train.grad_accum' must be between 1 and"},
      {"train: {steps: 0}", "'train.steps' must be between 1 and"},
      {"train: {steps: 1e30}", "'train.steps' must be between 1 and 1000000000, got '1e30'"},
      {"train: {lr: 0}", "'train.lr' must be > 0, got '0'"},
      {"train: {min_lr: -1e-5}", "'train.min_lr' must be >= 0"},
      {"train: {warmup: -1}", "'train.warmup' must be between 0 and"},
      {"train: {weight_decay: -0.1}", "'train.weight_decay' must be >= 0"},
      {"train: {beta1: 1}", "'train.beta1' must be in [0, 1), got '1'"},
      {"train: {beta2: -0.5}", "'train.beta2' must be in [0, 1)"},
      {"train: {eps: 0}", "'train.eps' must be > 0"},
      {"train: {clip: -1}", "'train.clip' must be >= 0"},
      {"train: {threads: -1}", "'train.threads' must be between 0 and"},
      {"log: {every: 0}", "'log.every' must be between 1 and"},
  };
  for (const auto& [text, expected] : cases) {
    const std::string msg = config_error(text);
    EXPECT_TRUE(contains(msg, expected)) << text << "\n  -> " << msg;
  }
}

TEST(Config, ImpossibleCombinationsNameBothKeys) {
  std::string msg = config_error("model: {d_model: 100, n_head: 3}");
  EXPECT_TRUE(contains(msg, "'model.n_head' (3) must divide 'model.d_model' (100)")) << msg;

  msg = config_error("model: {d_model: 96, n_head: 32, position: rope}");
  EXPECT_TRUE(contains(msg, "'model.position: rope' needs an even head dimension")) << msg;
  EXPECT_TRUE(contains(msg, "'model.d_model' / 'model.n_head' = 96/32 = 3")) << msg;
  EXPECT_EQ(parse_config("model: {d_model: 96, n_head: 32, position: learned}").model.n_head, 32);

  msg = config_error("data: {seq_len: 8192}");
  EXPECT_TRUE(contains(msg, "'data.seq_len' (8192) must be at most 'model.max_seq_len' (4096)"))
      << msg;

  msg = config_error("attention: {n_kv_head: 2}");
  EXPECT_TRUE(contains(msg, "'attention.n_kv_head' must be 0 or equal 'model.n_head' (4)")) << msg;
  EXPECT_EQ(parse_config("attention: {n_kv_head: 4}").attention.n_kv_head, 4);

  msg = config_error("train: {lr: 1e-4, min_lr: 1e-3}");
  EXPECT_TRUE(contains(msg, "'train.min_lr' (0.001) must be at most 'train.lr' (0.0001)")) << msg;

  msg = config_error("model: {vocab_size: 16}\ndata: {synthetic: {alphabet: 13}}");
  EXPECT_TRUE(contains(msg, "'data.synthetic.alphabet' must be between 2 and "
                            "'model.vocab_size' - 4 = 12"))
      << msg;
  EXPECT_EQ(parse_config("model: {vocab_size: 16}\ndata: {synthetic: {alphabet: 12}}")
                .data.synthetic.alphabet,
            12);
}

TEST(Config, StructuralErrors) {
  std::string msg = config_error("model: 3");
  EXPECT_TRUE(contains(msg, "'model' must be a map of keys (vocab_size, d_model")) << msg;
  EXPECT_TRUE(contains(msg, "got '3'")) << msg;

  msg = config_error("data: {synthetic: copy}");
  EXPECT_TRUE(contains(msg, "'data.synthetic' must be a map of keys (task, alphabet, min_len), got "
                            "'copy'"))
      << msg;

  msg = config_error("- model\n- train\n");
  EXPECT_TRUE(contains(msg, "the config must be a map of sections")) << msg;

  msg = config_error("model: {d_model: 64}\nmodel: {n_layer: 2}\n");
  EXPECT_TRUE(contains(msg, "key 'model' is given twice")) << msg;
}

TEST(Config, FirstProblemInDocumentOrderIsReported) {
  const std::string msg = config_error("model: {n_layer: x}\ntrain: {lr: y}\n");
  EXPECT_TRUE(contains(msg, "'model.n_layer'")) << msg;
  EXPECT_FALSE(contains(msg, "train.lr")) << msg;
}

// Everything wrong with the config file itself is a bad config (exit code 2), as --help says,
// with a message that names the file.
TEST(Config, FileErrors) {
  const std::string dir = test::temp_dir("config_files");
  try {
    load_config(dir + "/missing.yaml");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.exit_code, 2);
    EXPECT_EQ(std::string(e.what()),
              "cannot read config '" + dir + "/missing.yaml': No such file or directory");
  }

  try {
    load_config(dir);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.exit_code, 2);
    EXPECT_TRUE(contains(e.what(), "cannot read config '" + dir + "'")) << e.what();
  }

  const std::string bad = write_file(dir, "bad.yaml", "model:\n  d_model: 64\n  n_layer: [1, 2\n");
  try {
    load_config(bad);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.exit_code, 2);
    const std::string msg = e.what();
    EXPECT_TRUE(contains(msg, "cannot parse config '" + bad + "' at line 4, column 1: ")) << msg;
  }

  const std::string two = write_file(dir, "two.yaml", "model: {}\n---\ntrain: {}\n");
  try {
    load_config(two);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.exit_code, 2);
    EXPECT_TRUE(contains(e.what(), "2 YAML documents")) << e.what();
  }
}

// yaml-cpp gives up on deep nesting with only "bad file"; the message says what is wrong.
TEST(Config, DeepNestingIsNamed) {
  const std::string dir = test::temp_dir("config_deep");
  const std::string flow = write_file(dir, "flow.yaml", "a: " + std::string(5000, '[') +
                                                            std::string(5000, ']') + "\n");
  std::string block;
  for (int i = 0; i < 3000; ++i) block += std::string(size_t(2 * i), ' ') + "k:\n";
  for (const std::string& path : {flow, write_file(dir, "block.yaml", block)}) {
    try {
      load_config(path);
      FAIL() << "expected ConfigError for " << path;
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_TRUE(contains(msg, "cannot parse config '" + path + "': it is nested more than "))
          << msg;
      EXPECT_TRUE(contains(msg, "levels deep")) << msg;
      EXPECT_FALSE(contains(msg, "bad file")) << msg;
    }
  }
  try {
    parse_config("", {"model.d_model=" + std::string(5000, '[')});
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "levels deep")) << e.what();
  }
}

// A file that sets nothing would train the defaults into runs/quickstart: refused, naming it.
TEST(Config, AFileThatSetsNothingIsRefused) {
  const std::string dir = test::temp_dir("config_nothing");
  for (const auto& [name, text] : std::vector<std::pair<std::string, std::string>>{
           {"empty.yaml", ""},
           {"comments.yaml", "# model:\n#   d_model: 64\n"},
           {"section.yaml", "train:\n"},
           {"sections.yaml", "train:\n  # steps: 10\nmodel: {}\n"},
           {"null.yaml", "~\n"}}) {
    const std::string path = write_file(dir, name, text);
    try {
      load_config(path);
      FAIL() << "expected ConfigError for " << name;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.exit_code, 2);
      EXPECT_TRUE(contains(e.what(), "config '" + path + "' sets no key")) << e.what();
    }
  }
  // One setting, in the file or on the command line, is a config.
  EXPECT_EQ(load_config(write_file(dir, "one.yaml", "train:\n  steps: 7\n")).train.steps, 7);
  EXPECT_EQ(load_config(dir + "/empty.yaml", {"train.steps=9"}).train.steps, 9);
}

TEST(Config, LoadFromFile) {
  const std::string dir = test::temp_dir("config_load");
  const std::string path = write_file(dir, "c.yaml", "model:\n  n_layer: 6\n");
  const Config c = load_config(path, {"train.lr=1e-3"});
  EXPECT_EQ(c.model.n_layer, 6);
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-3);

  try {
    load_config(write_file(dir, "typo.yaml", "model:\n  n_layr: 6\n"));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.exit_code, 2);
    EXPECT_TRUE(contains(e.what(), "'model.n_layr'")) << e.what();
  }
}

TEST(Config, Overrides) {
  const std::string text = "model:\n  n_layer: 6\ntrain: {lr: 3e-4}\n";
  const Config c = parse_config(text, {"model.n_layer=2", "train.lr=1e-3",
                                       "attention.pattern=dense", "run.name=sweep 1"});
  EXPECT_EQ(c.model.n_layer, 2);
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.attention.pattern, Pattern::dense);
  EXPECT_EQ(c.run.name, "sweep 1");

  // Missing sections, nested ones included, are created.
  const Config n = parse_config("", {"data.synthetic.task=passkey", " log.every = 3"});
  EXPECT_EQ(n.data.synthetic.task, SyntheticTask::passkey);
  EXPECT_EQ(n.log.every, 3);

  // A flow map merges into the section instead of replacing it.
  const Config m = parse_config(text, {"model={d_model: 64, n_head: 2}"});
  EXPECT_EQ(m.model.d_model, 64);
  EXPECT_EQ(m.model.n_head, 2);
  EXPECT_EQ(m.model.n_layer, 6);

  // Later overrides win; an override can fix a bad value in the file.
  EXPECT_EQ(parse_config("", {"model.n_layer=2", "model.n_layer=3"}).model.n_layer, 3);
  EXPECT_DOUBLE_EQ(parse_config("train: {lr: fast}", {"train.lr=0.1"}).train.lr, 0.1);

  // The merged YAML records the overridden values.
  EXPECT_TRUE(contains(c.yaml, "  n_layer: 2\n")) << c.yaml;
  EXPECT_TRUE(contains(c.yaml, "  pattern: dense\n")) << c.yaml;
}

TEST(Config, BadOverrides) {
  std::string msg = config_error("", {"model.n_layer"});
  EXPECT_TRUE(contains(msg, "--set 'model.n_layer' must have the form key.path=value")) << msg;
  msg = config_error("", {"=3"});
  EXPECT_TRUE(contains(msg, "--set '=3' has an empty key")) << msg;
  msg = config_error("", {"model..n_layer=3"});
  EXPECT_TRUE(contains(msg, "--set 'model..n_layer=3' has an empty part")) << msg;
  msg = config_error("", {"model.n_layer=[1,"});
  EXPECT_TRUE(contains(msg, "--set 'model.n_layer=[1,': the value is not valid YAML")) << msg;
  msg = config_error("model: {d_model: 64}", {"model.d_model.x=1"});
  EXPECT_TRUE(contains(msg, "--set 'model.d_model.x=1': 'model.d_model' is not a section"))
      << msg;
  msg = config_error("", {"model.d_model.x=1"});
  EXPECT_TRUE(contains(msg, "'model.d_model' must be an integer, got a map")) << msg;

  // Unknown keys, types and ranges are caught by the same validation as the file's.
  msg = config_error("", {"model.d_modle=64"});
  EXPECT_TRUE(contains(msg, "unknown key 'model.d_modle' (did you mean 'model.d_model'?)")) << msg;
  msg = config_error("", {"optim.lr=1"});
  EXPECT_TRUE(contains(msg, "unknown key 'optim'")) << msg;
  msg = config_error("", {"train.lr=fast"});
  EXPECT_TRUE(contains(msg, "'train.lr' must be a number, got 'fast'")) << msg;
  msg = config_error("", {"model.n_layer="});
  EXPECT_TRUE(contains(msg, "'model.n_layer' must be an integer, got nothing")) << msg;
}

TEST(Config, YamlHoldsEveryKeyAndRoundTrips) {
  const Config c = parse_config(kFull, {"run.name='with \"quotes\" and \\ and: colon'"});
  for (const char* key :
       {"run:", "  seed: 18446744073709551615", "model:", "  init_std: 0.01", "attention:",
        "objective: causal_lm", "data:", "  synthetic:\n    task: passkey\n    alphabet: 100",
        "train:", "  lr: 1.0\n", "  min_lr: 1.0e-05", "  eps: 1.0e-06", "  precision: fp32",
        "log:\n  every: 5"})
    EXPECT_TRUE(contains(c.yaml, key)) << key << " missing from\n" << c.yaml;

  const Config back = parse_config(c.yaml);
  EXPECT_EQ(back.yaml, c.yaml);
  EXPECT_EQ(back.run.name, "with \"quotes\" and \\ and: colon");
  EXPECT_EQ(back.run.seed, c.run.seed);
  EXPECT_EQ(back.model.position, Position::learned);
  EXPECT_EQ(back.train.lr, c.train.lr);
  EXPECT_EQ(back.train.min_lr, c.train.min_lr);

  // Through a file, as the trainer does with run_dir/config.yaml; awkward doubles survive.
  const std::string dir = test::temp_dir("config_roundtrip");
  const Config odd = parse_config("train: {lr: 0.1, min_lr: 0.030000000000000002, eps: 1e-300}");
  const Config loaded = load_config(write_file(dir, "config.yaml", odd.yaml));
  EXPECT_EQ(loaded.yaml, odd.yaml);
  EXPECT_EQ(loaded.train.lr, odd.train.lr);
  EXPECT_EQ(loaded.train.min_lr, 0.030000000000000002);
  EXPECT_EQ(loaded.train.eps, 1e-300);
}

TEST(Config, EnumNames) {
  EXPECT_STREQ(name_of(Norm::layernorm), "layernorm");
  EXPECT_STREQ(name_of(Norm::rmsnorm), "rmsnorm");
  EXPECT_STREQ(name_of(Activation::gelu), "gelu");
  EXPECT_STREQ(name_of(Activation::swiglu), "swiglu");
  EXPECT_STREQ(name_of(Position::rope), "rope");
  EXPECT_STREQ(name_of(Position::learned), "learned");
  EXPECT_STREQ(name_of(Position::none), "none");
  EXPECT_STREQ(name_of(Pattern::dense), "dense");
  EXPECT_STREQ(name_of(Pattern::flash), "flash");
  EXPECT_STREQ(name_of(HeadScheme::mha), "mha");
  EXPECT_STREQ(name_of(Objective::causal_lm), "causal_lm");
  EXPECT_STREQ(name_of(Recompute::none), "none");
  EXPECT_STREQ(name_of(Recompute::block), "block");
  EXPECT_STREQ(name_of(Precision::fp32), "fp32");
  EXPECT_STREQ(name_of(DataSource::synthetic), "synthetic");
  EXPECT_STREQ(name_of(SyntheticTask::copy), "copy");
  EXPECT_STREQ(name_of(SyntheticTask::passkey), "passkey");
  EXPECT_STREQ(name_of(SyntheticTask::random), "random");
}

}  // namespace
}  // namespace longctx

namespace longctx {
namespace {

TEST(Config, AttentionPatternOptions) {
  Config c = parse_config(
      "attention: {pattern: longformer, window: 32, dilation: [1, 2, 1, 2], global_tokens: [0, 5],"
      " bigbird: {random_blocks: 2, resample: per_step}, strided: {stride: 7},"
      " mla: {kv_lora_rank: 16, rope_dim: 8}}");
  EXPECT_EQ(c.attention.pattern, Pattern::longformer);
  EXPECT_EQ(c.attention.window, 32);
  EXPECT_EQ(c.attention.dilation, (std::vector<int>{1, 2, 1, 2}));
  EXPECT_EQ(c.attention.global_tokens, (std::vector<int>{0, 5}));
  EXPECT_EQ(c.attention.bigbird.random_blocks, 2);
  EXPECT_EQ(c.attention.bigbird.resample, Resample::per_step);
  EXPECT_EQ(c.attention.strided.stride.value, 7);
  EXPECT_EQ(c.attention.mla.kv_lora_rank, 16);
  // Defaults, a scalar dilation, `auto`, and the merged YAML reading back the same.
  Config d = parse_config("attention: {dilation: 3, strided: {stride: auto}}");
  EXPECT_EQ(d.attention.dilation, std::vector<int>{3});
  EXPECT_TRUE(d.attention.strided.stride.is_auto());
  const Config back = parse_config(c.yaml);
  EXPECT_EQ(back.yaml, c.yaml);
  EXPECT_EQ(back.attention.dilation, c.attention.dilation);
}

TEST(Config, AttentionCombinationsNameTheirKeys) {
  std::string msg = error_of("attention: {pattern: linformer}");
  EXPECT_NE(msg.find("attention.pattern: linformer"), std::string::npos) << msg;
  EXPECT_NE(msg.find("objective: causal_lm"), std::string::npos) << msg;
  msg = error_of("attention: {heads: gqa, n_kv_head: 3}");
  EXPECT_NE(msg.find("attention.n_kv_head"), std::string::npos) << msg;
  msg = error_of("attention: {heads: gqa}");
  EXPECT_NE(msg.find("attention.n_kv_head"), std::string::npos) << msg;
  msg = error_of("attention: {heads: mqa, n_kv_head: 2}");
  EXPECT_NE(msg.find("attention.heads: mqa"), std::string::npos) << msg;
  msg = error_of("attention: {heads: mla, mla: {rope_dim: 64}}");
  EXPECT_NE(msg.find("attention.mla.rope_dim"), std::string::npos) << msg;
  msg = error_of("attention: {heads: mla}\nmodel: {position: learned}");
  EXPECT_NE(msg.find("model.position: rope"), std::string::npos) << msg;
  msg = error_of("attention: {dilation: [1, 2]}");
  EXPECT_NE(msg.find("attention.dilation"), std::string::npos) << msg;
  msg = error_of("attention: {dilation: [1, 0, 1, 1]}");
  EXPECT_NE(msg.find("attention.dilation"), std::string::npos) << msg;
  msg = error_of("attention: {global_tokens: [0, 300]}\ndata: {seq_len: 256}");
  EXPECT_NE(msg.find("attention.global_tokens"), std::string::npos) << msg;
  msg = error_of("attention: {strided: {stride: often}}");
  EXPECT_NE(msg.find("attention.strided.stride"), std::string::npos) << msg;
  EXPECT_NE(msg.find("auto"), std::string::npos) << msg;
  msg = error_of("attention: {pattern: longformer, global_tokens: [], separate_global_proj: true}");
  EXPECT_NE(msg.find("attention.separate_global_proj"), std::string::npos) << msg;
  EXPECT_NE(msg.find("attention.global_tokens"), std::string::npos) << msg;
  EXPECT_EQ(error_of("attention: {pattern: longformer, global_tokens: [0, 9], "
                     "separate_global_proj: true}"),
            "no error");
  msg = error_of("attention: {pattern: flash, separate_global_proj: true}\nobjective: classify\n"
                 "data: {synthetic: {task: majority}}");
  EXPECT_NE(msg.find("attention.pattern: longformer"), std::string::npos) << msg;
  EXPECT_EQ(error_of("attention: {pattern: longformer, separate_global_proj: true}\n"
                     "objective: classify\ndata: {synthetic: {task: majority}}"),
            "no error");
  EXPECT_EQ(error_of("attention: {heads: gqa, n_kv_head: 2}"), "no error");
  msg = error_of("attention: {pattern: longformer, global_doc_starts: true}");
  EXPECT_NE(msg.find("attention.global_doc_starts"), std::string::npos) << msg;
  EXPECT_NE(msg.find("data.source: hdf5"), std::string::npos) << msg;
  EXPECT_EQ(error_of("attention: {pattern: longformer, global_doc_starts: true}\n"
                     "data: {source: hdf5, train: d}"),
            "no error");
  msg = error_of("attention: {pattern: flash, global_doc_starts: true}\n"
                 "data: {source: hdf5, train: d}");
  EXPECT_NE(msg.find("attention.pattern: longformer"), std::string::npos) << msg;
  EXPECT_EQ(error_of("attention: {heads: mqa}"), "no error");
}

}  // namespace
}  // namespace longctx

namespace longctx {
namespace {

// Every config the project ships validates (the files are documentation users copy).
TEST(Config, ShippedConfigsValidate) {
  int n = 0;
  for (const char* dir : {"/configs", "/configs/attention"})
    for (const auto& entry : std::filesystem::directory_iterator(std::string(LONGCTX_SOURCE_DIR) + dir))
      if (entry.path().extension() == ".yaml") {
        EXPECT_NO_THROW(load_config(entry.path().string())) << entry.path();
        ++n;
      }
  EXPECT_GE(n, 10);
}

}  // namespace
}  // namespace longctx

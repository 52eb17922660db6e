// Sweep files (parsing, expansion, validation), the numbers of the report computed from run
// directories written by hand, and tools/plot.py on hand-written evaluation results.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "sweep/report.h"
#include "sweep/run_record.h"
#include "sweep/run_sweep.h"
#include "sweep/sweep.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::error_of;

const char* kBase = R"(
run: {name: tiny, out_dir: runs/tiny, seed: 1}
model: {vocab_size: 32, d_model: 32, n_layer: 2, n_head: 2, d_ff: 64, max_seq_len: 256}
attention: {pattern: flash, block_size: 16}
data: {source: synthetic, seq_len: 32, synthetic: {task: copy, alphabet: 8}}
train: {micro_batch: 2, steps: 4, warmup: 1}
)";

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

// A directory holding base.yaml; sweep files are parsed as if they lay in it.
std::string sweep_dir(const std::string& name) {
  const std::string dir = test::temp_dir("sweep_" + name);
  write(dir + "/base.yaml", kBase);
  return dir;
}

SweepSpec parse_in(const std::string& dir, const std::string& text) {
  return parse_sweep(text, dir + "/sweep.yaml");
}

std::string parse_error(const std::string& dir, const std::string& text) {
  return error_of([&] { parse_in(dir, text); });
}

TEST(SweepFile, ParsesEveryPart) {
  const std::string dir = sweep_dir("parse");
  const SweepSpec s = parse_in(dir, R"(
base: base.yaml
out_dir: runs/abl
overrides: {train.steps: 3, run.seed: 7}
variants:
  flash: {attention.pattern: flash}
  longformer: {attention.pattern: longformer, attention.window: 8}
grid: {data.seq_len: [32, 64]}
)");
  EXPECT_EQ(s.base, dir + "/base.yaml");  // relative to the sweep file, not the working dir
  EXPECT_EQ(s.out_dir, "runs/abl");
  EXPECT_EQ(s.overrides, (Overrides{"train.steps=3", "run.seed=7"}));
  ASSERT_EQ(s.variants.size(), 2u);
  EXPECT_EQ(s.variants[0].first, "flash");  // file order, not sorted
  EXPECT_EQ(s.variants[1].first, "longformer");
  EXPECT_EQ(s.variants[1].second,
            (Overrides{"attention.pattern=longformer", "attention.window=8"}));
  ASSERT_EQ(s.grid.size(), 1u);
  EXPECT_EQ(s.grid[0].first, "data.seq_len");
  EXPECT_EQ(s.grid[0].second, (std::vector<std::string>{"32", "64"}));
}

TEST(SweepFile, AbsoluteBaseAndDefaultOutDir) {
  const std::string dir = sweep_dir("absolute");
  const SweepSpec s = parse_sweep(str("base: ", dir, "/base.yaml\nvariants: {a: {}}\n"),
                                  "/somewhere/else/my_abl.yaml");
  EXPECT_EQ(s.base, dir + "/base.yaml");
  EXPECT_EQ(s.out_dir, "runs/my_abl");
}

// Each override value must come back through load_config as the value the sweep file meant.
TEST(SweepFile, OverrideValuesReadBackThroughTheConfig) {
  const std::string dir = sweep_dir("values");
  const SweepSpec s = parse_in(dir, R"(
base: base.yaml
variants:
  v:
    attention.pattern: longformer
    attention.global_tokens: [0, 16]
    attention.dilation:
      - 1
      - 2
    attention.bigbird: {random_blocks: 2}
    run.name: "1e3"
    train.lr: 2.5e-3
    data.val:
)");
  EXPECT_EQ(s.variants[0].second,
            (Overrides{"attention.pattern=longformer", "attention.global_tokens=[0, 16]",
                       "attention.dilation=[1, 2]", "attention.bigbird={random_blocks: 2}",
                       "run.name=\"1e3\"", "train.lr=2.5e-3", "data.val="}));
  const Config c = load_config(s.base, s.variants[0].second);
  EXPECT_EQ(c.attention.pattern, Pattern::longformer);
  EXPECT_EQ(c.attention.global_tokens, (std::vector<int>{0, 16}));
  EXPECT_EQ(c.attention.dilation, (std::vector<int>{1, 2}));
  EXPECT_EQ(c.attention.bigbird.random_blocks, 2);
  EXPECT_EQ(c.attention.bigbird.window_blocks, 1);  // a map merges, the other keys stay
  EXPECT_EQ(c.run.name, "1e3");                     // quoted: a string, not a number
  EXPECT_DOUBLE_EQ(c.train.lr, 2.5e-3);
  EXPECT_EQ(c.data.val, "");
}

// A string in a list that holds a comma must stay one element.
TEST(SweepFile, StringsWithFlowCharactersAreQuotedInsideLists) {
  const std::string dir = sweep_dir("flow");
  const SweepSpec s =
      parse_in(dir, "base: base.yaml\nvariants:\n  v:\n    x:\n      - a, b\n      - c\n");
  EXPECT_EQ(s.variants[0].second, (Overrides{"x=[\"a, b\", c]"}));
}

TEST(SweepFile, ErrorsNameTheFileAndTheKey) {
  const std::string dir = sweep_dir("errors");
  const std::string file = dir + "/sweep.yaml";
  struct Case {
    const char* text;
    const char* expected;
  };
  const Case cases[] = {
      {"base: base.yaml\nvariants: {a: {}}\nvarients: {}\n", "unknown key 'varients'"},
      {"variants: {a: {}}\n", "'base' must name the base config"},
      {"base: missing.yaml\nvariants: {a: {}}\n", "'base' names 'missing.yaml'"},
      {"base: base.yaml\n", "'variants' must be a non-empty map"},
      {"base: base.yaml\nvariants: {}\n", "'variants' must be a non-empty map"},
      {"base: base.yaml\nvariants: [a, b]\n", "'variants' must be a non-empty map"},
      {"base: base.yaml\nvariants: {a: attention.pattern=flash}\n",
       "variant 'a' must be a map of config keys"},
      {"base: base.yaml\nvariants: {a: }\n", "variant 'a' must be a map of config keys"},
      {"base: base.yaml\nvariants: {a/b: {}}\n", "variant name 'a/b'"},
      {"base: base.yaml\nvariants: {..: {}}\n", "variant name '..'"},
      {"base: base.yaml\nvariants: {a: {x: 1, x: 2}}\n", "variant 'a' gives 'x' twice"},
      {"base: base.yaml\nvariants: {a: {x=1: 2}}\n", "variant 'a' has the key 'x=1'"},
      {"base: base.yaml\noverrides: [train.steps=3]\nvariants: {a: {}}\n",
       "'overrides' must be a map"},
      {"base: base.yaml\nvariants: {a: {}}\ngrid: {data.seq_len: 32}\n",
       "'grid' key 'data.seq_len' must be a non-empty list"},
      {"base: base.yaml\nvariants: {a: {}}\ngrid: {data.seq_len: []}\n",
       "'grid' key 'data.seq_len' must be a non-empty list"},
      {"base: base.yaml\nvariants: {a: {}\n", "not valid YAML at line"},
      {"[1, 2]\n", "must be a map with keys base"},
  };
  for (const Case& c : cases) {
    const std::string e = parse_error(dir, c.text);
    EXPECT_CONTAINS(e, str("sweep '", file, "'")) << c.text;
    EXPECT_CONTAINS(e, c.expected) << c.text;
  }
  EXPECT_CONTAINS(error_of([&] { load_sweep(dir + "/nope.yaml"); }), "nope.yaml");
}

TEST(SweepExpand, VariantsThenGridPointsLastKeyFastest) {
  const std::string dir = sweep_dir("expand");
  const SweepSpec s = parse_in(dir, R"(
base: base.yaml
out_dir: out
overrides: {train.steps: 3}
variants:
  b: {attention.pattern: dense}
  a: {}
grid: {data.seq_len: [32, 64], model.n_layer: [1, 2]}
)");
  const std::vector<SweepRun> runs = expand_sweep(s);
  const std::vector<std::string> want = {"b/seq_len=32,n_layer=1", "b/seq_len=32,n_layer=2",
                                         "b/seq_len=64,n_layer=1", "b/seq_len=64,n_layer=2",
                                         "a/seq_len=32,n_layer=1", "a/seq_len=32,n_layer=2",
                                         "a/seq_len=64,n_layer=1", "a/seq_len=64,n_layer=2"};
  ASSERT_EQ(runs.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(runs[i].name, want[i]);
    EXPECT_EQ(runs[i].dir, "out/" + want[i]);
  }
  EXPECT_EQ(runs[2].variant, "b");
  EXPECT_EQ(runs[2].distinct,
            (Overrides{"attention.pattern=dense", "data.seq_len=64", "model.n_layer=1"}));
  EXPECT_EQ(runs[2].overrides,
            (Overrides{"train.steps=3", "attention.pattern=dense", "data.seq_len=64",
                       "model.n_layer=1", "run.out_dir=\"out/b/seq_len=64,n_layer=1\"",
                       "run.name=\"b/seq_len=64,n_layer=1\""}));
  EXPECT_EQ(runs[4].distinct, (Overrides{"data.seq_len=32", "model.n_layer=1"}));
}

TEST(SweepExpand, NoGridNamesRunsByVariant) {
  const std::string dir = sweep_dir("nogrid");
  const std::vector<SweepRun> runs =
      expand_sweep(parse_in(dir, "base: base.yaml\nout_dir: o\nvariants: {x: {}, y: {}}\n"));
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].name, "x");
  EXPECT_EQ(runs[1].dir, "o/y");
}

TEST(SweepExpand, GridNamesAreFilesystemSafe) {
  const std::string dir = sweep_dir("safe");
  const std::vector<SweepRun> runs = expand_sweep(parse_in(dir, R"(
base: base.yaml
out_dir: o
variants: {v: {}}
grid: {attention.global_tokens: [[0, 64], "a b/c"], data.seq_len: [32]}
)"));
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].name, "v/global_tokens=0_64,seq_len=32");
  EXPECT_EQ(runs[1].name, "v/global_tokens=a_b_c,seq_len=32");
  EXPECT_EQ(runs[0].distinct[0], "attention.global_tokens=[0, 64]");
}

TEST(SweepExpand, GridKeysEndingAlikeKeepTheirFullPath) {
  const std::string dir = sweep_dir("alike");
  const std::vector<SweepRun> runs = expand_sweep(parse_in(dir, R"(
base: base.yaml
variants: {v: {}}
grid: {attention.window: [8], attention.bigbird.window: [2]}
)"));
  EXPECT_EQ(fs::path(runs[0].dir).filename(), "attention.window=8,attention.bigbird.window=2");
}

TEST(SweepExpand, RunsThatWouldShareADirectoryAreAnError) {
  const std::string dir = sweep_dir("clash");
  const SweepSpec s = parse_in(dir, R"(
base: base.yaml
variants: {v: {}}
grid: {run.name: ["a b", "a_b"]}
)");
  const std::string e = error_of([&] { expand_sweep(s); });
  EXPECT_CONTAINS(e, "v/name=a_b");
  EXPECT_CONTAINS(e, "share the directory");
}

TEST(SweepValidate, ConfigsCarryTheRunsKeys) {
  const std::string dir = sweep_dir("valid");
  const SweepSpec s = parse_in(dir, R"(
base: base.yaml
out_dir: o
overrides: {train.steps: 3}
variants: {lf: {attention.pattern: longformer, attention.window: 8}, d: {attention.pattern: dense}}
grid: {data.seq_len: [32, 64]}
)");
  const std::vector<SweepRun> runs = expand_sweep(s);
  const std::vector<Config> cfgs = validate_sweep(s, runs);
  ASSERT_EQ(cfgs.size(), 4u);
  EXPECT_EQ(cfgs[1].attention.pattern, Pattern::longformer);
  EXPECT_EQ(cfgs[1].attention.window, 8);
  EXPECT_EQ(cfgs[1].data.seq_len, 64);
  EXPECT_EQ(cfgs[1].train.steps, 3);
  EXPECT_EQ(cfgs[1].run.out_dir, "o/lf/seq_len=64");
  EXPECT_EQ(cfgs[1].run.name, "lf/seq_len=64");
  EXPECT_EQ(cfgs[2].attention.pattern, Pattern::dense);
  EXPECT_EQ(cfgs[2].data.seq_len, 32);
}

TEST(SweepValidate, AVariantsUnknownKeyNamesFileVariantAndKey) {
  const std::string dir = sweep_dir("badkey");
  const SweepSpec s = parse_in(dir, R"(
base: base.yaml
variants: {good: {attention.pattern: dense}, bad: {attention.patern: dense}}
grid: {data.seq_len: [32, 64]}
)");
  const std::string e = error_of([&] { validate_sweep(s, expand_sweep(s)); });
  EXPECT_CONTAINS(e, str("sweep '", dir, "/sweep.yaml'"));
  EXPECT_CONTAINS(e, "variant 'bad' (runs bad/seq_len=32, bad/seq_len=64)");
  EXPECT_CONTAINS(e, "unknown key 'attention.patern'");
  EXPECT_EQ(e.find("'good'"), std::string::npos) << e;
  EXPECT_THROW(validate_sweep(s, expand_sweep(s)), ConfigError);
}

TEST(SweepValidate, AnImpossibleCombinationNamesTheVariant) {
  const std::string dir = sweep_dir("combo");
  const SweepSpec s =
      parse_in(dir, "base: base.yaml\nvariants: {lin: {attention.pattern: linformer}, f: {}}\n");
  const std::string e = error_of([&] { validate_sweep(s, expand_sweep(s)); });
  EXPECT_CONTAINS(e, "variant 'lin': config error: 'attention.pattern: linformer'");
}

TEST(SweepValidate, ABadSharedOverrideBlamesTheOverrides) {
  const std::string dir = sweep_dir("shared");
  const SweepSpec s =
      parse_in(dir, "base: base.yaml\noverrides: {train.step: 3}\nvariants: {a: {}, b: {}}\n");
  const std::string e = error_of([&] { validate_sweep(s, expand_sweep(s)); });
  EXPECT_CONTAINS(e, "check 'base' and 'overrides'");
  EXPECT_CONTAINS(e, "unknown key 'train.step'");
}

// The shipped ablation sweeps expand and validate. The eval keys belong to evaluation; where
// this build's config does not know them yet, the rest of each run's config is still checked.
TEST(SweepValidate, ShippedAblationsAreValid) {
  const bool eval_known = error_of([] { parse_config("eval: {tasks: [ppl]}"); }) == "(no error)";
  for (const char* name : {"attention", "encoder"}) {
    SweepSpec s = load_sweep(str(LONGCTX_SOURCE_DIR, "/configs/ablations/", name, ".yaml"));
    if (!eval_known)
      s.overrides.erase(
          std::remove_if(s.overrides.begin(), s.overrides.end(),
                         [](const std::string& o) { return o.rfind("eval.", 0) == 0; }),
          s.overrides.end());
    const std::vector<SweepRun> runs = expand_sweep(s);
    const std::vector<Config> cfgs = validate_sweep(s, runs);
    std::set<Pattern> patterns;
    std::set<HeadScheme> heads;
    for (const Config& c : cfgs) {
      patterns.insert(c.attention.pattern);
      heads.insert(c.attention.heads);
    }
    if (std::string(name) == "attention") {
      EXPECT_EQ(runs.size(), 16u);     // 8 variants x 2 lengths
      EXPECT_EQ(patterns.size(), 5u);  // every pattern but linformer (causal)
      EXPECT_EQ(heads.size(), 4u);     // mha, gqa, mqa, mla
      for (const Config& c : cfgs) EXPECT_EQ(c.data.synthetic.task, SyntheticTask::copy);
    } else {
      EXPECT_EQ(patterns.size(), 6u);  // all six
      for (const Config& c : cfgs) EXPECT_EQ(c.objective, Objective::classify);
    }
  }
}

// ---- run directories -> report numbers -----------------------------------------------------

// Four train lines and two eval lines; every number below is read off these by hand.
const char* kMetrics =
    R"({"step": 1, "loss": 3.0, "tokens_per_s": 100.0, "peak_rss_mb": 50.0}
{"step": 10, "loss": 2.5, "tokens_per_s": 300.0, "peak_rss_mb": 80.0}
{"step": 10, "eval": {"ppl": {"loss": 2.2, "ppl": 9.025, "tokens": 100}, "kvcache": {"bytes_per_token_per_layer": 1024}}}
{"step": 20, "loss": 2.0, "tokens_per_s": 200.0, "peak_rss_mb": 70.0}
{"step": 30, "loss": 1.5, "tokens_per_s": 500.0, "peak_rss_mb": 60.0}
{"step": 30, "eval": {"ppl": {"loss": 2.1, "ppl": 8.17, "tokens": 40960, "buckets": []}, "passkey": {"accuracy": 0.85}, "classify": {"accuracy": 0.9, "macro_f1": 0.88}, "kvcache": {"bytes_per_token_per_layer": 2048}}}
)";

const char* kSummary =
    R"({"finished": true, "steps": 30, "params": 3300000, "non_embedding_params": 3200000,
 "final_loss": 9.99, "tokens_per_s": 12345.6, "peak_rss_mb": 512.0, "wall_s": 42.1})";

TEST(RunRecord, NumbersComeFromMetricsAndSummary) {
  const std::string dir = test::temp_dir("sweep_record");
  write(dir + "/metrics.jsonl", kMetrics);
  write(dir + "/summary.json", kSummary);
  const RunRecord r = read_run_record(dir);
  EXPECT_EQ(r.train_lines, 4);
  EXPECT_EQ(r.last_step, 30);
  EXPECT_EQ(r.final_loss, 1.5);      // the last train line, not summary's 9.99
  EXPECT_EQ(r.tokens_per_s, 300.0);  // median of 300, 200, 500 (the first line left out)
  EXPECT_EQ(r.peak_rss_mb, 80.0);    // max of 50, 80, 70, 60
  EXPECT_FALSE(r.peak_gpu_mb.has_value());
  EXPECT_EQ(r.val_ppl, 8.17);  // the last eval line
  EXPECT_EQ(r.kv_bytes_per_token_per_layer, 2048.0);
  ASSERT_EQ(r.scores.size(), 3u);  // in file order
  EXPECT_EQ(r.scores[0].first, (std::pair<std::string, std::string>{"passkey", "accuracy"}));
  EXPECT_EQ(r.scores[0].second, 0.85);
  EXPECT_EQ(r.scores[1].first, (std::pair<std::string, std::string>{"classify", "accuracy"}));
  EXPECT_EQ(r.scores[1].second, 0.9);
  EXPECT_EQ(r.scores[2].first, (std::pair<std::string, std::string>{"classify", "macro_f1"}));
  EXPECT_EQ(r.scores[2].second, 0.88);
  EXPECT_EQ(r.params, 3300000);
  EXPECT_EQ(r.non_embedding_params, 3200000);
  EXPECT_EQ(r.wall_s(), 42.1);
  EXPECT_TRUE(r.problems.empty());
}

TEST(RunRecord, MedianAndOddCases) {
  EXPECT_EQ(median({5, 1, 3}), 3);
  EXPECT_EQ(median({4, 1, 3, 2}), 2.5);
  const std::string dir = test::temp_dir("sweep_record_odd");
  // One train line: its own rate; GPU memory kept; a partial last line skipped with a note.
  write(dir + "/metrics.jsonl",
        "{\"step\": 0, \"loss\": 2.0, \"tokens_per_s\": 77.0, \"peak_rss_mb\": 5, "
        "\"peak_gpu_mb\": 900}\n{\"step\": 1, \"lo");
  const RunRecord r = read_run_record(dir);
  EXPECT_EQ(r.tokens_per_s, 77.0);
  EXPECT_EQ(r.peak_gpu_mb, 900.0);
  EXPECT_EQ(r.train_lines, 1);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_CONTAINS(r.problems[0], "metrics.jsonl line 2");
  const RunRecord empty = read_run_record(dir + "/none");
  EXPECT_FALSE(empty.final_loss || empty.tokens_per_s || empty.params || empty.wall_s());
}

TEST(RunRecord, FinishedFromSummaryElseFromTheLastStep) {
  const std::string dir = test::temp_dir("sweep_finished");
  write(dir + "/metrics.jsonl", kMetrics);  // last train step 30
  EXPECT_TRUE(run_finished(read_run_record(dir), 30));
  EXPECT_FALSE(run_finished(read_run_record(dir), 31));
  write(dir + "/launch.json", R"({"exit_code": 1, "wall_s": 3.5})");
  EXPECT_FALSE(run_finished(read_run_record(dir), 30));  // it failed after its last step
  EXPECT_EQ(read_run_record(dir).wall_s(), 3.5);
  write(dir + "/summary.json", R"({"finished": false})");
  EXPECT_FALSE(run_finished(read_run_record(dir), 30));
  write(dir + "/summary.json", kSummary);
  EXPECT_TRUE(run_finished(read_run_record(dir), 30));
  EXPECT_EQ(read_run_record(dir).wall_s(), 42.1);  // the trainer's time wins
}

TEST(RunRecord, CachedNeedsTheSameConfigAndAFinishedRun) {
  const std::string dir = test::temp_dir("sweep_cached");
  Config cfg = parse_config(kBase, {"train.steps=30"});
  write(dir + "/metrics.jsonl", kMetrics);
  EXPECT_FALSE(run_is_cached(dir, cfg));  // no config.yaml
  write(dir + "/config.yaml", cfg.yaml);
  EXPECT_TRUE(run_is_cached(dir, cfg));
  EXPECT_FALSE(run_is_cached(dir, parse_config(kBase, {"train.steps=30", "train.lr=1e-3"})));
  EXPECT_FALSE(run_is_cached(dir, parse_config(kBase, {"train.steps=40"})));
}

std::string table_row(const std::string& md, const std::string& name) {
  const size_t at = md.find("| " + name + " |");
  if (at == std::string::npos) return "";
  return md.substr(at, md.find('\n', at) - at);
}

TEST(Report, RowsShowTheRunsNumbersAndDashesForMissingOnes) {
  const std::string root = test::temp_dir("sweep_report");
  write(root + "/full/metrics.jsonl", kMetrics);
  write(root + "/full/summary.json", kSummary);
  SweepSpec spec;
  spec.path = "abl.yaml";
  spec.base = "base.yaml";
  spec.out_dir = root;
  spec.overrides = {"train.steps=30"};
  std::vector<ReportRow> rows(3);
  rows[0].name = rows[0].variant = "full";
  rows[0].dir = root + "/full";
  rows[0].status = "ok";
  rows[0].distinct = {"attention.pattern=flash"};
  rows[0].seq_len = 1024;
  rows[0].n_layer = 4;
  rows[0].record = read_run_record(rows[0].dir);
  rows[1].name = rows[1].variant = "empty";
  rows[1].dir = root + "/empty";
  rows[1].status = "cached";
  rows[2].name = rows[2].variant = "broken";
  rows[2].dir = root + "/broken";
  rows[2].status = "failed";
  rows[2].failure = "exit 1: error: no dataset at '/x'";
  PlotList plots;
  plots.files = {{"plots/loss.png", "training loss vs step"}};
  const std::string md = report_markdown(spec, rows, plots);

  EXPECT_CONTAINS(md,
                  "| run | status | overrides | params | final loss | val ppl | passkey acc "
                  "| classify acc | classify F1 | tokens/s | peak RSS MB | "
                  "KV B/token (all layers) | wall |");
  // params 3.30M, loss 1.5, ppl 8.17, scores, median tokens/s 300, peak 80 MB,
  // KV 2048 x 4 layers = 8192, wall 42.1 s.
  EXPECT_EQ(table_row(md, "full"),
            "| full | ok | attention.pattern=flash | 3.30M | 1.5000 | 8.170 | 0.850 | 0.900 | "
            "0.880 | 300 | 80 | 8192 | 42.1s |");
  EXPECT_EQ(table_row(md, "empty"),
            "| empty | cached | – | – | – | – | – | – | – | – | – | – | – |");
  EXPECT_EQ(table_row(md, "broken").rfind("| broken | failed |", 0), 0u) << md;
  EXPECT_CONTAINS(md, "3 runs: 1 ok, 1 cached, 1 failed.");
  EXPECT_CONTAINS(
      md, "- broken: exit 1: error: no dataset at '/x' (log: `" + root + "/broken/train.log`)");
  EXPECT_CONTAINS(md, "- [plots/loss.png](plots/loss.png): training loss vs step");
  EXPECT_EQ(md.find("peak GPU"), std::string::npos);  // no run reported GPU memory

  std::vector<json> lines;
  std::istringstream in(report_jsonl(rows));
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  const json& f = lines[0];
  EXPECT_EQ(f["name"], "full");
  EXPECT_EQ(f["status"], "ok");
  EXPECT_EQ(f["run_dir"], root + "/full");
  EXPECT_EQ(f["seq_len"], 1024);
  EXPECT_EQ(f["steps"], 30);
  EXPECT_EQ(f["params"], 3300000);
  EXPECT_EQ(f["final_loss"], 1.5);
  EXPECT_EQ(f["val_ppl"], 8.17);
  EXPECT_EQ(f["scores"]["classify"]["macro_f1"], 0.88);
  EXPECT_EQ(f["tokens_per_s"], 300.0);
  EXPECT_EQ(f["peak_rss_mb"], 80.0);
  EXPECT_EQ(f["kv_bytes_per_token"], 8192.0);
  EXPECT_EQ(f["wall_s"], 42.1);
  EXPECT_TRUE(lines[1]["final_loss"].is_null());
  EXPECT_TRUE(lines[1]["tokens_per_s"].is_null());
  EXPECT_EQ(lines[2]["status"], "failed");
  EXPECT_EQ(lines[2]["failure"], "exit 1: error: no dataset at '/x'");
}

TEST(Report, GpuMemoryGetsAColumnWhenAnyRunHasIt) {
  const std::string root = test::temp_dir("sweep_report_gpu");
  write(root + "/g/metrics.jsonl",
        "{\"step\": 0, \"loss\": 1, \"peak_rss_mb\": 10, \"peak_gpu_mb\": 700}\n"
        "{\"step\": 1, \"loss\": 1, \"peak_rss_mb\": 10, \"peak_gpu_mb\": 650}\n");
  ReportRow row;
  row.name = "g";
  row.status = "ok";
  row.record = read_run_record(root + "/g");
  const std::string md = report_markdown(SweepSpec{}, {row}, PlotList{{}, "Plots skipped: x"});
  EXPECT_CONTAINS(md, "| peak RSS MB | peak GPU MB |");
  EXPECT_CONTAINS(md, "| 10 | 700 |");
  EXPECT_CONTAINS(md, "Plots skipped: x");
}

// ---- tools/plot.py ---------------------------------------------------------------------------

// The Python the sweep would pick for plots, or "" (the tests then skip).
std::string python_with_matplotlib() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("LONGCTX_PYTHON")) candidates.push_back(env);
  candidates.push_back("/usr/bin/python3");
  candidates.push_back("python3");
  for (const std::string& py : candidates)
    if (test::run_command(py + " -c 'import matplotlib'", nullptr) == 0) return py;
  return "";
}

bool is_png(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  const std::string head = read_file(path).substr(0, 8);
  return head == std::string("\x89PNG\r\n\x1a\n", 8);
}

int plot(const std::string& args, std::string* out) {
  static const std::string py = python_with_matplotlib();
  return test::run_command(str(py, " ", LONGCTX_SOURCE_DIR, "/tools/plot.py ", args), out);
}

TEST(PlotScript, PplAndPasskeyFromEvalFilesAndMetrics) {
  if (python_with_matplotlib().empty()) GTEST_SKIP() << "no Python with matplotlib";
  const std::string dir = test::temp_dir("sweep_plot");
  write(dir + "/a.jsonl",
        R"({"task": "other"}
{"task": "ppl", "loss": 2.0, "ppl": 7.4, "buckets": [{"start": 0, "end": 256, "loss": 2.5, "ppl": 12.2, "tokens": 10}, {"start": 256, "end": 512, "loss": 1.5, "ppl": 4.5, "tokens": 10}, {"start": 512, "end": 768, "loss": null, "ppl": null, "tokens": 0}]}
{"task": "passkey", "accuracy": 0.5, "lengths": [256, 512], "depths": [0.0, 0.5, 1.0], "grid": [[1, 0.5, 0], [0.5, 0.5, 0]]}
)");
  // The same results as a metrics.jsonl eval line.
  write(dir + "/run/metrics.jsonl",
        R"({"step": 0, "loss": 3.0}
{"step": 0, "eval": {"ppl": {"loss": 2.0, "ppl": 7.4, "buckets": [{"start": 0, "end": 64, "loss": 2.0, "ppl": 7.4}]}, "passkey": {"accuracy": 1.0, "lengths": [64], "depths": [0.5], "grid": [[1.0]]}}}
)");
  std::string out;
  ASSERT_EQ(
      plot(str("ppl --out ", dir, "/ppl.png ", dir, "/a.jsonl ", dir, "/run/metrics.jsonl"), &out),
      0)
      << out;
  EXPECT_TRUE(is_png(dir + "/ppl.png"));
  EXPECT_CONTAINS(out, "wrote " + dir + "/ppl.png");
  ASSERT_EQ(
      plot(str("passkey --out ", dir, "/pk.png ", dir, "/a.jsonl ", dir, "/run/metrics.jsonl"),
           &out),
      0)
      << out;
  EXPECT_TRUE(is_png(dir + "/pk.png"));
  ASSERT_EQ(plot(str("losses --out ", dir, "/loss.png ", dir, "/run"), &out), 0) << out;
  EXPECT_TRUE(is_png(dir + "/loss.png"));
}

TEST(PlotScript, ClearErrorsForMissingFilesAndFields) {
  if (python_with_matplotlib().empty()) GTEST_SKIP() << "no Python with matplotlib";
  const std::string dir = test::temp_dir("sweep_plot_errors");
  write(dir + "/nopk.jsonl", "{\"task\": \"ppl\", \"loss\": 1, \"ppl\": 2}\n");
  write(dir + "/badgrid.jsonl",
        "{\"task\": \"passkey\", \"lengths\": [1, 2], \"depths\": [0.5], \"grid\": [[1]]}\n");
  std::string out;
  EXPECT_EQ(plot(str("ppl --out ", dir, "/x.png ", dir, "/missing.jsonl"), &out), 2);
  EXPECT_CONTAINS(out, "cannot read '" + dir + "/missing.jsonl'");
  EXPECT_EQ(plot(str("ppl --out ", dir, "/x.png ", dir, "/nopk.jsonl"), &out), 2);
  EXPECT_CONTAINS(out, "the ppl result has no 'buckets' field");
  EXPECT_EQ(plot(str("passkey --out ", dir, "/x.png ", dir, "/nopk.jsonl"), &out), 2);
  EXPECT_CONTAINS(out, "holds no 'passkey' result");
  EXPECT_EQ(plot(str("passkey --out ", dir, "/x.png ", dir, "/badgrid.jsonl"), &out), 2);
  EXPECT_CONTAINS(out, "must be 2 rows (lengths) of 1 values (depths)");
  EXPECT_EQ(plot(str("losses --out ", dir, "/x.png ", dir), &out), 2);
  EXPECT_CONTAINS(out, "is not a run directory");
  EXPECT_FALSE(fs::exists(dir + "/x.png"));
}

}  // namespace
}  // namespace longctx

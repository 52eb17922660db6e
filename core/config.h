// The run configuration: YAML in, validated as a whole before any work starts.
// An unknown key, a wrong type, an out-of-range value or an impossible combination throws a
// ConfigError (exit code 2) whose message names the key path and what is allowed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace longctx {

enum class Norm { layernorm, rmsnorm };
enum class Activation { gelu, swiglu };
enum class Position { rope, learned, none };
enum class Pattern { dense, flash, longformer, bigbird, strided, linformer };
enum class HeadScheme { mha, gqa, mqa, mla };
enum class Resample { fixed, per_step };
enum class LinformerShare { headwise, kv, layerwise };
enum class Objective { causal_lm, classify };
enum class Pool { mean, cls };
enum class Recompute { none, block };
enum class Precision { fp32, bf16 };
enum class DeviceKind { cpu, cuda };
enum class DataSource { synthetic, hdf5 };
enum class Packing { pack, doc };
enum class SpMode { ulysses, ring };
enum class SyntheticTask { copy, passkey, random, majority, listops };
enum class EvalTask { ppl, passkey, classify, listops, kvcache };

struct RunConfig {
  std::string name = "quickstart";
  std::string out_dir = "runs/quickstart";
  uint64_t seed = 1234;
  DeviceKind device = DeviceKind::cpu;  // cuda: one GPU per rank (local rank -> device)
  // A run directory that already holds a run is refused unless resuming; true clears the files
  // of that run first (config.yaml, metrics.jsonl, summary.json, checkpoints).
  bool overwrite = false;
};

struct ModelConfig {
  int vocab_size = 256;
  int d_model = 256;
  int n_layer = 4;
  int n_head = 4;
  int d_ff = 1024;
  Norm norm = Norm::layernorm;
  Activation activation = Activation::gelu;
  Position position = Position::rope;
  int max_seq_len = 4096;
  bool tie_embeddings = true;
  double init_std = 0.02;
  int n_classes = 2;     // objective: classify
  Pool pool = Pool::mean;  // objective: classify: mean of the final states, or position 0's  // normal init of matrices; output projections scaled by 1/sqrt(2·n_layer)
};

// BigBird (ITC): blocks of attention.block_size.
struct BigBirdConfig {
  int random_blocks = 3;  // random key blocks per query block, drawn outside window and globals
  int global_blocks = 1;  // first (and, bidirectional, last) blocks: attend and attended by all
  int window_blocks = 1;  // neighbour blocks per side
  Resample resample = Resample::fixed;
};

// A positive integer, or `auto` in YAML (held as 0).
struct IntOrAuto {
  int value = 0;
  bool is_auto() const { return value == 0; }
};

struct StridedConfig {
  IntOrAuto stride;  // auto = round(sqrt(seq_len)): O(n·√n)
};

struct LinformerConfig {
  int k = 256;  // projected length of keys and values
  LinformerShare share = LinformerShare::headwise;
};

struct MlaConfig {
  int kv_lora_rank = 64;  // latent size per token
  int rope_dim = 16;      // decoupled RoPE key dims, shared by all heads
};

struct AttentionConfig {
  Pattern pattern = Pattern::flash;
  HeadScheme heads = HeadScheme::mha;
  int n_kv_head = 0;  // 0: same as model.n_head (mha), 1 (mqa)
  int block_size = 64;
  int window = 256;                   // one-sided: |i - j| <= window (causal: 0 <= i - j <= window)
  std::vector<int> dilation = {1};    // one value, or one per head
  std::vector<int> global_tokens = {0};  // positions that attend to all and are attended by all
  bool global_doc_starts = false;  // longformer: each document's first token is global too
  bool separate_global_proj = false;  // longformer: global queries, keys, values of their own
  BigBirdConfig bigbird;
  StridedConfig strided;
  LinformerConfig linformer;
  MlaConfig mla;
};

struct SyntheticConfig {
  SyntheticTask task = SyntheticTask::copy;
  int alphabet = 16;  // symbols used by the random content, a subset of the vocabulary
  IntOrAuto min_len;  // listops: shortest expression in tokens; auto = seq_len / 2
};

struct DataConfig {
  DataSource source = DataSource::synthetic;
  std::string train;  // hdf5: dataset directory (or glob of its shards)
  std::string val;    // hdf5: optional validation dataset
  int seq_len = 256;
  Packing packing = Packing::pack;  // pack: windows across documents; doc: one per sample
  bool doc_mask = false;            // pack: attention stays inside each document
  int prefetch = 4;                 // steps of batches read ahead on the loader's thread
  SyntheticConfig synthetic;
};

struct TrainConfig {
  int micro_batch = 4;
  int grad_accum = 1;
  int steps = 200;
  double lr = 3.0e-4;
  double min_lr = 3.0e-5;
  int warmup = 20;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1.0e-8;
  double clip = 1.0;  // 0 disables clipping
  Recompute recompute = Recompute::none;
  Precision precision = Precision::fp32;
  // GPU attention backward: true gives the same bits on every run (dQ in a pass of its own);
  // false accumulates dQ with fp32 atomics (one recomputation fewer, run-to-run rounding noise).
  bool deterministic = true;
  int threads = 0;  // OpenMP threads; 0: the OpenMP default
  int stop_after = 0;  // > 0: end after this step as if preempted (checkpoint, exit 0)
};

struct CheckpointConfig {
  int every = 0;               // steps between checkpoints; 0: none on a schedule
  int keep = 3;                // newest checkpoints kept
  std::string resume = "none";  // none | auto (newest valid one) | a checkpoint file
};

struct LogConfig {
  int every = 10;
};

// Evaluation during training (and the defaults of `longctx eval`). Results are `eval` lines in
// metrics.jsonl.
struct EvalConfig {
  int every = 0;                   // steps between evaluations; 0: only after the last step
  std::vector<EvalTask> tasks;     // empty: no evaluation during training
  int samples = 64;                // validation samples (ppl, classify, listops)
  int buckets = 8;                 // ppl: position buckets of equal width over seq_len
  std::vector<int> passkey_lengths;  // passkey: context lengths; empty: seq_len/4, /2, seq_len
  int passkey_depths = 5;          // passkey: key depths, evenly from the start to the end
  int passkey_trials = 8;          // passkey: prompts per (length, depth)
  std::vector<int> listops_lengths;  // listops: expression lengths; empty: seq_len
  int kvcache_tokens = 64;         // kvcache: tokens decoded into the measured cache
};

// dp = processes / sp.
struct ParallelConfig {
  int sp = 1;                     // sequence-parallel ranks sharing each sample
  SpMode sp_mode = SpMode::ulysses;
  int zero = 0;                   // 1: optimizer state sharded over dp (ZeRO-1)
  double bucket_mb = 25;          // gradient all-reduce bucket size
  bool overlap = true;            // reduce buckets during backward (ZeRO-0)
};

struct Config {
  RunConfig run;
  ModelConfig model;
  AttentionConfig attention;
  Objective objective = Objective::causal_lm;
  DataConfig data;
  TrainConfig train;
  ParallelConfig parallel;
  LogConfig log;
  CheckpointConfig checkpoint;
  EvalConfig eval;

  std::string yaml;  // the merged configuration as YAML text (defaults filled in)
};

// Reads `path`, applies `overrides` ("a.b=value", parsed as YAML scalars), fills defaults and
// validates. Throws ConfigError (exit code 2) for everything: naming the file for a missing,
// unreadable or malformed file (with line and column for YAML syntax errors) or one that sets
// no key at all (and no override sets one either), and naming the key for the rest.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// The same from YAML text (`origin` names the source in messages).
Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                    const std::string& origin = "<string>");

// s as a YAML double-quoted scalar (quotes and backslashes escaped, control bytes as \xNN): it
// reads back as the same string, never as a number, bool or null.
std::string yaml_double_quoted(const std::string& s);

// Enum names as they appear in YAML.
const char* name_of(Norm);
const char* name_of(Activation);
const char* name_of(Position);
const char* name_of(Pattern);
const char* name_of(HeadScheme);
const char* name_of(Resample);
const char* name_of(LinformerShare);
const char* name_of(Objective);
const char* name_of(Recompute);
const char* name_of(Precision);
const char* name_of(DeviceKind);
const char* name_of(DataSource);
const char* name_of(Packing);
const char* name_of(SpMode);
const char* name_of(SyntheticTask);
const char* name_of(EvalTask);
const char* name_of(Pool);

}  // namespace longctx

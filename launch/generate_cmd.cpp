// `longctx generate`: text from a causal LM checkpoint, decoded with a KV cache (eval/).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <omp.h>
#include <sstream>
#include <string>
#include <vector>

#include "core/cli_args.h"
#include "core/config.h"
#include "core/error.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "eval/decoder.h"
#include "eval/generate.h"
#include "launch/commands.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_file.h"

namespace longctx {
namespace {

const char* kGenerateHelp =
    "usage: longctx generate CHECKPOINT (--prompt TEXT | --prompt-ids 1,2,3) [OPTIONS]\n"
    "\n"
    "CHECKPOINT is a checkpoint file, or a run directory (its newest checkpoint is used).\n"
    "Continues a prompt with a causal LM checkpoint (objective: causal_lm), one token at a time\n"
    "with a KV cache (mla caches its latent and shared rope key only). The prompt is run through\n"
    "the model token by token (prefill), then each new token is sampled and fed back (decode).\n"
    "Attention sees the keys its pattern allows, with the masks built for data.seq_len (or for\n"
    "the prompt plus --max-new rounded up to attention.block_size when that is longer).\n"
    "\n"
    "  --prompt TEXT        text, encoded by the run's tokenizer: the byte tokenizer for synthetic\n"
    "                       data (model.vocab_size >= 256), the dataset's own (byte or\n"
    "                       SentencePiece) for data.source: hdf5 when data.train can be opened;\n"
    "                       otherwise give --prompt-ids\n"
    "  --prompt-ids IDS     the prompt as comma-separated token ids (< model.vocab_size)\n"
    "  --max-new N          tokens to generate at most (default: 64); prompt + N must fit in\n"
    "                       model.max_seq_len, else the command refuses (nothing is clipped)\n"
    "  --temperature T      0: greedy (default); > 0: sample from softmax(logits / T)\n"
    "  --top-k K            sample among the K most likely tokens only (default: 0, all)\n"
    "  --seed S             seed of the sampling (default: 0)\n"
    "  --json               print one JSON object and nothing else: prompt_tokens, new_tokens,\n"
    "                       text (null without a tokenizer), ids, stopped_at_eos,\n"
    "                       prefill_tokens_per_s, decode_tokens_per_s, kv_cache_bytes,\n"
    "                       kv_bytes_per_token_per_layer, context_len\n"
    "  -h, --help           this help\n"
    "\n"
    "Generation stops at --max-new tokens or after the tokenizer's EOS id. Without --json the\n"
    "generated text goes to stdout and a line of statistics (tokens/s of prefill and decode, KV\n"
    "cache bytes) to stderr. Decoding runs on one thread unless OMP_NUM_THREADS is set (one\n"
    "token's products are matrix-vector products; more threads only synchronize).\n"
    "Exit codes: 0 ok, 1 a missing or damaged checkpoint or one that cannot generate, 2 usage.\n";

[[noreturn]] void usage_error(const std::string& msg) {
  throw ConfigError(str(msg, "\n", kGenerateHelp));
}

double parse_temperature(const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(x) || x < 0)
    throw ConfigError(str("--temperature expects a number >= 0, got '", v, "'"));
  return x;
}

// "1,2,3" -> ids, each in [0, vocab).
std::vector<int32_t> parse_ids(const std::string& v, int64_t vocab) {
  std::vector<int32_t> ids;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const int64_t id = parse_int_option("--prompt-ids", item, 0);
    if (id >= vocab)
      throw ConfigError(str("--prompt-ids: token id ", id, " is outside the model's vocabulary [0, ",
                            vocab, ") (model.vocab_size)"));
    ids.push_back(static_cast<int32_t>(id));
  }
  if (ids.empty()) throw ConfigError("--prompt-ids expects comma-separated token ids, got ''");
  return ids;
}

// The tokenizer of the run, or null with the reason in *why.
std::unique_ptr<Tokenizer> run_tokenizer(const Config& cfg, std::string* why) {
  if (cfg.data.source == DataSource::synthetic) {
    if (cfg.model.vocab_size >= 256) return make_byte_tokenizer();
    *why = str("the model's vocabulary (model.vocab_size ", cfg.model.vocab_size,
               ") is smaller than the byte tokenizer's 256 byte ids");
    return nullptr;
  }
  try {
    return Dataset(cfg.data.train).tokenizer();
  } catch (const Error& e) {
    *why = str("the run's dataset '", cfg.data.train,
               "' (which records its tokenizer) cannot be read: ", e.what());
    return nullptr;
  }
}

std::string human_bytes(int64_t bytes) {
  if (bytes < 1024) return str(bytes, " B");
  char buf[32];
  if (bytes < 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

int generate_main(const std::vector<std::string>& args) {
  std::string path, prompt_text, prompt_ids;
  bool has_text = false, json = false;
  SamplingOptions opt;
  opt.max_new = 64;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) usage_error(str(a, " needs a value"));
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kGenerateHelp, stdout);
      return 0;
    } else if (a == "--prompt") {
      prompt_text = value();
      has_text = true;
    } else if (a == "--prompt-ids") {
      prompt_ids = value();
    } else if (a == "--max-new") {
      opt.max_new = static_cast<int>(parse_int_option(a, value(), 0));
    } else if (a == "--temperature") {
      opt.temperature = parse_temperature(value());
    } else if (a == "--top-k") {
      opt.top_k = static_cast<int>(parse_int_option(a, value(), 0));
    } else if (a == "--seed") {
      opt.seed = static_cast<uint64_t>(parse_int_option(a, value(), 0, INT64_MAX));
    } else if (a == "--json") {
      json = true;
    } else if (!a.empty() && a[0] == '-') {
      usage_error(str("unknown option '", a, "' for generate"));
    } else if (path.empty()) {
      path = a;
    } else {
      usage_error(str("unexpected argument '", a, "' (generate takes one CHECKPOINT)"));
    }
  }
  if (path.empty()) usage_error("generate needs a CHECKPOINT (a checkpoint file or a run directory)");
  if (has_text == !prompt_ids.empty())
    usage_error("generate needs exactly one of --prompt TEXT and --prompt-ids IDS");

  path = resolve_checkpoint(path);
  CheckpointState state = read_checkpoint(path);
  const Config cfg = parse_config(state.config_yaml, {}, "the config of checkpoint '" + path + "'");
  try {
    check_decodable(cfg);
  } catch (const Error& e) {
    throw Error(str("checkpoint '", path, "' cannot generate: ", e.what()));
  }
  const int64_t V = cfg.model.vocab_size, max_len = cfg.model.max_seq_len;

  std::string why;
  const std::unique_ptr<Tokenizer> tok = run_tokenizer(cfg, &why);
  std::vector<int32_t> prompt;
  if (has_text) {
    if (!tok)
      throw ConfigError(str("cannot encode --prompt: ", why, "; give the prompt as --prompt-ids"));
    std::vector<uint32_t> ids;
    tok->encode(prompt_text, &ids);
    for (uint32_t id : ids) {
      if (int64_t(id) >= V)
        throw ConfigError(str("--prompt: the ", tok->name(), " tokenizer gave token id ", id,
                              ", outside the model's vocabulary [0, ", V, ")"));
      prompt.push_back(static_cast<int32_t>(id));
    }
    if (prompt.empty()) usage_error("--prompt is empty: generation needs at least one token");
  } else {
    prompt = parse_ids(prompt_ids, V);
  }
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n > max_len)
    throw ConfigError(str("the prompt has ", n, " tokens, more than model.max_seq_len ", max_len));
  if (n + opt.max_new > max_len)
    throw ConfigError(str("the prompt (", n, " tokens) plus --max-new ", opt.max_new, " is ",
                          n + opt.max_new, " tokens, more than model.max_seq_len ", max_len,
                          "; --max-new ", max_len - n, " fits"));
  if (tok && tok->eos_id() < V) opt.eos_id = tok->eos_id();

  // One token at a time, every product is a matrix-vector product (one thread in Eigen) and the
  // row kernels' OpenMP regions see one row: more threads only add synchronization.
  if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
  Decoder dec(cfg, state.infos, state.values.data(), decode_context_len(cfg, n + opt.max_new));
  state = CheckpointState{};  // the decoder holds its own copy of the weights
  const Generation g = generate(dec, prompt, opt);

  // Ids the tokenizer does not know (a model vocabulary larger than the tokenizer's) have no
  // text; the ids list keeps them.
  std::string text;
  if (tok) {
    std::vector<uint32_t> known;
    for (int32_t id : g.ids)
      if (id < tok->vocab_size()) known.push_back(static_cast<uint32_t>(id));
    text = tok->decode(known.data(), known.size());
  }
  const KvCache& cache = dec.cache();
  if (json) {
    nlohmann::ordered_json j;
    j["prompt_tokens"] = g.prompt_tokens;
    j["new_tokens"] = g.ids.size();
    j["text"] = tok ? nlohmann::ordered_json(text) : nlohmann::ordered_json(nullptr);
    j["ids"] = g.ids;
    j["stopped_at_eos"] = g.stopped_at_eos;
    j["prefill_tokens_per_s"] = g.prefill_tokens_per_s;
    j["decode_tokens_per_s"] = g.decode_tokens_per_s;
    j["kv_cache_bytes"] = cache.bytes();
    j["kv_bytes_per_token_per_layer"] = cache.bytes_per_token_per_layer();
    j["context_len"] = dec.context_len();
    std::puts(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  if (tok) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
  } else {
    std::string ids;
    for (int32_t id : g.ids) ids += str(ids.empty() ? "" : " ", id);
    std::printf("%s\n", ids.c_str());
    std::fprintf(stderr, "(token ids: no tokenizer to decode them: %s)\n", why.c_str());
  }
  std::fflush(stdout);
  std::fprintf(stderr,
               "prompt %lld tokens, %zu new%s; prefill %.1f tokens/s, decode %.1f tokens/s; "
               "KV cache %s (%.0f bytes per token per layer, %lld tokens x %lld layers)\n",
               static_cast<long long>(g.prompt_tokens), g.ids.size(),
               g.stopped_at_eos ? " (stopped at EOS)" : "", g.prefill_tokens_per_s,
               g.decode_tokens_per_s, human_bytes(cache.bytes()).c_str(),
               cache.bytes_per_token_per_layer(), static_cast<long long>(cache.tokens()),
               static_cast<long long>(cache.n_layer()));
  return 0;
}

}  // namespace longctx

// `longctx ckpt inspect|export`: a checkpoint's summary, and its model as safetensors + JSON
// config for other tools (tools/reference.py, PyTorch).
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "launch/commands.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_file.h"

namespace longctx {

namespace {

using ojson = nlohmann::ordered_json;

const char* kCkptHelp =
    "usage: longctx ckpt inspect PATH [--json]\n"
    "       longctx ckpt export PATH [--format safetensors] --out DIR\n"
    "\n"
    "PATH is a checkpoint file (HDF5, format longctx-checkpoint), a run directory (its newest\n"
    "checkpoint, the one checkpoints/latest names), or a checkpoints/latest file.\n"
    "\n"
    "  inspect  step, tokens seen, the model and attention settings of its config, every\n"
    "           tensor (name, shape, values), the totals (parameters, bytes), whether the\n"
    "           optimizer moments are present, and the loader position. Reads the attributes\n"
    "           and checks each tensor's shape, but not the data's checksums (export does).\n"
    "    --json   the same as one JSON object on stdout, and nothing else\n"
    "  export   reads the whole checkpoint, checksums included, and writes into DIR (created\n"
    "           if needed, each file replaced atomically):\n"
    "             model.safetensors  the parameters as F32 tensors under their longctx names\n"
    "                                (wte, blocks.0.attn.wq, ...), metadata: format, step,\n"
    "                                tokens_seen; no optimizer moments\n"
    "             config.json        the run's merged config, as JSON\n"
    "    --format F  the output format; safetensors is the only one\n"
    "    --out DIR   the output directory (required)\n"
    "           tools/reference.py DIR computes the model's logits from these two files.\n"
    "  --help   this text\n"
    "\n"
    "Exit codes: 0 ok, 1 a missing, unreadable or damaged checkpoint, 2 bad usage.\n";

[[noreturn]] void usage_error(const std::string& msg) {
  throw ConfigError(str(msg, "\n", kCkptHelp));
}

// 1234567 -> "1,234,567"
std::string grouped(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v);
  for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
  return v < 0 ? "-" + s : s;
}

std::string human_bytes(int64_t bytes) {
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return str(bytes, " B");
  double x = double(bytes) / 1024.0;
  int u = 0;
  for (; x >= 1024.0 && u < 3; ++u) x /= 1024.0;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", x, units[u]);
  return buf;
}

// A plain YAML scalar typed as YAML 1.2's core schema reads it; quoted scalars stay strings
// (the merged config quotes every string value).
ojson scalar_to_json(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (s == "null" || s == "Null" || s == "NULL" || s == "~" || s.empty()) return nullptr;
  char* end = nullptr;
  errno = 0;
  const long long i = std::strtoll(s.c_str(), &end, 10);
  if (*end == '\0' && errno == 0) return i;
  errno = 0;
  const double d = std::strtod(s.c_str(), &end);
  // strtod also takes "inf", "nan" and hex floats, which YAML spells otherwise (or not at all).
  if (*end == '\0' && errno == 0 && s.find_first_of("xXnN") == std::string::npos) return d;
  return s;
}

ojson yaml_to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      ojson j = ojson::object();
      for (const auto& kv : n) j[kv.first.Scalar()] = yaml_to_json(kv.second);
      return j;
    }
    case YAML::NodeType::Sequence: {
      ojson j = ojson::array();
      for (const auto& e : n) j.push_back(yaml_to_json(e));
      return j;
    }
    case YAML::NodeType::Scalar:
      return scalar_to_json(n);
    default:
      return nullptr;
  }
}

ojson config_json(const CheckpointState& s, const std::string& path) {
  try {
    return yaml_to_json(YAML::Load(s.config_yaml));
  } catch (const YAML::Exception& e) {
    throw Error(str("checkpoint '", path, "': its config attribute is not YAML: ", e.what()));
  }
}

// The loader state as JSON when it is, else as the text it is.
ojson loader_json(const CheckpointState& s) {
  if (s.loader_json.empty()) return nullptr;
  try {
    return ojson::parse(s.loader_json);
  } catch (const nlohmann::json::exception&) {
    return s.loader_json;
  }
}

std::vector<int64_t> dims(const Shape& shape) {
  return std::vector<int64_t>(shape.dim.begin(), shape.dim.begin() + shape.ndim);
}

std::string summary_of(const ojson& section, std::initializer_list<const char*> keys) {
  std::string out;
  for (const char* k : keys) {
    if (!section.contains(k)) continue;
    const ojson& v = section[k];
    out += str(out.empty() ? "" : ", ", k, " ", v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

int inspect(const std::string& path, bool json) {
  const CheckpointState s = read_checkpoint_header(path);
  const ojson cfg = config_json(s, path);
  const ojson model = cfg.contains("model") ? cfg["model"] : ojson::object();
  const ojson attention = cfg.contains("attention") ? cfg["attention"] : ojson::object();
  int64_t params = 0;
  for (const ParamInfo& p : s.infos) params += p.shape.numel();
  const int64_t param_bytes = params * int64_t(sizeof(float));
  std::error_code ec;
  const auto file_bytes = std::filesystem::file_size(path, ec);

  if (json) {
    ojson j;
    j["path"] = path;
    j["file_bytes"] = ec ? 0 : int64_t(file_bytes);
    j["format"] = kCheckpointFormat;
    j["version"] = kCheckpointVersion;
    j["step"] = s.step;
    j["tokens_seen"] = s.tokens_seen;
    j["objective"] = cfg.contains("objective") ? cfg["objective"] : ojson(nullptr);
    j["model"] = model;
    j["attention"] = attention;
    j["tensors"] = ojson::array();
    for (const ParamInfo& p : s.infos)
      j["tensors"].push_back({{"name", p.name}, {"shape", dims(p.shape)}, {"numel", p.shape.numel()}});
    j["parameters"] = params;
    j["parameter_bytes"] = param_bytes;
    j["optimizer_moments"] = s.has_moments;
    j["loader"] = loader_json(s);
    j["rng"] = [&]() -> ojson {
      try {
        return ojson::parse(s.rng_json);
      } catch (const nlohmann::json::exception&) {
        return s.rng_json;
      }
    }();
    std::puts(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }

  size_t w = 4;
  for (const ParamInfo& p : s.infos) w = std::max(w, p.name.size());
  std::printf("checkpoint   %s (%s)\n", path.c_str(), ec ? "?" : human_bytes(int64_t(file_bytes)).c_str());
  std::printf("step         %s\n", grouped(s.step).c_str());
  std::printf("tokens seen  %s\n", grouped(s.tokens_seen).c_str());
  std::printf("model        %s\n",
              summary_of(model, {"vocab_size", "d_model", "n_layer", "n_head", "d_ff", "norm",
                                 "activation", "position", "max_seq_len", "tie_embeddings"})
                  .c_str());
  std::printf("attention    %s\n",
              summary_of(attention, {"pattern", "heads", "n_kv_head", "block_size"}).c_str());
  if (cfg.contains("objective"))
    std::printf("objective    %s\n", cfg["objective"].is_string()
                                         ? cfg["objective"].get<std::string>().c_str()
                                         : cfg["objective"].dump().c_str());
  std::printf("tensors      %zu\n", s.infos.size());
  for (const ParamInfo& p : s.infos)
    std::printf("  %-*s  %-16s %15s\n", int(w), p.name.c_str(), p.shape.str().c_str(),
                grouped(p.shape.numel()).c_str());
  std::printf("parameters   %s (%s as fp32)\n", grouped(params).c_str(), human_bytes(param_bytes).c_str());
  std::printf("moments      %s\n", s.has_moments ? "present (AdamW m and v)" : "absent");
  std::printf("loader       %s\n", s.loader_json.empty() ? "(none)" : s.loader_json.c_str());
  return 0;
}

// safetensors: 8 bytes little-endian header length, the JSON header (tensor -> dtype, shape,
// data_offsets relative to the data that follows; __metadata__ of strings), then the data.
int export_safetensors(const std::string& path, const std::string& dir) {
  const CheckpointState s = read_checkpoint(path);
  const ojson cfg = config_json(s, path);
  ojson header;
  header["__metadata__"] = {{"format", "pt"},
                            {"source", kCheckpointFormat},
                            {"step", std::to_string(s.step)},
                            {"tokens_seen", std::to_string(s.tokens_seen)}};
  std::vector<std::string_view> parts = {std::string_view(), std::string_view()};
  int64_t at = 0;
  for (const ParamInfo& p : s.infos) {
    const int64_t bytes = p.shape.numel() * int64_t(sizeof(float));
    header[p.name] = {{"dtype", "F32"}, {"shape", dims(p.shape)}, {"data_offsets", {at, at + bytes}}};
    parts.emplace_back(reinterpret_cast<const char*>(s.values.data() + p.offset), size_t(bytes));
    at += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned, as the spec does
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = char((uint64_t(text.size()) >> (8 * i)) & 0xff);
  parts[0] = std::string_view(len, 8);
  parts[1] = text;

  make_dirs(dir);
  const std::string model = (std::filesystem::path(dir) / "model.safetensors").string();
  const std::string config = (std::filesystem::path(dir) / "config.json").string();
  write_file_atomic(model, parts);
  write_file_atomic(config, cfg.dump(2) + "\n");
  std::printf("wrote %s (%zu tensors, %s) and %s\n", model.c_str(), s.infos.size(),
              human_bytes(at).c_str(), config.c_str());
  return 0;
}

}  // namespace

int ckpt_main(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::fputs(kCkptHelp, stderr);
    return 2;
  }
  const std::string& sub = args[0];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::fputs(kCkptHelp, stdout);
    return 0;
  }
  if (sub != "inspect" && sub != "export") usage_error(str("unknown ckpt command '", sub, "'"));
  std::string path, out, format = "safetensors";
  bool json = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= args.size()) usage_error(str(flag, " needs a value"));
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kCkptHelp, stdout);
      return 0;
    } else if (a == "--json" && sub == "inspect") {
      json = true;
    } else if (a == "--out" && sub == "export") {
      out = value("--out");
    } else if (a == "--format" && sub == "export") {
      format = value("--format");
    } else if (!a.empty() && a[0] == '-') {
      usage_error(str("unknown option '", a, "' for ckpt ", sub));
    } else if (path.empty()) {
      path = a;
    } else {
      usage_error(str("unexpected argument '", a, "' (ckpt ", sub, " takes one PATH)"));
    }
  }
  if (path.empty()) usage_error(str("ckpt ", sub, " needs a checkpoint PATH"));
  path = resolve_checkpoint(path);
  if (sub == "inspect") return inspect(path, json);
  if (format != "safetensors")
    usage_error(str("--format '", format, "' is not supported; the export format is safetensors"));
  if (out.empty()) usage_error("ckpt export needs --out DIR");
  return export_safetensors(path, out);
}

}  // namespace longctx

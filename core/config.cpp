// Config loading. One schema table (path, field, allowed range) drives everything: reading keys,
// rejecting unknown ones, type and range checks, and writing the merged YAML back out, so a key
// added to the table is parsed, validated and recorded in run_dir/config.yaml at once.
#include "core/config.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <type_traits>
#include <variant>

#include "core/error.h"

namespace longctx {
namespace {

using Names = std::vector<const char*>;

// The YAML spelling of each enumerator, in declaration order: an enum's value is its index here.
const Names& enum_names(Norm) {
  static const Names names{"layernorm", "rmsnorm"};
  return names;
}
const Names& enum_names(Activation) {
  static const Names names{"gelu", "swiglu"};
  return names;
}
const Names& enum_names(Position) {
  static const Names names{"rope", "learned", "none"};
  return names;
}
const Names& enum_names(Pattern) {
  static const Names names{"dense", "flash", "longformer", "bigbird", "strided", "linformer"};
  return names;
}
const Names& enum_names(HeadScheme) {
  static const Names names{"mha", "gqa", "mqa", "mla"};
  return names;
}
const Names& enum_names(Resample) {
  static const Names names{"fixed", "per_step"};
  return names;
}
const Names& enum_names(LinformerShare) {
  static const Names names{"headwise", "kv", "layerwise"};
  return names;
}
const Names& enum_names(Objective) {
  static const Names names{"causal_lm", "classify"};
  return names;
}
const Names& enum_names(Pool) {
  static const Names names{"mean", "cls"};
  return names;
}
const Names& enum_names(Recompute) {
  static const Names names{"none", "block"};
  return names;
}
const Names& enum_names(Precision) {
  static const Names names{"fp32", "bf16"};
  return names;
}
const Names& enum_names(DeviceKind) {
  static const Names names{"cpu", "cuda"};
  return names;
}
const Names& enum_names(DataSource) {
  static const Names names{"synthetic", "hdf5"};
  return names;
}
const Names& enum_names(SpMode) {
  static const Names names{"ulysses", "ring"};
  return names;
}
const Names& enum_names(Packing) {
  static const Names names{"pack", "doc"};
  return names;
}
const Names& enum_names(SyntheticTask) {
  static const Names names{"copy", "passkey", "random", "majority", "listops"};
  return names;
}

const Names& enum_names(EvalTask) {
  static const Names names{"ppl", "passkey", "classify", "listops", "kvcache"};
  return names;
}

template <class E>
const char* enum_name(E value) {
  const Names& names = enum_names(value);
  const auto i = static_cast<size_t>(value);
  return i < names.size() ? names[i] : "?";
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// Allowed values of a numeric key; an open end excludes its bound.
struct Range {
  double lo = -kInf;
  double hi = kInf;
  bool lo_open = false;
  bool hi_open = false;

  bool contains(double v) const {
    return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
};

Range between(double lo, double hi) { return {lo, hi, false, false}; }
Range at_least(double lo) { return {lo, kInf, false, false}; }
Range above(double lo) { return {lo, kInf, true, false}; }
Range half_open(double lo, double hi) { return {lo, hi, false, true}; }

// Shortest text that reads back as the same double.
std::string shortest(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

// Range bounds as a reader expects them: 1000000000 rather than 1e+09.
std::string bound(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  return shortest(v);
}

std::string describe(const Range& r) {
  if (std::isinf(r.hi)) return str(r.lo_open ? "> " : ">= ", bound(r.lo));
  if (!r.lo_open && !r.hi_open) return str("between ", bound(r.lo), " and ", bound(r.hi));
  return str("in ", r.lo_open ? "(" : "[", bound(r.lo), ", ", bound(r.hi), r.hi_open ? ")" : "]");
}

// A pointer to the Config field a key fills; the alternative's type is the key's type.
using FieldRef = std::variant<int*, uint64_t*, double*, bool*, std::string*, std::vector<int>*,
                              IntOrAuto*, Norm*, Activation*, Position*, Pattern*,
                              HeadScheme*, Resample*, LinformerShare*, Objective*, Pool*, Recompute*,
                              Precision*, DeviceKind*, DataSource*, Packing*, SpMode*, SyntheticTask*,
                              std::vector<EvalTask>*>;

struct Key {
  const char* path;
  FieldRef (*field)(Config&);
  Range range;  // numeric keys only

  Key(const char* path, FieldRef (*field)(Config&), Range range = {})
      : path(path), field(field), range(range) {}
};

// Every known key, in the order of the Config struct (which is also the order of config.yaml).
// Upper bounds only keep sizes sane (and products of them away from overflow); combinations of
// keys are checked in check_combinations.
const std::vector<Key>& keys() {
  static const std::vector<Key> table{
      {"run.name", [](Config& c) -> FieldRef { return &c.run.name; }},
      {"run.out_dir", [](Config& c) -> FieldRef { return &c.run.out_dir; }},
      {"run.seed", [](Config& c) -> FieldRef { return &c.run.seed; }},
      {"run.device", [](Config& c) -> FieldRef { return &c.run.device; }},
      {"run.overwrite", [](Config& c) -> FieldRef { return &c.run.overwrite; }},
      {"model.vocab_size", [](Config& c) -> FieldRef { return &c.model.vocab_size; },
       between(2, 1 << 24)},
      {"model.d_model", [](Config& c) -> FieldRef { return &c.model.d_model; },
       between(1, 1 << 16)},
      {"model.n_layer", [](Config& c) -> FieldRef { return &c.model.n_layer; },
       between(1, 1024)},
      {"model.n_head", [](Config& c) -> FieldRef { return &c.model.n_head; }, between(1, 1024)},
      {"model.d_ff", [](Config& c) -> FieldRef { return &c.model.d_ff; }, between(1, 1 << 20)},
      {"model.norm", [](Config& c) -> FieldRef { return &c.model.norm; }},
      {"model.activation", [](Config& c) -> FieldRef { return &c.model.activation; }},
      {"model.position", [](Config& c) -> FieldRef { return &c.model.position; }},
      {"model.max_seq_len", [](Config& c) -> FieldRef { return &c.model.max_seq_len; },
       between(1, 1 << 24)},
      {"model.tie_embeddings", [](Config& c) -> FieldRef { return &c.model.tie_embeddings; }},
      {"model.init_std", [](Config& c) -> FieldRef { return &c.model.init_std; }, above(0)},
      {"model.n_classes", [](Config& c) -> FieldRef { return &c.model.n_classes; },
       between(2, 1 << 16)},
      {"model.pool", [](Config& c) -> FieldRef { return &c.model.pool; }},
      {"attention.pattern", [](Config& c) -> FieldRef { return &c.attention.pattern; }},
      {"attention.heads", [](Config& c) -> FieldRef { return &c.attention.heads; }},
      {"attention.n_kv_head", [](Config& c) -> FieldRef { return &c.attention.n_kv_head; },
       between(0, 1024)},
      {"attention.block_size", [](Config& c) -> FieldRef { return &c.attention.block_size; },
       between(1, 1 << 16)},
      {"attention.window", [](Config& c) -> FieldRef { return &c.attention.window; },
       between(0, 1 << 24)},
      {"attention.dilation", [](Config& c) -> FieldRef { return &c.attention.dilation; },
       between(1, 1 << 16)},
      {"attention.global_tokens",
       [](Config& c) -> FieldRef { return &c.attention.global_tokens; }, between(0, 1 << 24)},
      {"attention.global_doc_starts",
       [](Config& c) -> FieldRef { return &c.attention.global_doc_starts; }},
      {"attention.separate_global_proj",
       [](Config& c) -> FieldRef { return &c.attention.separate_global_proj; }},
      {"attention.bigbird.random_blocks",
       [](Config& c) -> FieldRef { return &c.attention.bigbird.random_blocks; },
       between(0, 1 << 16)},
      {"attention.bigbird.global_blocks",
       [](Config& c) -> FieldRef { return &c.attention.bigbird.global_blocks; },
       between(0, 1 << 16)},
      {"attention.bigbird.window_blocks",
       [](Config& c) -> FieldRef { return &c.attention.bigbird.window_blocks; },
       between(0, 1 << 16)},
      {"attention.bigbird.resample",
       [](Config& c) -> FieldRef { return &c.attention.bigbird.resample; }},
      {"attention.strided.stride",
       [](Config& c) -> FieldRef { return &c.attention.strided.stride; }, between(1, 1 << 24)},
      {"attention.linformer.k", [](Config& c) -> FieldRef { return &c.attention.linformer.k; },
       between(1, 1 << 20)},
      {"attention.linformer.share",
       [](Config& c) -> FieldRef { return &c.attention.linformer.share; }},
      {"attention.mla.kv_lora_rank",
       [](Config& c) -> FieldRef { return &c.attention.mla.kv_lora_rank; }, between(1, 1 << 16)},
      {"attention.mla.rope_dim", [](Config& c) -> FieldRef { return &c.attention.mla.rope_dim; },
       between(2, 1 << 16)},
      {"objective", [](Config& c) -> FieldRef { return &c.objective; }},
      {"data.source", [](Config& c) -> FieldRef { return &c.data.source; }},
      {"data.train", [](Config& c) -> FieldRef { return &c.data.train; }},
      {"data.val", [](Config& c) -> FieldRef { return &c.data.val; }},
      {"data.seq_len", [](Config& c) -> FieldRef { return &c.data.seq_len; },
       between(1, 1 << 24)},
      {"data.packing", [](Config& c) -> FieldRef { return &c.data.packing; }},
      {"data.doc_mask", [](Config& c) -> FieldRef { return &c.data.doc_mask; }},
      {"data.prefetch", [](Config& c) -> FieldRef { return &c.data.prefetch; }, between(1, 1024)},
      {"data.synthetic.task", [](Config& c) -> FieldRef { return &c.data.synthetic.task; }},
      {"data.synthetic.alphabet",
       [](Config& c) -> FieldRef { return &c.data.synthetic.alphabet; }, between(2, 1 << 24)},
      {"data.synthetic.min_len",
       [](Config& c) -> FieldRef { return &c.data.synthetic.min_len; }, between(1, 1 << 24)},
      {"train.micro_batch", [](Config& c) -> FieldRef { return &c.train.micro_batch; },
       between(1, 1 << 16)},
      {"train.grad_accum", [](Config& c) -> FieldRef { return &c.train.grad_accum; },
       between(1, 1 << 16)},
      {"train.steps", [](Config& c) -> FieldRef { return &c.train.steps; }, between(1, 1e9)},
      {"train.lr", [](Config& c) -> FieldRef { return &c.train.lr; }, above(0)},
      {"train.min_lr", [](Config& c) -> FieldRef { return &c.train.min_lr; }, at_least(0)},
      {"train.warmup", [](Config& c) -> FieldRef { return &c.train.warmup; }, between(0, 1e9)},
      {"train.weight_decay", [](Config& c) -> FieldRef { return &c.train.weight_decay; },
       at_least(0)},
      {"train.beta1", [](Config& c) -> FieldRef { return &c.train.beta1; }, half_open(0, 1)},
      {"train.beta2", [](Config& c) -> FieldRef { return &c.train.beta2; }, half_open(0, 1)},
      {"train.eps", [](Config& c) -> FieldRef { return &c.train.eps; }, above(0)},
      {"train.clip", [](Config& c) -> FieldRef { return &c.train.clip; }, at_least(0)},
      {"train.recompute", [](Config& c) -> FieldRef { return &c.train.recompute; }},
      {"train.precision", [](Config& c) -> FieldRef { return &c.train.precision; }},
      {"train.deterministic",
       [](Config& c) -> FieldRef { return &c.train.deterministic; }},
      {"train.threads", [](Config& c) -> FieldRef { return &c.train.threads; },
       between(0, 4096)},
      {"train.stop_after", [](Config& c) -> FieldRef { return &c.train.stop_after; },
       between(0, 1e9)},
      {"parallel.sp", [](Config& c) -> FieldRef { return &c.parallel.sp; }, between(1, 4096)},
      {"parallel.sp_mode", [](Config& c) -> FieldRef { return &c.parallel.sp_mode; }},
      {"parallel.zero", [](Config& c) -> FieldRef { return &c.parallel.zero; }, between(0, 1)},
      {"parallel.overlap", [](Config& c) -> FieldRef { return &c.parallel.overlap; }},
      {"parallel.bucket_mb", [](Config& c) -> FieldRef { return &c.parallel.bucket_mb; },
       above(0)},
      {"log.every", [](Config& c) -> FieldRef { return &c.log.every; }, between(1, 1e9)},
      {"checkpoint.every", [](Config& c) -> FieldRef { return &c.checkpoint.every; },
       between(0, 1e9)},
      {"checkpoint.keep", [](Config& c) -> FieldRef { return &c.checkpoint.keep; },
       between(1, 1e6)},
      {"checkpoint.resume", [](Config& c) -> FieldRef { return &c.checkpoint.resume; }},
      {"eval.every", [](Config& c) -> FieldRef { return &c.eval.every; }, between(0, 1e9)},
      {"eval.tasks", [](Config& c) -> FieldRef { return &c.eval.tasks; }},
      {"eval.samples", [](Config& c) -> FieldRef { return &c.eval.samples; }, between(1, 1e9)},
      {"eval.buckets", [](Config& c) -> FieldRef { return &c.eval.buckets; }, between(1, 1 << 20)},
      {"eval.passkey_lengths", [](Config& c) -> FieldRef { return &c.eval.passkey_lengths; },
       between(8, 1 << 24)},
      {"eval.passkey_depths", [](Config& c) -> FieldRef { return &c.eval.passkey_depths; },
       between(1, 1000)},
      {"eval.passkey_trials", [](Config& c) -> FieldRef { return &c.eval.passkey_trials; },
       between(1, 1e6)},
      {"eval.listops_lengths", [](Config& c) -> FieldRef { return &c.eval.listops_lengths; },
       between(3, 1 << 24)},
      {"eval.kvcache_tokens", [](Config& c) -> FieldRef { return &c.eval.kvcache_tokens; },
       between(1, 1 << 24)},
  };
  return table;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

std::string join_path(const std::string& section, const std::string& name) {
  return section.empty() ? name : section + "." + name;
}

// The table indexed for lookups: leaf keys by path, and the child names of every section
// ("" is the top level) in table order, for "allowed keys" lists.
struct Schema {
  std::map<std::string, const Key*> leaves;
  std::map<std::string, std::vector<std::string>> sections;
};

const Schema& schema() {
  static const Schema s = [] {
    Schema out;
    for (const Key& key : keys()) {
      out.leaves[key.path] = &key;
      const std::vector<std::string> parts = split_path(key.path);
      std::string section;
      for (const std::string& part : parts) {
        std::vector<std::string>& children = out.sections[section];
        if (std::find(children.begin(), children.end(), part) == children.end())
          children.push_back(part);
        section = join_path(section, part);
      }
    }
    return out;
  }();
  return s;
}

std::string comma_list(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// Edit distance counting a swap of neighbours as one edit, since that is the common typo.
size_t typo_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// A close sibling of `name` in `section`, else the one key elsewhere with exactly that name
// (model.seq_len -> data.seq_len); empty when neither helps.
std::string suggestion(const std::string& section, const std::string& name) {
  const Schema& s = schema();
  const size_t limit = std::max<size_t>(1, name.size() / 3);
  size_t best = limit + 1;
  std::string found;
  for (const std::string& child : s.sections.at(section)) {
    const size_t d = typo_distance(name, child);
    if (d < best) {
      best = d;
      found = join_path(section, child);
    }
  }
  if (!found.empty()) return found;
  for (const auto& [path, key] : s.leaves) {
    const std::vector<std::string> parts = split_path(path);
    if (parts.back() != name) continue;
    if (!found.empty()) return "";  // ambiguous: better no hint than a wrong one
    found = path;
  }
  return found;
}

[[noreturn]] void fail(const std::string& message) {
  throw ConfigError("config error: " + message);
}

[[noreturn]] void unknown_key(const std::string& section, const std::string& name) {
  const std::string hint = suggestion(section, name);
  const std::string allowed = comma_list(schema().sections.at(section));
  fail(str("unknown key '", join_path(section, name), "'",
           hint.empty() ? "" : str(" (did you mean '", hint, "'?)"), "; allowed ",
           section.empty() ? "top-level keys" : str("keys in '", section, "'"), ": ", allowed));
}

// A quoted scalar ("3", '1e-3', !!str 3) is a string in YAML, never a number or a bool.
bool is_quoted(const YAML::Node& v) {
  return v.Tag() == "!" || v.Tag() == "tag:yaml.org,2002:str";
}

// How a rejected value reads in a message.
std::string shown(const YAML::Node& v) {
  switch (v.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return str(is_quoted(v) ? "the string '" : "'", v.Scalar(), "'");
    default:
      return "nothing";
  }
}

[[noreturn]] void bad_value(const Key& key, const std::string& allowed, const YAML::Node& v) {
  fail(str("'", key.path, "' must be ", allowed, ", got ", shown(v)));
}

// The text of an unquoted scalar: the only form a number or bool may take.
std::optional<std::string_view> plain_text(const YAML::Node& v) {
  if (!v.IsScalar() || is_quoted(v)) return std::nullopt;
  return std::string_view(v.Scalar());
}

// YAML's decimal float forms (1, -2.5, .5, 3e-4, 1.0e+8); not .inf or .nan, which no key wants.
std::optional<double> parse_number(std::string_view s) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty() || s[0] == '+' || s.find_first_not_of("0123456789+-.eE") != std::string::npos)
    return std::nullopt;
  double v = 0;
  const auto res = std::from_chars(s.data(), s.data() + s.size(), v);
  if (res.ec != std::errc() || res.ptr != s.data() + s.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

// A decimal integer; 1e5 or 1000.0 also count since they are exact integers. Values past the
// int64 range saturate, so they fail the key's range check rather than read as a type error.
std::optional<int64_t> parse_integer(std::string_view s) {
  std::string_view digits = s;
  if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);
  int64_t i = 0;
  if (!digits.empty() && digits[0] != '+') {
    const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), i);
    if (res.ec == std::errc() && res.ptr == digits.data() + digits.size()) return i;
  }
  const std::optional<double> d = parse_number(s);
  if (!d || *d != std::floor(*d)) return std::nullopt;
  if (std::fabs(*d) >= 9.0e18)
    return *d > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(*d);
}

void read_value(const Key& key, const YAML::Node& v, int* out) {
  const auto text = plain_text(v);
  const std::optional<int64_t> i = text ? parse_integer(*text) : std::nullopt;
  if (!i) bad_value(key, "an integer", v);
  if (!key.range.contains(static_cast<double>(*i))) bad_value(key, describe(key.range), v);
  *out = static_cast<int>(*i);
}

// One integer or a list of them, each in the key's range: `dilation: 2` or `dilation: [1, 2]`.
void read_value(const Key& key, const YAML::Node& v, std::vector<int>* out) {
  const std::string allowed = "an integer or a list of integers, each " + describe(key.range);
  std::vector<int> values;
  auto one = [&](const YAML::Node& item) {
    const auto text = plain_text(item);
    const std::optional<int64_t> i = text ? parse_integer(*text) : std::nullopt;
    if (!i || !key.range.contains(static_cast<double>(*i))) bad_value(key, allowed, v);
    values.push_back(static_cast<int>(*i));
  };
  if (v.IsSequence())
    for (const auto& item : v) one(item);
  else
    one(v);
  *out = values;
}

void read_value(const Key& key, const YAML::Node& v, IntOrAuto* out) {
  if (v.IsScalar() && v.Scalar() == "auto") {
    out->value = 0;
    return;
  }
  const auto text = plain_text(v);
  const std::optional<int64_t> i = text ? parse_integer(*text) : std::nullopt;
  if (!i || !key.range.contains(static_cast<double>(*i)))
    bad_value(key, "auto or an integer " + describe(key.range), v);
  out->value = static_cast<int>(*i);
}

void read_value(const Key& key, const YAML::Node& v, uint64_t* out) {
  const auto text = plain_text(v);
  uint64_t u = 0;
  const bool ok = text && !text->empty() &&
                  text->find_first_not_of("0123456789") == std::string_view::npos &&
                  std::from_chars(text->data(), text->data() + text->size(), u).ec == std::errc();
  if (!ok) bad_value(key, "an integer between 0 and 18446744073709551615", v);
  *out = u;
}

void read_value(const Key& key, const YAML::Node& v, double* out) {
  const auto text = plain_text(v);
  const std::optional<double> d = text ? parse_number(*text) : std::nullopt;
  if (!d) bad_value(key, "a number", v);
  if (!key.range.contains(*d)) bad_value(key, describe(key.range), v);
  *out = *d;
}

// Only true/false: YAML 1.1's yes/no/on/off are too easy to write by accident.
void read_value(const Key& key, const YAML::Node& v, bool* out) {
  const auto text = plain_text(v);
  if (!text || (*text != "true" && *text != "false")) bad_value(key, "true or false", v);
  *out = *text == "true";
}

// Paths that may be empty: unset, as in the defaults.
bool may_be_empty(const Key& key) {
  return std::string_view(key.path) == "data.train" || std::string_view(key.path) == "data.val";
}

void read_value(const Key& key, const YAML::Node& v, std::string* out) {
  if (v.IsNull() && may_be_empty(key)) {  // `data.val:` or --set data.val= : unset
    out->clear();
    return;
  }
  if (!v.IsScalar() || (v.Scalar().empty() && !may_be_empty(key)))
    bad_value(key, "a non-empty string", v);
  *out = v.Scalar();
}

template <class E>
std::enable_if_t<std::is_enum_v<E>> read_value(const Key& key, const YAML::Node& v, E* out) {
  const Names& names = enum_names(E{});
  if (v.IsScalar()) {
    for (size_t i = 0; i < names.size(); ++i) {
      if (v.Scalar() == names[i]) {
        *out = static_cast<E>(i);
        return;
      }
    }
  }
  std::string allowed;
  for (const char* name : names) allowed += (allowed.empty() ? "" : "|") + std::string(name);
  bad_value(key, "one of " + allowed, v);
}

// A list of names (a single name is a list of one): `tasks: [ppl, passkey]`.
template <class E>
void read_value(const Key& key, const YAML::Node& v, std::vector<E>* out) {
  std::vector<E> values;
  auto one = [&](const YAML::Node& item) {
    E e{};
    read_value(key, item, &e);
    if (std::find(values.begin(), values.end(), e) == values.end()) values.push_back(e);
  };
  if (v.IsSequence())
    for (const auto& item : v) one(item);
  else if (!v.IsNull())
    one(v);
  *out = values;
}

// Reads one map of the document into `cfg`, recursing into sub-sections; throws on the first
// problem in document order.
void read_section(const YAML::Node& map, const std::string& section, Config& cfg) {
  const Schema& s = schema();
  std::set<std::string> seen;
  for (const auto& entry : map) {
    if (!entry.first.IsScalar())
      fail(str("keys in ", section.empty() ? "the top level" : "'" + section + "'",
               " must be names, got ", shown(entry.first)));
    const std::string& name = entry.first.Scalar();
    const std::string path = join_path(section, name);
    if (!seen.insert(name).second) fail(str("key '", path, "' is given twice"));
    const YAML::Node& value = entry.second;
    if (const auto leaf = s.leaves.find(path); leaf != s.leaves.end()) {
      const Key& key = *leaf->second;
      std::visit([&](auto* field) { read_value(key, value, field); }, key.field(cfg));
    } else if (const auto sub = s.sections.find(path); sub != s.sections.end()) {
      // `model:` with nothing under it is an empty section, not a mistake.
      if (value.IsMap())
        read_section(value, path, cfg);
      else if (!value.IsNull())
        fail(str("'", path, "' must be a map of keys (", comma_list(sub->second), "), got ",
                 shown(value)));
    } else {
      unknown_key(section, name);
    }
  }
}

void check_attention(const Config& c) {
  const ModelConfig& m = c.model;
  const AttentionConfig& a = c.attention;
  const int head_dim = m.d_model / m.n_head;
  switch (a.heads) {
    case HeadScheme::mha:
      if (a.n_kv_head != 0 && a.n_kv_head != m.n_head)
        fail(str("'attention.n_kv_head' must be 0 or equal 'model.n_head' (", m.n_head,
                 ") with 'attention.heads: mha', got ", a.n_kv_head));
      break;
    case HeadScheme::gqa:
      if (a.n_kv_head == 0 || m.n_head % a.n_kv_head != 0)
        fail(str("'attention.heads: gqa' needs 'attention.n_kv_head' dividing 'model.n_head' (",
                 m.n_head, "), got ", a.n_kv_head));
      break;
    case HeadScheme::mqa:
      if (a.n_kv_head > 1)
        fail(str("'attention.heads: mqa' has one K/V head; 'attention.n_kv_head' must be 0 or "
                 "1, got ",
                 a.n_kv_head));
      break;
    case HeadScheme::mla:
      if (a.n_kv_head != 0 && a.n_kv_head != m.n_head)
        fail(str("'attention.heads: mla' expands the latent to every head; "
                 "'attention.n_kv_head' must be 0 or 'model.n_head', got ",
                 a.n_kv_head));
      if (m.position != Position::rope)
        fail(str("'attention.heads: mla' carries its positions in a decoupled RoPE key and "
                 "needs 'model.position: rope', got '",
                 name_of(m.position), "'"));
      if (a.mla.rope_dim % 2 != 0 || a.mla.rope_dim >= head_dim)
        fail(str("'attention.mla.rope_dim' must be even and below the head dimension ",
                 head_dim, " ('model.d_model' / 'model.n_head'), got ", a.mla.rope_dim));
      break;
  }
  if (a.dilation.size() != 1 && a.dilation.size() != static_cast<size_t>(m.n_head))
    fail(str("'attention.dilation' must be one value or one per head ('model.n_head' = ",
             m.n_head, "), got ", a.dilation.size(), " values"));
  for (int g : a.global_tokens)
    if (g >= c.data.seq_len)
      fail(str("'attention.global_tokens' holds position ", g, ", outside 'data.seq_len' (",
               c.data.seq_len, ")"));
  if (a.pattern == Pattern::linformer && c.objective == Objective::causal_lm)
    fail("'attention.pattern: linformer' projects keys along the sequence, mixing future "
         "tokens into every key; it cannot serve 'objective: causal_lm'");
  if (a.separate_global_proj) {
    if (a.pattern != Pattern::longformer || a.heads == HeadScheme::mla || a.global_tokens.empty())
      fail("'attention.separate_global_proj' needs 'attention.pattern: longformer', a non-empty "
           "'attention.global_tokens' and 'attention.heads' mha, gqa or mqa");
  }
  if (a.global_doc_starts) {
    if (a.pattern != Pattern::longformer || a.separate_global_proj)
      fail("'attention.global_doc_starts' needs 'attention.pattern: longformer' without "
           "'attention.separate_global_proj'");
    if (c.data.source != DataSource::hdf5 || c.data.packing != Packing::pack)
      fail("'attention.global_doc_starts' needs documents: 'data.source: hdf5' with "
           "'data.packing: pack'");
  }
  if (a.pattern == Pattern::linformer && a.linformer.k > m.max_seq_len)
    fail(str("'attention.linformer.k' (", a.linformer.k, ") must be at most 'model.max_seq_len' (",
             m.max_seq_len, ")"));
}

void check_data(const Config& c) {
  const DataConfig& d = c.data;
  if (d.source == DataSource::synthetic) {
    if (!d.train.empty() || !d.val.empty() || d.doc_mask || d.packing != Packing::pack)
      fail("'data.train', 'data.val', 'data.packing' and 'data.doc_mask' apply to "
           "'data.source: hdf5'; the synthetic source generates its samples");
    return;
  }
  if (d.train.empty())
    fail("'data.source: hdf5' needs 'data.train': a dataset directory made by `longctx "
         "tokenize` (or a glob of its shards)");
  if (d.doc_mask && d.packing != Packing::pack)
    fail("'data.doc_mask' applies to 'data.packing: pack' (with 'doc' every sample is one "
         "document already)");
  if (d.doc_mask && c.attention.pattern == Pattern::linformer)
    fail("'data.doc_mask' cannot apply to 'attention.pattern: linformer': its projections mix "
         "every position of the window");
  if (c.objective == Objective::classify && d.packing != Packing::doc)
    fail("'objective: classify' needs 'data.packing: doc' (one labeled document per sample)");
}

// The synthetic tasks' keys against the model and the objective.
void check_synthetic(const Config& c) {
  const ModelConfig& m = c.model;
  const SyntheticConfig& syn = c.data.synthetic;
  const bool listops = syn.task == SyntheticTask::listops;
  const bool labeled = syn.task == SyntheticTask::majority || listops;
  if (c.data.source == DataSource::synthetic && labeled != (c.objective == Objective::classify))
    fail(str("'objective: ", name_of(c.objective), "' does not fit 'data.synthetic.task: ",
             name_of(syn.task),
             "'; classify trains on labeled tasks (majority, listops), causal_lm on the others"));
  if (syn.task == SyntheticTask::majority && m.n_classes != 2)
    fail(str("'data.synthetic.task: majority' has 2 classes; 'model.n_classes' is ",
             m.n_classes));
  if (c.data.source != DataSource::synthetic || !listops) {
    if (!syn.min_len.is_auto())
      fail("'data.synthetic.min_len' applies to 'data.source: synthetic' with "
           "'data.synthetic.task: listops' only");
    if (c.data.source == DataSource::synthetic && syn.alphabet > m.vocab_size - 4)
      fail(str("'data.synthetic.alphabet' must be between 2 and 'model.vocab_size' - 4 = ",
               m.vocab_size - 4, " (the synthetic tasks reserve 4 token ids), got ",
               syn.alphabet));
    return;
  }
  // listops has a vocabulary of its own (data/listops.h): the alphabet does not apply.
  if (m.n_classes != 10)
    fail(str("'data.synthetic.task: listops' has 10 classes (the values 0-9); "
             "'model.n_classes' is ", m.n_classes));
  if (m.vocab_size < 16)
    fail(str("'data.synthetic.task: listops' uses 16 token ids (digits, 4 operators, ']', "
             "PAD); 'model.vocab_size' must be at least 16, got ", m.vocab_size));
  if (c.data.seq_len < 4)
    fail(str("'data.synthetic.task: listops' needs 'data.seq_len' of at least 4 (the shortest "
             "expression, [MAX d d ], has 4 tokens), got ", c.data.seq_len));
  if (syn.min_len.value > c.data.seq_len)
    fail(str("'data.synthetic.min_len' (", syn.min_len.value, ") must be at most "
             "'data.seq_len' (", c.data.seq_len, "): expressions fill at most the sequence"));
}

// Rules that involve more than one key; each message names all the keys involved.
// Evaluation tasks fit the objective: ppl, passkey and kvcache read a causal LM, classify and
// listops a classifier.
void check_eval(const Config& c) {
  for (const EvalTask t : c.eval.tasks) {
    const bool lm_task = t == EvalTask::ppl || t == EvalTask::passkey || t == EvalTask::kvcache;
    if (lm_task != (c.objective == Objective::causal_lm))
      fail(str("'eval.tasks' holds ", name_of(t), ", which evaluates ",
               lm_task ? "a causal LM" : "a classifier", ", but 'objective' is ",
               name_of(c.objective), "; allowed with it: ",
               c.objective == Objective::causal_lm ? "ppl, passkey, kvcache" : "classify, listops"));
    if (t == EvalTask::passkey && c.data.source != DataSource::synthetic)
      fail("'eval.tasks' holds passkey, whose prompts use the synthetic tasks' marker tokens; it "
           "needs 'data.source: synthetic'");
    if (t == EvalTask::listops && (c.model.n_classes != 10 || c.model.vocab_size < 16))
      fail(str("'eval.tasks' holds listops, which needs 'model.n_classes: 10' (got ",
               c.model.n_classes, ") and 'model.vocab_size' >= 16 (got ", c.model.vocab_size,
               ")"));
    if ((t == EvalTask::ppl || t == EvalTask::classify) && c.data.source == DataSource::hdf5 &&
        c.data.val.empty())
      fail(str("'eval.tasks' holds ", name_of(t),
               ", which reads a validation set: set 'data.val' to a dataset (longctx eval: --data)"));
  }
}

// What the GPU model runs: decoder LMs over mha/gqa/mqa heads, one sequence per rank. In bf16
// every mask-based pattern (flash, longformer, bigbird, strided) and document masks run the
// tensor-core kernels over the CPU engine's block lists; fp32 (for checks) runs dense and causal
// flash. Everything else trains on the CPU; each refusal names the key.
void check_device(const Config& c) {
  if (c.run.device == DeviceKind::cpu) {
    if (c.train.precision == Precision::bf16)
      fail("'train.precision: bf16' trains on the GPU only: set 'run.device: cuda' (the CPU "
           "trains in fp32)");
    return;
  }
  const auto refuse = [](const std::string& what) {
    fail(str("'run.device: cuda' does not run ", what, " yet; use 'run.device: cpu' for it"));
  };
  const AttentionConfig& a = c.attention;
  if (c.objective != Objective::causal_lm) refuse("'objective: classify'");
  if (a.pattern == Pattern::linformer) refuse("'attention.pattern: linformer'");
  if (a.separate_global_proj) refuse("'attention.separate_global_proj: true'");
  const bool tensor_cores = c.train.precision == Precision::bf16 && a.pattern != Pattern::dense;
  const bool masked = a.pattern != Pattern::dense && a.pattern != Pattern::flash;
  const char* with = c.train.precision == Precision::fp32 ? " in fp32 (bf16 does)"
                                                          : " with dense attention (flash does)";
  if (masked && !tensor_cores) refuse(str("'attention.pattern: ", name_of(a.pattern), "'", with));
  if (c.data.doc_mask && !tensor_cores) refuse(str("'data.doc_mask: true'", with));
  if (c.data.packing == Packing::doc && !tensor_cores) refuse(str("'data.packing: doc'", with));
  const int head_dim = c.model.d_model / c.model.n_head;
  if (tensor_cores && (head_dim > 256 || head_dim % 8 != 0))
    refuse(str("a head dimension of ", head_dim,
               " ('model.d_model' / 'model.n_head'; multiples of 8 up to 256 do)"));
  if (!tensor_cores && (head_dim > 128 || head_dim % 2 != 0))
    refuse(str("a head dimension of ", head_dim,
               " ('model.d_model' / 'model.n_head'; even and at most 128 do",
               c.train.precision == Precision::fp32 ? " in fp32" : " with dense attention", ")"));
  // The GPU builds its masks in blocks of attn::kPlanBlock (attention/mask_plan.h), its
  // kernels' tile; only bigbird's blocks change which scores exist.
  if (tensor_cores && a.pattern == Pattern::bigbird && a.block_size != 64)
    refuse(str("'attention.block_size: ", a.block_size,
               "' with bigbird (its blocks are the tensor-core kernels' 64 x 64 tiles: set it "
               "to 64)"));
  if (c.train.recompute != Recompute::none) refuse("'train.recompute: block'");
  if (c.parallel.sp > 1) refuse(str("'parallel.sp: ", c.parallel.sp, "' (data parallel does)"));
  if (c.parallel.zero != 0) refuse("'parallel.zero: 1'");
}

void check_combinations(const Config& c) {
  const ModelConfig& m = c.model;
  if (m.d_model % m.n_head != 0)
    fail(str("'model.n_head' (", m.n_head, ") must divide 'model.d_model' (", m.d_model, ")"));
  const int head_dim = m.d_model / m.n_head;
  if (m.position == Position::rope && head_dim % 2 != 0)
    fail(str("'model.position: rope' needs an even head dimension, but 'model.d_model' / "
             "'model.n_head' = ",
             m.d_model, "/", m.n_head, " = ", head_dim));
  check_attention(c);
  if (c.data.seq_len > m.max_seq_len)
    fail(str("'data.seq_len' (", c.data.seq_len, ") must be at most 'model.max_seq_len' (",
             m.max_seq_len, ")"));
  if (c.run.overwrite && c.checkpoint.resume == "auto")
    fail("'run.overwrite: true' (--force) clears the run directory, and 'checkpoint.resume: auto' "
         "continues it; choose one");
  if (c.train.min_lr > c.train.lr)
    fail(str("'train.min_lr' (", c.train.min_lr, ") must be at most 'train.lr' (", c.train.lr,
             ")"));
  check_data(c);
  // Under sp every pattern runs (dense through the tiled sp cores, linformer by summing the
  // per-rank projections whatever sp_mode), both objectives (classify pools over the sp group);
  // the global rows' own attention of separate_global_proj does not.
  if (c.parallel.sp > 1) {
    if (c.attention.separate_global_proj)
      fail("'parallel.sp' > 1 cannot run 'attention.separate_global_proj' (the global rows' own "
           "queries attend to keys on every rank); drop it or use 'parallel.sp: 1'");
    if (c.parallel.sp_mode == SpMode::ulysses && c.model.n_head % c.parallel.sp != 0)
      fail(str("'parallel.sp_mode: ulysses' splits the heads: 'model.n_head' (", c.model.n_head,
               ") must be divisible by 'parallel.sp' (", c.parallel.sp,
               "); or use 'parallel.sp_mode: ring'"));
  }
  if (c.data.seq_len % c.parallel.sp != 0)
    fail(str("'data.seq_len' (", c.data.seq_len, ") must be divisible by 'parallel.sp' (",
             c.parallel.sp, "): each sequence-parallel rank holds seq_len / sp positions"));
  check_synthetic(c);
  check_eval(c);
  check_device(c);
}

std::string yaml_value(int v) { return std::to_string(v); }
std::string yaml_value(uint64_t v) { return std::to_string(v); }
std::string yaml_value(bool v) { return v ? "true" : "false"; }
std::string yaml_value(const IntOrAuto& v) { return v.is_auto() ? "auto" : std::to_string(v.value); }
std::string yaml_value(const std::vector<int>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out + "]";
}

// Always with a '.' (3.0e-04, 1.0) so that YAML 1.1 readers such as PyYAML see a float too.
std::string yaml_value(double v) {
  std::string s = shortest(v);
  const size_t e = s.find('e');
  if (s.find('.') == std::string::npos) s.insert(e == std::string::npos ? s.size() : e, ".0");
  return s;
}

// Double-quoted, so that names like "yes" or "1e3" stay strings.
std::string yaml_value(const std::string& v) { return yaml_double_quoted(v); }

template <class E>
std::enable_if_t<std::is_enum_v<E>, std::string> yaml_value(E v) {
  return enum_name(v);
}

template <class E>
std::string yaml_value(const std::vector<E>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::string(enum_name(v[i]));
  return out + "]";
}

// Every key in table order, sections opened as the paths change. Takes a copy because the
// table hands out pointers for writing.
std::string to_yaml(Config cfg) {
  std::string out;
  std::vector<std::string> open;
  for (const Key& key : keys()) {
    std::vector<std::string> parts = split_path(key.path);
    const std::string leaf = parts.back();
    parts.pop_back();
    size_t common = 0;
    while (common < open.size() && common < parts.size() && open[common] == parts[common])
      ++common;
    open.resize(common);
    for (size_t i = common; i < parts.size(); ++i) {
      out += std::string(2 * i, ' ') + parts[i] + ":\n";
      open.push_back(parts[i]);
    }
    const std::string value =
        std::visit([](auto* field) { return yaml_value(*field); }, key.field(cfg));
    out += std::string(2 * parts.size(), ' ') + leaf + ": " + value + "\n";
  }
  return out;
}

// yaml-cpp stops at a fixed nesting depth and says only "bad file".
std::string too_deep(const YAML::DeepRecursion& e) {
  return str("is nested more than ", e.depth(), " levels deep",
             e.mark.is_null() ? "" : str(" (at line ", e.mark.line + 1, ", column ",
                                         e.mark.column + 1, ")"),
             "; a config nests at most 3 (section, subsection, key)");
}

// Whether a parsed document gives any value: empty sections (`train:`) and comments set none.
bool sets_any_key(const YAML::Node& n) {
  if (n.IsNull() || !n.IsDefined()) return false;
  if (!n.IsMap()) return true;
  for (const auto& entry : n)
    if (sets_any_key(entry.second)) return true;
  return false;
}

// Merges map `value` into map `target` key by key, so that --set 'model={d_model: 64}' keeps
// the file's other model keys.
void merge_into(YAML::Node target, const YAML::Node& value, const std::string& what) {
  for (const auto& entry : value) {
    if (!entry.first.IsScalar()) fail(str(what, " has a key that is not a name"));
    const std::string& name = entry.first.Scalar();
    YAML::Node existing = target[name];
    if (existing.IsMap() && entry.second.IsMap())
      merge_into(existing, entry.second, what);
    else
      target[name] = entry.second;
  }
}

std::string trim(const std::string& s) {
  const size_t first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") + 1 - first);
}

// Puts the value of one --set at its key path, creating missing sections on the way.
void apply_override(YAML::Node root, const std::string& assignment) {
  const std::string what = "--set '" + assignment + "'";
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos) fail(str(what, " must have the form key.path=value"));
  const std::string path = trim(assignment.substr(0, eq));
  if (path.empty()) fail(str(what, " has an empty key; it must have the form key.path=value"));
  const std::vector<std::string> parts = split_path(path);
  for (const std::string& part : parts)
    if (part.empty()) fail(str(what, " has an empty part in its key '", path, "'"));

  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::DeepRecursion& e) {
    fail(str(what, ": the value ", too_deep(e)));
  } catch (const YAML::Exception& e) {
    fail(str(what, ": the value is not valid YAML (", e.msg, ")"));
  }

  // Copying a Node shares it; reset() moves the cursor on, where assigning would overwrite the
  // node it points at.
  YAML::Node cursor = root;
  std::string walked;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    walked = join_path(walked, parts[i]);
    YAML::Node child = cursor[parts[i]];
    if (!child.IsDefined() || child.IsNull())
      child = YAML::Node(YAML::NodeType::Map);
    else if (!child.IsMap())
      fail(str(what, ": '", walked, "' is not a section"));
    cursor.reset(child);
  }
  YAML::Node target = cursor[parts.back()];
  if (target.IsDefined() && target.IsMap() && value.IsMap())
    merge_into(target, value, what);
  else
    target = value;
}

// " at line L, column C" of a YAML error (yaml-cpp counts from 0; editors count from 1).
std::string where(const YAML::Exception& e) {
  return e.mark.is_null() ? "" : str(" at line ", e.mark.line + 1, ", column ", e.mark.column + 1);
}

YAML::Node parse_document(const std::string& text, const std::string& origin) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::DeepRecursion& e) {  // yaml-cpp's own message is only "bad file"
    throw ConfigError(str("cannot parse config '", origin, "': it ", too_deep(e)));
  } catch (const YAML::Exception& e) {
    throw ConfigError(str("cannot parse config '", origin, "'", where(e), ": ", e.msg));
  }
  if (docs.size() > 1)
    throw ConfigError(str("cannot parse config '", origin, "': it holds ", docs.size(),
                          " YAML documents, a config is one"));
  YAML::Node root(YAML::NodeType::Map);
  if (docs.size() == 1 && !docs[0].IsNull()) root.reset(docs[0]);
  return root;
}

}  // namespace

const char* name_of(Norm v) { return enum_name(v); }
const char* name_of(Activation v) { return enum_name(v); }
const char* name_of(Position v) { return enum_name(v); }
const char* name_of(Pattern v) { return enum_name(v); }
const char* name_of(HeadScheme v) { return enum_name(v); }
const char* name_of(Resample v) { return enum_name(v); }
const char* name_of(LinformerShare v) { return enum_name(v); }
const char* name_of(Objective v) { return enum_name(v); }
const char* name_of(Pool v) { return enum_name(v); }
const char* name_of(Recompute v) { return enum_name(v); }
const char* name_of(Precision v) { return enum_name(v); }
const char* name_of(DeviceKind v) { return enum_name(v); }
const char* name_of(DataSource v) { return enum_name(v); }
const char* name_of(Packing v) { return enum_name(v); }
const char* name_of(SpMode v) { return enum_name(v); }
const char* name_of(SyntheticTask v) { return enum_name(v); }
const char* name_of(EvalTask v) { return enum_name(v); }

std::string yaml_double_quoted(const std::string& v) {
  std::string out = "\"";
  for (const char ch : v) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(ch));
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides,
                    const std::string& origin) {
  YAML::Node root = parse_document(yaml_text, origin);
  if (!root.IsMap())
    fail(str("the config must be a map of sections (", comma_list(schema().sections.at("")),
             "), got ", shown(root)));
  for (const std::string& assignment : overrides) apply_override(root, assignment);

  Config cfg;
  read_section(root, "", cfg);
  check_combinations(cfg);
  cfg.yaml = to_yaml(cfg);
  return cfg;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                        &std::fclose);
  if (!file) throw ConfigError(str("cannot read config '", path, "': ", std::strerror(errno)));
  std::string text;
  char buf[1 << 14];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, file.get())) > 0) text.append(buf, n);
  // Reading a directory opens fine and fails here with EISDIR.
  if (std::ferror(file.get()))
    throw ConfigError(str("cannot read config '", path, "': ", std::strerror(errno)));
  // A file that sets nothing would train the defaults into runs/quickstart: almost certainly the
  // wrong file, or one whose settings are all commented out.
  if (overrides.empty() && !sets_any_key(parse_document(text, path)))
    throw ConfigError(str("config '", path, "' sets no key (it is empty, or holds only comments "
                          "or empty sections); give at least one setting, e.g. start from "
                          "configs/quickstart.yaml"));
  return parse_config(text, overrides, path);
}

}  // namespace longctx

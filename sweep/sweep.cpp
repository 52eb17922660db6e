// Sweep files: parsing, expansion into runs, and validation of every run's config up front.
#include "sweep/sweep.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "core/fs.h"

namespace longctx {
namespace {

namespace fs = std::filesystem;

const char* kTopKeys = "base, out_dir, overrides, variants, grid";

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw ConfigError(str("sweep '", path, "': ", message));
}

bool is_quoted(const YAML::Node& v) { return v.Tag() == "!" || v.Tag() == "tag:yaml.org,2002:str"; }

// A plain scalar that would read differently inside a flow collection ("a, b" splits there).
bool needs_quotes_in_flow(const std::string& s) {
  return s.find_first_of(",[]{}") != std::string::npos || s.find(": ") != std::string::npos ||
         s.find(" #") != std::string::npos || (!s.empty() && s.back() == ':');
}

// The node as YAML text that `--set key=TEXT` reads back as the same node (see the header).
std::string flow_text(const YAML::Node& n, bool nested) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      if (is_quoted(n) || (nested && needs_quotes_in_flow(n.Scalar())))
        return yaml_double_quoted(n.Scalar());
      return n.Scalar();
    case YAML::NodeType::Sequence: {
      std::string out = "[";
      for (size_t i = 0; i < n.size(); ++i) out += (i ? ", " : "") + flow_text(n[i], true);
      return out + "]";
    }
    case YAML::NodeType::Map: {
      std::string out = "{";
      bool first = true;
      for (const auto& kv : n) {
        out += (first ? "" : ", ") + flow_text(kv.first, true) + ": " + flow_text(kv.second, true);
        first = false;
      }
      return out + "}";
    }
    default:  // null: `data.val:` unsets, as `--set data.val=` does
      return nested ? "null" : "";
  }
}

std::string shown(const YAML::Node& v) {
  switch (v.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "'" + v.Scalar() + "'";
    default:
      return "nothing";
  }
}

// The key of an override or grid entry: a config key path, given once.
std::string check_key(const std::string& path, const std::string& what, const YAML::Node& node,
                      std::set<std::string>& seen) {
  if (!node.IsScalar() || node.Scalar().empty())
    fail(path, str(what, " has a key that is not a config key path, got ", shown(node)));
  const std::string& key = node.Scalar();
  if (key.find_first_of("= \t") != std::string::npos)
    fail(path, str(what, " has the key '", key,
                   "'; keys are config key paths such as attention.pattern (no '=' or spaces)"));
  if (!seen.insert(key).second) fail(path, str(what, " gives '", key, "' twice"));
  return key;
}

// A map of config keys to values ("overrides", or one variant) as key=value strings.
Overrides read_override_map(const std::string& path, const YAML::Node& map,
                            const std::string& what) {
  Overrides out;
  std::set<std::string> seen;
  for (const auto& kv : map)
    out.push_back(check_key(path, what, kv.first, seen) + "=" + flow_text(kv.second, false));
  return out;
}

// Variant names become directory names: letters, digits, '.', '_', '-', not starting with '.'.
bool safe_name(const std::string& s) {
  if (s.empty() || s[0] == '.') return false;
  for (const char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      return false;
  return true;
}

// A grid value as part of a directory name: runs of characters outside [A-Za-z0-9._+-] become
// one '_', trimmed at both ends ("[0, 64]" -> "0_64", "\"a b\"" -> "a_b").
std::string name_part(const std::string& value) {
  std::string out;
  for (const char c : value) {
    const bool keep =
        std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' || c == '-';
    if (keep)
      out += c;
    else if (!out.empty() && out.back() != '_')
      out += '_';
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  if (out.empty() || out == "." || out == "..") return "_";
  return out;
}

std::string last_part(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

}  // namespace

SweepSpec parse_sweep(const std::string& text, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    const std::string where =
        e.mark.is_null() ? "" : str(" at line ", e.mark.line + 1, ", column ", e.mark.column + 1);
    fail(path, str("not valid YAML", where, ": ", e.msg));
  }
  if (!root.IsMap()) fail(path, str("must be a map with keys ", kTopKeys, ", got ", shown(root)));

  SweepSpec spec;
  spec.path = path;
  std::set<std::string> seen;
  YAML::Node base, out_dir, overrides, variants, grid;  // a key not given stays a null node
  for (const auto& kv : root) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
    if (!seen.insert(key).second) fail(path, str("key '", key, "' is given twice"));
    if (key == "base")
      base = kv.second;
    else if (key == "out_dir")
      out_dir = kv.second;
    else if (key == "overrides")
      overrides = kv.second;
    else if (key == "variants")
      variants = kv.second;
    else if (key == "grid")
      grid = kv.second;
    else
      fail(path, str("unknown key '", key, "'; allowed keys: ", kTopKeys));
  }

  if (!base.IsScalar() || base.Scalar().empty())
    fail(path, "'base' must name the base config file (relative to the sweep file, or absolute)");
  const fs::path base_path(base.Scalar());
  spec.base = (base_path.is_absolute() ? base_path : fs::path(path).parent_path() / base_path)
                  .lexically_normal()
                  .string();
  std::error_code ec;
  if (!fs::is_regular_file(spec.base, ec))
    fail(path, str("'base' names '", base.Scalar(), "', but '", spec.base,
                   "' is not a readable file (a relative base is read from the sweep file's "
                   "directory)"));

  if (!out_dir.IsNull()) {
    if (!out_dir.IsScalar() || out_dir.Scalar().empty())
      fail(path, str("'out_dir' must be a directory path, got ", shown(out_dir)));
    spec.out_dir = out_dir.Scalar();
  } else {
    spec.out_dir = "runs/" + fs::path(path).stem().string();
  }

  if (!overrides.IsNull()) {
    if (!overrides.IsMap())
      fail(path, str("'overrides' must be a map of config keys to values, got ", shown(overrides)));
    spec.overrides = read_override_map(path, overrides, "'overrides'");
  }

  if (!variants.IsMap() || variants.size() == 0)
    fail(path, str("'variants' must be a non-empty map of names to override maps, such as "
                   "{flash: {attention.pattern: flash}}, got ",
                   shown(variants)));
  std::set<std::string> names;
  for (const auto& kv : variants) {
    const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : "";
    if (!safe_name(name))
      fail(path, str("variant name '", name,
                     "' must be letters, digits, '.', '_' or '-' (not "
                     "starting with '.'): it names the run's directory"));
    if (!names.insert(name).second) fail(path, str("variant '", name, "' is given twice"));
    if (!kv.second.IsMap())
      fail(path, str("variant '", name, "' must be a map of config keys to values (",
                     "{} for the base config unchanged), got ", shown(kv.second)));
    spec.variants.emplace_back(name,
                               read_override_map(path, kv.second, str("variant '", name, "'")));
  }

  if (!grid.IsNull()) {
    if (!grid.IsMap())
      fail(path, str("'grid' must map config keys to lists of values, such as "
                     "{data.seq_len: [1024, 4096]}, got ",
                     shown(grid)));
    std::set<std::string> seen_keys;
    for (const auto& kv : grid) {
      const std::string key = check_key(path, "'grid'", kv.first, seen_keys);
      if (!kv.second.IsSequence() || kv.second.size() == 0)
        fail(path, str("'grid' key '", key, "' must be a non-empty list of values, got ",
                       shown(kv.second)));
      std::vector<std::string> values;
      for (const auto& v : kv.second) values.push_back(flow_text(v, false));
      spec.grid.emplace_back(key, values);
    }
  }
  return spec;
}

SweepSpec load_sweep(const std::string& path) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error& e) {
    throw ConfigError(str("cannot read sweep file: ", e.what()));
  }
  return parse_sweep(text, path);
}

std::vector<SweepRun> expand_sweep(const SweepSpec& spec) {
  // Grid keys in names: their last part, unless two keys end alike.
  std::vector<std::string> labels;
  std::set<std::string> lasts;
  bool clash = false;
  for (const auto& [key, values] : spec.grid) clash |= !lasts.insert(last_part(key)).second;
  for (const auto& [key, values] : spec.grid) labels.push_back(clash ? key : last_part(key));

  size_t points = 1;
  for (const auto& [key, values] : spec.grid) points *= values.size();

  std::vector<SweepRun> runs;
  std::map<std::string, std::string> owner;  // run name -> its overrides, for the clash message
  for (const auto& [variant, variant_overrides] : spec.variants) {
    for (size_t p = 0; p < points; ++p) {
      SweepRun run;
      run.variant = variant;
      run.name = variant;
      run.distinct = variant_overrides;
      // Mixed radix, the last key fastest.
      std::vector<size_t> index(spec.grid.size());
      size_t rest = p;
      for (size_t g = spec.grid.size(); g-- > 0;) {
        index[g] = rest % spec.grid[g].second.size();
        rest /= spec.grid[g].second.size();
      }
      std::string point;
      for (size_t g = 0; g < spec.grid.size(); ++g) {
        const std::string& value = spec.grid[g].second[index[g]];
        run.distinct.push_back(spec.grid[g].first + "=" + value);
        point += (g ? "," : "") + labels[g] + "=" + name_part(value);
      }
      if (!point.empty()) run.name += "/" + point;
      run.dir = (fs::path(spec.out_dir) / run.name).lexically_normal().string();
      run.overrides = spec.overrides;
      run.overrides.insert(run.overrides.end(), run.distinct.begin(), run.distinct.end());
      run.overrides.push_back("run.out_dir=" + yaml_double_quoted(run.dir));
      run.overrides.push_back("run.name=" + yaml_double_quoted(run.name));

      std::string described;
      for (const std::string& o : run.distinct) described += (described.empty() ? "" : " ") + o;
      const auto [it, fresh] = owner.emplace(run.name, described);
      if (!fresh)
        fail(spec.path, str("two runs would share the directory '", run.name, "' (", it->second,
                            " and ", described,
                            "): grid values keep only the characters "
                            "[A-Za-z0-9._+-] in run names; make them differ there"));
      runs.push_back(std::move(run));
    }
  }
  return runs;
}

std::vector<Config> validate_sweep(const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  // Failures grouped by variant and message, so that a bad variant key reads once, not once
  // per grid point.
  struct Problem {
    std::string variant, message, runs;
    size_t count = 0;
  };
  std::vector<Problem> problems;
  std::vector<Config> configs;
  for (const SweepRun& run : runs) {
    try {
      configs.push_back(load_config(spec.base, run.overrides));
    } catch (const Error& e) {
      auto it = std::find_if(problems.begin(), problems.end(), [&](const Problem& p) {
        return p.variant == run.variant && p.message == e.what();
      });
      if (it == problems.end())
        it = problems.insert(problems.end(), {run.variant, e.what(), "", 0});
      it->runs += (it->count++ ? ", " : "") + run.name;
    }
  }
  if (problems.empty()) return configs;

  if (spec.variants.size() > 1 && configs.empty()) {
    bool same = true;  // one message for every run: the base or the shared overrides are wrong
    for (const Problem& p : problems) same &= p.message == problems[0].message;
    if (same)
      fail(spec.path,
           str("no run has a valid config (check 'base' and 'overrides'): ", problems[0].message));
  }
  std::string text =
      problems.size() == 1 ? "a variant has an invalid config:" : "variants have invalid configs:";
  for (const Problem& p : problems) {
    text += str("\n  variant '", p.variant, "'");
    if (!spec.grid.empty()) text += str(" (run", p.count > 1 ? "s " : " ", p.runs, ")");
    text += ": " + p.message;
  }
  fail(spec.path, text);
}

}  // namespace longctx

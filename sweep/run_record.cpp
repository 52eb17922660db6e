#include "sweep/run_record.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"

namespace longctx {
namespace {

using ojson = nlohmann::ordered_json;  // keeps the tasks of an eval line in file order

std::optional<double> number(const ojson& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return std::nullopt;
  return j[key].get<double>();
}

void take_max(std::optional<double>& acc, std::optional<double> v) {
  if (v) acc = acc ? std::max(*acc, *v) : *v;
}

// One JSON object from a whole file, or nullopt (with a note in `problems`) when it is absent
// or unreadable.
std::optional<ojson> read_json_file(const std::string& path, std::vector<std::string>& problems) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  const ojson j = ojson::parse(read_file(path), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    problems.push_back(str(path, " is not a JSON object"));
    return std::nullopt;
  }
  return j;
}

void read_metrics(const std::string& path, RunRecord& r) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return;
  std::istringstream in(read_file(path));
  std::vector<double> rates;  // tokens_per_s of the train lines, in order
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const ojson j = ojson::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) {
      r.problems.push_back(str(path, " line ", line_no, " is not a JSON object (skipped)"));
      continue;
    }
    take_max(r.peak_rss_mb, number(j, "peak_rss_mb"));
    take_max(r.peak_gpu_mb, number(j, "peak_gpu_mb"));
    if (j.contains("eval")) {
      const ojson& ev = j["eval"];
      if (!ev.is_object()) continue;
      if (ev.contains("ppl"))
        if (auto v = number(ev["ppl"], "ppl")) r.val_ppl = v;
      if (ev.contains("kvcache"))
        if (auto v = number(ev["kvcache"], "bytes_per_token_per_layer"))
          r.kv_bytes_per_token_per_layer = v;
      for (const auto& [task, result] : ev.items()) {
        for (const char* metric : {"accuracy", "macro_f1"}) {
          const auto v = number(result, metric);
          if (!v) continue;
          const std::pair<std::string, std::string> id{task, metric};
          auto it = std::find_if(r.scores.begin(), r.scores.end(),
                                 [&](const auto& s) { return s.first == id; });
          if (it == r.scores.end())
            r.scores.push_back({id, *v});
          else
            it->second = *v;
        }
      }
      continue;
    }
    const auto loss = number(j, "loss");
    if (!loss) continue;
    ++r.train_lines;
    r.final_loss = loss;
    if (j.contains("step") && j["step"].is_number_integer()) r.last_step = j["step"].get<int64_t>();
    if (const auto tps = number(j, "tokens_per_s")) rates.push_back(*tps);
  }
  if (rates.size() == 1) r.tokens_per_s = rates[0];
  if (rates.size() > 1)
    r.tokens_per_s = median(std::vector<double>(rates.begin() + 1, rates.end()));
}

}  // namespace

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

RunRecord read_run_record(const std::string& dir) {
  RunRecord r;
  read_metrics(dir + "/metrics.jsonl", r);
  if (const auto s = read_json_file(dir + "/summary.json", r.problems)) {
    r.has_summary = true;
    r.summary_finished = s->contains("finished") && (*s)["finished"] == true;
    for (auto [key, field] : {std::pair{"params", &r.params},
                              std::pair{"non_embedding_params", &r.non_embedding_params}})
      if (const auto v = number(*s, key)) *field = static_cast<int64_t>(*v);
    r.summary_wall_s = number(*s, "wall_s");
  }
  if (const auto l = read_json_file(dir + "/launch.json", r.problems)) {
    if (const auto v = number(*l, "exit_code")) r.exit_code = static_cast<int>(*v);
    r.launch_wall_s = number(*l, "wall_s");
  }
  return r;
}

bool run_finished(const RunRecord& r, int train_steps) {
  if (r.has_summary) return r.summary_finished;
  if (r.exit_code && *r.exit_code != 0) return false;  // failed after logging its last step
  return r.last_step && *r.last_step == train_steps;
}

}  // namespace longctx

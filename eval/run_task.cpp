// Dispatch of the evaluation tasks, and their tables for people.
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "eval/tasks.h"

namespace longctx {

ojson run_eval_task(EvalTask task, const Config& cfg, const ParamStore<float>& params) {
  switch (task) {
    case EvalTask::ppl:
    case EvalTask::passkey:
    case EvalTask::kvcache:
      if (cfg.objective != Objective::causal_lm)
        throw ConfigError(str("the ", name_of(task), " task evaluates a causal LM; this model's "
                              "objective is ", name_of(cfg.objective), " (try classify or listops)"));
      break;
    case EvalTask::classify:
    case EvalTask::listops:
      if (cfg.objective != Objective::classify)
        throw ConfigError(str("the ", name_of(task), " task evaluates a classifier; this model's "
                              "objective is ", name_of(cfg.objective), " (try ppl, passkey or kvcache)"));
      break;
  }
  switch (task) {
    case EvalTask::ppl: return eval_ppl(cfg, params);
    case EvalTask::passkey: return eval_passkey(cfg, params);
    case EvalTask::classify: return eval_classify(cfg, params);
    case EvalTask::listops: return eval_listops(cfg, params);
    case EvalTask::kvcache: return eval_kvcache(cfg, params);
  }
  throw Error("unknown evaluation task");
}

namespace {

std::string num(const ojson& v, const char* fmt = "%.4f") {
  if (!v.is_number()) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v.get<double>());
  return buf;
}

std::string format_confusion(const ojson& r) {
  const ojson& m = r["confusion"];
  std::string out = "  confusion (rows: true class, columns: predicted)\n        ";
  char buf[64];
  for (size_t p = 0; p < m.size(); ++p) {
    std::snprintf(buf, sizeof buf, "%7zu", p);
    out += buf;
  }
  out += "      F1\n";
  for (size_t t = 0; t < m.size(); ++t) {
    std::snprintf(buf, sizeof buf, "  %5zu ", t);
    out += buf;
    for (const auto& c : m[t]) {
      std::snprintf(buf, sizeof buf, "%7lld", static_cast<long long>(c.get<int64_t>()));
      out += buf;
    }
    out += "  " + num(r["f1"][t]) + "\n";
  }
  return out;
}

}  // namespace

std::string format_eval(const ojson& r) {
  const std::string task = r.value("task", "");
  std::string out;
  char buf[256];
  if (task == "ppl") {
    std::snprintf(buf, sizeof buf, "ppl: loss %s | perplexity %s | %lld tokens of %lld samples (%s)\n",
                  num(r["loss"]).c_str(), num(r["ppl"], "%.3f").c_str(),
                  static_cast<long long>(r["tokens"].get<int64_t>()),
                  static_cast<long long>(r["samples"].get<int64_t>()),
                  r["data"].get<std::string>().c_str());
    out += buf;
    out += "  positions          tokens     loss  perplexity\n";
    for (const auto& b : r["buckets"]) {
      std::snprintf(buf, sizeof buf, "  [%6lld, %6lld) %9lld %8s %11s\n",
                    static_cast<long long>(b["start"].get<int64_t>()),
                    static_cast<long long>(b["end"].get<int64_t>()),
                    static_cast<long long>(b["tokens"].get<int64_t>()), num(b["loss"]).c_str(),
                    num(b["ppl"], "%.3f").c_str());
      out += buf;
    }
  } else if (task == "passkey") {
    std::snprintf(buf, sizeof buf, "passkey: accuracy %s (digits %s), %lld prompts per cell\n",
                  num(r["accuracy"], "%.3f").c_str(), num(r["digit_accuracy"], "%.3f").c_str(),
                  static_cast<long long>(r["trials"].get<int64_t>()));
    out += buf;
    out += "  length \\ depth";
    for (const auto& d : r["depths"]) out += " " + num(d, "%6.2f");
    out += "\n";
    for (size_t i = 0; i < r["lengths"].size(); ++i) {
      std::snprintf(buf, sizeof buf, "  %14lld", static_cast<long long>(r["lengths"][i].get<int64_t>()));
      out += buf;
      for (const auto& a : r["grid"][i]) out += " " + num(a, "%6.2f");
      out += "\n";
    }
    if (r.contains("skipped"))
      for (const auto& k : r["skipped"])
        out += str("  length ", k["length"].get<int64_t>(), " skipped: ",
                   k["reason"].get<std::string>(), "\n");
  } else if (task == "classify" || task == "listops") {
    std::snprintf(buf, sizeof buf, "%s: accuracy %s | macro-F1 %s | %lld samples (%s)\n",
                  task.c_str(), num(r["accuracy"]).c_str(), num(r["macro_f1"]).c_str(),
                  static_cast<long long>(r["samples"].get<int64_t>()),
                  r["data"].get<std::string>().c_str());
    out += buf;
    out += format_confusion(r);
  } else if (task == "kvcache") {
    std::snprintf(buf, sizeof buf,
                  "kvcache: %s B per token per layer measured (%s heads; formula %s, mha %s: "
                  "%s of mha) | %lld tokens x %lld layers = %lld B\n",
                  num(r["bytes_per_token_per_layer"], "%.0f").c_str(),
                  r.value("heads", "?").c_str(),
                  num(r["formula_bytes_per_token_per_layer"], "%.0f").c_str(),
                  num(r["mha_bytes_per_token_per_layer"], "%.0f").c_str(),
                  num(r["ratio_vs_mha"], "%.3f").c_str(),
                  static_cast<long long>(r.value("tokens", int64_t(0))),
                  static_cast<long long>(r.value("n_layer", int64_t(0))),
                  static_cast<long long>(r.value("cache_bytes", int64_t(0))));
    out += buf;
  } else {
    out += task + ": " + r.dump() + "\n";
  }
  return out;
}

}  // namespace longctx

// `longctx eval CHECKPOINT --task ...`: evaluation of a trained model on long-document tasks.
#include <algorithm>
#include <cstdio>
#include <optional>
#include <filesystem>
#include <string>
#include <vector>

#include "core/cli_args.h"
#include "core/error.h"
#include "core/fs.h"
#include "eval/eval_model.h"
#include "eval/tasks.h"
#include "launch/commands.h"
#include "sweep/launcher.h"
#include "trainer/checkpoint.h"

namespace longctx {

namespace {

const char* kEvalHelp =
    "usage: longctx eval CHECKPOINT --task TASK[,TASK...] [OPTIONS]\n"
    "\n"
    "CHECKPOINT is a checkpoint file, or a run directory (its newest checkpoint is used). The\n"
    "model, its attention and its data settings come from the config recorded in it.\n"
    "\n"
    "Tasks (causal LM: ppl, passkey, kvcache; classifier: classify, listops):\n"
    "  ppl       loss and perplexity on validation samples, overall and per position bucket:\n"
    "            whether later tokens profit from the longer context. Synthetic runs draw\n"
    "            held-out samples of their task (another seed); HDF5 runs read data.val.\n"
    "  passkey   retrieval accuracy of a key planted in filler, over context lengths × key\n"
    "            depths (the synthetic passkey format: models trained on synthetic data)\n"
    "  classify  accuracy, macro-F1 and the confusion matrix on labeled validation samples\n"
    "  listops   the same on ListOps expressions (Long Range Arena) generated at the given\n"
    "            lengths (models trained on data.synthetic.task: listops)\n"
    "  kvcache   bytes of KV cache per token per layer, measured on the cache that decoding\n"
    "            builds, for the model's head scheme (mha, gqa, mqa, mla)\n"
    "\n"
    "Options:\n"
    "  --task T[,T...]    tasks to run, in order (required; may repeat)\n"
    "  --json             one JSON object per task on stdout, and nothing else\n"
    "  --out DIR          also write DIR/eval.jsonl, DIR/eval.txt and the plots (ppl.png,\n"
    "                     passkey.png) through tools/plot.py\n"
    "  --data PATH        validation dataset for ppl and classify (default: the run's data.val)\n"
    "  --samples N        validation samples (ppl, classify, listops; default eval.samples, 64)\n"
    "  --buckets N        ppl position buckets (default eval.buckets, 8)\n"
    "  --seq-len N        ppl/classify sequence length (default the run's data.seq_len)\n"
    "  --lengths L,...    passkey context lengths, or listops expression lengths\n"
    "                     (default: seq_len/4, seq_len/2, seq_len; listops: seq_len)\n"
    "  --depths N         passkey key depths, evenly from the start to the end (default 5)\n"
    "  --trials N         passkey prompts per (length, depth) (default 8)\n"
    "  --tokens N         kvcache: tokens decoded into the measured cache (default 64)\n"
    "  --set key=value    any other eval.* key\n"
    "  --help             this text\n"
    "\n"
    "Exit codes: 0 ok, 1 a missing or damaged checkpoint or dataset, 2 bad usage (an unknown\n"
    "task, a task the model cannot run, a length beyond model.max_seq_len).\n";

[[noreturn]] void usage_error(const std::string& msg) {
  throw ConfigError(str(msg, "\n\nsee `longctx eval --help`"));
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t c = s.find(',', start);
    out.push_back(s.substr(start, c - start));
    if (c == std::string::npos) return out;
    start = c + 1;
  }
}

EvalTask parse_task(const std::string& name) {
  for (EvalTask t : {EvalTask::ppl, EvalTask::passkey, EvalTask::classify, EvalTask::listops,
                     EvalTask::kvcache})
    if (name == name_of(t)) return t;
  usage_error(str("unknown task '", name, "'; tasks: ppl, passkey, classify, listops, kvcache"));
}

// ppl.png and passkey.png in dir from dir/eval.jsonl, through tools/plot.py. A missing Python
// or script is a note, not an error: the numbers are already written.
std::vector<std::string> plot_eval_results(const std::vector<ojson>& results,
                                           const std::string& dir) {
  std::vector<std::string> lines;
  std::vector<std::string> tasks;
  for (const ojson& r : results) {
    const std::string t = r.value("task", "");
    if ((t == "ppl" || t == "passkey") &&
        std::find(tasks.begin(), tasks.end(), t) == tasks.end())
      tasks.push_back(t);
  }
  if (tasks.empty()) return lines;
  std::string tried;
  const std::optional<std::string> python = find_python(&tried);
  const std::string script = find_plot_script();
  if (!python || script.empty()) {
    lines.push_back(!python ? str("plots skipped: no Python with matplotlib (tried ", tried,
                                  "; set LONGCTX_PYTHON to one)")
                            : std::string("plots skipped: tools/plot.py was not found"));
    return lines;
  }
  for (const std::string& t : tasks) {
    const std::string png = dir + "/" + t + ".png", log = dir + "/plot.log";
    const int code = run_logged({*python, script, t, "--out", png, dir + "/eval.jsonl"}, log);
    lines.push_back(code == 0 ? "wrote " + png
                              : str("plot of ", t, " failed (exit ", code, "): ", last_line(log)));
  }
  return lines;
}

}  // namespace

int eval_main(const std::vector<std::string>& args) {
  std::string ckpt, out_dir, lengths;
  std::vector<EvalTask> tasks;
  std::vector<std::string> sets;
  bool json = false;
  auto value = [&](size_t& i) -> const std::string& {
    if (i + 1 >= args.size()) usage_error(str(args[i], " needs a value"));
    return args[++i];
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kEvalHelp, stdout);
      return 0;
    } else if (a == "--task") {
      for (const std::string& t : split_commas(value(i))) tasks.push_back(parse_task(t));
    } else if (a == "--json") {
      json = true;
    } else if (a == "--out") {
      out_dir = value(i);
    } else if (a == "--data") {
      sets.push_back("data.val=" + value(i));
    } else if (a == "--samples") {
      sets.push_back(str("eval.samples=", parse_int_option(a, value(i), 1)));
    } else if (a == "--buckets") {
      sets.push_back(str("eval.buckets=", parse_int_option(a, value(i), 1)));
    } else if (a == "--seq-len") {
      sets.push_back(str("data.seq_len=", parse_int_option(a, value(i), 1)));
    } else if (a == "--lengths") {
      lengths = value(i);
      for (const std::string& l : split_commas(lengths)) parse_int_option(a, l, 1);
    } else if (a == "--depths") {
      sets.push_back(str("eval.passkey_depths=", parse_int_option(a, value(i), 1)));
    } else if (a == "--trials") {
      sets.push_back(str("eval.passkey_trials=", parse_int_option(a, value(i), 1)));
    } else if (a == "--tokens") {
      sets.push_back(str("eval.kvcache_tokens=", parse_int_option(a, value(i), 1)));
    } else if (a == "--set") {
      sets.push_back(value(i));
    } else if (!a.empty() && a[0] == '-') {
      usage_error(str("unknown option '", a, "' for eval"));
    } else if (ckpt.empty()) {
      ckpt = a;
    } else {
      usage_error(str("unexpected argument '", a, "'"));
    }
  }
  if (ckpt.empty()) usage_error("eval needs a CHECKPOINT (a checkpoint file or a run directory)");
  if (tasks.empty()) usage_error("eval needs --task (ppl, passkey, classify, listops, kvcache)");
  auto runs = [&](EvalTask t) { return std::find(tasks.begin(), tasks.end(), t) != tasks.end(); };
  if (!lengths.empty()) {  // only the keys of the tasks asked for, so that errors name them
    if (runs(EvalTask::passkey)) sets.push_back("eval.passkey_lengths=[" + lengths + "]");
    if (runs(EvalTask::listops)) sets.push_back("eval.listops_lengths=[" + lengths + "]");
  }

  CheckpointModel m = load_checkpoint_model(resolve_checkpoint(ckpt));
  // The run's config with this command's settings. Naming the tasks in eval.tasks lets the
  // config's checks refuse a task the model cannot run before any work starts.
  std::string names;
  for (EvalTask t : tasks) names += (names.empty() ? "" : ",") + std::string(name_of(t));
  sets.push_back("eval.tasks=[" + names + "]");
  Config cfg = parse_config(m.cfg.yaml, sets, m.path);
  if (!json)
    std::printf("evaluating %s (step %lld): %s, %s attention, %s heads\n", m.path.c_str(),
                static_cast<long long>(m.step), name_of(cfg.objective),
                name_of(cfg.attention.pattern), name_of(cfg.attention.heads));
  std::string jsonl, text;
  std::vector<ojson> results;
  for (EvalTask t : tasks) {
    ojson r = run_eval_task(t, cfg, m.params);
    r["checkpoint"] = m.path;
    r["step"] = m.step;
    jsonl += r.dump() + "\n";
    text += format_eval(r);
    if (json) {
      std::printf("%s\n", r.dump().c_str());
    } else {
      std::fputs(format_eval(r).c_str(), stdout);
    }
    std::fflush(stdout);
    results.push_back(std::move(r));
  }
  if (!out_dir.empty()) {
    make_dirs(out_dir);
    write_file_atomic(out_dir + "/eval.jsonl", jsonl);
    write_file_atomic(out_dir + "/eval.txt", text);
    for (const std::string& line : plot_eval_results(results, out_dir))
      if (!json) std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace longctx

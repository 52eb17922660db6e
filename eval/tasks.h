// Evaluation tasks. Each runs on a model given as its run's config and parameters (a checkpoint
// or a live trainer, see eval_model.h) and returns one JSON object {"task": NAME, ...}; the same
// objects go to `longctx eval --json` and to the `eval` lines of metrics.jsonl.
//   ppl       loss and perplexity on validation samples, overall and per position bucket
//   passkey   retrieval of a planted key over context lengths × key depths
//   classify  accuracy, macro-F1 and the confusion matrix on labeled validation samples
//   listops   the same on freshly generated ListOps expressions
//   kvcache   bytes of KV cache per token per layer, measured on a cache built by decoding
// Settings come from cfg.eval; validation data from cfg.data (see open_validation).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/param_store.h"
#include "data/dataset.h"
#include "attention/attention_layer.h"
#include "data/sample_source.h"

namespace longctx {

using ojson = nlohmann::ordered_json;

// Samples no training step used. Synthetic tasks draw them from another seed (the task is the
// same, the samples are not); HDF5 runs read data.val, in the same packing as training.
struct ValidationSet {
  std::unique_ptr<Dataset> dataset;
  std::unique_ptr<SampleSource> source;
  std::string name;  // for messages and reports
};
ValidationSet open_validation(const Config& cfg);

// One passkey prompt of L tokens with the key at `depth` (0: first position, 1: just before
// the query): inputs[L], and targets[L] that hold the key's digits at the positions that
// predict them (the query and the first four digits after it), ignored elsewhere.
struct PasskeyPrompt {
  std::vector<int32_t> inputs, targets;
  int64_t key_at = 0;  // position of the KEY marker
};
PasskeyPrompt passkey_prompt(const Config& cfg, int64_t L, double depth, int64_t trial);

// The stream of ListOps expressions of length L that listops evaluates (data/listops.h).
uint64_t listops_eval_seed(const Config& cfg, int L);

ojson eval_ppl(const Config& cfg, const ParamStore<float>& params);
ojson eval_passkey(const Config& cfg, const ParamStore<float>& params);
ojson eval_classify(const Config& cfg, const ParamStore<float>& params);
ojson eval_listops(const Config& cfg, const ParamStore<float>& params);
ojson eval_kvcache(const Config& cfg, const ParamStore<float>& params);

// Any of the above (and kvcache). Error naming the task when the model cannot run it.
ojson run_eval_task(EvalTask task, const Config& cfg, const ParamStore<float>& params);

// The result as a table for people.
std::string format_eval(const ojson& result);

}  // namespace longctx

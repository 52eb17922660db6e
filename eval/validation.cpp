// Validation data shared by the tasks that read samples (ppl, classify).
#include "core/error.h"
#include "eval/tasks.h"

namespace longctx {

ValidationSet open_validation(const Config& cfg) {
  ValidationSet v;
  Config c = cfg;
  if (cfg.data.source == DataSource::synthetic) {
    // Another seed: the same task, samples no training step drew (training draws from run.seed).
    c.run.seed = cfg.run.seed ^ 0x9E3779B97F4A7C15ull;
    v.source = make_sample_source(c, nullptr);
    v.name = str("synthetic ", name_of(cfg.data.synthetic.task), " (held-out seed)");
    return v;
  }
  if (cfg.data.val.empty())
    throw ConfigError("this evaluation reads a validation set, but the run's 'data.val' is "
                      "empty: pass --data DATASET (or set data.val)");
  v.dataset = std::make_unique<Dataset>(cfg.data.val);
  c.data.train = cfg.data.val;
  v.source = make_sample_source(c, v.dataset.get());
  v.name = cfg.data.val;
  return v;
}

BatchStructure eval_batch_structure(const Config& cfg, const int32_t* doc, int64_t B, int64_t T) {
  BatchStructure bs;
  if (!doc) return bs;
  const bool pads = cfg.data.packing == Packing::doc;
  if ((cfg.data.doc_mask || pads) && cfg.attention.pattern != Pattern::linformer) bs.doc = doc;
  if (cfg.attention.global_doc_starts) {
    bs.globals.resize(size_t(B));
    for (int64_t i = 0; i < B; ++i)
      for (int64_t p = 0; p < T; ++p)
        if (p == 0 || doc[i * T + p] != doc[i * T + p - 1]) bs.globals[size_t(i)].push_back(p);
  }
  return bs;
}

}  // namespace longctx

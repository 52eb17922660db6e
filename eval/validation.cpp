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

}  // namespace longctx

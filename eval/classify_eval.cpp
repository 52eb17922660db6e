// classify: a classifier's accuracy, macro-F1 and confusion matrix on labeled validation samples.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "eval/eval_model.h"
#include "eval/metrics.h"
#include "eval/tasks.h"
#include "model/cross_entropy.h"

namespace longctx {

// The result object shared by classify and listops.
ojson classification_result(const char* task, const std::string& data, const Confusion& c) {
  ojson f1 = ojson::array();
  for (const double f : c.f1()) f1.push_back(std::isnan(f) ? ojson() : ojson(f));
  return {{"task", task},         {"data", data},         {"samples", c.total()},
          {"accuracy", c.accuracy()}, {"macro_f1", c.macro_f1()}, {"f1", f1},
          {"confusion", c.matrix()}};
}

ojson eval_classify(const Config& cfg, const ParamStore<float>& params) {
  if (cfg.objective != Objective::classify)
    throw ConfigError(str("classify evaluates a classifier; this checkpoint's objective is ",
                          name_of(cfg.objective)));
  ValidationSet val = open_validation(cfg);
  const int64_t T = cfg.data.seq_len, K = cfg.model.n_classes;
  const int64_t n = std::min<int64_t>(cfg.eval.samples, val.source->samples_per_epoch());
  const int64_t B = std::min<int64_t>(cfg.train.micro_batch, n);
  auto model = build_eval_model(cfg, params, B, T);
  Confusion conf{int(K)};
  std::vector<int32_t> inputs(size_t(B * T)), targets(size_t(B * T)), doc(size_t(B * T));
  const bool docs = val.source->has_documents();
  for (int64_t s0 = 0; s0 < n; s0 += B) {
    const int64_t rows = std::min(B, n - s0);
    for (int64_t b = 0; b < B; ++b)  // spare rows of the last batch repeat its first sample
      val.source->read(s0 + (b < rows ? b : 0), {inputs.data() + b * T, targets.data() + b * T,
                                                 docs ? doc.data() + b * T : nullptr});
    if (docs) model->set_batch(batch_structure_for(cfg, doc.data(), B, T, samples_padded(cfg)));
    int64_t count = 0;
    model->forward(inputs.data(), targets.data(), &count);
    for (int64_t b = 0; b < rows; ++b)
      conf.add(targets[size_t(b * T)], argmax(model->logits() + b * K, K));
  }
  return classification_result("classify", val.name, conf);
}

}  // namespace longctx

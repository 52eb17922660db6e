// listops: a classifier's accuracy on ListOps expressions (Long Range Arena) generated at the
// chosen lengths: for each length L, expressions of L/2 to L tokens padded to L (the synthetic
// listops task's rule), from a seed no training run draws from.
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "data/listops.h"
#include "eval/eval_model.h"
#include "eval/metrics.h"
#include "eval/tasks.h"
#include "model/cross_entropy.h"

namespace longctx {

ojson classification_result(const char* task, const std::string& data, const Confusion& c);

uint64_t listops_eval_seed(const Config& cfg, int L) {
  return (cfg.run.seed ^ 0x7C15A11D0A5ull) + uint64_t(L);  // training draws from run.seed
}

ojson eval_listops(const Config& cfg, const ParamStore<float>& params) {
  if (cfg.model.n_classes != kListOpsClasses || cfg.model.vocab_size < kListOpsVocab)
    throw ConfigError(str("listops needs a classifier of ", kListOpsClasses,
                          " classes over at least ", kListOpsVocab, " token ids; this one has ",
                          cfg.model.n_classes, " classes and ", cfg.model.vocab_size));
  std::vector<int> lengths = cfg.eval.listops_lengths;
  if (lengths.empty()) lengths = {cfg.data.seq_len};
  const int64_t n = cfg.eval.samples;
  Confusion all(kListOpsClasses);
  ojson by_length = ojson::array();
  for (const int L : lengths) {
    if (L > cfg.model.max_seq_len)
      throw ConfigError(str("'eval.listops_lengths' holds ", L,
                            ", longer than model.max_seq_len (", cfg.model.max_seq_len, ")"));
    ListOpsConfig lc;
    lc.max_len = L;
    lc.min_len = std::max(kListOpsShortest, L / 2);
    listops_check(lc);
    const int64_t B = std::min<int64_t>(cfg.train.micro_batch, n);
    std::unique_ptr<Transformer<float>> model;
    try {
      model = build_eval_model(cfg, params, B, L);
    } catch (const Error& e) {
      throw Error(str("listops at length ", L, ": ", e.what()));
    }
    Confusion conf(kListOpsClasses);
    std::vector<int32_t> inputs(size_t(B * L)), targets(size_t(B * L)), doc(size_t(B * L));
    for (int64_t s0 = 0; s0 < n; s0 += B) {
      const int64_t rows = std::min(B, n - s0);
      std::fill(targets.begin(), targets.end(), kIgnoreIndex);
      for (int64_t b = 0; b < B; ++b) {  // spare rows of the last batch repeat its first sample
        const ListOpsSample x = listops_sample(lc, listops_eval_seed(cfg, L), s0 + (b < rows ? b : 0));
        const int64_t len = int64_t(x.tokens.size());
        std::copy(x.tokens.begin(), x.tokens.end(), inputs.begin() + b * L);
        std::fill(inputs.begin() + b * L + len, inputs.begin() + (b + 1) * L, kListOpsPad);
        std::fill(doc.begin() + b * L, doc.begin() + b * L + len, 0);  // padding: document 1
        std::fill(doc.begin() + b * L + len, doc.begin() + (b + 1) * L, 1);
        targets[size_t(b * L)] = x.label;
      }
      model->set_batch(batch_structure_for(cfg, doc.data(), B, L, /*padded=*/true));
      int64_t count = 0;
      model->forward(inputs.data(), targets.data(), &count);
      for (int64_t b = 0; b < rows; ++b) {
        const int pred = argmax(model->logits() + b * kListOpsClasses, kListOpsClasses);
        conf.add(targets[size_t(b * L)], pred);
        all.add(targets[size_t(b * L)], pred);
      }
    }
    by_length.push_back({{"length", L}, {"min_len", lc.min_len}, {"samples", conf.total()},
                         {"accuracy", conf.accuracy()}, {"macro_f1", conf.macro_f1()}});
  }
  ojson r = classification_result("listops", "generated ListOps (held-out seed)", all);
  r["lengths"] = by_length;
  return r;
}

}  // namespace longctx

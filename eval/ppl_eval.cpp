// ppl: the model's loss on validation samples, overall and per position bucket.
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "eval/eval_model.h"
#include "eval/metrics.h"
#include "eval/tasks.h"
#include "model/cross_entropy.h"

namespace longctx {

ojson eval_ppl(const Config& cfg, const ParamStore<float>& params) {
  ValidationSet val = open_validation(cfg);
  const int64_t T = cfg.data.seq_len;
  // Each validation sample once at most: a small data.val is not counted twice.
  const int64_t n = std::min<int64_t>(cfg.eval.samples, val.source->samples_per_epoch());
  const int64_t B = std::min<int64_t>(cfg.train.micro_batch, n);
  auto model = build_eval_model(cfg, params, B, T);
  PositionLoss acc(T, cfg.eval.buckets);
  std::vector<int32_t> inputs(size_t(B * T)), targets(size_t(B * T)), doc(size_t(B * T));
  const bool docs = val.source->has_documents();
  for (int64_t s0 = 0; s0 < n; s0 += B) {
    for (int64_t b = 0; b < B; ++b) {
      // The last batch may have fewer samples: its spare rows repeat the first and count nothing.
      const int64_t s = s0 + b < n ? s0 + b : s0;
      val.source->read(s, {inputs.data() + b * T, targets.data() + b * T,
                           docs ? doc.data() + b * T : nullptr});
      if (s0 + b >= n) std::fill_n(targets.data() + b * T, T, kIgnoreIndex);
    }
    if (docs) model->set_batch(batch_structure_for(cfg, doc.data(), B, T, samples_padded(cfg)));
    int64_t count = 0;
    model->forward(inputs.data(), targets.data(), &count);
    const float* losses = model->token_losses();
    for (int64_t i = 0; i < B * T; ++i)
      if (targets[size_t(i)] != kIgnoreIndex) acc.add(i % T, losses[i]);
  }
  if (acc.tokens() == 0)
    throw Error(str("ppl: the ", n, " validation samples of ", val.name, " hold no targets"));
  ojson buckets = ojson::array();
  for (const BucketStats& b : acc.buckets())
    buckets.push_back({{"start", b.start}, {"end", b.end}, {"tokens", b.tokens},
                       {"loss", b.tokens ? ojson(b.loss()) : ojson()},
                       {"ppl", b.tokens ? ojson(b.ppl()) : ojson()}});
  return {{"task", "ppl"}, {"data", val.name}, {"samples", n}, {"seq_len", T},
          {"tokens", acc.tokens()}, {"loss", acc.loss()}, {"ppl", acc.ppl()},
          {"buckets", buckets}};
}

}  // namespace longctx

#include "trainer/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/fs.h"
#include "core/memory.h"
#include "data/dataset.h"
#include "model/cross_entropy.h"
#include "trainer/lr_schedule.h"
#include "trainer/metrics.h"

namespace longctx {

Trainer::Trainer(const Config& cfg) : cfg_(cfg) {
  if (cfg.train.threads > 0) omp_set_num_threads(cfg.train.threads);
  if (cfg.data.source == DataSource::hdf5) dataset_ = std::make_unique<Dataset>(cfg.data.train);
  source_ = make_sample_source(cfg, dataset_.get());
  if (!cfg.data.val.empty()) {  // checked now, so a wrong path fails before training, not after
    Config val = cfg;
    val.data.train = cfg.data.val;
    val_dataset_ = std::make_unique<Dataset>(cfg.data.val);
    make_sample_source(val, val_dataset_.get());
  }
  loader_ = std::make_unique<Loader>(*source_, cfg.data.seq_len, cfg.train.micro_batch,
                                     cfg.train.grad_accum, LoaderGrid{}, cfg.data.prefetch);
  const int64_t B = cfg.train.micro_batch, Tn = cfg.data.seq_len;
  model_ = std::make_unique<Transformer<float>>(cfg.model, cfg.attention, B, Tn,
                                                cfg.train.recompute, cfg.objective,
                                                cfg.run.seed);
  model_->init(cfg.run.seed);
  opt_ = std::make_unique<AdamW<float>>(model_->params(), cfg.train);
}

Trainer::~Trainer() = default;

// What attention must know of micro-batch a: its documents (doc_mask; padding of doc samples),
// and each document's first token as a global one (global_doc_starts).
BatchStructure Trainer::batch_structure(const StepBatch& b, int64_t a) {
  BatchStructure bs;
  if (b.doc.empty()) return bs;
  const int32_t* doc = b.doc.data() + a * b.B * b.T_full;
  const bool pads = cfg_.data.packing == Packing::doc;
  if ((cfg_.data.doc_mask || pads) && cfg_.attention.pattern != Pattern::linformer) bs.doc = doc;
  if (cfg_.attention.global_doc_starts) {
    bs.globals.resize(size_t(b.B));
    for (int64_t i = 0; i < b.B; ++i)
      for (int64_t p = 0; p < b.T_full; ++p)
        if (p == 0 || doc[i * b.T_full + p] != doc[i * b.T_full + p - 1])
          bs.globals[i].push_back(p);
  }
  return bs;
}

StepStats Trainer::step() {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t B = cfg_.train.micro_batch, Tn = cfg_.data.seq_len, A = cfg_.train.grad_accum;
  // The global batch of step t is the loader's next fixed set of sample numbers.
  const std::shared_ptr<const StepBatch> batch = loader_->next();
  const int32_t* inputs = batch->inputs.data();
  const int32_t* targets = batch->targets.data();
  int64_t total = 0;
  for (int32_t t : batch->targets) total += t != kIgnoreIndex;
  LONGCTX_CHECK(total > 0, "step ", step_, " has no target tokens");

  ParamStore<float>& params = model_->params();
  params.zero_grads();
  model_->set_step(step_);
  double loss_sum = 0;
  for (int64_t a = 0; a < A; ++a) {
    model_->set_batch(batch_structure(*batch, a));
    int64_t count = 0;
    loss_sum += model_->forward(inputs + a * B * Tn, targets + a * B * Tn, &count);
    model_->backward(inputs + a * B * Tn, targets + a * B * Tn, 1.0f / float(total));
  }
  StepStats s;
  s.data_wait_ms = loader_->take_wait_ms();
  s.step = step_;
  s.loss = loss_sum / double(total);
  s.grad_norm = grad_norm(params.grads);
  if (!std::isfinite(s.loss) || !std::isfinite(s.grad_norm))
    throw Error(str("training diverged at step ", step_, ": loss ", s.loss, ", gradient norm ",
                    s.grad_norm, " (try a lower train.lr or a smaller train.clip)"));
  clip_grads(params.grads, s.grad_norm, cfg_.train.clip);
  s.lr = learning_rate(cfg_.train, step_);
  opt_->step(params, s.lr, step_ + 1);
  s.tokens = A * B * Tn;
  s.step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
  ++step_;
  return s;
}

int run_training(const Config& cfg) {
  make_dirs(cfg.run.out_dir);
  write_file_atomic(cfg.run.out_dir + "/config.yaml", cfg.yaml);
  Trainer trainer(cfg);
  const auto& m = trainer.model();
  std::printf("longctx train: %s | %d layers, d_model %d, %d heads, %s attention | %.2fM params\n",
              cfg.run.name.c_str(), cfg.model.n_layer, cfg.model.d_model, cfg.model.n_head,
              name_of(cfg.attention.pattern), trainer.model().params().size() / 1e6);
  std::printf("  batch %d x %d tokens x %d accum | %d steps | %d threads | activations %.1f MiB\n",
              cfg.train.micro_batch, cfg.data.seq_len, cfg.train.grad_accum, cfg.train.steps,
              omp_get_max_threads(), m.activation_bytes() / 1048576.0);
  std::fflush(stdout);

  MetricsLog metrics(cfg.run.out_dir + "/metrics.jsonl");
  Progress progress(cfg.train.steps);
  int64_t tokens = 0;
  StepStats last;
  double first_loss = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int s = 0; s < cfg.train.steps; ++s) {
    last = trainer.step();
    tokens += last.tokens;
    if (s == 0) first_loss = last.loss;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (s % cfg.log.every == 0 || s + 1 == cfg.train.steps) {
      const double tps = last.tokens / (last.step_ms / 1000.0);
      metrics.write_step(last, tokens, tps, peak_rss_mb());
      progress.print(last, tps, elapsed);
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("done: %d steps in %.1f s | loss %.4f -> %.4f | %.0f tokens/s | peak RSS %.0f MiB\n",
              cfg.train.steps, secs, first_loss, last.loss, tokens / secs, peak_rss_mb());
  std::printf("  run directory: %s (config.yaml, metrics.jsonl)\n", cfg.run.out_dir.c_str());
  return 0;
}

}  // namespace longctx

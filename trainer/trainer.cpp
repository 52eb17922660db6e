#include "trainer/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "core/fs.h"
#include "core/memory.h"
#include "data/dataset.h"
#include "model/cross_entropy.h"
#include "trainer/lr_schedule.h"
#include "trainer/metrics.h"

namespace longctx {

Trainer::Trainer(const Config& cfg) : Trainer(cfg, nullptr) {}

Trainer::Trainer(const Config& cfg, ProcessGrid& grid) : Trainer(cfg, &grid) {}

Trainer::Trainer(const Config& cfg, ProcessGrid* shared) : cfg_(cfg), grid_(shared) {
  if (!grid_) {
    own_grid_ = std::make_unique<ProcessGrid>(ProcessGrid::make(make_self_comm(), 1));
    grid_ = own_grid_.get();
  }
  ProcessGrid& grid = *grid_;
  if (cfg.train.threads > 0) omp_set_num_threads(cfg.train.threads);
  if (cfg.data.source == DataSource::hdf5) dataset_ = std::make_unique<Dataset>(cfg.data.train);
  source_ = make_sample_source(cfg, dataset_.get());
  if (!cfg.data.val.empty()) {  // checked now, so a wrong path fails before training, not after
    Config val = cfg;
    val.data.train = cfg.data.val;
    val_dataset_ = std::make_unique<Dataset>(cfg.data.val);
    make_sample_source(val, val_dataset_.get());
  }
  // Under sequence parallelism each rank holds seq_len / sp positions of every sequence:
  // contiguous slices, except for causal full attention (flash, or dense, which runs the same
  // cores under sp) over a ring, whose triangle the zigzag layout shares evenly (rank r: chunks
  // r and 2·sp−1−r of 2·sp). Bidirectional attention is balanced either way; linformer needs
  // one range per rank.
  SeqParallel sp;
  if (grid.sp_size > 1) {
    const Pattern p = cfg.attention.pattern;
    const bool zigzag = cfg.parallel.sp_mode == SpMode::ring &&
                        (p == Pattern::flash || p == Pattern::dense) &&
                        cfg.objective == Objective::causal_lm &&
                        cfg.data.seq_len % (2 * grid.sp_size) == 0;
    sp.comm = grid.sp.get();
    sp.layout = attn::SpLayout::make(
        zigzag ? attn::SpLayoutKind::zigzag : attn::SpLayoutKind::contiguous, cfg.data.seq_len,
        grid.sp_size);
    sp.rank = grid.sp_rank;
    sp.mode = cfg.parallel.sp_mode;
  }
  LoaderGrid lg{grid.dp_rank, grid.dp_size, grid.sp_rank, grid.sp_size, {}};
  if (sp.active()) lg.sp_ranges = sp.layout.ranges(grid.sp_rank);
  loader_ = std::make_unique<Loader>(*source_, cfg.data.seq_len, cfg.train.micro_batch,
                                     cfg.train.grad_accum, lg, cfg.data.prefetch);
  const int64_t B = cfg.train.micro_batch, Tn = cfg.data.seq_len / grid.sp_size;
  model_ = std::make_unique<Transformer<float>>(cfg.model, cfg.attention, B, Tn,
                                                cfg.train.recompute, cfg.objective,
                                                cfg.run.seed, sp);
  model_->init(cfg.run.seed);
  dp_ = std::make_unique<DataParallel>(grid, model_->params(), cfg.train, cfg.parallel);
  model_->set_grad_ready([this](int64_t lo) { dp_->grads_ready(model_->params(), lo); });
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

namespace {
// LONGCTX_TEST_FAIL="RANK:STEP" makes that rank fail at that step: the tests' way to check that
// one failing rank ends the whole job with its message.
void maybe_inject_failure(int rank, int step) {
  const char* spec = std::getenv("LONGCTX_TEST_FAIL");
  int r = -1, s = -1;
  if (spec && std::sscanf(spec, "%d:%d", &r, &s) == 2 && r == rank && s == step)
    throw Error(str("injected failure (LONGCTX_TEST_FAIL=", spec, ") at step ", step));
}
}  // namespace

StepStats Trainer::step() {
  maybe_inject_failure(grid_->world->rank(), step_);
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t B = cfg_.train.micro_batch, A = cfg_.train.grad_accum;
  const int64_t Tn = cfg_.data.seq_len / grid_->sp_size;  // this rank's share of each sequence
  // The global batch of step t is the loader's next fixed set of sample numbers.
  const std::shared_ptr<const StepBatch> batch = loader_->next();
  const int32_t* inputs = batch->inputs.data();
  const int32_t* targets = batch->targets.data();
  // The loss is the mean over every target of the global batch, whatever the grid.
  int64_t total = 0;
  for (int32_t t : batch->targets) total += t != kIgnoreIndex;
  grid_->world->all_reduce_sum(&total, 1);
  LONGCTX_CHECK(total > 0, "step ", step_, " has no target tokens");

  ParamStore<float>& params = model_->params();
  params.zero_grads();
  model_->set_step(step_);
  double loss_sum = 0;
  for (int64_t a = 0; a < A; ++a) {
    model_->set_batch(batch_structure(*batch, a));
    int64_t count = 0;
    loss_sum += model_->forward(inputs + a * B * Tn, targets + a * B * Tn, &count);
    if (a == A - 1) dp_->arm();  // the gradients are final only in the last backward
    model_->backward(inputs + a * B * Tn, targets + a * B * Tn, 1.0f / float(total));
  }
  grid_->world->all_reduce_sum(&loss_sum, 1);
  StepStats s;
  s.data_wait_ms = loader_->take_wait_ms();
  s.step = step_;
  s.loss = loss_sum / double(total);
  s.grad_norm = dp_->reduce_gradients(params);
  if (!std::isfinite(s.loss) || !std::isfinite(s.grad_norm))
    throw Error(str("training diverged at step ", step_, ": loss ", s.loss, ", gradient norm ",
                    s.grad_norm, " (try a lower train.lr or a smaller train.clip)"));
  s.lr = learning_rate(cfg_.train, step_);
  dp_->update(params, s.grad_norm, s.lr, step_ + 1);
  s.tokens = A * B * cfg_.data.seq_len * grid_->dp_size;
  for (Comm* c : {grid_->world.get(), grid_->dp.get(), grid_->sp.get()})
    for (const auto& [op, k] : c->take_stats()) {
      s.comm_bytes += k.bytes;
      s.comm_ms += k.seconds * 1e3;
    }
  s.step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
  ++step_;
  return s;
}

int run_training(const Config& cfg) {
  ProcessGrid grid = ProcessGrid::for_process(cfg.parallel.sp);
  const bool lead = grid.world->rank() == 0;  // only rank 0 writes files and prints
  if (lead) {
    make_dirs(cfg.run.out_dir);
    write_file_atomic(cfg.run.out_dir + "/config.yaml", cfg.yaml);
  }
  Trainer trainer(cfg, grid);
  const auto& m = trainer.model();
  const DataParallel& dp = trainer.data_parallel();
  if (!lead) {
    for (int s = 0; s < cfg.train.steps; ++s) trainer.step();
    return 0;
  }
  std::printf("longctx train: %s | %d layers, d_model %d, %d heads, %s attention | %.2fM params\n",
              cfg.run.name.c_str(), cfg.model.n_layer, cfg.model.d_model, cfg.model.n_head,
              name_of(cfg.attention.pattern), trainer.model().params().size() / 1e6);
  std::printf("  %d processes: dp %d x sp %d (%s)%s | batch %d x %d tokens x %d accum per replica "
              "| %d steps | %d threads\n",
              grid.world->size(), grid.dp_size, grid.sp_size, grid.world->backend().c_str(),
              cfg.parallel.zero ? ", ZeRO-1" : "", cfg.train.micro_batch, cfg.data.seq_len,
              cfg.train.grad_accum, cfg.train.steps, omp_get_max_threads());
  if (const SeqParallel& sp = m.sequence_parallel(); sp.active())
    std::printf("  sequence parallel: %s, %s layout, %lld positions per rank\n",
                name_of(sp.mode), attn::sp_layout_name(sp.layout.kind),
                static_cast<long long>(sp.layout.local_len()));
  std::printf("  per rank: parameters %.1f MiB, gradients %.1f MiB, optimizer state %.1f MiB, "
              "activations %.1f MiB\n",
              dp.param_bytes() / 1048576.0, dp.grad_bytes() / 1048576.0,
              dp.optimizer_bytes() / 1048576.0, m.activation_bytes() / 1048576.0);
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

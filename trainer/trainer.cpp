#include "trainer/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "core/error.h"
#include "core/fs.h"
#include "core/memory.h"
#include "core/mpi_env.h"
#include "data/dataset.h"
#include "eval/tasks.h"
#include "model/cross_entropy.h"
#include "trainer/checkpoint.h"
#include "trainer/lr_schedule.h"
#include "trainer/metrics.h"
#include "trainer/run_dir.h"

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
  if (cfg.run.device == DeviceKind::cuda) {
    // The host model holds one token: its store gives the layout and the initial weights (the
    // same as a CPU run's); the GPU model trains. Each rank drives the GPU of its local rank.
    const int device = local_rank();
    check_gpu_device(device);
    model_ = std::make_unique<Transformer<float>>(cfg.model, cfg.attention, 1, 1, Recompute::none,
                                                  cfg.objective, cfg.run.seed);
    model_->init(cfg.run.seed);
    gpu_ = make_gpu_model(cfg, model_->params(), B, Tn, device);
    gpu_->upload_params(model_->params().values.data());
    if (grid.world->size() > 1) nccl_ = make_nccl_comm(*grid.world, device);
    return;
  }
  model_ = std::make_unique<Transformer<float>>(cfg.model, cfg.attention, B, Tn,
                                                cfg.train.recompute, cfg.objective,
                                                cfg.run.seed, sp);
  model_->init(cfg.run.seed);
  dp_ = std::make_unique<DataParallel>(grid, model_->params(), cfg.train, cfg.parallel);
  model_->set_grad_ready([this](int64_t lo) { dp_->grads_ready(model_->params(), lo); });
}

const ParamStore<float>& Trainer::host_params() {
  if (gpu_ && host_stale_) {
    gpu_->download_params(model_->params().values.data());
    host_stale_ = false;
  }
  return model_->params();
}

int64_t Trainer::activation_bytes() const {
  return gpu_ ? gpu_->activation_bytes() : model_->activation_bytes();
}

Trainer::~Trainer() = default;

// What attention and pooling must know of micro-batch a: its documents (doc_mask; padding of doc
// and listops samples), each sample's real length, and each document's first token as a global
// one (global_doc_starts).
BatchStructure Trainer::batch_structure(const StepBatch& b, int64_t a) {
  if (b.doc.empty()) return {};
  return batch_structure_for(cfg_, b.doc.data() + a * b.B * b.T_full, b.B, b.T_full,
                             samples_padded(cfg_));
}

namespace {
// LONGCTX_TEST_FAIL="RANK:STEP" makes that rank fail in step STEP (counted from 1): the tests'
// way to check that one failing rank ends the whole job with its message.
void maybe_inject_failure(int rank, int step) {
  const char* spec = std::getenv("LONGCTX_TEST_FAIL");
  int r = -1, s = -1;
  if (spec && std::sscanf(spec, "%d:%d", &r, &s) == 2 && r == rank && s == step)
    throw Error(str("injected failure (LONGCTX_TEST_FAIL=", spec, ") at step ", step));
}
}  // namespace

StepStats Trainer::step() {
  const int number = step_ + 1;  // steps are numbered from 1 everywhere a user sees them
  maybe_inject_failure(grid_->world->rank(), number);
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
  LONGCTX_CHECK(total > 0, "step ", number, " has no target tokens");

  double loss_sum = 0;
  StepStats s;
  if (gpu_) {  // the GPU model (check_device admits no sp)
    gpu_->zero_grads();
    gpu_->set_step(step_);
    for (int64_t a = 0; a < A; ++a) {
      gpu_->set_batch(batch_structure(*batch, a));
      int64_t count = 0;
      loss_sum += gpu_->forward(inputs + a * B * Tn, targets + a * B * Tn, &count);
      gpu_->backward(inputs + a * B * Tn, targets + a * B * Tn, 1.0f / float(total));
    }
    grid_->world->all_reduce_sum(&loss_sum, 1);
    s.loss = loss_sum / double(total);
    s.grad_norm = gpu_->reduce_gradients(nccl_.get());
  } else {
    ParamStore<float>& params = model_->params();
    params.zero_grads();
    model_->set_step(step_);
    for (int64_t a = 0; a < A; ++a) {
      model_->set_batch(batch_structure(*batch, a));
      int64_t count = 0;
      loss_sum += model_->forward(inputs + a * B * Tn, targets + a * B * Tn, &count);
      if (a == A - 1) dp_->arm();  // the gradients are final only in the last backward
      model_->backward(inputs + a * B * Tn, targets + a * B * Tn, 1.0f / float(total));
    }
    grid_->world->all_reduce_sum(&loss_sum, 1);
    s.loss = loss_sum / double(total);
    s.grad_norm = dp_->reduce_gradients(params);
  }
  s.data_wait_ms = loader_->take_wait_ms();
  s.step = number;
  if (!std::isfinite(s.loss) || !std::isfinite(s.grad_norm))
    throw Error(str("training diverged at step ", number, ": loss ", s.loss, ", gradient norm ",
                    s.grad_norm, " (try a lower train.lr or a smaller train.clip)"));
  s.lr = learning_rate(cfg_.train, step_);
  if (gpu_) {
    gpu_->update(s.grad_norm, s.lr, step_ + 1);
    host_stale_ = true;
    s.peak_gpu_mb = gpu_->peak_device_mb();
  } else {
    dp_->update(model_->params(), s.grad_norm, s.lr, step_ + 1);
  }
  s.tokens = A * B * cfg_.data.seq_len * grid_->dp_size;
  tokens_seen_ += s.tokens;
  for (Comm* c : {grid_->world.get(), grid_->dp.get(), grid_->sp.get(), nccl_.get()}) {
    if (!c) continue;
    for (const auto& [op, k] : c->take_stats()) {
      s.comm_bytes += k.bytes;
      s.comm_ms += k.seconds * 1e3;
    }
  }
  s.step_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
  ++step_;
  return s;
}

CheckpointState Trainer::checkpoint_state() {
  CheckpointState s;
  checkpoint_state(s);
  return s;
}

void Trainer::checkpoint_state(CheckpointState& s) {
  s.step = step_;
  s.tokens_seen = tokens_seen_;
  s.config_yaml = cfg_.yaml;
  s.loader_json = loader_->state().to_json();
  const ParamStore<float>& p = model_->params();
  s.infos = p.infos();
  s.values.resize(p.values.size());
  if (gpu_) {  // replicas are identical: every rank holds the whole state
    s.m.resize(p.values.size());
    s.v.resize(p.values.size());
    gpu_->download_params(s.values.data());
    gpu_->download_moments(s.m.data(), s.v.data());
    return;
  }
  std::copy(p.values.begin(), p.values.end(), s.values.begin());
  dp_->gather_moments(s.m, s.v);
}

void Trainer::restore(const CheckpointState& s) {
  ParamStore<float>& p = model_->params();
  if (!s.infos.empty()) {  // the reading rank checks names and shapes; the others got values
    for (size_t i = 0; i < std::max(s.infos.size(), p.infos().size()); ++i) {
      const ParamInfo* a = i < s.infos.size() ? &s.infos[i] : nullptr;
      const ParamInfo* b = i < p.infos().size() ? &p.infos()[i] : nullptr;
      if (!a || !b || a->name != b->name || !(a->shape == b->shape) || a->offset != b->offset)
        throw Error(str("checkpoint parameter ", i, " is ", a ? a->name + " " + a->shape.str() : "missing",
                        " but the model's is ", b ? b->name + " " + b->shape.str() : "missing"));
    }
  }
  LONGCTX_CHECK(int64_t(s.values.size()) == p.size(), "checkpoint has ", s.values.size(),
                " parameter values, the model ", p.size());
  p.values = s.values;
  if (gpu_) {
    gpu_->upload_params(s.values.data());
    const std::vector<float> zeros(s.m.empty() ? s.values.size() : 0);
    gpu_->upload_moments(s.m.empty() ? zeros.data() : s.m.data(),
                         s.m.empty() ? zeros.data() : s.v.data());
    host_stale_ = false;
  } else if (s.m.empty()) {  // weights alone: the moments start from zero
    dp_->load_moments(std::vector<float>(s.values.size()), std::vector<float>(s.values.size()));
  } else {
    dp_->load_moments(s.m, s.v);
  }
  step_ = int(s.step);
  tokens_seen_ = s.tokens_seen;
  loader_->restore(LoaderState::from_json(s.loader_json));
}

namespace {

// SIGTERM or SIGUSR1 (what Slurm sends before it ends a job) ask the run to stop after the step
// in progress, with a checkpoint.
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

const char* signal_name(int sig) {
  return sig == SIGTERM ? "SIGTERM" : sig == SIGUSR1 ? "SIGUSR1" : "a stop signal to another rank";
}

void print_header(const Config& cfg, const ProcessGrid& grid, Trainer& trainer) {
  const auto& m = trainer.model();
  std::printf("longctx train: %s | %d layers, d_model %d, %d heads, %s attention | %.2fM params\n",
              cfg.run.name.c_str(), cfg.model.n_layer, cfg.model.d_model, cfg.model.n_head,
              name_of(cfg.attention.pattern), trainer.model().params().size() / 1e6);
  std::printf("  %d processes: dp %d x sp %d (%s)%s | batch %d x %d tokens x %d accum per replica "
              "| %d steps | %d threads\n",
              grid.world->size(), grid.dp_size, grid.sp_size,
              trainer.gpu() && grid.world->size() > 1 ? "gradients over nccl"
                                                       : grid.world->backend().c_str(),
              cfg.parallel.zero ? ", ZeRO-1" : "", cfg.train.micro_batch, cfg.data.seq_len,
              cfg.train.grad_accum, cfg.train.steps, omp_get_max_threads());
  if (const SeqParallel& sp = m.sequence_parallel(); sp.active())
    std::printf("  sequence parallel: %s, %s layout, %lld positions per rank\n",
                name_of(sp.mode), attn::sp_layout_name(sp.layout.kind),
                static_cast<long long>(sp.layout.local_len()));
  if (const DataParallel* dp = trainer.data_parallel())
    std::printf("  per rank: parameters %.1f MiB, gradients %.1f MiB, optimizer state %.1f MiB, "
                "activations %.1f MiB\n",
                dp->param_bytes() / 1048576.0, dp->grad_bytes() / 1048576.0,
                dp->optimizer_bytes() / 1048576.0, m.activation_bytes() / 1048576.0);
  else
    std::printf("  on the GPU (%s, device %d per local rank): %.1f MiB allocated, of which "
                "activations %.1f MiB; fp32 master weights, gradients and AdamW moments\n",
                name_of(cfg.train.precision), local_rank(),
                trainer.gpu()->device_bytes() / 1048576.0,
                trainer.activation_bytes() / 1048576.0);
}

}  // namespace

namespace {

// Evaluation after step `step` (from 1), on rank 0 with a single-process copy of the model
// (the other ranks go on to the next step and wait for rank 0 in its first collective).
void evaluate(const Config& cfg, Trainer& trainer, MetricsLog& metrics, int step) {
  const auto t0 = std::chrono::steady_clock::now();
  nlohmann::ordered_json results = nlohmann::ordered_json::object();
  std::string line;
  for (const EvalTask t : cfg.eval.tasks) {
    nlohmann::ordered_json r = run_eval_task(t, cfg, trainer.host_params());
    r.erase("task");
    char buf[96] = "";
    if (t == EvalTask::kvcache)
      std::snprintf(buf, sizeof buf, " | kv cache %.0f B/token/layer",
                    r.value("bytes_per_token_per_layer", 0.0));
    else if (t == EvalTask::ppl)
      std::snprintf(buf, sizeof buf, " | ppl %.3f", r.value("ppl", 0.0));
    else
      std::snprintf(buf, sizeof buf, " | %s acc %.3f", name_of(t), r.value("accuracy", 0.0));
    line += buf;
    results[name_of(t)] = std::move(r);
  }
  metrics.write_eval(step, results);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  eval after step %d%s (%.1f s)\n", step, line.c_str(), secs);
  std::fflush(stdout);
}

// run_dir/summary.json: what a sweep reads to report the run and to know it finished.
void write_summary(const Config& cfg, Trainer& trainer, const StepStats& last, int64_t tokens,
                   std::chrono::steady_clock::time_point start, bool finished) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::ordered_json j;
  j["finished"] = finished;
  j["steps"] = trainer.next_step();
  j["params"] = trainer.model().params().size();
  j["non_embedding_params"] = trainer.model().non_embedding_params();
  j["final_loss"] = last.loss;
  j["tokens_per_s"] = secs > 0 ? double(tokens) / secs : 0.0;
  j["peak_rss_mb"] = peak_rss_mb();
  if (last.peak_gpu_mb > 0) j["peak_gpu_mb"] = last.peak_gpu_mb;
  j["device"] = name_of(cfg.run.device);
  j["precision"] = name_of(cfg.train.precision);
  j["wall_s"] = secs;
  write_file_atomic(cfg.run.out_dir + "/summary.json", j.dump(2) + "\n");
}

}  // namespace

int run_training(const Config& cfg, bool force) {
  // First: a stop signal that comes while the model is built or a checkpoint read must not kill
  // the process (Slurm then marks the job failed and does not requeue it); the loop sees it
  // after the first step and stops with a checkpoint.
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  if (force && cfg.checkpoint.resume == "auto")
    throw ConfigError("--force clears the run directory, and 'checkpoint.resume: auto' continues "
                      "it; choose one");
  ProcessGrid grid = ProcessGrid::for_process(cfg.parallel.sp);
  const bool lead = grid.world->rank() == 0;  // only rank 0 writes files and prints
  Trainer trainer(cfg, grid);
  if (lead) print_header(cfg, grid, trainer);

  // Resume: rank 0 finds and reads the checkpoint, every rank gets it.
  std::optional<ResumePoint> rp = lead ? find_resume_point(cfg) : std::nullopt;
  rp = broadcast_resume_point(*grid.world, std::move(rp), 0);
  if (rp) {
    const std::vector<std::string> changed =
        check_resume_config(rp->state.config_yaml, cfg.yaml, rp->path);
    // After every check that may refuse the run, before anything is written.
    if (lead) claim_run_dir(cfg, force, rp->path, rp->state.step);
    trainer.restore(rp->state);
    if (lead) {
      std::printf("  resumed from %s at step %d (%lld tokens seen)\n", rp->path.c_str(),
                  trainer.next_step(), static_cast<long long>(trainer.tokens_seen()));
      for (const std::string& c : changed) std::printf("    changed: %s\n", c.c_str());
    }
    rp.reset();  // the state's copy is no longer needed
  } else if (lead) {
    claim_run_dir(cfg, force, "", -1);
    if (cfg.checkpoint.resume == "auto")
      std::printf("  no checkpoint in %s: starting at step 0\n", checkpoint_dir(cfg).c_str());
  }
  std::fflush(stdout);
  if (lead) {  // after the resume checks: a refused resume leaves the run directory as it was
    make_dirs(cfg.run.out_dir);
    write_file_atomic(cfg.run.out_dir + "/config.yaml", cfg.yaml);
  }
  const int first = trainer.next_step();
  // A run with steps to take replaces the summary when it ends; one with none keeps it.
  if (lead && first < cfg.train.steps) std::remove((cfg.run.out_dir + "/summary.json").c_str());
  if (first >= cfg.train.steps) {
    if (lead) std::printf("nothing to do: the checkpoint is at step %d of train.steps %d\n", first,
                          cfg.train.steps);
    return 0;
  }

  std::unique_ptr<MetricsLog> metrics;
  std::unique_ptr<CheckpointWriter> writer;
  if (lead) {
    metrics = std::make_unique<MetricsLog>(cfg.run.out_dir + "/metrics.jsonl", first > 0 ? first : -1);
    writer = std::make_unique<CheckpointWriter>(checkpoint_dir(cfg), cfg.checkpoint.keep);
    if (cfg.checkpoint.every > 0) writer->reserve(trainer.model().params().size());
  }
  // A checkpoint of the state after the step just taken: the copy is the only stall, the file
  // is written on the writer's thread.
  CheckpointState other_ranks;  // ZeRO-1: ranks other than 0 gather into this
  auto save = [&]() -> std::string {
    const auto t0 = std::chrono::steady_clock::now();
    if (!lead) {  // only ZeRO-1's gather of the moments needs the other ranks
      if (trainer.data_parallel() && trainer.data_parallel()->sharded())
        trainer.checkpoint_state(other_ranks);
      return "";
    }
    writer->wait();  // the previous write: its buffers are reused for this copy
    const auto t1 = std::chrono::steady_clock::now();
    CheckpointState st = writer->take_buffer();
    trainer.checkpoint_state(st);
    const std::string path = checkpoint_path(cfg, trainer.next_step());
    const double mb = double(st.values.size() + st.m.size() + st.v.size()) * 4 / 1048576.0;
    writer->write(std::move(st), path);
    const auto t2 = std::chrono::steady_clock::now();
    const auto ms = [](auto a, auto b) {
      return std::chrono::duration<double, std::milli>(b - a).count();
    };
    std::printf("  checkpoint %s (%.1f MiB) | training stalled %.0f ms (copy %.0f ms", path.c_str(),
                mb, ms(t0, t2), ms(t1, t2));
    if (ms(t0, t1) >= 1) std::printf(", waiting for the previous write %.0f ms", ms(t0, t1));
    std::printf(")");
    if (writer->last_seconds() > 0)
      std::printf(" | previous write %.2f s, %.0f MB/s", writer->last_seconds(),
                  writer->last_bytes() / 1e6 / writer->last_seconds());
    std::printf("\n");
    std::fflush(stdout);
    return path;
  };

  Progress progress(cfg.train.steps, first);
  int64_t tokens = 0;
  StepStats last;
  double first_loss = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int s = first; s < cfg.train.steps; ++s) {
    last = trainer.step();
    tokens += last.tokens;
    if (s == first) first_loss = last.loss;
    const int done = trainer.next_step();  // == last.step: the step just taken, from 1
    // The logged steps do not depend on where a run was resumed: metrics.jsonl of a resumed
    // run reads as the uninterrupted one's.
    if (lead && (done == 1 || done % cfg.log.every == 0 || done == cfg.train.steps)) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double tps = last.tokens / (last.step_ms / 1000.0);
      metrics->write_step(last, trainer.tokens_seen(), tps, peak_rss_mb());
      progress.print(last, tps, elapsed);
    }
    const bool eval_now = !cfg.eval.tasks.empty() &&
                          ((cfg.eval.every > 0 && done % cfg.eval.every == 0) ||
                           done == cfg.train.steps);
    if (lead && eval_now) evaluate(cfg, trainer, *metrics, done);
    int64_t sig = g_stop_signal;  // a signal seen by any rank stops them all after this step
    if (grid.world->size() > 1) grid.world->all_reduce_sum(&sig, 1);
    const bool stop = cfg.train.stop_after > 0 && done == cfg.train.stop_after &&
                      done < cfg.train.steps;
    if (done == cfg.train.steps) sig = 0;  // a signal after the last step: the run is finished
    // The last step always leaves a checkpoint: a finished run's model is what eval, generate
    // and export read, and what a longer run resumes from. checkpoint.every adds others.
    const bool scheduled =
        (cfg.checkpoint.every > 0 && done % cfg.checkpoint.every == 0) || done == cfg.train.steps;
    if (!scheduled && !stop && sig == 0) continue;
    const std::string path = save();
    if (!stop && sig == 0) continue;
    if (lead) {
      writer->wait();
      if (sig != 0)
        std::printf("stopped by %s after step %d: checkpoint %s written; resume with "
                    "--set checkpoint.resume=auto\n",
                    signal_name(int(g_stop_signal)), done, path.c_str());
      else
        std::printf("stopped after step %d (train.stop_after): checkpoint %s written; resume "
                    "with --set checkpoint.resume=auto\n", done, path.c_str());
      // The Slurm template requeues the job when this file appears.
      if (const char* marker = std::getenv("LONGCTX_PREEMPTED_FILE"); marker && sig != 0)
        write_file_atomic(marker, path + "\n");
      write_summary(cfg, trainer, last, tokens, start, /*finished=*/false);
    }
    return 0;
  }
  if (!lead) return 0;
  writer->wait();
  if (writer->last_seconds() > 0)
    std::printf("  final checkpoint %s written in %.2f s, %.0f MB/s\n",
                checkpoint_path(cfg, trainer.next_step()).c_str(), writer->last_seconds(),
                writer->last_bytes() / 1e6 / writer->last_seconds());
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  write_summary(cfg, trainer, last, tokens, start, /*finished=*/true);
  std::printf("done: %d steps in %.1f s | loss %.4f -> %.4f | %.0f tokens/s | peak RSS %.0f MiB\n",
              cfg.train.steps - first, secs, first_loss, last.loss, tokens / secs, peak_rss_mb());
  std::printf("  run directory: %s (config.yaml, metrics.jsonl, summary.json, checkpoints/)\n"
              "  the final model, %s, is what `longctx eval|generate|ckpt export %s` read\n",
              cfg.run.out_dir.c_str(), checkpoint_path(cfg, trainer.next_step()).c_str(),
              cfg.run.out_dir.c_str());
  return 0;
}

}  // namespace longctx

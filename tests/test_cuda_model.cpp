// The GPU model against the CPU model (label `gpu`: skipped without a CUDA device): loss and
// every parameter gradient against Transformer<double> on the same weights and tokens, in fp32
// and bf16, over the variants the GPU runs (mla among them); 50 bf16 training steps tracking the
// CPU run; a checkpoint state written on one device resuming on the other. What runs everywhere:
// the config's refusals and the trainer's error where no GPU can be used.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/cuda_env.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/cross_entropy.h"
#include "model/gpu_model.h"
#include "model/transformer.h"
#include "tests/shard_fixtures.h"
#include "tests/test_util.h"
#include "trainer/checkpoint_file.h"
#include "trainer/trainer.h"

namespace longctx {
namespace {

Config tiny(const std::vector<std::string>& sets = {}) {
  std::vector<std::string> all = {"model.vocab_size=61",   "model.d_model=64",    "model.n_layer=2",
                                  "model.n_head=4",        "model.d_ff=96",       "data.seq_len=37",
                                  "model.max_seq_len=128", "train.micro_batch=2", "train.warmup=2",
                                  "train.steps=10"};
  all.insert(all.end(), sets.begin(), sets.end());
  return parse_config("", all);
}

bool have_gpu() { return cuda_device_count() > 0; }

// What runs everywhere: the config refuses what the GPU model does not run, naming the key.
TEST(GpuConfig, RefusesWhatTheGpuModelDoesNotRun) {
  EXPECT_CONTAINS(test::error_of([] { tiny({"train.precision=bf16"}); }), "'run.device: cuda'");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"attention.pattern=longformer"}, "'attention.pattern: longformer'"},
      {{"objective=classify", "data.synthetic.task=majority"}, "'objective: classify'"},
      {{"data.source=hdf5", "data.train=shards", "data.doc_mask=true"}, "'data.doc_mask: true'"},
      {{"data.source=hdf5", "data.train=shards", "data.packing=doc"}, "'data.packing: doc'"},
      {{"train.recompute=block"}, "'train.recompute: block'"},
      {{"parallel.zero=1"}, "'parallel.zero: 1'"},
      {{"parallel.sp=2", "data.seq_len=38"}, "'parallel.sp: 2'"},
      {{"attention.pattern=linformer", "attention.linformer.k=64", "objective=classify",
        "data.synthetic.task=majority"},
       "'objective: classify'"},
      {{"attention.pattern=longformer", "attention.separate_global_proj=true"},
       "'attention.separate_global_proj: true'"},
      // The block-sparse kernels are the bf16 tensor-core ones.
      {{"attention.pattern=bigbird"}, "'attention.pattern: bigbird' in fp32"},
      {{"train.precision=bf16", "attention.pattern=dense", "data.source=hdf5", "data.train=shards",
        "data.doc_mask=true"},
       "'data.doc_mask: true' with dense attention"},
      {{"train.precision=bf16", "attention.pattern=bigbird", "attention.block_size=32"},
       "'attention.block_size: 32' with bigbird"},
  };
  for (const auto& [sets, expect] : cases) {
    std::vector<std::string> all = {"run.device=cuda"};
    all.insert(all.end(), sets.begin(), sets.end());
    EXPECT_CONTAINS(test::error_of([&] { tiny(all); }), "does not run " + expect);
  }
  EXPECT_CONTAINS(test::error_of([] {
                    tiny({"run.device=cuda", "model.d_model=1024", "model.n_head=4"});
                  }),
                  "does not run a head dimension of 256");
  EXPECT_CONTAINS(test::error_of([] {
                    tiny({"run.device=cuda", "train.precision=bf16", "model.n_head=16"});
                  }),
                  "does not run a head dimension of 4");
  // What it runs loads.
  for (const char* pattern : {"flash", "longformer", "bigbird", "strided"})
    EXPECT_NO_THROW(tiny({"run.device=cuda", "train.precision=bf16",
                          std::string("attention.pattern=") + pattern, "data.source=hdf5",
                          "data.train=shards", "data.doc_mask=true", "train.deterministic=false"}))
        << pattern;
  EXPECT_NO_THROW(tiny({"run.device=cuda", "train.precision=bf16", "attention.pattern=dense",
                        "attention.heads=gqa", "attention.n_kv_head=2", "model.norm=rmsnorm",
                        "model.activation=swiglu", "model.position=learned"}));
  for (const char* precision : {"fp32", "bf16"})
    EXPECT_NO_THROW(tiny({"run.device=cuda", std::string("train.precision=") + precision,
                          "attention.heads=mla", "attention.mla.rope_dim=8"}))
        << precision;
}

TEST(GpuConfig, TrainerSaysWhyItCannotUseTheGpu) {
  if (have_gpu()) GTEST_SKIP() << "a CUDA device is present: the error path does not apply";
  const std::string msg = test::error_of([] { Trainer t(tiny({"run.device=cuda"})); });
#if LONGCTX_HAVE_CUDA_KERNELS
  EXPECT_CONTAINS(msg, "no CUDA device is visible");
#else
  EXPECT_CONTAINS(msg, "built without CUDA kernels");
#endif
}

// ‖a − b‖ / ‖b‖ over one parameter's slice.
double slice_rel_err(const std::vector<float>& got, const std::vector<double>& want, int64_t off,
                     int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = off; i < off + n; ++i) {
    const double d = double(got[size_t(i)]) - want[size_t(i)];
    num += d * d;
    den += want[size_t(i)] * want[size_t(i)];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct Variant {
  std::string name;
  std::vector<std::string> sets;
  bool docs = false;  // the batch holds documents (set_batch on both models)
  // model.position none, set after parsing: the config asks mla for RoPE, but both models run
  // mla without it (the rope dims then stay unrotated).
  bool no_positions = false;
};

// The variant's config on the GPU in `precision`.
Config config_of(const Variant& v, const char* precision) {
  std::vector<std::string> sets = v.sets;
  sets.push_back("run.device=cuda");
  sets.push_back(std::string("train.precision=") + precision);
  Config cfg = tiny(sets);
  if (v.no_positions) cfg.model.position = Position::none;
  return cfg;
}

// Three documents per sample, the boundaries different in each sample.
std::vector<int32_t> documents(int64_t B, int64_t T) {
  std::vector<int32_t> doc(size_t(B * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      doc[size_t(b * T + t)] = int32_t(t >= T / 3 + b) + int32_t(t >= 2 * T / 3 - b);
  return doc;
}

// One forward and backward of the GPU model against Transformer<double> on the float weights.
// fp32: the GPU sums in other orders than the CPU (tiled attention, cuBLAS), ~1e-6 relative per
// op, so 1e-4 leaves room for 2 layers. bf16 rounds every activation to 8 bits of mantissa
// (2^-9 ≈ 2e-3 relative each); through two blocks, the loss moves by well under 1% and each
// gradient by a few percent: 2% on the loss (it sums many rows) and 8% per parameter.
void compare_with_cpu(const Config& cfg, double loss_tol, double grad_tol, bool docs = false) {
  const int64_t B = cfg.train.micro_batch, T = cfg.data.seq_len;
  Transformer<float> host(cfg.model, cfg.attention, 1, 1);
  host.init(7);
  // The run seed keys bigbird's random blocks, which the GPU model draws from it too.
  Transformer<double> ref(cfg.model, cfg.attention, B, T, Recompute::none, Objective::causal_lm,
                          cfg.run.seed);
  ASSERT_EQ(ref.params().size(), host.params().size());
  for (int64_t i = 0; i < host.params().size(); ++i)
    ref.params().values[size_t(i)] = host.params().values[size_t(i)];

  std::vector<int32_t> inputs(size_t(B * T)), targets(size_t(B * T));
  Rng rng = Rng::stream(11, 3);
  for (size_t i = 0; i < inputs.size(); ++i) {
    inputs[i] = int32_t(rng.below(uint64_t(cfg.model.vocab_size)));
    targets[i] = i % 7 == 3 ? kIgnoreIndex : int32_t(rng.below(uint64_t(cfg.model.vocab_size)));
  }
  const std::vector<int32_t> doc = documents(B, T);
  const BatchStructure bs =
      docs ? batch_structure_for(cfg, doc.data(), B, T, false) : BatchStructure{};
  ref.set_batch(bs);
  int64_t ref_count = 0;
  const double ref_loss = ref.forward(inputs.data(), targets.data(), &ref_count);
  ref.params().zero_grads();
  ref.backward(inputs.data(), targets.data(), 1.0 / double(ref_count));

  std::unique_ptr<GpuModel> gpu = make_gpu_model(cfg, host.params(), B, T, 0);
  gpu->upload_params(host.params().values.data());
  gpu->set_batch(bs);
  gpu->zero_grads();
  int64_t count = 0;
  const double loss = gpu->forward(inputs.data(), targets.data(), &count);
  gpu->backward(inputs.data(), targets.data(), 1.0f / float(count));
  EXPECT_EQ(count, ref_count);
  EXPECT_NEAR(loss, ref_loss, loss_tol * std::abs(ref_loss));
  std::vector<float> grads(size_t(gpu->size()));
  gpu->download_grads(grads.data());
  for (const ParamInfo& p : host.params().infos())
    EXPECT_LT(slice_rel_err(grads, ref.params().grads, p.offset, p.shape.numel()), grad_tol)
        << p.name;
}

const std::vector<Variant>& variants() {
  static const std::vector<Variant> v = {
      {"flash mha rope layernorm gelu tied", {}},
      {"dense mha rope", {"attention.pattern=dense"}},
      {"flash gqa learned untied",
       {"attention.heads=gqa", "attention.n_kv_head=2", "model.position=learned",
        "model.tie_embeddings=false"}},
      {"dense mqa rmsnorm swiglu",
       {"attention.pattern=dense", "attention.heads=mqa", "model.norm=rmsnorm",
        "model.activation=swiglu"}},
      {"flash mqa no positions swiglu",
       {"attention.heads=mqa", "model.position=none", "model.activation=swiglu"}},
      {"flash head_dim 32", {"model.n_head=2"}},
      {"flash mla rope",
       {"attention.heads=mla", "attention.mla.rope_dim=8", "attention.mla.kv_lora_rank=24"}},
      {"dense mla rope_dim 4 rmsnorm swiglu untied",
       {"attention.pattern=dense", "attention.heads=mla", "attention.mla.rope_dim=4",
        "attention.mla.kv_lora_rank=40", "model.norm=rmsnorm", "model.activation=swiglu",
        "model.tie_embeddings=false"}},
      {"flash mla no positions",
       {"attention.heads=mla", "attention.mla.rope_dim=8", "attention.mla.kv_lora_rank=24"},
       false,
       true},
      {"dense mla no positions",
       {"attention.pattern=dense", "attention.heads=mla", "attention.mla.rope_dim=6",
        "attention.mla.kv_lora_rank=16"},
       false,
       true},
  };
  return v;
}

TEST(GpuModel, Fp32LossAndGradientsMatchTheCpuModel) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const Variant& v : variants()) {
    SCOPED_TRACE(v.name);
    compare_with_cpu(config_of(v, "fp32"), 1e-5, 1e-4);
  }
}

TEST(GpuModel, Bf16LossAndGradientsMatchTheCpuModel) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const Variant& v : variants()) {
    SCOPED_TRACE(v.name);
    compare_with_cpu(config_of(v, "bf16"), 2e-2, 8e-2);
  }
}

// What only the bf16 tensor-core kernels run: the block-sparse patterns and document masks over
// sequences of several 64-blocks, every mask from the CPU engine's builders.
const std::vector<Variant>& sparse_variants() {
  static const std::vector<std::string> longer = {"data.seq_len=150", "model.max_seq_len=256",
                                                  "train.micro_batch=2"};
  auto with = [](std::vector<std::string> sets) {
    sets.insert(sets.end(), longer.begin(), longer.end());
    return sets;
  };
  static const std::vector<Variant> v = {
      {"flash T 150, block_size 16 (the GPU tiles 64 x 64 whatever the CPU's)",
       with({"attention.block_size=16"})},
      {"longformer window 40 dilation 2 globals gqa",
       with({"attention.pattern=longformer", "attention.window=40", "attention.dilation=2",
             "attention.global_tokens=[0, 77]", "attention.heads=gqa", "attention.n_kv_head=2"})},
      {"bigbird per-head random blocks",
       with({"attention.pattern=bigbird", "attention.bigbird.random_blocks=1"})},
      {"strided mqa",
       with({"attention.pattern=strided", "attention.strided.stride=12", "attention.heads=mqa"})},
      {"flash with documents",
       with({"data.source=hdf5", "data.train=shards", "data.doc_mask=true"}), true},
      {"longformer with documents and their first tokens global",
       with({"attention.pattern=longformer", "attention.window=30", "data.source=hdf5",
             "data.train=shards", "data.doc_mask=true", "attention.global_doc_starts=true"}),
       true},
      {"flash head_dim 40, non-deterministic backward",
       with({"model.d_model=80", "model.n_head=2", "train.deterministic=false"})},
      {"bigbird mla",
       with({"attention.pattern=bigbird", "attention.bigbird.random_blocks=1",
             "attention.heads=mla", "attention.mla.rope_dim=8", "attention.mla.kv_lora_rank=32"})},
      {"longformer mla with documents, no positions",
       with({"attention.pattern=longformer", "attention.window=40", "attention.heads=mla",
             "attention.mla.rope_dim=8", "attention.mla.kv_lora_rank=32", "data.source=hdf5",
             "data.train=shards", "data.doc_mask=true"}),
       true, true},
      {"flash head_dim 40 mla, non-deterministic backward",
       with({"model.d_model=80", "model.n_head=2", "train.deterministic=false",
             "attention.heads=mla", "attention.mla.rope_dim=8", "attention.mla.kv_lora_rank=48"})},
  };
  return v;
}

TEST(GpuModel, Bf16SparsePatternsMatchTheCpuModel) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const Variant& v : sparse_variants()) {
    SCOPED_TRACE(v.name);
    compare_with_cpu(config_of(v, "bf16"), 2e-2, 8e-2, v.docs);
  }
}

// The configs above load everywhere, so a typo in them shows without a GPU.
TEST(GpuConfig, VariantsLoad) {
  for (const Variant& v : variants())
    for (const char* precision : {"fp32", "bf16"})
      EXPECT_NO_THROW(config_of(v, precision)) << v.name << " " << precision;
  for (const Variant& v : sparse_variants()) EXPECT_NO_THROW(config_of(v, "bf16")) << v.name;
}

// train.deterministic: the same gradients, bit for bit, on a second backward of the same batch
// (mla: its shared key's gradient sums the heads in a fixed order).
TEST(GpuModel, DeterministicBackwardRepeatsItsBits) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const char* heads : {"mha", "mla"}) {
    SCOPED_TRACE(heads);
    const Config cfg =
        tiny({"run.device=cuda", "train.precision=bf16", "data.seq_len=150",
              "model.max_seq_len=256", "attention.pattern=longformer", "attention.window=40",
              std::string("attention.heads=") + heads, "attention.mla.rope_dim=8"});
    Transformer<float> host(cfg.model, cfg.attention, 1, 1);
    host.init(3);
    std::unique_ptr<GpuModel> gpu = make_gpu_model(cfg, host.params(), 2, 150, 0);
    gpu->upload_params(host.params().values.data());
    std::vector<int32_t> in(300), tg(300);
    for (size_t i = 0; i < in.size(); ++i) {
      in[i] = int32_t(i * 7 % 61);
      tg[i] = int32_t(i * 13 % 61);
    }
    std::vector<std::vector<float>> grads(2, std::vector<float>(size_t(gpu->size())));
    for (auto& g : grads) {
      gpu->zero_grads();
      int64_t n = 0;
      gpu->forward(in.data(), tg.data(), &n);
      gpu->backward(in.data(), tg.data(), 1.0f / float(n));
      gpu->download_grads(g.data());
    }
    EXPECT_EQ(grads[0], grads[1]);
  }
}

TEST(GpuModel, RefusesTokensOutsideTheVocabulary) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Config cfg = tiny({"run.device=cuda"});
  Transformer<float> host(cfg.model, cfg.attention, 1, 1);
  std::unique_ptr<GpuModel> gpu = make_gpu_model(cfg, host.params(), 2, 37, 0);
  std::vector<int32_t> in(74, 1), tg(74, 1);
  in[40] = 61;
  int64_t n = 0;
  EXPECT_CONTAINS(test::error_of([&] { gpu->forward(in.data(), tg.data(), &n); }),
                  "input token id 61 at batch row 1, position 3 is outside the vocabulary");
}

// 50 bf16 steps on the GPU against 50 fp32 steps on the CPU from the same initial weights and
// batches: bf16 rounding moves each loss by far less than the 2% allowed, but it compounds
// through the updates, which is what this checks does not run away.
TEST(GpuTraining, FiftyBf16StepsTrackTheCpuRun) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const std::vector<std::string> sets = {"data.seq_len=64", "train.micro_batch=8", "train.steps=50",
                                         "train.lr=1e-3", "train.warmup=5"};
  Config cpu = tiny(sets), gpu = cpu;
  gpu.run.device = DeviceKind::cuda;
  gpu.train.precision = Precision::bf16;
  Trainer tc(cpu), tg(gpu);
  double worst = 0;
  for (int s = 0; s < 50; ++s) {
    const double a = tc.step().loss, b = tg.step().loss;
    worst = std::max(worst, std::abs(b - a) / a);
  }
  EXPECT_LT(worst, 0.02) << "largest relative loss difference over 50 steps";
  EXPECT_GT(tg.gpu()->peak_device_mb(), 0.0);
}

// A state taken on one device continues on the other as it would have on the first: the
// losses of the next steps agree (fp32 on both: only summation orders differ), through the
// checkpoint file format.
TEST(GpuTraining, CheckpointsMoveBetweenGpuAndCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const std::string dir = test::temp_dir("gpu_ckpt");
  const std::vector<std::string> sets = {"data.seq_len=64", "train.micro_batch=4"};
  const Config cpu = tiny(sets);
  Config gpu = cpu;
  gpu.run.device = DeviceKind::cuda;
  for (const bool from_gpu : {true, false}) {
    SCOPED_TRACE(from_gpu ? "gpu -> cpu" : "cpu -> gpu");
    Trainer first(from_gpu ? gpu : cpu);
    for (int s = 0; s < 5; ++s) first.step();
    const std::string path = dir + (from_gpu ? "/from_gpu.ckpt" : "/from_cpu.ckpt");
    write_checkpoint(path, first.checkpoint_state());
    Trainer second(from_gpu ? cpu : gpu);
    second.restore(read_checkpoint(path));
    EXPECT_EQ(second.next_step(), 5);
    for (int s = 0; s < 3; ++s) {
      const double a = first.step().loss, b = second.step().loss;
      EXPECT_NEAR(b, a, 1e-4 * a) << "step " << 5 + s;
    }
  }
}

}  // namespace
}  // namespace longctx

// Head schemes: GQA and MQA share K/V heads across groups of query heads without copying; they
// must equal MHA whose K/V weights are replicated per group.
#include <gtest/gtest.h>

#include <vector>

#include "attention/attention_layer.h"
#include "tests/grad_check.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

using V = std::vector<double>;

struct LayerRun {
  V y, dx;
  ParamStore<double> store;
};

// Forward and backward of one attention layer on fixed inputs; `setup` fills the weights.
template <class Setup>
LayerRun run_layer(HeadScheme heads, int n_kv_head, Pattern pattern, Setup setup) {
  ModelConfig m;
  m.d_model = 16;
  m.n_head = 4;
  AttentionConfig ac;
  ac.heads = heads;
  ac.n_kv_head = n_kv_head;
  ac.pattern = pattern;
  ac.block_size = 8;
  LayerRun r;
  AttentionLayer<double> layer(r.store, "attn", m, ac, true);
  r.store.allocate();
  setup(r.store);
  const int64_t B = 2, Tn = 11, N = B * Tn;
  RopeTable<double> rope(32, 4);
  Arena<double> arena;
  AttentionActs<double> a;
  AttentionScratch<double> s;
  for (int pass = 0; pass < 2; ++pass) {
    layer.layout(arena, a, B, Tn);
    layer.layout_scratch(arena, s, B, Tn);
    if (pass == 0) arena.commit();
  }
  const V x = test::randn<double>(N * 16, 31), g = test::randn<double>(N * 16, 32);
  r.y.assign(N * 16, 0);
  r.dx.assign(N * 16, 0);
  layer.forward(r.store, x.data(), r.y.data(), a, s, B, Tn, &rope);
  layer.backward(r.store, x.data(), g.data(), r.dx.data(), a, s, B, Tn, &rope);
  return r;
}

void fill_random(ParamStore<double>& st) {
  Rng rng(33);
  for (auto& w : st.values) w = 0.4 * rng.normal();
}

// MHA's [C, H·D] K or V weight from a [C, Hkv·D] one: query head h reads kv head h / group.
V replicate(const double* w, int64_t C, int64_t H, int64_t Hkv, int64_t D) {
  V out(C * H * D);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < D; ++d) out[(c * H + h) * D + d] = w[(c * Hkv + h / (H / Hkv)) * D + d];
  return out;
}

TEST(Heads, GqaWithAllKvHeadsIsMha) {
  for (Pattern p : {Pattern::flash, Pattern::dense}) {
    const LayerRun mha = run_layer(HeadScheme::mha, 0, p, fill_random);
    const LayerRun gqa = run_layer(HeadScheme::gqa, 4, p, fill_random);
    EXPECT_EQ(gqa.y, mha.y);
    EXPECT_EQ(gqa.dx, mha.dx);
    EXPECT_EQ(gqa.store.grads, mha.store.grads);
  }
}

TEST(Heads, GqaEqualsMhaWithReplicatedKv) {
  const int64_t C = 16, H = 4, D = 4;
  for (int Hkv : {2, 1}) {
    for (Pattern p : {Pattern::flash, Pattern::dense}) {
      const HeadScheme scheme = Hkv == 1 ? HeadScheme::mqa : HeadScheme::gqa;
      const LayerRun gqa = run_layer(scheme, Hkv == 1 ? 0 : Hkv, p, fill_random);
      const ParamStore<double>& gs = gqa.store;
      auto copy_into_mha = [&](ParamStore<double>& st) {
        for (const char* name : {"attn.wq", "attn.wo"}) {
          const ParamInfo& a = gs.infos()[gs.find(name)];
          std::copy_n(gs.values.begin() + a.offset, a.shape.numel(), st.value(st.find(name)));
        }
        for (const char* name : {"attn.wk", "attn.wv"}) {
          const V w = replicate(gs.values.data() + gs.infos()[gs.find(name)].offset, C, H, Hkv, D);
          std::copy(w.begin(), w.end(), st.value(st.find(name)));
        }
      };
      const LayerRun mha = run_layer(HeadScheme::mha, 0, p, copy_into_mha);
      EXPECT_LT(test::max_abs_diff(gqa.y, mha.y), 1e-12);
      EXPECT_LT(test::max_abs_diff(gqa.dx, mha.dx), 1e-12);
      // The shared K/V weights' gradient is the sum of the replicas' gradients.
      for (const char* name : {"attn.wk", "attn.wv"}) {
        const double* gg = gs.grads.data() + gs.infos()[gs.find(name)].offset;
        const double* mg = mha.store.grads.data() + mha.store.infos()[mha.store.find(name)].offset;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t k = 0; k < Hkv; ++k)
            for (int64_t d = 0; d < D; ++d) {
              double sum = 0;
              for (int64_t h = k * (H / Hkv); h < (k + 1) * (H / Hkv); ++h)
                sum += mg[(c * H + h) * D + d];
              EXPECT_NEAR(gg[(c * Hkv + k) * D + d], sum, 1e-12) << name;
            }
      }
      EXPECT_LT(gs.size(), mha.store.size());  // fewer K/V weights, no copies
    }
  }
}

TEST(Heads, MqaIsGqaWithOneHead) {
  const LayerRun mqa = run_layer(HeadScheme::mqa, 0, Pattern::flash, fill_random);
  const LayerRun gqa1 = run_layer(HeadScheme::gqa, 1, Pattern::flash, fill_random);
  EXPECT_EQ(mqa.y, gqa1.y);
  EXPECT_EQ(mqa.store.grads, gqa1.store.grads);
}

}  // namespace
}  // namespace longctx

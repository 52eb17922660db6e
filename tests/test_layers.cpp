// Each layer's backward against finite differences of its forward, in double.
#include <gtest/gtest.h>

#include <vector>

#include "attention/attention_layer.h"
#include "model/activation.h"
#include "model/cross_entropy.h"
#include "model/embedding.h"
#include "model/mlp.h"
#include "model/norm.h"
#include "model/rope.h"
#include "tests/grad_check.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

using test::expect_grad_matches;
using test::dot;
using test::randn;
using V = std::vector<double>;

TEST(Layers, LayerNormBackward) {
  const int64_t N = 5, C = 7;
  V x = randn<double>(N * C, 1), w = randn<double>(C, 2), b = randn<double>(C, 3),
    g = randn<double>(N * C, 4), out(N * C), mean(N), rstd(N);
  auto f = [&] {
    layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    return dot(out, g);
  };
  f();
  V dx(N * C, 0), dw(C, 0), db(C, 0);
  layernorm_backward(dx.data(), dw.data(), db.data(), g.data(), x.data(), w.data(), mean.data(),
                     rstd.data(), N, C);
  expect_grad_matches("dx", f, x.data(), N * C, dx.data(), 35);
  expect_grad_matches("dw", f, w.data(), C, dw.data());
  expect_grad_matches("db", f, b.data(), C, db.data());
}

TEST(Layers, RmsNormBackward) {
  const int64_t N = 4, C = 9;
  V x = randn<double>(N * C, 5), w = randn<double>(C, 6), g = randn<double>(N * C, 7), out(N * C),
    rstd(N);
  auto f = [&] {
    rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C);
    return dot(out, g);
  };
  f();
  V dx(N * C, 0), dw(C, 0);
  rmsnorm_backward(dx.data(), dw.data(), g.data(), x.data(), w.data(), rstd.data(), N, C);
  expect_grad_matches("dx", f, x.data(), N * C, dx.data(), 36);
  expect_grad_matches("dw", f, w.data(), C, dw.data());
}

TEST(Layers, GeluAndSwigluBackward) {
  const int64_t n = 40;
  V x = randn<double>(n, 8, 2.0), u = randn<double>(n, 9), g = randn<double>(n, 10), out(n);
  auto fg = [&] {
    gelu_forward(out.data(), x.data(), n);
    return dot(out, g);
  };
  V dx(n);
  gelu_backward(dx.data(), g.data(), x.data(), n);
  expect_grad_matches("gelu dx", fg, x.data(), n, dx.data(), 40);
  auto fs = [&] {
    swiglu_forward(out.data(), x.data(), u.data(), n);
    return dot(out, g);
  };
  V dgate(n), dup(n);
  swiglu_backward(dgate.data(), dup.data(), g.data(), x.data(), u.data(), n);
  expect_grad_matches("swiglu dgate", fs, x.data(), n, dgate.data(), 40);
  expect_grad_matches("swiglu dup", fs, u.data(), n, dup.data(), 40);
}

TEST(Layers, GeluMatchesDefinition) {
  // gelu(1) with the tanh approximation, computed by hand: 0.5·(1 + tanh(0.79788456·1.044715)).
  double x = 1.0, y = 0;
  gelu_forward(&y, &x, 1);
  EXPECT_NEAR(y, 0.8411919906082768, 1e-12);
}

TEST(Layers, RopeIsOrthogonalAndInvertible) {
  const int64_t B = 1, H = 2, Tn = 6, D = 8;
  RopeTable<double> table(16, D);
  V x = randn<double>(B * H * Tn * D, 11), y = x;
  rope_apply(y.data(), table, B, H, Tn, D, 3, false);
  // Norm preserved per row; position 0 (pos0 = 0) rotation is the identity.
  for (int64_t r = 0; r < B * H * Tn; ++r) {
    double a = 0, b = 0;
    for (int64_t i = 0; i < D; ++i) {
      a += x[r * D + i] * x[r * D + i];
      b += y[r * D + i] * y[r * D + i];
    }
    EXPECT_NEAR(a, b, 1e-12);
  }
  rope_apply(y.data(), table, B, H, Tn, D, 3, true);
  EXPECT_LT(test::max_abs_diff(y, x), 1e-12);
  // Relative position property: <rope(q, p), rope(k, p')> depends only on p - p'.
  V q = randn<double>(D, 12), k = randn<double>(D, 13);
  auto score = [&](int64_t pq, int64_t pk) {
    V a = q, b = k;
    rope_apply(a.data(), table, 1, 1, 1, D, pq, false);
    rope_apply(b.data(), table, 1, 1, 1, D, pk, false);
    return dot(a, b);
  };
  EXPECT_NEAR(score(5, 2), score(9, 6), 1e-12);
  EXPECT_GT(std::abs(score(5, 2) - score(5, 4)), 1e-6);
}

TEST(Layers, CrossEntropyBackwardAndIgnoreIndex) {
  const int64_t N = 4, Vn = 6;
  V logits = randn<double>(N * Vn, 14), losses(N);
  std::vector<int32_t> targets = {2, kIgnoreIndex, 5, 0};
  int64_t count = 0;
  auto f = [&] { return cross_entropy_forward(losses.data(), logits.data(), targets.data(), N, Vn, &count); };
  const double sum = f();
  EXPECT_EQ(count, 3);
  EXPECT_EQ(losses[1], 0.0);
  // Row 0 by the definition: logsumexp - logit[target].
  double s = 0;
  for (int j = 0; j < Vn; ++j) s += std::exp(logits[j]);
  EXPECT_NEAR(losses[0], std::log(s) - logits[2], 1e-12);
  EXPECT_NEAR(sum, losses[0] + losses[2] + losses[3], 1e-12);
  V d(N * Vn);
  cross_entropy_backward(d.data(), logits.data(), targets.data(), N, Vn, 1.0);
  expect_grad_matches("dlogits", f, logits.data(), N * Vn, d.data(), 24);
}

TEST(Layers, EmbeddingBackward) {
  const int64_t B = 2, Tn = 3, C = 4, Vn = 5, P = 8;
  V wte = randn<double>(Vn * C, 15), wpe = randn<double>(P * C, 16), g = randn<double>(B * Tn * C, 17),
    out(B * Tn * C);
  std::vector<int32_t> tok = {1, 4, 1, 0, 1, 3};  // repeated ids must accumulate
  const std::vector<int64_t> pos = {2, 7, 3};      // any positions, as a sequence-parallel rank's
  auto f = [&] {
    embedding_forward(out.data(), tok.data(), wte.data(), wpe.data(), B, Tn, C, pos.data());
    return dot(out, g);
  };
  V dwte(Vn * C, 0), dwpe(P * C, 0);
  embedding_backward(dwte.data(), dwpe.data(), g.data(), tok.data(), B, Tn, C, pos.data());
  expect_grad_matches("dwte", f, wte.data(), Vn * C, dwte.data(), 20);
  expect_grad_matches("dwpe", f, wpe.data(), P * C, dwpe.data(), 32);
}

TEST(Layers, MlpBackward) {
  for (Activation act : {Activation::gelu, Activation::swiglu}) {
    ModelConfig m;
    m.d_model = 6;
    m.d_ff = 10;
    m.activation = act;
    ParamStore<double> st;
    Mlp<double> mlp(st, "mlp", m);
    st.allocate();
    Rng rng(18);
    mlp.init(st, rng, 0.5, 0.5);
    const int64_t N = 5;
    Arena<double> arena;
    MlpActs<double> a;
    MlpScratch<double> s;
    for (int pass = 0; pass < 2; ++pass) {
      mlp.layout(arena, a, N);
      mlp.layout_scratch(arena, s, N);
      if (pass == 0) arena.commit();
    }
    V x = randn<double>(N * 6, 19), g = randn<double>(N * 6, 20), y(N * 6), dx(N * 6);
    auto f = [&] {
      mlp.forward(st, x.data(), y.data(), a, N);
      return dot(y, g);
    };
    f();
    mlp.backward(st, x.data(), g.data(), dx.data(), a, s, N);
    expect_grad_matches(std::string("mlp dx ") + name_of(act), f, x.data(), N * 6, dx.data(), 12);
    V grads(st.grads);
    expect_grad_matches("mlp params", f, st.values.data(), st.size(), grads.data(), 24);
  }
}

TEST(Layers, AttentionLayerBackward) {
  for (Pattern p : {Pattern::dense, Pattern::flash}) {
    for (bool causal : {true, false}) {
      ModelConfig m;
      m.d_model = 8;
      m.n_head = 2;
      AttentionConfig ac;
      ac.pattern = p;
      ac.block_size = 4;
      ParamStore<double> st;
      AttentionLayer<double> layer(st, "attn", m, ac, causal);
      st.allocate();
      Rng rng(21);
      layer.init(st, rng, 0.5, 0.5);
      const int64_t B = 2, Tn = 7, N = B * Tn;
      RopeTable<double> rope(16, 4);
      Arena<double> arena;
      AttentionActs<double> a;
      AttentionScratch<double> s;
      for (int pass = 0; pass < 2; ++pass) {
        layer.layout(arena, a, B, Tn);
        layer.layout_scratch(arena, s, B, Tn);
        if (pass == 0) arena.commit();
      }
      V x = randn<double>(N * 8, 22), g = randn<double>(N * 8, 23), y(N * 8), dx(N * 8);
      auto f = [&] {
        layer.forward(st, x.data(), y.data(), a, s, B, Tn, &rope);
        return dot(y, g);
      };
      f();
      layer.backward(st, x.data(), g.data(), dx.data(), a, s, B, Tn, &rope);
      const std::string what = std::string(name_of(p)) + (causal ? " causal" : " bidirectional");
      expect_grad_matches("attn dx " + what, f, x.data(), N * 8, dx.data(), 16);
      V grads(st.grads);
      expect_grad_matches("attn params " + what, f, st.values.data(), st.size(), grads.data(), 32);
    }
  }
}

}  // namespace
}  // namespace longctx

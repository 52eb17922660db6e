#include "bench/attention_bench_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <type_traits>
#include <vector>

#include "attention/attention_cuda.h"
#include "attention/flash.h"
#include "attention/flash_tc_cuda.h"
#include "attention/mask_plan.h"
#include "core/cuda_check.h"
#include "core/cuda_env.h"
#include "core/device_buffer.h"
#include "core/error.h"
#include "core/rng.h"

namespace longctx {

namespace {

using cuda::bf16;
using cuda::DeviceBuffer;

// Gradients are checked against a full float64 backward of one head up to this length (a few
// seconds of one host core at most); forward outputs on kSampledRows rows of that head at
// every length (O(rows · n · D)).
constexpr int64_t kGradCheckMaxN = 2048;
constexpr int64_t kSampledRows = 32;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

float to_float(float x) { return x; }
float to_float(bf16 x) { return __bfloat162float(x); }
template <class T>
T from_float(float x) {
  if constexpr (std::is_same_v<T, bf16>)
    return __float2bfloat16(x);
  else
    return x;
}

// q, k, v, dout: normal values rounded to T on the host (generated in parallel chunks, each its
// own stream), their device copies, and the rounded values as floats for the references. A case
// reads the leading elements; since element i's value depends on i alone, a longer set's prefix
// is the shorter set, so the set only grows (the sweep keeps B·H·n fixed: it makes the set at its
// first D = 64 case and grows it once, at its first D = 128 case).
template <class T>
struct Inputs {
  int64_t qn = 0, kn = 0;
  DeviceBuffer<T> q, k, v, dout;
  std::vector<float> hq, hk, hv, hdout;

  void make(int64_t q_count, int64_t kv_count, cudaStream_t s) {
    if (q_count > qn) {
      qn = q_count;
      fill(q, hq, qn, 1, s);
      fill(dout, hdout, qn, 4, s);
    }
    if (kv_count > kn) {
      kn = kv_count;
      fill(k, hk, kn, 2, s);
      fill(v, hv, kn, 3, s);
    }
  }

 private:
  static void fill(DeviceBuffer<T>& dev, std::vector<float>& host, int64_t n, uint64_t seed,
                   cudaStream_t s) {
    constexpr int64_t kChunk = 1 << 16;
    std::vector<T> t(static_cast<size_t>(n));
    host.resize(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < (n + kChunk - 1) / kChunk; ++c) {
      Rng rng = Rng::stream(seed, uint64_t(c));
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) {
        t[i] = from_float<T>(float(rng.normal()));
        host[i] = to_float(t[i]);
      }
    }
    dev.resize(n);
    dev.upload(t.data(), n, s);
  }
};

// Median over `repeats` of f's time on the stream, after one warm-up run.
template <class F>
double median_ms(int64_t repeats, cudaStream_t s, F&& f) {
  cudaEvent_t a, b;
  LONGCTX_CUDA_CHECK("bench attention", cudaEventCreate(&a));
  LONGCTX_CUDA_CHECK("bench attention", cudaEventCreate(&b));
  f();
  std::vector<double> ms;
  for (int64_t r = 0; r < repeats; ++r) {
    LONGCTX_CUDA_CHECK("bench attention", cudaEventRecord(a, s));
    f();
    LONGCTX_CUDA_CHECK("bench attention", cudaEventRecord(b, s));
    LONGCTX_CUDA_CHECK("bench attention", cudaEventSynchronize(b));
    float t = 0;
    LONGCTX_CUDA_CHECK("bench attention", cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  (void)cudaEventDestroy(a);
  (void)cudaEventDestroy(b);
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

// The float64 answers for sample 0: outputs of head 0's sampled rows, and with grads dq of the
// query heads reading K/V head 0 (the first `group`) and dk, dv of K/V head 0, which only those
// heads feed, so they are exact.
struct Reference {
  std::vector<int64_t> rows;  // sampled query rows of head 0, ascending
  std::vector<double> out;    // [rows, D]
  bool grads = false;
  std::vector<double> dq, dk, dv;  // [group, n, D], [n, D], [n, D]
};

// One mask set (a pattern at n, causal, H heads) with what every impl running it shares.
struct MaskCase {
  attn::MaskSet masks;
  double allowed = 0;  // allowed scores over every (sample, head)
  double blocks = 0;   // 64 × 64 blocks computed per head (mean over heads)
  Reference ref;
};

// q, dout: sample 0's first `group` heads [group, n, D]; k, v: its K/V head 0 [n, D].
Reference make_reference(const attn::MaskSet& masks, int64_t group, int64_t n, int64_t D,
                         const float* q, const float* k, const float* v, const float* dout,
                         bool grads) {
  Reference r;
  const attn::BlockMask& mask = masks.get(0, 0);
  const int64_t rows = std::min(n, kSampledRows);
  for (int64_t x = 0; x < rows; ++x) r.rows.push_back(rows == 1 ? 0 : x * (n - 1) / (rows - 1));
  r.out.assign(size_t(rows * D), 0.0);
  const double scale = 1.0 / std::sqrt(double(D));
#pragma omp parallel
  {
    std::vector<uint8_t> ok(static_cast<size_t>(mask.seq_k()));
    std::vector<double> p(static_cast<size_t>(n));
#pragma omp for schedule(dynamic, 1)
    for (int64_t x = 0; x < rows; ++x) {
      const int64_t i = r.rows[x];
      mask.allowed_row(i, ok.data());
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        if (!ok[j]) continue;
        double dot = 0;
        for (int64_t c = 0; c < D; ++c) dot += double(q[i * D + c]) * double(k[j * D + c]);
        p[j] = dot * scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0;
      double* o = r.out.data() + x * D;
      for (int64_t j = 0; j < n; ++j) {
        if (!ok[j]) continue;
        const double e = std::exp(p[j] - mx);
        sum += e;
        for (int64_t c = 0; c < D; ++c) o[c] += e * double(v[j * D + c]);
      }
      if (sum > 0)
        for (int64_t c = 0; c < D; ++c) o[c] /= sum;
    }
  }
  if (!grads) return r;
  r.grads = true;
  attn::AttnShape s;
  s.H = group;
  s.Tq = s.Tk = n;
  s.D = D;
  const attn::MaskSet sub = masks.heads(1, 0, group);
  const int64_t qn = group * n * D, kn = n * D;
  const std::vector<double> hq(q, q + qn), hk(k, k + kn), hv(v, v + kn), hdo(dout, dout + qn);
  std::vector<double> out(static_cast<size_t>(qn)), lse(static_cast<size_t>(group * n));
  r.dq.resize(size_t(qn));
  r.dk.resize(size_t(kn));
  r.dv.resize(size_t(kn));
  attn::flash_forward<double>(s, sub, hq.data(), hk.data(), hv.data(), out.data(), lse.data(),
                              scale);
  attn::flash_backward<double>(s, sub, hq.data(), hk.data(), hv.data(), out.data(), lse.data(),
                               hdo.data(), r.dq.data(), r.dk.data(), r.dv.data(), scale);
  return r;
}

// ‖x − ref‖₂ / ‖ref‖₂.
template <class T>
double rel_error(const std::vector<T>& x, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = double(to_float(x[i])) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

struct Row {
  std::string impl, pattern;  // pattern: full (dense and flash), longformer, bigbird, strided
  int64_t n = 0, B = 1, H = 1, Hkv = 1, D = 64;
  bool causal = false;
  double fwd_ms = 0, fwd_bwd_ms = 0, fwd_bwd_det_ms = -1;  // det: flash_tc's deterministic bwd
  double allowed = 0, blocks = 0;
  double fwd_err = -1, dq_err = -1, dk_err = -1, dv_err = -1, grad_err_det = -1;
  std::string skipped, error;
};

// The first `count` elements of a device tensor: sample 0's first heads.
template <class T>
std::vector<T> leading(const DeviceBuffer<T>& x, int64_t count, cudaStream_t s) {
  std::vector<T> h(static_cast<size_t>(count));
  x.download(h.data(), count, s);
  return h;
}

template <class T>
void check_forward(Row* row, const MaskCase& mc, const DeviceBuffer<T>& out, cudaStream_t s) {
  const std::vector<T> o = leading(out, row->n * row->D, s);
  std::vector<T> picked;
  for (int64_t i : mc.ref.rows)
    picked.insert(picked.end(), o.begin() + i * row->D, o.begin() + (i + 1) * row->D);
  row->fwd_err = rel_error(picked, mc.ref.out);
}

// The largest relative error of dq, dk, dv; each one into the row when `each`.
template <class T>
double check_grads(Row* row, const MaskCase& mc, const DeviceBuffer<T>& dq,
                   const DeviceBuffer<T>& dk, const DeviceBuffer<T>& dv, cudaStream_t s,
                   bool each) {
  const int64_t kn = row->n * row->D;
  const double eq = rel_error(leading(dq, int64_t(mc.ref.dq.size()), s), mc.ref.dq);
  const double ek = rel_error(leading(dk, kn, s), mc.ref.dk);
  const double ev = rel_error(leading(dv, kn, s), mc.ref.dv);
  if (each) {
    row->dq_err = eq;
    row->dk_err = ek;
    row->dv_err = ev;
  }
  return std::max({eq, ek, ev});
}

template <class T>
void run_case(const GpuAttentionBench& o, Row* row, const MaskCase& mc, Inputs<T>& in,
              cudaStream_t s, cuda::CublasLt& blas) {
  const int64_t n = row->n, D = row->D;
  const int64_t qn = row->B * row->H * n * D, kn = row->B * row->Hkv * n * D;
  const int64_t scores = row->B * row->H * n * n;
  if (row->impl == "dense") {
    size_t free_b = 0, total_b = 0;
    LONGCTX_CUDA_CHECK("bench attention", cudaMemGetInfo(&free_b, &total_b));
    const double need = double(scores) * (4.0 + 2.0 * sizeof(T));
    if (need > 0.8 * double(free_b)) {
      row->skipped = str("probabilities need ", need / 1073741824.0, " GiB");
      return;
    }
  }
  DeviceBuffer<T> out(qn), dq(qn), dk(kn), dv(kn);
  DeviceBuffer<float> lse(row->B * row->H * n);
  const float scale = 1.0f / std::sqrt(float(D));
  auto time_and_check = [&](auto&& fwd, auto&& bwd) {
    row->fwd_ms = median_ms(o.repeats, s, fwd);
    check_forward(row, mc, out, s);
    row->fwd_bwd_ms = median_ms(o.repeats, s, [&] {
      fwd();
      bwd();
    });
    if (mc.ref.grads) check_grads(row, mc, dq, dk, dv, s, true);
  };
  if (row->impl == "flash_tc") {
    if constexpr (std::is_same_v<T, bf16>) {
      const attn::AttnShape d{row->B, row->H, row->Hkv, n, n, D};
      cuda::DeviceMaskPlan plan;
      plan.upload(attn::make_mask_plan(mc.masks), s);
      DeviceBuffer<float> scratch(std::max(cuda::flash_tc_backward_scratch_floats(d, false),
                                           cuda::flash_tc_backward_scratch_floats(d, true)));
      bool det = false;
      auto fwd = [&] {
        cuda::flash_tc_forward(d, plan, in.q.get(), in.k.get(), in.v.get(), out.get(), lse.get(),
                               scale, s);
      };
      auto bwd = [&] {
        cuda::flash_tc_backward(d, plan, in.q.get(), in.k.get(), in.v.get(), out.get(), lse.get(),
                                in.dout.get(), dq.get(), dk.get(), dv.get(), scale, det,
                                scratch.get(), s);
      };
      time_and_check(fwd, bwd);
      det = true;
      row->fwd_bwd_det_ms = median_ms(o.repeats, s, [&] {
        fwd();
        bwd();
      });
      if (mc.ref.grads) row->grad_err_det = check_grads(row, mc, dq, dk, dv, s, false);
    }
  } else if (row->impl == "flash") {
    const cuda::AttnDims d{row->B, row->H, row->Hkv, n, D, row->causal};
    DeviceBuffer<float> scratch(cuda::flash_backward_scratch_floats(d));
    time_and_check(
        [&] {
          cuda::flash_forward(d, in.q.get(), in.k.get(), in.v.get(), out.get(), lse.get(), scale,
                              s);
        },
        [&] {
          cuda::flash_backward(d, in.q.get(), in.k.get(), in.v.get(), out.get(), lse.get(),
                               in.dout.get(), dq.get(), dk.get(), dv.get(), scale, scratch.get(),
                               s);
        });
  } else {
    const cuda::AttnDims d{row->B, row->H, row->Hkv, n, D, row->causal};
    DeviceBuffer<T> probs(scores), dscores(scores);
    DeviceBuffer<float> sc(scores);
    time_and_check(
        [&] {
          cuda::dense_forward(blas, d, in.q.get(), in.k.get(), in.v.get(), out.get(), probs.get(),
                              sc.get(), scale);
        },
        [&] {
          cuda::dense_backward(blas, d, in.q.get(), in.k.get(), in.v.get(), probs.get(),
                               in.dout.get(), dq.get(), dk.get(), dv.get(), sc.get(), dscores.get(),
                               scale);
        });
  }
}

MaskCase make_mask_case(const GpuAttentionBench& o, const std::string& cli_pattern, const Row& r,
                        const std::vector<float>& q, const std::vector<float>& k,
                        const std::vector<float>& v, const std::vector<float>& dout) {
  MaskCase mc;
  mc.masks = o.masks(cli_pattern, r.n, r.H, r.causal);
  // Each distinct mask measured once, weighted by the (sample, head) pairs using it.
  std::vector<int64_t> uses(mc.masks.masks.size(), 0);
  for (int64_t b = 0; b < r.B; ++b)
    for (int64_t h = 0; h < r.H; ++h) ++uses[b * mc.masks.b_stride + h * mc.masks.h_stride];
  for (size_t i = 0; i < uses.size(); ++i) {
    if (uses[i] == 0) continue;
    mc.allowed += double(uses[i]) * double(mc.masks.masks[i].allowed_scores());
    mc.blocks += double(uses[i]) * double(mc.masks.masks[i].blocks_computed());
  }
  mc.blocks /= double(r.B * r.H);
  mc.ref = make_reference(mc.masks, r.H / r.Hkv, r.n, r.D, q.data(), k.data(), v.data(),
                          dout.data(), r.n <= kGradCheckMaxN);
  return mc;
}

// Every case in run order: n, then head dim, then bidirectional before causal, then the
// patterns and their impls as listed (flash: flash_tc first, then the CUDA-core kernel).
struct Case {
  std::string cli_pattern;
  Row row;
};

std::vector<Case> make_cases(const GpuAttentionBench& o) {
  std::vector<Case> cases;
  const std::vector<int64_t> dims =
      o.sweep ? std::vector<int64_t>{64, 128} : std::vector<int64_t>{o.head_dim};
  const std::vector<bool> causal =
      o.sweep ? std::vector<bool>{false, true} : std::vector<bool>{o.causal};
  for (const int64_t n : o.ns)
    for (const int64_t D : dims)
      for (const bool c : causal)
        for (const std::string& p : o.patterns) {
          Row r;
          r.n = n;
          r.D = D;
          r.causal = c;
          r.B = o.batch;
          r.H = o.heads;
          r.Hkv = o.kv_heads;
          if (o.sweep) {
            sweep_batch_heads(n, &r.B, &r.H);
            r.Hkv = r.H;
          }
          r.pattern = p == "dense" || p == "flash" ? "full" : p;
          std::vector<std::string> impls;
          if (p == "dense")
            impls = {"dense"};
          else if (p == "flash" && o.bf16)
            impls = {"flash_tc", "flash"};
          else if (p == "flash")
            impls = {"flash"};
          else
            impls = {"flash_tc"};
          for (const std::string& impl : impls) {
            r.impl = impl;
            cases.push_back({p, r});
          }
        }
  return cases;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

std::string number(double x, const char* fmt) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, x);
  return buf;
}

// TFLOP/s over the allowed scores: 4·D FLOPs per score forward, 3.5 times that forward and
// backward (backward = 2.5 × forward, FlashAttention's convention; recomputation not counted).
double tflops(const Row& r, double ms, double factor) {
  return ms > 0 ? factor * 4.0 * double(r.D) * r.allowed / (ms * 1e9) : 0;
}

std::string json_row(const GpuAttentionBench& o, const Row& r, const std::string& cli_pattern,
                     const std::string& device) {
  std::string line =
      str("{\"device\":\"", json_escape(device), "\",\"dtype\":\"", o.bf16 ? "bf16" : "fp32",
          "\",\"impl\":\"", r.impl, "\",\"pattern\":\"", r.pattern, "\",\"heads_scheme\":\"",
          o.heads_scheme, "\",\"n\":", r.n, ",\"batch\":", r.B, ",\"heads\":", r.H,
          ",\"n_kv_head\":", r.Hkv, ",\"head_dim\":", r.D,
          ",\"causal\":", r.causal ? "true" : "false", o.params(cli_pattern, r.n));
  if (!r.skipped.empty()) return line + ",\"skipped\":\"" + json_escape(r.skipped) + "\"}";
  if (!r.error.empty()) return line + ",\"error\":\"" + json_escape(r.error) + "\"}";
  line += str(",\"flops\":\"fwd 4*D*allowed_scores, fwd_bwd 3.5*fwd\",\"allowed_scores\":",
              number(r.allowed, "%.0f"), ",\"blocks_computed\":", number(r.blocks, "%.1f"),
              ",\"fwd_ms\":", number(r.fwd_ms, "%.4f"),
              ",\"fwd_bwd_ms\":", number(r.fwd_bwd_ms, "%.4f"),
              ",\"fwd_tflops\":", number(tflops(r, r.fwd_ms, 1.0), "%.2f"),
              ",\"fwd_bwd_tflops\":", number(tflops(r, r.fwd_bwd_ms, 3.5), "%.2f"));
  if (r.fwd_bwd_det_ms >= 0)
    line += str(",\"fwd_bwd_det_ms\":", number(r.fwd_bwd_det_ms, "%.4f"),
                ",\"fwd_bwd_det_tflops\":", number(tflops(r, r.fwd_bwd_det_ms, 3.5), "%.2f"));
  line += str(",\"fwd_err\":", number(r.fwd_err, "%.3e"));
  if (r.dq_err >= 0)
    line += str(",\"dq_err\":", number(r.dq_err, "%.3e"), ",\"dk_err\":", number(r.dk_err, "%.3e"),
                ",\"dv_err\":", number(r.dv_err, "%.3e"),
                ",\"grad_err\":", number(std::max({r.dq_err, r.dk_err, r.dv_err}), "%.3e"));
  if (r.grad_err_det >= 0) line += str(",\"grad_err_det\":", number(r.grad_err_det, "%.3e"));
  return line + "}";
}

void print_header(const GpuAttentionBench& o, const std::string& device) {
  std::printf("attention on %s (%s), %s heads, block %d; ", device.c_str(),
              o.bf16 ? "bf16" : "fp32", o.heads_scheme.c_str(), attn::kPlanBlock);
  if (o.sweep)
    std::printf(
        "sweep: head_dim 64 and 128, bidirectional and causal, batch x heads = 65536 / n "
        "(heads = min(16, that))\n");
  else
    std::printf("batch %lld, heads %lld (%lld K/V heads), head_dim %lld, %s\n",
                static_cast<long long>(o.batch), static_cast<long long>(o.heads),
                static_cast<long long>(o.kv_heads), static_cast<long long>(o.head_dim),
                o.causal ? "causal" : "bidirectional");
  std::printf(
      "TFLOP/s over the allowed scores: fwd 4*D per score, fwd+bwd 3.5x fwd (FlashAttention's "
      "convention). Medians of %lld runs (CUDA events). det_ms: flash_tc with the deterministic "
      "backward. Errors: relative L2 against float64 on the host, fwd on %lld rows of head 0, "
      "grads (max of dq, dk, dv) of head 0 for n <= %lld.\n",
      static_cast<long long>(o.repeats), static_cast<long long>(kSampledRows),
      static_cast<long long>(kGradCheckMaxN));
  std::printf("%-8s %-10s %-6s %4s %3s %3s %6s %9s %10s %9s %8s %8s %8s %9s %9s\n", "impl",
              "pattern", "mask", "D", "B", "H", "n", "fwd_ms", "fwd_bwd_ms", "det_ms", "fwd_TF",
              "f+b_TF", "blocks", "fwd_err", "grad_err");
}

void print_row(const Row& r) {
  std::printf("%-8s %-10s %-6s %4lld %3lld %3lld %6lld", r.impl.c_str(), r.pattern.c_str(),
              r.causal ? "causal" : "bidir", static_cast<long long>(r.D),
              static_cast<long long>(r.B), static_cast<long long>(r.H),
              static_cast<long long>(r.n));
  if (!r.skipped.empty() || !r.error.empty()) {
    std::printf("  %s: %s\n", r.skipped.empty() ? "error" : "skipped",
                (r.skipped.empty() ? r.error : r.skipped).c_str());
    return;
  }
  const std::string det = r.fwd_bwd_det_ms >= 0 ? number(r.fwd_bwd_det_ms, "%.3f") : "-";
  const std::string grad =
      r.dq_err >= 0 ? number(std::max({r.dq_err, r.dk_err, r.dv_err}), "%.2e") : "-";
  std::printf(" %9.3f %10.3f %9s %8.1f %8.1f %8.0f %9.2e %9s\n", r.fwd_ms, r.fwd_bwd_ms,
              det.c_str(), tflops(r, r.fwd_ms, 1.0), tflops(r, r.fwd_bwd_ms, 3.5), r.blocks,
              r.fwd_err, grad.c_str());
}

template <class T>
int run_all(const GpuAttentionBench& o, cudaStream_t s, cuda::CublasLt& blas,
            const std::string& device) {
  std::ofstream jsonl;
  if (!o.jsonl.empty()) {
    jsonl.open(o.jsonl);
    LONGCTX_CHECK(jsonl.good(), "bench attention: cannot write --jsonl file '", o.jsonl, "'");
  }
  if (!o.json) print_header(o, device);
  const double t0 = now_s();
  int status = 0;
  Inputs<T> in;
  // Mask sets with their references, for the impls sharing one (pattern, n, D, causal).
  std::map<std::string, MaskCase> mask_cases;
  for (Case& c : make_cases(o)) {
    Row& r = c.row;
    if (o.time_budget_s > 0 && now_s() - t0 > o.time_budget_s) {
      r.skipped = str("time budget of ", o.time_budget_s, " s spent");
    } else if (r.impl == "flash_tc" && !o.bf16) {
      r.skipped = "flash_tc runs bf16 only";
    } else {
      try {
        const std::string key = str(r.pattern, ' ', r.n, ' ', r.D, ' ', r.causal);
        auto it = mask_cases.find(key);
        if (it == mask_cases.end()) {
          mask_cases.clear();  // cases sharing masks are adjacent
          in.make(r.B * r.H * r.n * r.D, r.B * r.Hkv * r.n * r.D, s);
          it = mask_cases
                   .emplace(key, make_mask_case(o, c.cli_pattern, r, in.hq, in.hk, in.hv, in.hdout))
                   .first;
        }
        r.allowed = it->second.allowed;
        r.blocks = r.impl == "dense" ? std::pow(double((r.n + 63) / 64), 2) : it->second.blocks;
        run_case(o, &r, it->second, in, s, blas);
      } catch (const Error& e) {
        r.error = e.what();
        status = 1;
      }
    }
    const std::string line = json_row(o, r, c.cli_pattern, device);
    if (o.json)
      std::printf("%s\n", line.c_str());
    else
      print_row(r);
    if (jsonl.is_open()) jsonl << line << '\n' << std::flush;
    std::fflush(stdout);
  }
  return status;
}

}  // namespace

void sweep_batch_heads(int64_t n, int64_t* batch, int64_t* heads) {
  const int64_t bh = std::max<int64_t>(1, 65536 / n);
  *heads = std::min<int64_t>(16, bh);
  *batch = bh / *heads;
}

int bench_attention_cuda(const GpuAttentionBench& o) {
  if (cuda_device_count() == 0)
    throw Error("bench attention --device cuda: no CUDA device is visible (no GPU or no driver)");
  for (const std::string& p : o.patterns)
    if (p == "linformer")
      throw Error("bench attention --device cuda: pattern 'linformer' runs on the CPU only", 2);
  if (o.sweep && o.heads_scheme != "mha")
    throw Error(str("bench attention --sweep runs MHA, got --heads-scheme ", o.heads_scheme), 2);
  LONGCTX_CUDA_CHECK("bench attention", cudaSetDevice(0));
  cudaStream_t s = nullptr;
  LONGCTX_CUDA_CHECK("bench attention", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  int status = 0;
  {
    cuda::CublasLt blas(s);
    const std::string device = cuda_device_name(0);
    status = o.bf16 ? run_all<bf16>(o, s, blas, device) : run_all<float>(o, s, blas, device);
  }
  (void)cudaStreamDestroy(s);
  return status;
}

}  // namespace longctx

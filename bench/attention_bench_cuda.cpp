#include "bench/attention_bench_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "attention/attention_cuda.h"
#include "core/cuda_check.h"
#include "core/cuda_env.h"
#include "core/device_buffer.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/cuda_ops.h"

namespace longctx {

namespace {

using cuda::bf16;
using cuda::DeviceBuffer;

// A device tensor of normal values (generated in fp32 on the host, converted on the device).
template <class T>
DeviceBuffer<T> random_device(int64_t n, uint64_t seed, cudaStream_t s) {
  std::vector<float> h(static_cast<size_t>(n));
  Rng rng(seed);
  for (float& x : h) x = float(rng.normal());
  DeviceBuffer<float> f(n);
  f.upload(h.data(), n, s);
  DeviceBuffer<T> out(n);
  cuda::convert(out.get(), f.get(), n, s);
  LONGCTX_CUDA_CHECK("bench attention", cudaStreamSynchronize(s));
  return out;
}

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

struct Row {
  double fwd_ms = 0, fwd_bwd_ms = 0;
  std::string skipped;
};

template <class T>
Row run_row(const GpuAttentionBench& o, const std::string& pattern, int64_t n, cudaStream_t s,
            cuda::CublasLt& blas) {
  const cuda::AttnDims d{o.batch, o.heads, o.kv_heads, n, o.head_dim, o.causal};
  const int64_t qn = d.B * d.H * n * d.D, kn = d.B * d.Hkv * n * d.D, scores = d.B * d.H * n * n;
  Row row;
  if (pattern == "dense") {
    size_t free_b = 0, total_b = 0;
    LONGCTX_CUDA_CHECK("bench attention", cudaMemGetInfo(&free_b, &total_b));
    const double need = double(scores) * (4.0 + 2.0 * sizeof(T));
    if (need > 0.8 * double(free_b)) {
      row.skipped = str("probabilities need ", need / 1073741824.0, " GiB");
      return row;
    }
  }
  DeviceBuffer<T> q = random_device<T>(qn, 1, s), k = random_device<T>(kn, 2, s),
                  v = random_device<T>(kn, 3, s), dout = random_device<T>(qn, 4, s);
  DeviceBuffer<T> out(qn), dq(qn), dk(kn), dv(kn);
  const float scale = 1.0f / std::sqrt(float(d.D));
  if (pattern == "flash") {
    DeviceBuffer<float> lse(d.B * d.H * n), scratch(cuda::flash_backward_scratch_floats(d));
    auto fwd = [&] {
      cuda::flash_forward(d, q.get(), k.get(), v.get(), out.get(), lse.get(), scale, s);
    };
    auto bwd = [&] {
      cuda::flash_backward(d, q.get(), k.get(), v.get(), out.get(), lse.get(), dout.get(), dq.get(),
                           dk.get(), dv.get(), scale, scratch.get(), s);
    };
    row.fwd_ms = median_ms(o.repeats, s, fwd);
    row.fwd_bwd_ms = median_ms(o.repeats, s, [&] {
      fwd();
      bwd();
    });
  } else {
    DeviceBuffer<T> probs(scores), dscores(scores);
    DeviceBuffer<float> sc(scores);
    auto fwd = [&] {
      cuda::dense_forward(blas, d, q.get(), k.get(), v.get(), out.get(), probs.get(), sc.get(),
                          scale);
    };
    auto bwd = [&] {
      cuda::dense_backward(blas, d, q.get(), k.get(), v.get(), probs.get(), dout.get(), dq.get(),
                           dk.get(), dv.get(), sc.get(), dscores.get(), scale);
    };
    row.fwd_ms = median_ms(o.repeats, s, fwd);
    row.fwd_bwd_ms = median_ms(o.repeats, s, [&] {
      fwd();
      bwd();
    });
  }
  return row;
}

}  // namespace

int bench_attention_cuda(const GpuAttentionBench& o) {
  if (cuda_device_count() == 0)
    throw Error("bench attention --device cuda: no CUDA device is visible (no GPU or no driver)");
  for (const std::string& p : o.patterns)
    if (p != "dense" && p != "flash")
      throw Error(str("bench attention --device cuda: pattern '", p,
                      "' runs on the CPU only so far (the GPU has dense and flash)"),
                  2);
  LONGCTX_CUDA_CHECK("bench attention", cudaSetDevice(0));
  cudaStream_t s = nullptr;
  LONGCTX_CUDA_CHECK("bench attention", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cuda::CublasLt blas(s);
  const std::string device = cuda_device_name(0);
  const char* dtype = o.bf16 ? "bf16" : "fp32";
  if (!o.json) {
    std::printf(
        "attention on %s (%s): batch %lld, heads %lld (%s, %lld K/V heads), head_dim %lld, "
        "%s\n",
        device.c_str(), dtype, static_cast<long long>(o.batch), static_cast<long long>(o.heads),
        o.heads_scheme.c_str(), static_cast<long long>(o.kv_heads),
        static_cast<long long>(o.head_dim), o.causal ? "causal" : "bidirectional");
    std::printf("%-8s %7s %10s %11s %11s %11s\n", "pattern", "n", "fwd_ms", "fwd_bwd_ms",
                "fwd_tflops", "tflops");
  }
  for (const std::string& p : o.patterns)
    for (const int64_t n : o.ns) {
      const Row r = o.bf16 ? run_row<bf16>(o, p, n, s, blas) : run_row<float>(o, p, n, s, blas);
      // Scores the mask allows: n² (bidirectional) or n(n+1)/2 (causal); 4·D FLOPs each
      // forward, 12·D forward and backward (recomputation not counted).
      const double allowed = double(o.batch) * double(o.heads) *
                             (o.causal ? double(n) * double(n + 1) / 2 : double(n) * double(n));
      const double fwd_tf =
          r.fwd_ms > 0 ? 4.0 * double(o.head_dim) * allowed / (r.fwd_ms * 1e9) : 0;
      const double tf =
          r.fwd_bwd_ms > 0 ? 12.0 * double(o.head_dim) * allowed / (r.fwd_bwd_ms * 1e9) : 0;
      if (o.json) {
        std::printf(
            "{\"device\":\"%s\",\"dtype\":\"%s\",\"pattern\":\"%s\",\"heads_scheme\":\"%s\","
            "\"n\":%lld,\"batch\":%lld,\"heads\":%lld,\"n_kv_head\":%lld,\"head_dim\":%lld,"
            "\"causal\":%s",
            device.c_str(), dtype, p.c_str(), o.heads_scheme.c_str(), static_cast<long long>(n),
            static_cast<long long>(o.batch), static_cast<long long>(o.heads),
            static_cast<long long>(o.kv_heads), static_cast<long long>(o.head_dim),
            o.causal ? "true" : "false");
        if (!r.skipped.empty())
          std::printf(",\"skipped\":\"%s\"}\n", r.skipped.c_str());
        else
          std::printf(",\"fwd_ms\":%.4f,\"fwd_bwd_ms\":%.4f,\"fwd_tflops\":%.2f,\"tflops\":%.2f}\n",
                      r.fwd_ms, r.fwd_bwd_ms, fwd_tf, tf);
      } else if (!r.skipped.empty()) {
        std::printf("%-8s %7lld  skipped: %s\n", p.c_str(), static_cast<long long>(n),
                    r.skipped.c_str());
      } else {
        std::printf("%-8s %7lld %10.3f %11.3f %11.2f %11.2f\n", p.c_str(),
                    static_cast<long long>(n), r.fwd_ms, r.fwd_bwd_ms, fwd_tf, tf);
      }
      std::fflush(stdout);
    }
  (void)cudaStreamDestroy(s);
  return 0;
}

}  // namespace longctx

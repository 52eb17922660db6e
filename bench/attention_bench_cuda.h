// `bench attention --device cuda`: the GPU attention cores (dense, flash) timed with CUDA events
// on random inputs (CUDA build only; the CPU bench calls it).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace longctx {

struct GpuAttentionBench {
  std::vector<std::string> patterns;  // dense, flash
  std::vector<int64_t> ns;
  int64_t batch = 1, heads = 8, kv_heads = 8, head_dim = 64, repeats = 5;
  std::string heads_scheme = "mha";
  bool causal = false, json = false, bf16 = true;
};

// Prints one row per pattern × n (a table, or JSON lines); returns the exit status.
int bench_attention_cuda(const GpuAttentionBench& b);

}  // namespace longctx

// `bench attention --device cuda`: the GPU attention kernels timed with CUDA events on random
// inputs, each row checked against a float64 reference on the host (CUDA build only; the CPU
// bench calls it). Impls: dense (cuBLASLt), flash (CUDA cores) and flash_tc (tensor cores, bf16,
// any block mask: full, causal, longformer, bigbird, strided).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "attention/block_mask.h"

namespace longctx {

struct GpuAttentionBench {
  std::vector<std::string> patterns;  // dense, flash, longformer, bigbird, strided
  std::vector<int64_t> ns;
  int64_t batch = 1, heads = 8, kv_heads = 8, head_dim = 64, repeats = 5;
  std::string heads_scheme = "mha";
  bool causal = false, json = false, bf16 = true;
  // The grid: head dims 64 and 128, bidirectional and causal, for every pattern and n, with
  // batch × heads chosen per n (sweep_batch_heads) instead of batch, heads and head_dim.
  bool sweep = false;
  double time_budget_s = 0;  // > 0: cases that would start later are reported as skipped
  std::string jsonl;         // non-empty: JSON lines also written to this file
  // A pattern's masks for n tokens, `heads` heads and the causal flag, built as the CPU bench
  // builds them (so both benches time the same scores), and the pattern's parameters as JSON
  // members (",\"window\":512,...").
  std::function<attn::MaskSet(const std::string& pattern, int64_t n, int64_t heads, bool causal)>
      masks;
  std::function<std::string(const std::string& pattern, int64_t n)> params;
};

// The sweep's shape for n tokens: B·H·n = 65536 (64K token-heads: a case holds ≥ 1 GFLOP of
// allowed scores for every pattern at D = 64, and the inputs are the same size at every n),
// heads = min(16, B·H), batch = the rest; 64K tokens run one head. bench/torch_attention.py uses
// the same rule.
void sweep_batch_heads(int64_t n, int64_t* batch, int64_t* heads);

// Prints one row per case (a table, or JSON lines); returns the exit status (1 when a case
// failed; the others still run).
int bench_attention_cuda(const GpuAttentionBench& b);

}  // namespace longctx

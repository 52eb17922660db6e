// Every attention pattern and head scheme trains: 30 steps of the copy task (linformer: the
// majority classifier) on a small model lower the loss.
#include <gtest/gtest.h>

#include <string>

#include "core/config.h"
#include "tests/test_util.h"

namespace longctx {
namespace {

double improvement(const std::string& attention, bool classify = false) {
  const std::string data = classify
                               ? "objective: classify\ndata: {seq_len: 128, synthetic: {task: "
                                 "majority, alphabet: 4}}\n"
                               : "data: {seq_len: 128, synthetic: {task: copy, alphabet: 8}}\n";
  Config cfg = parse_config("model: {n_layer: 2, d_model: 64, n_head: 4, d_ff: 128}\n"
                            "attention: " + attention + "\n" + data +
                            "train: {micro_batch: 8, steps: 30, lr: 3.0e-3, min_lr: 3.0e-4, "
                            "warmup: 5}");
  return test::train_loss_ratio(cfg, 3);
}

TEST(PatternsTrain, LossFallsForEveryPatternAndHeadScheme) {
  const char* cases[] = {
      "{pattern: dense}",
      "{pattern: flash, block_size: 32}",
      "{pattern: longformer, window: 24, dilation: [1, 2, 1, 2], global_tokens: [0], "
      "block_size: 16}",
      "{pattern: bigbird, block_size: 16, bigbird: {random_blocks: 2}}",
      "{pattern: bigbird, block_size: 16, bigbird: {random_blocks: 2, resample: per_step}}",
      "{pattern: strided, block_size: 16}",
      "{pattern: flash, heads: gqa, n_kv_head: 2}",
      "{pattern: flash, heads: mqa}",
      "{pattern: flash, heads: mla, mla: {kv_lora_rank: 16, rope_dim: 8}}",
  };
  for (const char* c : cases) EXPECT_LT(improvement(c), 0.85) << c;
  EXPECT_LT(improvement("{pattern: linformer, linformer: {k: 32}}", true), 0.9);
}

}  // namespace
}  // namespace longctx

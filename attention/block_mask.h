// The mask is data, the kernel is generic: a pattern lowers to, for each query block, the list
// of key blocks that hold any allowed score, plus an element rule applied inside the blocks
// that are only partly allowed. Dense and flash use the full and causal masks; sparse patterns
// only add mask builders.
#pragma once
#include <cstdint>
#include <vector>

namespace longctx::attn {

// Which (query i, key j) scores exist inside a partly allowed block.
struct ElementRule {
  bool causal = false;  // j <= i
  bool allowed(int64_t i, int64_t j) const { return !causal || j <= i; }
};

struct BlockMask {
  int64_t n_q = 0, n_k = 0;  // sequence lengths of queries and keys
  int block = 64;            // square tile: `block` queries × `block` keys
  ElementRule rule;
  std::vector<int64_t> row_ptr;  // n_qblocks() + 1 offsets into col/full
  std::vector<int32_t> col;      // key block indices, ascending within a row
  std::vector<uint8_t> full;     // 1: every score in the block is allowed (skip the rule)

  int64_t n_qblocks() const { return (n_q + block - 1) / block; }
  int64_t n_kblocks() const { return (n_k + block - 1) / block; }
  int64_t blocks_computed() const { return static_cast<int64_t>(col.size()); }
  // Number of allowed (i, j) pairs: the scores a kernel must compute to be exact.
  int64_t allowed_scores() const;
};

// Every query sees every key.
BlockMask full_mask(int64_t n_q, int64_t n_k, int block);
// Query i sees keys j <= i (n_q == n_k).
BlockMask causal_mask(int64_t n, int block);

}  // namespace longctx::attn

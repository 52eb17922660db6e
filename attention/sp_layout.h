// Which sequence positions each rank of a sequence-parallel group holds. A rank's local tensors
// ([B, H, Tl, D] with Tl = T / sp) hold its positions in ascending order; RoPE and masks always
// use the true positions.
//   contiguous: rank r holds [r·T/sp, (r+1)·T/sp) (local patterns: a window needs few neighbours)
//   zigzag:     the sequence in 2·sp chunks, rank r holds chunks r and 2·sp−1−r (causal
//               attention: every rank gets the same share of the triangle)
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "attention/block_mask.h"

namespace longctx::attn {

enum class SpLayoutKind { contiguous, zigzag };

struct SpLayout {
  SpLayoutKind kind = SpLayoutKind::contiguous;
  int64_t T = 0;  // full sequence length
  int sp = 1;     // ranks sharing the sequence

  // Throws unless sp >= 1 and T is divisible by sp (by 2·sp for zigzag), naming both.
  static SpLayout make(SpLayoutKind kind, int64_t T, int sp);
  int64_t local_len() const { return T / sp; }
  // Ranges [begin, end) of positions rank r holds, ascending.
  std::vector<std::pair<int64_t, int64_t>> ranges(int r) const;
  HeldPositions held(int r) const { return HeldPositions::of(ranges(r)); }
};

const char* sp_layout_name(SpLayoutKind kind);

// local[bh, t, :] = full[bh, position of local row t on rank r, :] for every bh < BH.
// full: [BH, T, W]  local: [BH, Tl, W]
template <class T>
void sp_take_local(const SpLayout& l, int r, const T* full, T* local, int64_t BH, int64_t W);

}  // namespace longctx::attn

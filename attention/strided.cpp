#include "attention/strided.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace longctx::attn {

namespace {

// Scores at distance ≥ stride, which the window part leaves out, over the sequence grouped by
// position mod stride: group r holds r, r + stride, r + 2·stride, ... from a block boundary on,
// padded to whole blocks. Within a group every pair is a multiple of stride apart, so the
// group's blocks are full but for its diagonal (distance 0 belongs to the window) and padding.
BlockMask residue_part(int64_t n, int block, int64_t stride, bool causal) {
  const int64_t groups = std::min(stride, n);
  auto order = std::make_shared<Order>();
  order->inv.assign(size_t(n), -1);
  std::vector<int64_t> first_block(groups + 1);
  for (int64_t r = 0; r < groups; ++r) {
    first_block[r] = int64_t(order->pos.size()) / block;
    for (int64_t p = r; p < n; p += stride) {
      order->inv[p] = int64_t(order->pos.size());
      order->pos.push_back(p);
    }
    order->pos.resize((order->pos.size() + block - 1) / block * block, -1);
  }
  first_block[groups] = int64_t(order->pos.size()) / block;

  BlockMask m;
  m.n_q = m.n_k = int64_t(order->pos.size());
  m.block = block;
  m.rule.causal = causal;
  m.rule.min_distance = stride;
  m.order = order;
  m.row_ptr.assign(size_t(m.n_qblocks() + 1), 0);
  for (int64_t r = 0; r < groups; ++r) {
    const int64_t b0 = first_block[r], b1 = first_block[r + 1];
    for (int64_t qb = b0; qb < b1; ++qb) {
      m.row_ptr[qb] = int64_t(m.col.size());
      for (int64_t kb = b0; kb <= (causal ? qb : b1 - 1); ++kb) {
        const bool edge = kb == qb || qb == b1 - 1 || kb == b1 - 1;  // diagonal or padding
        const BlockFill f = edge ? fill_by_elements(m, qb, kb) : BlockFill::full;
        if (f == BlockFill::none) continue;
        m.col.push_back(int32_t(kb));
        m.full.push_back(f == BlockFill::full);
      }
    }
  }
  m.row_ptr.back() = int64_t(m.col.size());
  return m;
}

}  // namespace

int64_t stride_auto(int64_t n) {
  return std::max<int64_t>(1, std::llround(std::sqrt(double(n))));
}

BlockMask strided_mask(int64_t n, int block, int64_t stride, bool causal) {
  LONGCTX_CHECK(n > 0 && block > 0, "strided: length and block must be positive, got n=", n,
                " block=", block);
  LONGCTX_CHECK(stride >= 1, "strided: stride must be >= 1, got ", stride);
  ElementRule window;
  window.causal = causal;
  window.window = stride - 1;
  BlockMask m = mask_from_rule(n, block, window);
  if (n > stride) m.parts.push_back(residue_part(n, block, stride, causal));
  return m;
}

}  // namespace longctx::attn

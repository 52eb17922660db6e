#include "attention/block_mask.h"

#include <algorithm>

#include "core/error.h"

namespace longctx::attn {

// Full blocks count as a rectangle; partial ones ask the rule per element. Partial blocks lie
// along the mask's edges (O(n / block) of them), so the element loop stays cheap.
int64_t BlockMask::allowed_scores() const {
  int64_t total = 0;
  for (int64_t qb = 0; qb < n_qblocks(); ++qb) {
    const int64_t i0 = qb * block, i1 = std::min(n_q, i0 + block);
    for (int64_t e = row_ptr[qb]; e < row_ptr[qb + 1]; ++e) {
      const int64_t j0 = int64_t(col[e]) * block, j1 = std::min(n_k, j0 + block);
      if (full[e]) {
        total += (i1 - i0) * (j1 - j0);
        continue;
      }
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) total += rule.allowed(i, j);
    }
  }
  return total;
}

BlockMask full_mask(int64_t n_q, int64_t n_k, int block) {
  LONGCTX_CHECK(n_q > 0 && n_k > 0 && block > 0,
                "full_mask: lengths and block must be positive, got n_q=", n_q, " n_k=", n_k,
                " block=", block);
  BlockMask m;
  m.n_q = n_q;
  m.n_k = n_k;
  m.block = block;
  const int64_t nqb = m.n_qblocks(), nkb = m.n_kblocks();
  m.row_ptr.resize(nqb + 1);
  m.col.reserve(nqb * nkb);
  for (int64_t qb = 0; qb < nqb; ++qb) {
    m.row_ptr[qb] = qb * nkb;
    for (int64_t kb = 0; kb < nkb; ++kb) m.col.push_back(int32_t(kb));
  }
  m.row_ptr[nqb] = nqb * nkb;
  m.full.assign(m.col.size(), 1);
  return m;
}

// Query block qb holds keys up to its last row, so it sees key blocks 0..qb; a key block is full
// when its last key is at or before the block's first query (always below the diagonal, and on
// it only when the diagonal block is a single row and column).
BlockMask causal_mask(int64_t n, int block) {
  LONGCTX_CHECK(n > 0 && block > 0, "causal_mask: length and block must be positive, got n=", n,
                " block=", block);
  BlockMask m;
  m.n_q = m.n_k = n;
  m.block = block;
  m.rule.causal = true;
  const int64_t nqb = m.n_qblocks();
  m.row_ptr.resize(nqb + 1);
  for (int64_t qb = 0; qb < nqb; ++qb) {
    m.row_ptr[qb] = int64_t(m.col.size());
    const int64_t first_query = qb * block;
    for (int64_t kb = 0; kb <= qb; ++kb) {
      const int64_t last_key = std::min(n, (kb + 1) * block) - 1;
      m.col.push_back(int32_t(kb));
      m.full.push_back(last_key <= first_query);
    }
  }
  m.row_ptr[nqb] = int64_t(m.col.size());
  return m;
}

}  // namespace longctx::attn

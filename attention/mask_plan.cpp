#include "attention/mask_plan.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "core/error.h"

namespace longctx::attn {

namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// Throws unless the part has the kernels' block, well-formed lists and every value the plan
// stores as int32 (indices, rows, entry counts) fits; indices up to a whole last block fit too,
// since the kernels form qb · 64 + r before comparing with n_q.
void check_part(const BlockMask& m, int64_t mask, int64_t p) {
  LONGCTX_CHECK(m.block == kPlanBlock, "mask plan: mask ", mask, " part ", p, " has block size ",
                m.block, ", but the GPU kernels tile ", kPlanBlock, " × ", kPlanBlock,
                ": build the mask with block ", kPlanBlock);
  LONGCTX_CHECK(p == 0 || m.parts.empty(), "mask plan: mask ", mask, " part ", p,
                " has parts of its own; parts nest only one level deep");
  LONGCTX_CHECK(m.n_q >= 0 && m.n_k >= 0 && m.n_qblocks() * kPlanBlock <= kInt32Max &&
                    m.n_kblocks() * kPlanBlock <= kInt32Max && m.seq_q() <= kInt32Max &&
                    m.seq_k() <= kInt32Max,
                "mask plan: mask ", mask, " part ", p, " has lengths n_q=", m.n_q, " n_k=", m.n_k,
                " over rows ", m.seq_q(), " × ", m.seq_k(), "; the GPU kernels need them below ",
                kInt32Max, " (int32 indices)");
  LONGCTX_CHECK(int64_t(m.row_ptr.size()) == m.n_qblocks() + 1 && m.col.size() == m.full.size() &&
                    m.row_ptr.front() == 0 && m.row_ptr.back() == int64_t(m.col.size()),
                "mask plan: mask ", mask, " part ", p, " is malformed (", m.row_ptr.size(),
                " row offsets for ", m.n_qblocks(), " query blocks, ", m.col.size(), " blocks, ",
                m.full.size(), " full flags)");
  LONGCTX_CHECK(int64_t(m.col.size()) <= kInt32Max, "mask plan: mask ", mask, " part ", p,
                " lists ", m.col.size(), " blocks; the GPU kernels need at most ", kInt32Max,
                " (int32 offsets)");
  LONGCTX_CHECK(!m.order || (int64_t(m.order->pos.size()) == m.n_q &&
                             int64_t(m.key_order()->pos.size()) == m.n_k),
                "mask plan: mask ", mask, " part ", p, " has orders of ", m.order->pos.size(),
                " and ", m.key_order()->pos.size(), " indices for n_q=", m.n_q, " n_k=", m.n_k);
}

// Bitmask of one partial block: exactly the scores flash.cpp's mask_scores lets through, from
// the same ElementRule calls (in sequence order by runs of the row, through an order at the
// keys' rows, padding never allowed). Rows past n_q and bits past n_k stay clear.
void fill_bits(const BlockMask& m, int64_t qb, int64_t kb, uint64_t* out) {
  const int64_t x0 = qb * kPlanBlock, nq = std::min<int64_t>(m.n_q - x0, kPlanBlock);
  const int64_t y0 = kb * kPlanBlock, nk = std::min<int64_t>(m.n_k - y0, kPlanBlock);
  const int64_t* pos = m.order ? m.order->pos.data() : nullptr;
  const int64_t* kpos = m.order ? m.key_order()->pos.data() + y0 : nullptr;
  uint8_t ok[kPlanBlock];
  for (int64_t r = 0; r < nq; ++r) {
    if (pos)
      m.rule.row_at(pos[x0 + r], kpos, nk, ok);
    else
      m.rule.row(x0 + r, y0, nk, ok);
    uint64_t w = 0;
    for (int64_t c = 0; c < nk; ++c) w |= uint64_t(ok[c] != 0) << c;
    out[r] = w;
  }
}

// Appends one part's lists, transpose, orders and bitmasks; returns where they start.
MaskPlan::Offsets append_part(const BlockMask& m, int64_t mask, int64_t p,
                              std::vector<int32_t>& ints, std::vector<uint64_t>& words) {
  MaskPlan::Offsets o;
  const int64_t nqb = m.n_qblocks(), nkb = m.n_kblocks(), nnz = int64_t(m.col.size());
  o.n_q = int32_t(m.n_q);
  o.n_k = int32_t(m.n_k);
  o.n_qb = int32_t(nqb);
  o.n_kb = int32_t(nkb);
  auto take = [&](int64_t n) {
    const int64_t at = int64_t(ints.size());
    ints.resize(size_t(at + n));
    return at;
  };
  o.q_ptr = take(nqb + 1);
  o.q_col = take(nnz);
  o.q_bits = take(nnz);
  o.k_ptr = take(nkb + 1);
  o.k_row = take(nnz);
  o.k_bits = take(nnz);
  if (m.order) {
    o.q_rows = take(m.n_q);
    o.k_rows = take(m.n_k);
  }
  int32_t* const base = ints.data();

  // Query lists, numbering the partial blocks in list order.
  int32_t *q_ptr = base + o.q_ptr, *q_col = base + o.q_col, *q_bits = base + o.q_bits;
  std::vector<std::pair<int64_t, int64_t>> partial;  // (qb, kb) of bitmask i
  for (int64_t qb = 0; qb <= nqb; ++qb) q_ptr[qb] = int32_t(m.row_ptr[qb]);
  for (int64_t qb = 0; qb < nqb; ++qb) {
    LONGCTX_CHECK(m.row_ptr[qb] <= m.row_ptr[qb + 1], "mask plan: mask ", mask, " part ", p,
                  " has row offsets that descend at query block ", qb);
    for (int64_t e = m.row_ptr[qb]; e < m.row_ptr[qb + 1]; ++e) {
      const int32_t kb = m.col[e];
      LONGCTX_CHECK(kb >= 0 && kb < nkb, "mask plan: mask ", mask, " part ", p, " lists key block ",
                    kb, " outside [0, ", nkb, ")");
      q_col[e] = kb;
      q_bits[e] = m.full[e] ? -1 : int32_t(partial.size());
      if (!m.full[e]) partial.emplace_back(qb, kb);
    }
  }
  LONGCTX_CHECK(int64_t(partial.size()) * kPlanBlock <= kInt32Max, "mask plan: mask ", mask,
                " part ", p, " has ", partial.size(),
                " partial blocks; their bitmasks need at most ", kInt32Max,
                " words (int32 offsets)");

  // Key lists: a counting sort of the entries by key block; walking the query blocks in order
  // keeps each key block's query blocks ascending.
  int32_t *k_ptr = base + o.k_ptr, *k_row = base + o.k_row, *k_bits = base + o.k_bits;
  std::fill(k_ptr, k_ptr + nkb + 1, 0);
  for (int64_t e = 0; e < nnz; ++e) ++k_ptr[q_col[e] + 1];
  for (int64_t kb = 0; kb < nkb; ++kb) k_ptr[kb + 1] += k_ptr[kb];
  std::vector<int32_t> next(k_ptr, k_ptr + nkb);
  for (int64_t qb = 0; qb < nqb; ++qb)
    for (int64_t e = q_ptr[qb]; e < q_ptr[qb + 1]; ++e) {
      const int32_t at = next[q_col[e]]++;
      k_row[at] = int32_t(qb);
      k_bits[at] = q_bits[e];
    }

  if (m.order) {
    std::copy(m.order->pos.begin(), m.order->pos.end(), base + o.q_rows);
    std::copy(m.key_order()->pos.begin(), m.key_order()->pos.end(), base + o.k_rows);
  }

  if (partial.empty()) return o;
  o.bits = int64_t(words.size());
  words.resize(words.size() + partial.size() * kPlanBlock, 0);
  uint64_t* const bits = words.data() + o.bits;
  const int64_t n_partial = int64_t(partial.size());
  // Blocks are independent, so threads share them: a document mask is rebuilt every batch.
#pragma omp parallel for schedule(static) if (n_partial >= 256)
  for (int64_t i = 0; i < n_partial; ++i)
    fill_bits(m, partial[i].first, partial[i].second, bits + i * kPlanBlock);
  return o;
}

}  // namespace

std::vector<PartView> MaskPlan::views(const int32_t* ints_at, const uint64_t* words_at) const {
  auto at = [&](int64_t off) { return off < 0 ? nullptr : ints_at + off; };
  std::vector<PartView> out(offsets.size());
  for (size_t i = 0; i < offsets.size(); ++i) {
    const Offsets& o = offsets[i];
    PartView& v = out[i];
    v.n_q = o.n_q;
    v.n_k = o.n_k;
    v.n_qb = o.n_qb;
    v.n_kb = o.n_kb;
    v.q_ptr = at(o.q_ptr);
    v.q_col = at(o.q_col);
    v.q_bits = at(o.q_bits);
    v.k_ptr = at(o.k_ptr);
    v.k_row = at(o.k_row);
    v.k_bits = at(o.k_bits);
    v.q_rows = at(o.q_rows);
    v.k_rows = at(o.k_rows);
    v.bits = o.bits < 0 ? nullptr : words_at + o.bits;
  }
  return out;
}

int64_t MaskPlan::blocks_computed() const {
  int64_t total = 0;
  for (const Offsets& o : offsets)
    if (o.q_ptr >= 0) total += ints[size_t(o.q_ptr + o.n_qb)];
  return total;
}

int32_t MaskPlan::max_qblocks() const {
  int32_t m = 0;
  for (const Offsets& o : offsets) m = std::max(m, o.n_qb);
  return m;
}

int32_t MaskPlan::max_kblocks() const {
  int32_t m = 0;
  for (const Offsets& o : offsets) m = std::max(m, o.n_kb);
  return m;
}

MaskPlan make_mask_plan(const MaskSet& masks) {
  LONGCTX_CHECK(!masks.masks.empty(), "mask plan: empty mask set");
  MaskPlan plan;
  plan.n_masks = int64_t(masks.masks.size());
  plan.seq_q = masks.masks[0].seq_q();
  plan.seq_k = masks.masks[0].seq_k();
  plan.b_stride = masks.b_stride;
  plan.h_stride = masks.h_stride;
  for (const BlockMask& m : masks.masks)
    plan.n_parts = std::max(plan.n_parts, 1 + int64_t(m.parts.size()));
  plan.offsets.resize(size_t(plan.n_masks * plan.n_parts));
  for (int64_t i = 0; i < plan.n_masks; ++i)
    for (int64_t p = 0; p < plan.n_parts; ++p)
      if (const BlockMask* part = masks.masks[i].part(p)) {
        check_part(*part, i, p);
        plan.offsets[i * plan.n_parts + p] = append_part(*part, i, p, plan.ints, plan.words);
      }
  return plan;
}

}  // namespace longctx::attn

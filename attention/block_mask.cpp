#include "attention/block_mask.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>
#include <limits>

#include "core/error.h"

namespace longctx::attn {

namespace {

int64_t pmod(int64_t a, int64_t m) {
  const int64_t r = a % m;
  return r < 0 ? r + m : r;
}

// ok[j − j0] = 1 for every j in [lo, hi) with j ≡ i (mod step).
void mark(uint8_t* ok, int64_t j0, int64_t lo, int64_t hi, int64_t i, int64_t step) {
  if (lo >= hi) return;
  if (step == 1) {
    std::memset(ok + (lo - j0), 1, size_t(hi - lo));
    return;
  }
  for (int64_t j = lo + pmod(i - lo, step); j < hi; j += step) ok[j - j0] = 1;
}

// Number of global positions in [lo, hi).
int64_t globals_in(const ElementRule& r, int64_t lo, int64_t hi) {
  if (!r.globals) return 0;
  const auto& p = r.globals->positions;
  return std::lower_bound(p.begin(), p.end(), hi) - std::lower_bound(p.begin(), p.end(), lo);
}

// The entry of key block kb in query block qb's row, or -1.
int64_t find_entry(const BlockMask& m, int64_t qb, int64_t kb) {
  const auto first = m.col.begin() + m.row_ptr[qb], last = m.col.begin() + m.row_ptr[qb + 1];
  const auto it = std::lower_bound(first, last, int32_t(kb));
  return it != last && *it == kb ? it - m.col.begin() : -1;
}

bool part_allowed(const BlockMask& m, int64_t i, int64_t j) {
  const int64_t x = m.order ? m.order->inv[i] : i, y = m.key_order() ? m.key_order()->inv[j] : j;
  const int64_t e = find_entry(m, x / m.block, y / m.block);
  return e >= 0 && (m.full[e] || m.rule.allowed(i, j));
}

struct Fill {
  bool any, all;
};

// Whether some / every element of [i0, i1) × [j0, j1) is allowed, row by row.
Fill fill_of_rows(const ElementRule& r, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                  std::vector<uint8_t>& buf) {
  const int64_t nk = j1 - j0;
  buf.resize(size_t(nk));
  Fill f{false, true};
  for (int64_t i = i0; i < i1; ++i) {
    r.row(i, j0, nk, buf.data());
    const int64_t n_ok = std::count(buf.begin(), buf.begin() + nk, uint8_t(1));
    f.any |= n_ok > 0;
    f.all &= n_ok == nk;
  }
  return f;
}

bool has_multiple(int64_t a, int64_t b, int64_t m) { return a <= b && b / m * m >= a; }

// Which distances in [a, b] (0 ≤ a ≤ b) the rule allows by distance alone (no causal cut, no
// globals): some of them, all of them.
Fill distance_fill(const ElementRule& r, int64_t a, int64_t b) {
  if (b < r.min_distance) return {false, false};
  const bool cut = a < r.min_distance;
  a = std::max(a, r.min_distance);
  if (r.window < 0) return {true, !cut};
  const int64_t in_hi = std::min(b, r.window);
  auto on_stride = [&](int64_t x) { return r.stride > 0 && x % r.stride == 0; };
  const bool any =
      has_multiple(a, in_hi, r.dilation) || (r.stride > 0 && has_multiple(a, b, r.stride));
  if (cut || !any) return {any, false};
  // Past the window only stride multiples remain, and two consecutive distances are never both
  // multiples of a stride above 1.
  const int64_t out_lo = std::max(a, r.window + 1);
  if (out_lo <= b && r.stride != 1 && !(out_lo == b && on_stride(b))) return {true, false};
  // Inside it a dilated window leaves gaps; the first one that no stride fills ends this loop.
  if (r.dilation > 1)
    for (int64_t x = a; x <= in_hi; ++x)
      if (x % r.dilation != 0 && !on_stride(x)) return {true, false};
  return {true, true};
}

// A block's distances i − j cover [i0 − j1 + 1, i1 − 1 − j0] without gaps, so when only the
// distance matters the block's fill is the fill of that interval (split at 0 for causal).
Fill distance_block(const ElementRule& r, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  const int64_t dlo = i0 - (j1 - 1), dhi = (i1 - 1) - j0;
  Fill f{false, true};
  if (dhi >= 0) {
    const Fill p = distance_fill(r, std::max<int64_t>(dlo, 0), dhi);
    f.any |= p.any;
    f.all &= p.all;
  }
  if (dlo < 0) {
    if (r.causal) {
      f.all = false;
    } else {
      const Fill q = distance_fill(r, std::max<int64_t>(1, -dhi), -dlo);
      f.any |= q.any;
      f.all &= q.all;
    }
  }
  return f;
}

// Global rows and columns only add scores. A block far from the band with a non-global row and
// a non-global column can't be full, and its scores lie on its global rows and columns; the
// rare blocks near the band that hold globals are checked element by element.
Fill block_fill(const ElementRule& r, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                std::vector<uint8_t>& buf) {
  const Fill f = distance_block(r, i0, i1, j0, j1);
  if (!r.globals || r.window < 0 || f.all) return f;
  const int64_t g_rows = globals_in(r, i0, i1), g_cols = globals_in(r, j0, j1);
  if (g_rows == 0 && g_cols == 0) return f;
  const bool plain_pair = g_rows < i1 - i0 && g_cols < j1 - j0;
  if (f.any || !plain_pair) return fill_of_rows(r, i0, i1, j0, j1, buf);
  const auto& p = r.globals->positions;
  buf.resize(size_t(j1 - j0));
  for (auto it = std::lower_bound(p.begin(), p.end(), i0); it != p.end() && *it < i1; ++it) {
    r.row(*it, j0, j1 - j0, buf.data());
    if (std::count(buf.begin(), buf.begin() + (j1 - j0), uint8_t(1)) > 0) return {true, false};
  }
  for (auto it = std::lower_bound(p.begin(), p.end(), j0); it != p.end() && *it < j1; ++it)
    for (int64_t i = i0; i < i1; ++i)
      if (r.allowed(i, *it)) return {true, false};
  return {false, false};
}

// Key blocks that may hold an allowed score for queries [i0, i1): the window band, the stride
// diagonals beyond it, the global key blocks; every block for a global query.
void candidates(const ElementRule& r, int64_t n, int64_t bs, int64_t i0, int64_t i1,
                const std::vector<int32_t>& global_kblocks, std::vector<int32_t>& out) {
  out.clear();
  const int64_t j_max = r.causal ? i1 - 1 : n - 1;
  auto add = [&](int64_t lo, int64_t hi) {
    lo = std::max<int64_t>(lo, 0);
    hi = std::min(hi, j_max);
    for (int64_t kb = lo / bs; lo <= hi && kb <= hi / bs; ++kb) out.push_back(int32_t(kb));
  };
  if (r.window < 0 || globals_in(r, i0, i1) > 0) {
    add(0, n - 1);
    return;
  }
  add(i0 - r.window, i1 - 1 + r.window);
  if (r.stride > 0) {
    const int64_t s = r.stride, first = (r.window / s + 1) * s;  // first multiple past the window
    if (s <= i1 - i0) {  // the diagonals' key ranges touch: one run each side
      add(0, i1 - 1 - first);
      add(i0 + first, n - 1);
    } else {
      for (int64_t d = first; i1 - 1 - d >= 0 || (!r.causal && i0 + d < n); d += s) {
        add(i0 - d, i1 - 1 - d);
        if (!r.causal) add(i0 + d, i1 - 1 + d);
      }
    }
  }
  for (int32_t kb : global_kblocks)
    if (int64_t(kb) * bs <= j_max) out.push_back(kb);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
}

void check_rule(const ElementRule& r, int64_t n) {
  LONGCTX_CHECK(r.dilation >= 1, "element rule: dilation must be >= 1, got ", r.dilation);
  LONGCTX_CHECK(r.stride >= 0, "element rule: stride must be >= 0, got ", r.stride);
  LONGCTX_CHECK(r.min_distance >= 0, "element rule: min_distance must be >= 0, got ",
                r.min_distance);
  LONGCTX_CHECK(!r.globals || int64_t(r.globals->is_global.size()) == n,
                "element rule: global set is for length ", r.globals->is_global.size(),
                " but the sequence has ", n);
}

}  // namespace

std::shared_ptr<const GlobalSet> make_global_set(int64_t n, std::vector<int64_t> positions) {
  for (int64_t p : positions)
    LONGCTX_CHECK(p >= 0 && p < n, "global position ", p, " is outside the sequence [0, ", n,
                  ")");
  auto g = std::make_shared<GlobalSet>();
  std::sort(positions.begin(), positions.end());
  positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
  g->is_global.assign(size_t(n), 0);
  for (int64_t p : positions) g->is_global[p] = 1;
  g->positions = std::move(positions);
  return g;
}

// Sets whole runs: the window band (every dilation-th key), the stride diagonals, the global
// keys; then clears what is nearer than min_distance.
void ElementRule::row(int64_t i, int64_t j0, int64_t nk, uint8_t* ok) const {
  i = q_position(i);
  if (k_pos && nk > 0) {
    const int64_t* kp = k_pos->data() + j0;
    if (kp[nk - 1] - kp[0] != nk - 1) {  // the keys straddle a gap between two held ranges
      for (int64_t c = 0; c < nk; ++c) ok[c] = allowed_at(i, kp[c]);
      return;
    }
    j0 = kp[0];
  }
  std::memset(ok, 0, size_t(nk));
  const int64_t j_end = causal ? std::min(j0 + nk, i + 1) : j0 + nk;
  if (j_end <= j0) return;
  if (window < 0 || is_global(i)) {
    mark(ok, j0, j0, j_end, i, 1);
  } else {
    mark(ok, j0, std::max(j0, i - window), std::min(j_end, i + window + 1), i, dilation);
    if (stride > 0) mark(ok, j0, j0, j_end, i, stride);
    if (globals) {
      const auto& p = globals->positions;
      for (auto it = std::lower_bound(p.begin(), p.end(), j0); it != p.end() && *it < j_end; ++it)
        ok[*it - j0] = 1;
    }
  }
  if (min_distance > 0) {
    const int64_t lo = std::max(j0, i - min_distance + 1), hi = std::min(j_end, i + min_distance);
    if (lo < hi) std::memset(ok + (lo - j0), 0, size_t(hi - lo));
  }
  if (doc) {
    const int32_t* d = doc->data();
    for (int64_t c = 0; c < nk; ++c) ok[c] &= d[j0 + c] == d[i];
  }
}

void ElementRule::row_at(int64_t i, const int64_t* js, int64_t nk, uint8_t* ok) const {
  if (i >= 0) i = q_position(i);
  if (k_pos) {
    for (int64_t c = 0; c < nk; ++c) ok[c] = i >= 0 && js[c] >= 0 && allowed_at(i, (*k_pos)[js[c]]);
    return;
  }
  if (i < 0) {
    std::memset(ok, 0, size_t(nk));
  } else if (window < 0 || is_global(i)) {
    const int64_t hi = causal ? i : std::numeric_limits<int64_t>::max();
    for (int64_t c = 0; c < nk; ++c) {
      const int64_t j = js[c], d = i > j ? i - j : j - i;
      ok[c] = (j >= 0) & (j <= hi) & (d >= min_distance);
    }
    if (doc)
      for (int64_t c = 0; c < nk; ++c) ok[c] = ok[c] && (*doc)[js[c]] == (*doc)[i];
  } else {
    for (int64_t c = 0; c < nk; ++c) ok[c] = js[c] >= 0 && allowed_at(i, js[c]);
  }
}

int64_t BlockMask::blocks_computed() const {
  int64_t total = int64_t(col.size());
  for (const BlockMask& p : parts) total += p.blocks_computed();
  return total;
}

int64_t BlockMask::computed_scores() const {
  int64_t total = 0;
  for (int64_t qb = 0; qb < n_qblocks(); ++qb) {
    const int64_t nq = std::min<int64_t>(n_q - qb * block, block);
    for (int64_t e = row_ptr[qb]; e < row_ptr[qb + 1]; ++e)
      total += nq * std::min<int64_t>(n_k - int64_t(col[e]) * block, block);
  }
  for (const BlockMask& p : parts) total += p.computed_scores();
  return total;
}

// Full blocks count as a rectangle of real (non-padding) positions; partial ones ask the rule
// row by row. Partial blocks lie along the band and at globals, so this stays O(blocks · block).
int64_t BlockMask::allowed_scores() const {
  int64_t total = 0;
  std::vector<uint8_t> buf(static_cast<size_t>(block));
  for (int64_t qb = 0; qb < n_qblocks(); ++qb) {
    const int64_t x0 = qb * block, x1 = std::min(n_q, x0 + block);
    for (int64_t e = row_ptr[qb]; e < row_ptr[qb + 1]; ++e) {
      const int64_t y0 = int64_t(col[e]) * block, y1 = std::min(n_k, y0 + block);
      if (!order) {
        if (full[e])
          total += (x1 - x0) * (y1 - y0);
        else
          for (int64_t i = x0; i < x1; ++i) {
            rule.row(i, y0, y1 - y0, buf.data());
            total += std::count(buf.begin(), buf.begin() + (y1 - y0), uint8_t(1));
          }
        continue;
      }
      for (int64_t x = x0; x < x1; ++x)
        for (int64_t y = y0; y < y1; ++y) {
          const int64_t i = order->pos[x], j = key_position(y);
          total += i >= 0 && j >= 0 && (full[e] || rule.allowed(i, j));
        }
    }
  }
  for (const BlockMask& p : parts) total += p.allowed_scores();
  return total;
}

bool BlockMask::allowed(int64_t i, int64_t j) const {
  if (part_allowed(*this, i, j)) return true;
  for (const BlockMask& p : parts)
    if (part_allowed(p, i, j)) return true;
  return false;
}

void BlockMask::allowed_row(int64_t i, uint8_t* ok) const {
  std::memset(ok, 0, size_t(seq_k()));
  auto add_part = [&](const BlockMask& m, bool first) {
    const int64_t qb = (m.order ? m.order->inv[i] : i) / m.block;
    for (int64_t e = m.row_ptr[qb]; e < m.row_ptr[qb + 1]; ++e) {
      const int64_t y0 = int64_t(m.col[e]) * m.block, y1 = std::min(m.n_k, y0 + m.block);
      if (first && !m.order) {  // nothing written here yet: write the block's run directly
        if (m.full[e])
          std::memset(ok + y0, 1, size_t(y1 - y0));
        else
          m.rule.row(i, y0, y1 - y0, ok + y0);
        continue;
      }
      for (int64_t y = y0; y < y1; ++y) {
        const int64_t j = m.key_position(y);
        if (j >= 0 && (m.full[e] || m.rule.allowed(i, j))) ok[j] = 1;
      }
    }
  };
  add_part(*this, true);
  for (const BlockMask& p : parts) add_part(p, false);
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

BlockMask rows_mask(std::vector<int64_t> positions, int64_t n_k, int block, bool causal) {
  LONGCTX_CHECK(!positions.empty() && n_k > 0 && block > 0,
                "rows_mask: rows, keys and block must be positive");
  LONGCTX_CHECK(std::is_sorted(positions.begin(), positions.end()) && positions.front() >= 0 &&
                    positions.back() < n_k,
                "rows_mask: row positions must be ascending and inside [0, ", n_k, ")");
  BlockMask m;
  m.n_q = int64_t(positions.size());
  m.n_k = n_k;
  m.block = block;
  m.rule.causal = causal;
  m.rule.q_pos = std::make_shared<const std::vector<int64_t>>(std::move(positions));
  const std::vector<int64_t>& pos = *m.rule.q_pos;
  const int64_t nqb = m.n_qblocks(), nkb = m.n_kblocks();
  m.row_ptr.resize(nqb + 1);
  for (int64_t qb = 0; qb < nqb; ++qb) {
    m.row_ptr[qb] = int64_t(m.col.size());
    const int64_t first = pos[qb * block], last = pos[std::min(m.n_q, (qb + 1) * block) - 1];
    const int64_t kb_end = causal ? last / block + 1 : nkb;
    for (int64_t kb = 0; kb < kb_end; ++kb) {
      m.col.push_back(int32_t(kb));
      m.full.push_back(!causal || std::min(n_k, (kb + 1) * block) - 1 <= first);
    }
  }
  m.row_ptr[nqb] = int64_t(m.col.size());
  return m;
}

// The documents a block's positions span, as [lo, hi] (doc ids are non-decreasing in position;
// through an order the block's positions are scattered, so the span only bounds them).
namespace {
std::pair<int32_t, int32_t> doc_span(const BlockMask& m, const std::vector<int32_t>& doc,
                                     int64_t x0, int64_t n, const std::vector<int64_t>* q_pos,
                                     bool keys) {
  int32_t lo = INT32_MAX, hi = INT32_MIN;
  for (int64_t x = x0; x < std::min(n, x0 + m.block); ++x) {
    const int64_t p = q_pos ? (*q_pos)[x] : keys ? m.key_position(x) : m.position(x);
    if (p < 0) continue;  // padding
    lo = std::min(lo, doc[p]);
    hi = std::max(hi, doc[p]);
  }
  return {lo, hi};
}

void restrict_part(BlockMask& m, const std::shared_ptr<const std::vector<int32_t>>& doc) {
  m.rule.doc = doc;
  const std::vector<int32_t>& d = *doc;
  const std::vector<int64_t>* q_pos = m.rule.q_pos.get();
  std::vector<std::pair<int32_t, int32_t>> kspan(size_t(m.n_kblocks()));
  for (int64_t kb = 0; kb < m.n_kblocks(); ++kb)
    kspan[kb] = doc_span(m, d, kb * m.block, m.n_k, nullptr, true);
  std::vector<int64_t> row_ptr(m.row_ptr.size());
  std::vector<int32_t> col;
  std::vector<uint8_t> full;
  for (int64_t qb = 0; qb < m.n_qblocks(); ++qb) {
    row_ptr[qb] = int64_t(col.size());
    const auto q = doc_span(m, d, qb * m.block, m.n_q, q_pos, false);
    for (int64_t e = m.row_ptr[qb]; e < m.row_ptr[qb + 1]; ++e) {
      const auto k = kspan[m.col[e]];
      if (q.first > q.second || k.first > k.second || q.second < k.first || k.second < q.first)
        continue;  // no document in common (or only padding)
      BlockFill fill;
      if (m.full[e] && !m.order && !q_pos) {
        // Contiguous positions hold every document of their span: the spans' overlap is a
        // document both sides have, whose pairs the full block allows.
        fill = q.first == q.second && k.first == k.second ? BlockFill::full : BlockFill::partial;
      } else {
        fill = fill_by_elements(m, qb, m.col[e]);  // few: band edges, diagonals, permuted parts
      }
      if (fill == BlockFill::none) continue;
      col.push_back(m.col[e]);
      full.push_back(fill == BlockFill::full);
    }
  }
  row_ptr[m.n_qblocks()] = int64_t(col.size());
  m.row_ptr = std::move(row_ptr);
  m.col = std::move(col);
  m.full = std::move(full);
}
}  // namespace

BlockMask restrict_to_documents(BlockMask m, std::shared_ptr<const std::vector<int32_t>> doc) {
  // Spans are taken over query rows (through q_pos) and key positions; a mask already restricted
  // to a pair of ranks (k_pos) is not what documents restrict: restrict the full mask first.
  LONGCTX_CHECK(!m.rule.k_pos, "restrict_to_documents: restrict the full-sequence mask, not one "
                "already restricted to a pair of ranks");
  LONGCTX_CHECK(doc && int64_t(doc->size()) == m.seq_k(),
                "restrict_to_documents: one document id per position needed (", m.seq_k(), ")");
  for (size_t p = 1; p < doc->size(); ++p)
    LONGCTX_CHECK((*doc)[p] == (*doc)[p - 1] || (*doc)[p] == (*doc)[p - 1] + 1,
                  "restrict_to_documents: document ids must stay or grow by one along the "
                  "sequence, position ", p, " has ", (*doc)[p], " after ", (*doc)[p - 1]);
  restrict_part(m, doc);
  for (BlockMask& p : m.parts) restrict_part(p, doc);
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

// Rows are independent: each thread fills whole rows, which are then concatenated in order, so
// the result does not depend on the thread count.
BlockMask mask_from_rule(int64_t n, int block, const ElementRule& rule) {
  LONGCTX_CHECK(n > 0 && block > 0, "mask_from_rule: length and block must be positive, got n=",
                n, " block=", block);
  check_rule(rule, n);
  BlockMask m;
  m.n_q = m.n_k = n;
  m.block = block;
  m.rule = rule;
  const int64_t nqb = m.n_qblocks(), bs = block;
  std::vector<int32_t> global_kblocks;
  if (rule.globals)
    for (int64_t p : rule.globals->positions)
      if (global_kblocks.empty() || global_kblocks.back() != p / bs)
        global_kblocks.push_back(int32_t(p / bs));

  std::vector<std::vector<int32_t>> cols(nqb);
  std::vector<std::vector<uint8_t>> fulls(nqb);
#pragma omp parallel
  {
    std::vector<int32_t> cand;
    std::vector<uint8_t> buf;
#pragma omp for schedule(dynamic, 16)
    for (int64_t qb = 0; qb < nqb; ++qb) {
      const int64_t i0 = qb * bs, i1 = std::min(n, i0 + bs);
      candidates(rule, n, bs, i0, i1, global_kblocks, cand);
      for (int32_t kb : cand) {
        const int64_t j0 = int64_t(kb) * bs, j1 = std::min(n, j0 + bs);
        const Fill f = block_fill(rule, i0, i1, j0, j1, buf);
        if (!f.any) continue;
        cols[qb].push_back(kb);
        fulls[qb].push_back(f.all);
      }
    }
  }
  m.row_ptr.resize(nqb + 1);
  for (int64_t qb = 0; qb < nqb; ++qb) {
    m.row_ptr[qb] = int64_t(m.col.size());
    m.col.insert(m.col.end(), cols[qb].begin(), cols[qb].end());
    m.full.insert(m.full.end(), fulls[qb].begin(), fulls[qb].end());
  }
  m.row_ptr[nqb] = int64_t(m.col.size());
  return m;
}

BlockFill fill_by_elements(const BlockMask& m, int64_t qb, int64_t kb) {
  const int64_t x0 = qb * m.block, x1 = std::min(m.n_q, x0 + m.block);
  const int64_t y0 = kb * m.block, y1 = std::min(m.n_k, y0 + m.block), nk = y1 - y0;
  std::vector<int64_t> js(static_cast<size_t>(nk));
  for (int64_t c = 0; c < nk; ++c) js[c] = m.key_position(y0 + c);
  std::vector<uint8_t> ok(static_cast<size_t>(nk));
  int64_t n_ok = 0;
  for (int64_t x = x0; x < x1; ++x) {
    m.rule.row_at(m.position(x), js.data(), nk, ok.data());
    n_ok += std::count(ok.begin(), ok.end(), uint8_t(1));
  }
  return n_ok == 0 ? BlockFill::none : n_ok == (x1 - x0) * nk ? BlockFill::full : BlockFill::partial;
}

MaskSet MaskSet::shared(BlockMask m) {
  MaskSet s;
  s.masks.push_back(std::move(m));
  return s;
}

MaskSet MaskSet::per_head(std::vector<BlockMask> masks) {
  MaskSet s;
  s.masks = std::move(masks);
  s.h_stride = 1;
  return s;
}

MaskSet MaskSet::per_sample(std::vector<BlockMask> masks) {
  MaskSet s;
  s.masks = std::move(masks);
  s.b_stride = 1;
  return s;
}

MaskSet MaskSet::per_sample_head(std::vector<BlockMask> masks, int64_t n_heads) {
  MaskSet s;
  s.masks = std::move(masks);
  s.b_stride = n_heads;
  s.h_stride = 1;
  return s;
}

void MaskSet::check(const AttnShape& s, const char* who) const {
  LONGCTX_CHECK(!masks.empty(), who, ": empty mask set");
  const int64_t need = (s.B - 1) * b_stride + (s.H - 1) * h_stride + 1;
  LONGCTX_CHECK(int64_t(masks.size()) >= need, who, ": ", masks.size(),
                " masks do not cover batch ", s.B, " × heads ", s.H, " (strides ", b_stride, ", ",
                h_stride, ")");
  auto well_formed = [&](const BlockMask& m) {
    LONGCTX_CHECK(m.block == masks[0].block, who, ": masks mix block sizes ", m.block, " and ",
                  masks[0].block);
    LONGCTX_CHECK(m.block > 0 && int64_t(m.row_ptr.size()) == m.n_qblocks() + 1 &&
                      m.col.size() == m.full.size() && m.row_ptr.back() == int64_t(m.col.size()),
                  who, ": malformed mask (block ", m.block, ", ", m.row_ptr.size(),
                  " row offsets for ", m.n_qblocks(), " query blocks, ", m.col.size(),
                  " blocks, ", m.full.size(), " full flags)");
    LONGCTX_CHECK(m.seq_q() == s.Tq && m.seq_k() == s.Tk, who, ": mask is for ", m.seq_q(), "x",
                  m.seq_k(), " but the shape has Tq=", s.Tq, " Tk=", s.Tk);
    LONGCTX_CHECK(!m.k_order || m.order, who, ": a mask with a key order needs a query order");
    LONGCTX_CHECK(!m.order || (int64_t(m.order->pos.size()) == m.n_q &&
                               int64_t(m.key_order()->pos.size()) == m.n_k &&
                               (m.k_order || m.n_q == m.n_k)),
                  who, ": permuted mask part is not square over its order");
  };
  for (const BlockMask& m : masks) {
    well_formed(m);
    // The first part writes every row it reaches; later parts merge into them.
    LONGCTX_CHECK(!m.order || std::find(m.order->inv.begin(), m.order->inv.end(), -1) ==
                                  m.order->inv.end(),
                  who, ": the first part of a mask must reach every query row");
    for (const BlockMask& p : m.parts) {
      well_formed(p);
      LONGCTX_CHECK(p.parts.empty(), who, ": mask parts nest only one level deep");
    }
  }
}

HeldPositions HeldPositions::of(std::vector<std::pair<int64_t, int64_t>> ranges) {
  LONGCTX_CHECK(!ranges.empty(), "held positions: no ranges given");
  auto pos = std::make_shared<std::vector<int64_t>>();
  int64_t prev_end = 0;
  for (const auto& [a, b] : ranges) {
    LONGCTX_CHECK(a >= prev_end && b > a, "held positions: ranges must be non-empty, ascending "
                  "and disjoint, got [", a, ", ", b, ") after position ", prev_end);
    for (int64_t p = a; p < b; ++p) pos->push_back(p);
    prev_end = b;
  }
  HeldPositions h;
  h.ranges = std::move(ranges);
  h.pos = std::move(pos);
  return h;
}

int64_t HeldPositions::row(int64_t p) const {
  int64_t base = 0;
  for (const auto& [a, b] : ranges) {
    if (p < a) return -1;
    if (p < b) return base + p - a;
    base += b - a;
  }
  return -1;
}

namespace {

// One side of a restriction: the original blocks holding any of the share's positions (one
// local block each) and the local row at each local index (-1: padding or not held).
struct Side {
  std::vector<int64_t> blocks;  // ascending
  std::vector<int64_t> rows;    // [blocks.size() · block]
  std::vector<uint8_t> cut;     // per local block: fewer held rows than the original's rows
  std::vector<uint8_t> padded;  // per local block: fewer held rows than the block size
  bool identity = true;         // rows[x] == x for every held row, padding only at the end
};

// n: the original index-space length along this side; order: its order (null: sequence order).
Side side_of(int64_t bs, int64_t n, const Order* order, const HeldPositions& h) {
  Side s;
  for (const auto& [a, b] : h.ranges) {
    if (order)
      for (int64_t p = a; p < b; ++p) s.blocks.push_back(order->inv[p] / bs);
    else
      for (int64_t blk = a / bs; blk <= (b - 1) / bs; ++blk) s.blocks.push_back(blk);
  }
  std::sort(s.blocks.begin(), s.blocks.end());
  s.blocks.erase(std::unique(s.blocks.begin(), s.blocks.end()), s.blocks.end());
  const int64_t nb = int64_t(s.blocks.size());
  s.rows.assign(size_t(nb * bs), -1);
  s.cut.assign(size_t(nb), 0);
  s.padded.assign(size_t(nb), 0);
  for (int64_t lb = 0; lb < nb; ++lb) {
    int64_t real = 0, held = 0;
    for (int64_t r = 0; r < bs; ++r) {
      const int64_t x = s.blocks[lb] * bs + r;
      const int64_t p = x >= n ? -1 : order ? order->pos[x] : x;
      if (p < 0) continue;
      ++real;
      const int64_t row = h.row(p);
      s.rows[lb * bs + r] = row;
      held += row >= 0;
    }
    s.cut[lb] = held < real;
    s.padded[lb] = held < bs;
  }
  for (int64_t x = 0; x < nb * bs; ++x)
    s.identity &= s.rows[x] == (x < h.count() ? x : -1);
  return s;
}

std::shared_ptr<const Order> order_of(const Side& s, int64_t count) {
  auto o = std::make_shared<Order>();
  o->pos = s.rows;
  o->inv.assign(size_t(count), -1);
  for (int64_t x = 0; x < int64_t(s.rows.size()); ++x)
    if (s.rows[x] >= 0) o->inv[s.rows[x]] = x;
  return o;
}

// Blocks the cut leaves whole keep their flags (a full block stays full, a partial one keeps
// its rule); blocks cut smaller, or padded in an order (the kernel reads padding as zero rows,
// which only the rule keeps out), are classified again element by element.
BlockMask restrict_part(const BlockMask& m, const HeldPositions& q, const HeldPositions& k) {
  LONGCTX_CHECK(!m.rule.q_pos && !m.rule.k_pos && !m.k_order,
                "restrict_to_positions: the mask must be over the sequence itself (no q_pos, "
                "k_pos or key order)");
  const int64_t bs = m.block;
  const Side sq = side_of(bs, m.n_q, m.order.get(), q), sk = side_of(bs, m.n_k, m.order.get(), k);
  BlockMask r;
  r.block = m.block;
  r.rule = m.rule;
  r.rule.q_pos = q.pos;
  r.rule.k_pos = k.pos;
  const bool ordered = !(sq.identity && sk.identity);
  const std::vector<uint8_t>& q_redo = ordered ? sq.padded : sq.cut;
  const std::vector<uint8_t>& k_redo = ordered ? sk.padded : sk.cut;
  if (!ordered) {
    r.n_q = q.count();
    r.n_k = k.count();
  } else {
    r.n_q = int64_t(sq.rows.size());
    r.n_k = int64_t(sk.rows.size());
    r.order = order_of(sq, q.count());
    r.k_order = order_of(sk, k.count());
  }
  std::vector<int32_t> kmap(size_t(m.n_kblocks()), -1);
  for (size_t lb = 0; lb < sk.blocks.size(); ++lb) kmap[sk.blocks[lb]] = int32_t(lb);
  const int64_t nqb = int64_t(sq.blocks.size());
  r.row_ptr.resize(size_t(nqb + 1));
  for (int64_t lqb = 0; lqb < nqb; ++lqb) {
    r.row_ptr[lqb] = int64_t(r.col.size());
    const int64_t sqb = sq.blocks[lqb];
    for (int64_t e = m.row_ptr[sqb]; e < m.row_ptr[sqb + 1]; ++e) {
      const int32_t lkb = kmap[m.col[e]];
      if (lkb < 0) continue;
      BlockFill f = m.full[e] ? BlockFill::full : BlockFill::partial;
      if (q_redo[lqb] || k_redo[lkb]) f = fill_by_elements(r, lqb, lkb);
      if (f == BlockFill::none) continue;
      r.col.push_back(lkb);
      r.full.push_back(f == BlockFill::full);
    }
  }
  r.row_ptr[nqb] = int64_t(r.col.size());
  return r;
}

}  // namespace

BlockMask restrict_to_positions(const BlockMask& m, const HeldPositions& q,
                                const HeldPositions& k) {
  LONGCTX_CHECK(m.seq_q() == m.seq_k(),
                "restrict_to_positions: the mask must be square, got ", m.seq_q(), "x", m.seq_k());
  LONGCTX_CHECK(q.ranges.back().second <= m.seq_q() && k.ranges.back().second <= m.seq_k(),
                "restrict_to_positions: positions up to ", q.ranges.back().second,
                " (queries) and ", k.ranges.back().second,
                " (keys) lie outside the mask's sequence of ", m.seq_q());
  BlockMask r = restrict_part(m, q, k);
  for (const BlockMask& p : m.parts) {
    BlockMask rp = restrict_part(p, q, k);
    if (!rp.col.empty()) r.parts.push_back(std::move(rp));
  }
  return r;
}

MaskSet MaskSet::heads(int64_t B, int64_t h0, int64_t n) const {
  if (h_stride == 0) return *this;
  MaskSet s;
  for (int64_t b = 0; b < (b_stride == 0 ? 1 : B); ++b)
    for (int64_t h = h0; h < h0 + n; ++h) s.masks.push_back(get(b, h));
  s.h_stride = 1;
  s.b_stride = b_stride == 0 ? 0 : n;
  return s;
}

MaskSet MaskSet::restricted(const HeldPositions& q, const HeldPositions& k) const {
  MaskSet s = *this;
  for (BlockMask& m : s.masks) m = restrict_to_positions(m, q, k);
  return s;
}

int64_t MaskSet::blocks_computed() const {
  int64_t total = 0;
  for (const BlockMask& m : masks) total += m.blocks_computed();
  return total;
}

}  // namespace longctx::attn

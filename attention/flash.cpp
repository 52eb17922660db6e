#include "attention/flash.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attention/tile.h"
#include "core/error.h"

namespace longctx::attn {

namespace {

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

void check_args(const AttnShape& s, const MaskSet& masks) {
  LONGCTX_CHECK(s.B > 0 && s.H > 0 && s.Hkv > 0 && s.D > 0, "flash: bad shape B=", s.B, " H=", s.H,
                " Hkv=", s.Hkv, " D=", s.D);
  LONGCTX_CHECK(s.H % s.Hkv == 0, "flash: n_kv_head ", s.Hkv, " does not divide n_head ", s.H);
  masks.check(s, "flash");
}

// Query blocks of part p, over every mask of the set (parts of different masks may differ).
std::vector<int64_t> query_blocks_per_part(const MaskSet& masks) {
  std::vector<int64_t> nqb;
  for (const BlockMask& m : masks.masks)
    for (int64_t p = 0; p <= int64_t(m.parts.size()); ++p) {
      if (int64_t(nqb.size()) <= p) nqb.push_back(0);
      nqb[p] = std::max(nqb[p], m.part(p)->n_qblocks());
    }
  return nqb;
}

// Consecutive key blocks of one mask row, evaluated as one tile of keys [j0, j0 + nk) (index
// space): wider tiles make wider products, which Eigen runs closer to its GEMM rate than
// 64 × 64 ones.
struct KeyRun {
  int64_t e, e_end, j0, nk;
};

// Up to this many keys per tile; with 64-row query blocks one thread's tiles stay in L2.
int64_t max_run_keys(int64_t block) { return std::max<int64_t>(block, 256); }

// A stretch of consecutive blocks is cut into runs of equal width: a sliding window's 9 blocks
// become 3 + 3 + 3, not 4 + 4 + 1 with a lone narrow tile far below the GEMM rate.
KeyRun next_run(const BlockMask& m, int64_t e, int64_t row_end) {
  const int64_t max_blocks = max_run_keys(m.block) / m.block;
  int64_t stretch = 1;
  while (e + stretch < row_end && stretch < 4 * max_blocks &&
         m.col[e + stretch] == m.col[e + stretch - 1] + 1)
    ++stretch;
  const int64_t runs = (stretch + max_blocks - 1) / max_blocks;
  const int64_t e_end = e + (stretch + runs - 1) / runs;
  const int64_t j0 = int64_t(m.col[e]) * m.block;
  const int64_t j1 = std::min(m.n_k, (int64_t(m.col[e_end - 1]) + 1) * m.block);
  return {e, e_end, j0, j1 - j0};
}

// dst row r = factor · src row pos[x0 + r] (zero for padding): a permuted part's rows, gathered
// into one tile.  src: [seq, D]  dst: [n, D]
template <class T>
void gather_rows(const T* src, const int64_t* pos, int64_t x0, int64_t D, T factor,
                 Tile<T> dst) {
  for (int64_t r = 0; r < dst.rows(); ++r) {
    const int64_t p = pos[x0 + r];
    if (p >= 0)
      dst.row(r) = factor * CMat<T>(src + p * D, 1, D);
    else
      dst.row(r).setZero();
  }
}

// dst row pos[x0 + r] += src row r (padding skipped).  src: [n, D]  dst: [seq, D]
template <class T>
void scatter_add_rows(const Tile<T>& src, const int64_t* pos, int64_t x0, T* dst) {
  const int64_t D = src.cols();
  for (int64_t r = 0; r < src.rows(); ++r)
    if (const int64_t p = pos[x0 + r]; p >= 0) Mat<T>(dst + p * D, 1, D) += src.row(r);
}

// Disallowed scores in the run's partial blocks become -inf, which exp turns into exact zeros.
// In sequence order a row's flags come in whole runs from the rule; a permuted part evaluates
// its (few) partial blocks at the keys' positions through its order, padding never allowed.
// s: [nq, run.nk]
template <class T>
void mask_scores(const BlockMask& m, const KeyRun& run, int64_t x0, Tile<T>& s, uint8_t* ok) {
  const int64_t* pos = m.order ? m.order->pos.data() : nullptr;
  const int64_t* kpos = m.order ? m.key_order()->pos.data() : nullptr;
  for (int64_t e = run.e; e < run.e_end; ++e) {
    if (m.full[e]) continue;
    const int64_t c0 = int64_t(m.col[e]) * m.block - run.j0;
    const int64_t bw = std::min<int64_t>(run.nk - c0, m.block);
    for (int64_t r = 0; r < s.rows(); ++r) {
      T* row = &s(r, c0);
      if (pos) {
        m.rule.row_at(pos[x0 + r], kpos + run.j0 + c0, bw, ok);
      } else {
        m.rule.row(x0 + r, run.j0 + c0, bw, ok);
      }
      for (int64_t c = 0; c < bw; ++c) row[c] = ok[c] ? row[c] : kNegInf<T>;
    }
  }
}

template <class T>
struct ForwardTiles {
  TileBuf<T> qs, s, acc, kg, vg;
  std::vector<T> m, l;
  std::vector<uint8_t> ok;
  ForwardTiles(int64_t bs, int64_t D)
      : qs(bs, D), s(bs, max_run_keys(bs)), acc(bs, D), kg(max_run_keys(bs), D),
        vg(max_run_keys(bs), D), m(bs), l(bs), ok(bs) {}
};

// One query block of one part for one (sample, head). The first part writes its rows; later
// parts merge theirs: out = (e^{lse₀} out₀ + e^{lse₁} out₁) / (e^{lse₀} + e^{lse₁}).
// qh, oh: [Tq, D] (this head)  kh, vh: [Tk, D] (its kv head)  lh: [Tq]
template <class T>
void forward_block(const BlockMask& m, bool merge, int64_t qb, const T* qh, const T* kh,
                   const T* vh, T* oh, T* lh, T scale, int64_t D, ForwardTiles<T>& w) {
  const int64_t* pos = m.order ? m.order->pos.data() : nullptr;
  const int64_t* kpos = m.order ? m.key_order()->pos.data() : nullptr;
  const int64_t x0 = qb * m.block, nq = std::min<int64_t>(m.n_q, x0 + m.block) - x0;
  // Scaling q once per block is cheaper than scaling every score tile.
  Tile<T> qs = w.qs.view(nq, D), acc = w.acc.view(nq, D);
  if (pos)
    gather_rows(qh, pos, x0, D, scale, qs);
  else
    qs = scale * CMat<T>(qh + x0 * D, nq, D);
  acc.setZero();
  std::fill(w.m.begin(), w.m.begin() + nq, kNegInf<T>);
  std::fill(w.l.begin(), w.l.begin() + nq, T(0));

  // FlashAttention-2: per query row the running max m, running sum l and unnormalised output
  // acc; acc is rescaled once per tile and divided by l once at the end.
  auto tile = [&](const KeyRun& run, const auto& kt, const auto& vt) {
    Tile<T> sc = w.s.view(nq, run.nk);
    sc.noalias() = qs * kt.transpose();
    mask_scores(m, run, x0, sc, w.ok.data());
    for (int64_t r = 0; r < nq; ++r) {
      auto row = sc.row(r).array();
      const T m_new = std::max(w.m[r], row.maxCoeff());
      if (m_new == kNegInf<T>) {  // nothing allowed in this row yet: contributes nothing
        row.setZero();
        continue;
      }
      const T alpha = std::exp(w.m[r] - m_new);  // 0 on the row's first allowed tile
      row = (row - m_new).exp();
      w.l[r] = alpha * w.l[r] + sum(&sc(r, 0), run.nk);
      w.m[r] = m_new;
      if (alpha != T(1)) acc.row(r) *= alpha;
    }
    acc.noalias() += sc * vt;
  };
  const int64_t row_end = m.row_ptr[qb + 1];
  for (int64_t e = m.row_ptr[qb]; e < row_end;) {
    const KeyRun run = next_run(m, e, row_end);
    e = run.e_end;
    if (pos) {
      Tile<T> kt = w.kg.view(run.nk, D), vt = w.vg.view(run.nk, D);
      gather_rows(kh, kpos, run.j0, D, T(1), kt);
      gather_rows(vh, kpos, run.j0, D, T(1), vt);
      tile(run, kt, vt);
    } else {
      tile(run, CMat<T>(kh + run.j0 * D, run.nk, D), CMat<T>(vh + run.j0 * D, run.nk, D));
    }
  }

  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = pos ? pos[x0 + r] : x0 + r;
    if (i < 0) continue;
    Mat<T> o(oh + i * D, 1, D);
    const T lse_new = w.l[r] > T(0) ? w.m[r] + std::log(w.l[r]) : kNegInf<T>;
    if (!merge || lh[i] == kNegInf<T>) {
      if (lse_new == kNegInf<T>)
        o.setZero();
      else
        o = acc.row(r) * (T(1) / w.l[r]);
      lh[i] = lse_new;
    } else if (lse_new != kNegInf<T>) {
      const T top = std::max(lh[i], lse_new);
      const T a = std::exp(lh[i] - top), b = std::exp(lse_new - top);
      o = (a * o + (b / w.l[r]) * acc.row(r)) * (T(1) / (a + b));
      lh[i] = top + std::log(a + b);
    }
  }
}

template <class T>
struct BackwardTiles {
  TileBuf<T> qs, dog, p, ds, dqa, kg, vg, dkg, dvg;
  std::vector<T> dsum, lse;
  std::vector<uint8_t> ok;
  BackwardTiles(int64_t bs, int64_t D)
      : qs(bs, D), dog(bs, D), p(bs, max_run_keys(bs)), ds(bs, max_run_keys(bs)), dqa(bs, D),
        kg(max_run_keys(bs), D), vg(max_run_keys(bs), D), dkg(max_run_keys(bs), D),
        dvg(max_run_keys(bs), D), dsum(bs), lse(bs), ok(bs) {}
};

// One query block of one part for one (sample, head): adds its share of dk and dv, and writes
// (first part) or adds (later parts) its rows of dq. Per tile: P = exp(S − lse),
// dV += Pᵀ dO, dS = P ∘ (dO Vᵀ − D) with D = rowsum(dO ∘ O), dQ += dS K, dK += dSᵀ (scale · Q);
// dQ takes its scale once per block.
// qh, oh, doh, dqh: [Tq, D]  kh, vh, dkh, dvh: [Tk, D]  lh: [Tq]
template <class T>
void backward_block(const BlockMask& m, bool accumulate_dq, int64_t qb, const T* qh,
                    const T* kh, const T* vh, const T* oh, const T* lh, const T* doh, T* dqh,
                    T* dkh, T* dvh, T scale, int64_t D, BackwardTiles<T>& w) {
  const int64_t* pos = m.order ? m.order->pos.data() : nullptr;
  const int64_t* kpos = m.order ? m.key_order()->pos.data() : nullptr;
  const int64_t x0 = qb * m.block, nq = std::min<int64_t>(m.n_q, x0 + m.block) - x0;
  Tile<T> qs = w.qs.view(nq, D), dqa = w.dqa.view(nq, D), dog = w.dog.view(nq, D);
  if (pos) {
    gather_rows(qh, pos, x0, D, scale, qs);
    gather_rows(doh, pos, x0, D, T(1), dog);
  } else {
    qs = scale * CMat<T>(qh + x0 * D, nq, D);
    dog = CMat<T>(doh + x0 * D, nq, D);
  }
  const Tile<T>& dO = dog;
  dqa.setZero();
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = pos ? pos[x0 + r] : x0 + r;
    // a padding row, or a row with no allowed key, has no gradient
    w.lse[r] = i >= 0 ? lh[i] : kNegInf<T>;
    w.dsum[r] = i >= 0 ? dot(oh + i * D, doh + i * D, D) : T(0);
  }

  auto tile = [&](const KeyRun& run, const auto& kt, const auto& vt, auto&& dk_rows,
                  auto&& dv_rows) {
    const int64_t nk = run.nk;
    Tile<T> p = w.p.view(nq, nk), ds = w.ds.view(nq, nk);
    p.noalias() = qs * kt.transpose();
    mask_scores(m, run, x0, p, w.ok.data());
    for (int64_t r = 0; r < nq; ++r) {
      if (w.lse[r] == kNegInf<T>)
        p.row(r).setZero();
      else
        p.row(r).array() = (p.row(r).array() - w.lse[r]).exp();
    }
    dv_rows(p.transpose() * dO);
    ds.noalias() = dO * vt.transpose();
    for (int64_t r = 0; r < nq; ++r)
      ds.row(r).array() = p.row(r).array() * (ds.row(r).array() - w.dsum[r]);
    dqa.noalias() += ds * kt;
    dk_rows(ds.transpose() * qs);
  };
  const int64_t row_end = m.row_ptr[qb + 1];
  for (int64_t e = m.row_ptr[qb]; e < row_end;) {
    const KeyRun run = next_run(m, e, row_end);
    e = run.e_end;
    const int64_t j0 = run.j0, nk = run.nk;
    if (pos) {
      Tile<T> kt = w.kg.view(nk, D), vt = w.vg.view(nk, D);
      Tile<T> dkt = w.dkg.view(nk, D), dvt = w.dvg.view(nk, D);
      gather_rows(kh, kpos, j0, D, T(1), kt);
      gather_rows(vh, kpos, j0, D, T(1), vt);
      tile(
          run, kt, vt, [&](const auto& x) { dkt.noalias() = x; },
          [&](const auto& x) { dvt.noalias() = x; });
      scatter_add_rows<T>(dkt, kpos, j0, dkh);
      scatter_add_rows<T>(dvt, kpos, j0, dvh);
    } else {
      Mat<T> dk_all(dkh, m.n_k, D), dv_all(dvh, m.n_k, D);
      tile(
          run, CMat<T>(kh + j0 * D, nk, D), CMat<T>(vh + j0 * D, nk, D),
          [&](const auto& x) { dk_all.middleRows(j0, nk).noalias() += x; },
          [&](const auto& x) { dv_all.middleRows(j0, nk).noalias() += x; });
    }
  }
  if (!pos && !accumulate_dq) {
    Mat<T>(dqh + x0 * D, nq, D) = scale * dqa;
    return;
  }
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = pos ? pos[x0 + r] : x0 + r;
    if (i < 0) continue;
    if (accumulate_dq)
      Mat<T>(dqh + i * D, 1, D) += scale * dqa.row(r);
    else
      Mat<T>(dqh + i * D, 1, D) = scale * dqa.row(r);
  }
}

}  // namespace

// Part by part, a thread takes one (batch, head, query block) at a time; the parts run one
// after another, so a later part merges into rows the earlier ones have finished.
template <class T>
void flash_forward(const AttnShape& s, const MaskSet& masks, const T* q, const T* k, const T* v,
                   T* out, T* lse, T scale) {
  check_args(s, masks);
  const int64_t D = s.D, bs = masks.masks[0].block;
  const std::vector<int64_t> nqb = query_blocks_per_part(masks);
#pragma omp parallel
  {
    ForwardTiles<T> w(bs, D);
    for (int64_t p = 0; p < int64_t(nqb.size()); ++p) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t u = 0; u < s.B * s.H * nqb[p]; ++u) {
        const int64_t bh = u / nqb[p], qb = u % nqb[p], b = bh / s.H, h = bh % s.H;
        const BlockMask* m = masks.get(b, h).part(p);
        if (!m || qb >= m->n_qblocks()) continue;
        const int64_t kvh = b * s.Hkv + h / s.group();
        forward_block(*m, p > 0, qb, q + bh * s.Tq * D, k + kvh * s.Tk * D, v + kvh * s.Tk * D,
                      out + bh * s.Tq * D, lse + bh * s.Tq, scale, D, w);
      }
    }
  }
}

// A thread takes one (batch, kv head) at a time: it owns those dk and dv rows and the dq rows
// of every query head in the group (each with its own mask), so gradients accumulate without
// atomics and in an order that does not depend on the thread count.
template <class T>
void flash_backward(const AttnShape& s, const MaskSet& masks, const T* q, const T* k, const T* v,
                    const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv, T scale) {
  check_args(s, masks);
  const int64_t D = s.D, bs = masks.masks[0].block;
#pragma omp parallel
  {
    BackwardTiles<T> w(bs, D);
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < s.B * s.Hkv; ++u) {
      const T* kh = k + u * s.Tk * D;
      const T* vh = v + u * s.Tk * D;
      T* dkh = dk + u * s.Tk * D;
      T* dvh = dv + u * s.Tk * D;
      Mat<T>(dkh, s.Tk, D).setZero();
      Mat<T>(dvh, s.Tk, D).setZero();
      const int64_t b = u / s.Hkv, h_first = (u % s.Hkv) * s.group();
      for (int64_t h = h_first; h < h_first + s.group(); ++h) {
        const BlockMask& mask = masks.get(b, h);
        const int64_t off = (b * s.H + h) * s.Tq;
        for (int64_t p = 0; p <= int64_t(mask.parts.size()); ++p) {
          const BlockMask& m = *mask.part(p);
          for (int64_t qb = 0; qb < m.n_qblocks(); ++qb)
            backward_block(m, p > 0, qb, q + off * D, kh, vh, out + off * D, lse + off,
                           dout + off * D, dq + off * D, dkh, dvh, scale, D, w);
        }
      }
    }
  }
}

template void flash_forward<float>(const AttnShape&, const MaskSet&, const float*, const float*,
                                   const float*, float*, float*, float);
template void flash_forward<double>(const AttnShape&, const MaskSet&, const double*,
                                    const double*, const double*, double*, double*, double);
template void flash_backward<float>(const AttnShape&, const MaskSet&, const float*, const float*,
                                    const float*, const float*, const float*, const float*, float*,
                                    float*, float*, float);
template void flash_backward<double>(const AttnShape&, const MaskSet&, const double*,
                                     const double*, const double*, const double*, const double*,
                                     const double*, double*, double*, double*, double);

}  // namespace longctx::attn

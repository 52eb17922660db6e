#include "attention/flash.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <new>
#include <vector>

#include "attention/tile.h"
#include "core/error.h"

namespace longctx::attn {

namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Mat = Eigen::Map<RowMat<T>>;
template <class T>
using CMat = Eigen::Map<const RowMat<T>>;

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

void check_args(const AttnShape& s, const BlockMask& mask) {
  LONGCTX_CHECK(s.B > 0 && s.H > 0 && s.Hkv > 0 && s.D > 0, "flash: bad shape B=", s.B, " H=", s.H,
                " Hkv=", s.Hkv, " D=", s.D);
  LONGCTX_CHECK(s.H % s.Hkv == 0, "flash: n_kv_head ", s.Hkv, " does not divide n_head ", s.H);
  LONGCTX_CHECK(mask.n_q == s.Tq && mask.n_k == s.Tk, "flash: mask is ", mask.n_q, "x", mask.n_k,
                " but the shape has Tq=", s.Tq, " Tk=", s.Tk);
  LONGCTX_CHECK(mask.block > 0 && int64_t(mask.row_ptr.size()) == mask.n_qblocks() + 1 &&
                    mask.col.size() == mask.full.size(),
                "flash: malformed mask (block ", mask.block, ", ", mask.row_ptr.size(),
                " row offsets for ", mask.n_qblocks(), " query blocks, ", mask.col.size(),
                " blocks, ", mask.full.size(), " full flags)");
}

// Consecutive key blocks of one mask row, evaluated as one tile of keys [j0, j0 + nk): wider
// tiles make wider products, which Eigen runs closer to its GEMM rate than 64 × 64 ones.
struct KeyRun {
  int64_t e, e_end, j0, nk;
};

// Up to this many keys per tile; with 64-row query blocks one thread's tiles stay in L2.
int64_t max_run_keys(int64_t block) { return std::max<int64_t>(block, 256); }

KeyRun next_run(const BlockMask& m, int64_t e, int64_t row_end) {
  const int64_t max_blocks = max_run_keys(m.block) / m.block;
  int64_t e_end = e + 1;
  while (e_end < row_end && e_end - e < max_blocks && m.col[e_end] == m.col[e_end - 1] + 1) ++e_end;
  const int64_t j0 = int64_t(m.col[e]) * m.block;
  const int64_t j1 = std::min(m.n_k, (int64_t(m.col[e_end - 1]) + 1) * m.block);
  return {e, e_end, j0, j1 - j0};
}

// s = qs kᵀ over the run's keys; in its partial blocks, disallowed scores become -inf, which
// exp turns into exact zeros.  qs: [nq, D]  kh: [Tk, D]  s: [nq, run.nk]
template <class T>
void scores(const BlockMask& m, const KeyRun& run, int64_t i0, const Tile<T>& qs, const T* kh,
            Tile<T>& s) {
  const int64_t D = qs.cols();
  s.noalias() = qs * CMat<T>(kh + run.j0 * D, run.nk, D).transpose();
  for (int64_t e = run.e; e < run.e_end; ++e) {
    if (m.full[e]) continue;
    const int64_t c0 = int64_t(m.col[e]) * m.block - run.j0;
    const int64_t c1 = std::min(run.nk, c0 + m.block);
    for (int64_t r = 0; r < s.rows(); ++r)
      for (int64_t c = c0; c < c1; ++c)
        if (!m.rule.allowed(i0 + r, run.j0 + c)) s(r, c) = kNegInf<T>;
  }
}

}  // namespace

// A thread takes one (batch, head, query block) at a time and walks its row of the mask,
// keeping per query row the running max m, running sum l and unnormalised output acc
// (FlashAttention-2: rescale acc once per tile, divide by l once at the end).
// q, out: [B, H, Tq, D]  k, v: [B, Hkv, Tk, D]  lse: [B, H, Tq]
template <class T>
void flash_forward(const AttnShape& s, const BlockMask& mask, const T* q, const T* k, const T* v,
                   T* out, T* lse, T scale) {
  check_args(s, mask);
  const int64_t D = s.D, bs = mask.block, nqb = mask.n_qblocks();
  const int64_t units = s.B * s.H * nqb;
#pragma omp parallel
  {
    TileBuf<T> qs_buf(bs, D), s_buf(bs, max_run_keys(bs)), acc_buf(bs, D);
    std::vector<T> m(bs), l(bs);
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < units; ++u) {
      const int64_t bh = u / nqb, qb = u % nqb, b = bh / s.H, h = bh % s.H;
      const int64_t kvh = b * s.Hkv + h / s.group();
      const int64_t i0 = qb * bs, nq = std::min(s.Tq, i0 + bs) - i0;
      const int64_t row0 = bh * s.Tq + i0;
      const T* kh = k + kvh * s.Tk * D;
      const T* vh = v + kvh * s.Tk * D;

      // Scaling q once per block is cheaper than scaling every score tile.
      Tile<T> qs = qs_buf.view(nq, D), acc = acc_buf.view(nq, D);
      qs = scale * CMat<T>(q + row0 * D, nq, D);
      acc.setZero();
      std::fill(m.begin(), m.begin() + nq, kNegInf<T>);
      std::fill(l.begin(), l.begin() + nq, T(0));

      const int64_t row_end = mask.row_ptr[qb + 1];
      for (int64_t e = mask.row_ptr[qb]; e < row_end;) {
        const KeyRun run = next_run(mask, e, row_end);
        e = run.e_end;
        Tile<T> sc = s_buf.view(nq, run.nk);
        scores(mask, run, i0, qs, kh, sc);
        for (int64_t r = 0; r < nq; ++r) {
          auto row = sc.row(r).array();
          const T m_new = std::max(m[r], row.maxCoeff());
          if (m_new == kNegInf<T>) {  // nothing allowed in this row yet: contributes nothing
            row.setZero();
            continue;
          }
          const T alpha = std::exp(m[r] - m_new);  // 0 on the row's first allowed tile
          row = (row - m_new).exp();
          l[r] = alpha * l[r] + sum(&sc(r, 0), run.nk);
          m[r] = m_new;
          if (alpha != T(1)) acc.row(r) *= alpha;
        }
        acc.noalias() += sc * CMat<T>(vh + run.j0 * D, run.nk, D);
      }

      Mat<T> o(out + row0 * D, nq, D);
      for (int64_t r = 0; r < nq; ++r) {
        if (l[r] > T(0)) {
          o.row(r) = acc.row(r) * (T(1) / l[r]);
          lse[row0 + r] = m[r] + std::log(l[r]);
        } else {
          o.row(r).setZero();
          lse[row0 + r] = kNegInf<T>;
        }
      }
    }
  }
}

// A thread takes one (batch, kv head) at a time: it owns those dk and dv rows and the dq rows
// of every query head in the group, so gradients accumulate without atomics and in an order
// that does not depend on the thread count. Per tile: P = exp(S − lse), dV += Pᵀ dO,
// dS = P ∘ (dO Vᵀ − D) with D = rowsum(dO ∘ O), dQ += dS K, dK += dSᵀ (scale · Q); dQ takes
// its scale once per block.
// q, out, dout, dq: [B, H, Tq, D]  k, v, dk, dv: [B, Hkv, Tk, D]  lse: [B, H, Tq]
template <class T>
void flash_backward(const AttnShape& s, const BlockMask& mask, const T* q, const T* k, const T* v,
                    const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv, T scale) {
  check_args(s, mask);
  const int64_t D = s.D, bs = mask.block, nqb = mask.n_qblocks();
  const int64_t units = s.B * s.Hkv;
#pragma omp parallel
  {
    TileBuf<T> qs_buf(bs, D), p_buf(bs, max_run_keys(bs)), ds_buf(bs, max_run_keys(bs)),
        dqa_buf(bs, D);
    std::vector<T> dsum(bs);
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < units; ++u) {
      const T* kh = k + u * s.Tk * D;
      const T* vh = v + u * s.Tk * D;
      Mat<T> dkh(dk + u * s.Tk * D, s.Tk, D), dvh(dv + u * s.Tk * D, s.Tk, D);
      dkh.setZero();
      dvh.setZero();
      const int64_t b = u / s.Hkv, h_first = (u % s.Hkv) * s.group();
      for (int64_t h = h_first; h < h_first + s.group(); ++h) {
        const int64_t bh = b * s.H + h;
        for (int64_t qb = 0; qb < nqb; ++qb) {
          const int64_t i0 = qb * bs, nq = std::min(s.Tq, i0 + bs) - i0;
          const int64_t row0 = bh * s.Tq + i0;
          Tile<T> qs = qs_buf.view(nq, D), dqa = dqa_buf.view(nq, D);
          qs = scale * CMat<T>(q + row0 * D, nq, D);
          dqa.setZero();
          const CMat<T> dO(dout + row0 * D, nq, D);
          for (int64_t r = 0; r < nq; ++r)
            dsum[r] = dot(out + (row0 + r) * D, dout + (row0 + r) * D, D);
          const T* lse_q = lse + row0;

          const int64_t row_end = mask.row_ptr[qb + 1];
          for (int64_t e = mask.row_ptr[qb]; e < row_end;) {
            const KeyRun run = next_run(mask, e, row_end);
            e = run.e_end;
            const int64_t j0 = run.j0, nk = run.nk;
            const CMat<T> kt(kh + j0 * D, nk, D), vt(vh + j0 * D, nk, D);
            Tile<T> p = p_buf.view(nq, nk), ds = ds_buf.view(nq, nk);
            scores(mask, run, i0, qs, kh, p);
            for (int64_t r = 0; r < nq; ++r) {
              if (lse_q[r] == kNegInf<T>)  // a row with no allowed key has no gradient
                p.row(r).setZero();
              else
                p.row(r).array() = (p.row(r).array() - lse_q[r]).exp();
            }
            dvh.middleRows(j0, nk).noalias() += p.transpose() * dO;
            ds.noalias() = dO * vt.transpose();
            for (int64_t r = 0; r < nq; ++r)
              ds.row(r).array() = p.row(r).array() * (ds.row(r).array() - dsum[r]);
            dqa.noalias() += ds * kt;
            dkh.middleRows(j0, nk).noalias() += ds.transpose() * qs;
          }
          Mat<T>(dq + row0 * D, nq, D) = scale * dqa;
        }
      }
    }
  }
}

template void flash_forward<float>(const AttnShape&, const BlockMask&, const float*, const float*,
                                   const float*, float*, float*, float);
template void flash_forward<double>(const AttnShape&, const BlockMask&, const double*,
                                    const double*, const double*, double*, double*, double);
template void flash_backward<float>(const AttnShape&, const BlockMask&, const float*, const float*,
                                    const float*, const float*, const float*, const float*, float*,
                                    float*, float*, float);
template void flash_backward<double>(const AttnShape&, const BlockMask&, const double*,
                                     const double*, const double*, const double*, const double*,
                                     const double*, double*, double*, double*, double);

}  // namespace longctx::attn

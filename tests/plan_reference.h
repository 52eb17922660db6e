// Float64 attention that reads nothing but a MaskPlan's views (host pointers), computing what
// the GPU kernels must: per part in order, per (sample b, head h) the views of mask
// b · b_stride + h · h_stride; query index x is row q_rows[x] (or x), key index y row k_rows[y]
// (or y), -1 padding; a listed block allows all of its scores (bits index -1) or those of its
// bitmask. Forward writes each row's softmax and logsumexp, later parts merging into the rows
// through the logsumexp; backward takes D = rowsum(dO ∘ O) of the merged output and adds every
// part's dq over the query lists and its dk, dv over the key lists (the pass over key blocks).
// Query head h reads kv head h / (H / Hkv).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "attention/attn_shape.h"
#include "attention/mask_plan.h"

namespace longctx::test {

// The part p of (b, h)'s mask among `views` (MaskPlan::views of `plan`).
inline const attn::PartView& plan_part(const attn::MaskPlan& plan,
                                       const std::vector<attn::PartView>& views, int64_t b,
                                       int64_t h, int64_t p) {
  return views[size_t((b * plan.b_stride + h * plan.h_stride) * plan.n_parts + p)];
}

// Calls f(r, i, j) for each score that block (qb, kb) of the part allows, bits being the
// entry's bitmask index: r the query's place in its block, i and j the query and key rows.
template <class F>
void for_each_allowed(const attn::PartView& v, int64_t qb, int64_t kb, int32_t bits, F&& f) {
  constexpr int64_t bs = attn::kPlanBlock;
  for (int64_t r = 0; r < bs && qb * bs + r < v.n_q; ++r) {
    const int64_t x = qb * bs + r, i = v.q_rows ? v.q_rows[x] : x;
    if (i < 0) continue;
    const uint64_t word = bits < 0 ? ~uint64_t(0) : v.bits[bs * int64_t(bits) + r];
    for (int64_t c = 0; c < bs && kb * bs + c < v.n_k; ++c) {
      const int64_t y = kb * bs + c, j = v.k_rows ? v.k_rows[y] : y;
      if (j >= 0 && (word >> c & 1)) f(r, i, j);
    }
  }
}

inline double dot_rows(const double* a, const double* b, int64_t D) {
  double s = 0;
  for (int64_t d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}

// out, lse as attn::flash_forward: a row no part lets see any key gets out = 0, lse = -inf.
// q, out: [B, H, Tq, D]  k, v: [B, Hkv, Tk, D]  lse: [B, H, Tq]
inline void plan_forward(const attn::AttnShape& s, const attn::MaskPlan& plan, const double* q,
                         const double* k, const double* v, double* out, double* lse, double scale) {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  const std::vector<attn::PartView> views = plan.views(plan.ints.data(), plan.words.data());
  const int64_t D = s.D;
  std::fill(out, out + s.B * s.H * s.Tq * D, 0.0);
  std::fill(lse, lse + s.B * s.H * s.Tq, kNegInf);
  // Scores (key row, scaled q·k) of each query of one block.
  std::vector<std::vector<std::pair<int64_t, double>>> scores(attn::kPlanBlock);
  std::vector<int64_t> row_of(attn::kPlanBlock);
  std::vector<double> o_new(size_t(D), 0.0);
  for (int64_t p = 0; p < plan.n_parts; ++p)
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.H; ++h) {
        const attn::PartView& pv = plan_part(plan, views, b, h, p);
        const int64_t bh = b * s.H + h, kvh = b * s.Hkv + h / s.group();
        const double *qh = q + bh * s.Tq * D, *kh = k + kvh * s.Tk * D, *vh = v + kvh * s.Tk * D;
        double *oh = out + bh * s.Tq * D, *lh = lse + bh * s.Tq;
        for (int64_t qb = 0; qb < pv.n_qb; ++qb) {
          for (auto& row : scores) row.clear();
          for (int64_t e = pv.q_ptr[qb]; e < pv.q_ptr[qb + 1]; ++e)
            for_each_allowed(
                pv, qb, pv.q_col[e], pv.q_bits[e], [&](int64_t r, int64_t i, int64_t j) {
                  row_of[r] = i;
                  scores[r].emplace_back(j, scale * dot_rows(qh + i * D, kh + j * D, D));
                });
          for (int64_t r = 0; r < attn::kPlanBlock; ++r) {
            if (scores[r].empty()) continue;  // nothing allowed: the row keeps what it has
            double top = kNegInf, sum = 0;
            for (const auto& [j, sc] : scores[r]) top = std::max(top, sc);
            for (const auto& [j, sc] : scores[r]) sum += std::exp(sc - top);
            const double l_new = top + std::log(sum);
            std::fill(o_new.begin(), o_new.end(), 0.0);
            for (const auto& [j, sc] : scores[r])
              for (int64_t d = 0; d < D; ++d) o_new[d] += std::exp(sc - l_new) * vh[j * D + d];
            const int64_t i = row_of[r];
            double* o = oh + i * D;
            if (lh[i] == kNegInf) {
              std::copy(o_new.begin(), o_new.end(), o);
              lh[i] = l_new;
            } else {
              const double m = std::max(lh[i], l_new);
              const double a = std::exp(lh[i] - m), c = std::exp(l_new - m);
              for (int64_t d = 0; d < D; ++d) o[d] = (a * o[d] + c * o_new[d]) / (a + c);
              lh[i] = m + std::log(a + c);
            }
          }
        }
      }
}

// dq, dk, dv (overwritten) as attn::flash_backward, from the merged out and lse.
// q, out, dout, dq: [B, H, Tq, D]  k, v, dk, dv: [B, Hkv, Tk, D]  lse: [B, H, Tq]
inline void plan_backward(const attn::AttnShape& s, const attn::MaskPlan& plan, const double* q,
                          const double* k, const double* v, const double* out, const double* lse,
                          const double* dout, double* dq, double* dk, double* dv, double scale) {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  const std::vector<attn::PartView> views = plan.views(plan.ints.data(), plan.words.data());
  const int64_t D = s.D;
  std::fill(dq, dq + s.B * s.H * s.Tq * D, 0.0);
  std::fill(dk, dk + s.B * s.Hkv * s.Tk * D, 0.0);
  std::fill(dv, dv + s.B * s.Hkv * s.Tk * D, 0.0);
  std::vector<double> dsum(size_t(s.B * s.H * s.Tq));
  for (int64_t x = 0; x < s.B * s.H * s.Tq; ++x) dsum[x] = dot_rows(dout + x * D, out + x * D, D);
  for (int64_t p = 0; p < plan.n_parts; ++p)
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.H; ++h) {
        const attn::PartView& pv = plan_part(plan, views, b, h, p);
        const int64_t bh = b * s.H + h, kvh = b * s.Hkv + h / s.group();
        const double *qh = q + bh * s.Tq * D, *doh = dout + bh * s.Tq * D, *lh = lse + bh * s.Tq;
        const double *kh = k + kvh * s.Tk * D, *vh = v + kvh * s.Tk * D;
        const double* dsh = dsum.data() + bh * s.Tq;
        double *dqh = dq + bh * s.Tq * D, *dkh = dk + kvh * s.Tk * D, *dvh = dv + kvh * s.Tk * D;
        // P = exp(S − lse) and dS = P ∘ (dO Vᵀ − D) of one score; a row with lse = -inf saw no
        // key in any part, so none of its scores exists.
        auto probs = [&](int64_t i, int64_t j, double* P, double* dS) {
          if (lh[i] == kNegInf) return false;
          *P = std::exp(scale * dot_rows(qh + i * D, kh + j * D, D) - lh[i]);
          *dS = *P * (dot_rows(doh + i * D, vh + j * D, D) - dsh[i]);
          return true;
        };
        for (int64_t qb = 0; qb < pv.n_qb; ++qb)
          for (int64_t e = pv.q_ptr[qb]; e < pv.q_ptr[qb + 1]; ++e)
            for_each_allowed(pv, qb, pv.q_col[e], pv.q_bits[e], [&](int64_t, int64_t i, int64_t j) {
              double P, dS;
              if (!probs(i, j, &P, &dS)) return;
              for (int64_t d = 0; d < D; ++d) dqh[i * D + d] += scale * dS * kh[j * D + d];
            });
        for (int64_t kb = 0; kb < pv.n_kb; ++kb)
          for (int64_t e = pv.k_ptr[kb]; e < pv.k_ptr[kb + 1]; ++e)
            for_each_allowed(pv, pv.k_row[e], kb, pv.k_bits[e], [&](int64_t, int64_t i, int64_t j) {
              double P, dS;
              if (!probs(i, j, &P, &dS)) return;
              for (int64_t d = 0; d < D; ++d) {
                dvh[j * D + d] += P * doh[i * D + d];
                dkh[j * D + d] += scale * dS * qh[i * D + d];
              }
            });
      }
}

}  // namespace longctx::test

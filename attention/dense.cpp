#include "attention/dense.h"

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

void check_shape(const AttnShape& s) {
  LONGCTX_CHECK(s.B > 0 && s.H > 0 && s.Hkv > 0 && s.Tq > 0 && s.Tk > 0 && s.D > 0,
                "dense attention: bad shape B=", s.B, " H=", s.H, " Hkv=", s.Hkv, " Tq=", s.Tq,
                " Tk=", s.Tk, " D=", s.D);
  LONGCTX_CHECK(s.H % s.Hkv == 0, "dense attention: n_kv_head ", s.Hkv, " does not divide n_head ",
                s.H);
}

// In place: scores of one query row (already scaled) become probabilities; entries with ok 0 and
// rows with no allowed key become 0.  ok, row: [Tk]
template <class T>
void softmax_row(const uint8_t* ok, T* row, int64_t tk, TileBuf<T>& scratch) {
  for (int64_t j = 0; j < tk; ++j) row[j] = ok[j] ? row[j] : -std::numeric_limits<T>::infinity();
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> x(row, tk), e(scratch.data(), tk);
  const T mx = x.maxCoeff();
  if (mx == -std::numeric_limits<T>::infinity()) {
    x.setZero();
    return;
  }
  e = (x - mx).exp();
  x = e * (T(1) / sum(e.data(), tk));
}

}  // namespace

// Per (batch, head): P = softmax(scale · Q Kᵀ), out = P V, with P kept in `probs`.
// q, out: [B, H, Tq, D]  k, v: [B, Hkv, Tk, D]  probs: [B, H, Tq, Tk]
template <class T>
void dense_forward(const AttnShape& s, const MaskSet& masks, const T* q, const T* k, const T* v,
                   T* out, T* probs, T scale) {
  check_shape(s);
  masks.check(s, "dense attention");
  const int64_t D = s.D, Tq = s.Tq, Tk = s.Tk;
#pragma omp parallel
  {
    TileBuf<T> scratch(1, Tk);
    std::vector<uint8_t> ok(Tk);
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < s.B * s.H; ++bh) {
      const BlockMask& mask = masks.get(bh / s.H, bh % s.H);
      const int64_t kvh = (bh / s.H) * s.Hkv + (bh % s.H) / s.group();
      const CMat<T> qh(q + bh * Tq * D, Tq, D), kh(k + kvh * Tk * D, Tk, D),
          vh(v + kvh * Tk * D, Tk, D);
      Mat<T> p(probs + bh * Tq * Tk, Tq, Tk);
      p.noalias() = scale * (qh * kh.transpose());
      for (int64_t i = 0; i < Tq; ++i) {
        mask.allowed_row(i, ok.data());
        softmax_row(ok.data(), p.row(i).data(), Tk, scratch);
      }
      Mat<T>(out + bh * Tq * D, Tq, D).noalias() = p * vh;
    }
  }
}

// Per (batch, kv head), looping over the query heads that share it so that dk and dv sum over
// the group without atomics: dV += Pᵀ dO, dS = P ∘ (dO Vᵀ − rowsum(P ∘ dO Vᵀ)),
// dQ = scale · dS K, dK += scale · dSᵀ Q. dS is built in one [Tq, Tk] workspace per thread.
// q, dout, dq: [B, H, Tq, D]  k, v, dk, dv: [B, Hkv, Tk, D]  probs: [B, H, Tq, Tk]
template <class T>
void dense_backward(const AttnShape& s, const T* q, const T* k, const T* v, const T* probs,
                    const T* dout, T* dq, T* dk, T* dv, T scale) {
  check_shape(s);
  const int64_t D = s.D, Tq = s.Tq, Tk = s.Tk;
#pragma omp parallel
  {
    std::vector<T> ds_buf(Tq * Tk);
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < s.B * s.Hkv; ++u) {
      const CMat<T> kh(k + u * Tk * D, Tk, D), vh(v + u * Tk * D, Tk, D);
      Mat<T> dkh(dk + u * Tk * D, Tk, D), dvh(dv + u * Tk * D, Tk, D), ds(ds_buf.data(), Tq, Tk);
      dkh.setZero();
      dvh.setZero();
      const int64_t b = u / s.Hkv, h_first = (u % s.Hkv) * s.group();
      for (int64_t bh = b * s.H + h_first; bh < b * s.H + h_first + s.group(); ++bh) {
        const CMat<T> qh(q + bh * Tq * D, Tq, D), dO(dout + bh * Tq * D, Tq, D),
            p(probs + bh * Tq * Tk, Tq, Tk);
        dvh.noalias() += p.transpose() * dO;
        ds.noalias() = dO * vh.transpose();
        for (int64_t i = 0; i < Tq; ++i) {
          const T rowsum = dot(p.row(i).data(), ds.row(i).data(), Tk);
          ds.row(i).array() = p.row(i).array() * (ds.row(i).array() - rowsum);
        }
        Mat<T>(dq + bh * Tq * D, Tq, D).noalias() = scale * (ds * kh);
        dkh.noalias() += scale * (ds.transpose() * qh);
      }
    }
  }
}

template void dense_forward<float>(const AttnShape&, const MaskSet&, const float*, const float*,
                                   const float*, float*, float*, float);
template void dense_forward<double>(const AttnShape&, const MaskSet&, const double*, const double*,
                                    const double*, double*, double*, double);
template void dense_backward<float>(const AttnShape&, const float*, const float*, const float*,
                                    const float*, const float*, float*, float*, float*, float);
template void dense_backward<double>(const AttnShape&, const double*, const double*, const double*,
                                     const double*, const double*, double*, double*, double*,
                                     double);

}  // namespace longctx::attn

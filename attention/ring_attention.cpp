#include "attention/ring_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/flash.h"
#include "core/error.h"

namespace longctx::attn {

namespace {

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// log σ(x) without overflow on either side.
template <class T>
T log_sigmoid(T x) {
  return x >= T(0) ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
}

// Merges a partial result (out_b, lse_b) into (out, lse), row by row.
// out, out_b: [rows, D]  lse, lse_b: [rows]
template <class T>
void merge_partial(int64_t rows, int64_t D, T* out, T* lse, const T* out_b, const T* lse_b) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T lb = lse_b[r], la = lse[r];
    if (lb == kNegInf<T>) continue;
    T* o = out + r * D;
    const T* ob = out_b + r * D;
    if (la == kNegInf<T>) {
      std::copy(ob, ob + D, o);
      lse[r] = lb;
      continue;
    }
    const T w = T(1) / (T(1) + std::exp(la - lb));  // σ(lb − la)
    for (int64_t d = 0; d < D; ++d) o[d] -= w * (o[d] - ob[d]);
    lse[r] = la - log_sigmoid(la - lb);
  }
}

void check_local(Comm& comm, const RingPlan& plan, const AttnShape& s) {
  const SpLayout& l = plan.layout;
  LONGCTX_CHECK(comm.size() == l.sp && comm.rank() == plan.rank, "ring attention: plan for rank ",
                plan.rank, " of ", l.sp, " used on rank ", comm.rank(), " of ", comm.size());
  LONGCTX_CHECK(s.Tq == l.local_len() && s.Tk == l.local_len(),
                "ring attention: local lengths Tq=", s.Tq, " Tk=", s.Tk,
                " but the layout gives each rank ", l.local_len(), " rows");
}

int mod(int a, int m) { return (a % m + m) % m; }

}  // namespace

RingPlan make_ring_plan(Comm& comm, const SpLayout& layout, const MaskSet& masks) {
  LONGCTX_CHECK(comm.size() == layout.sp, "ring attention: communicator of ", comm.size(),
                " ranks for a layout over sp ", layout.sp);
  RingPlan plan;
  plan.layout = layout;
  plan.rank = comm.rank();
  const int sp = layout.sp, r = plan.rank;
  const HeldPositions mine = layout.held(r);
  std::vector<MaskSet> per_distance;
  std::vector<int64_t> need(size_t(sp), 0);
  for (int t = 0; t < sp; ++t) {
    per_distance.push_back(masks.restricted(mine, layout.held(mod(r - t, sp))));
    need[t] = per_distance.back().blocks_computed() > 0;
  }
  comm.all_reduce_sum(need.data(), sp);
  for (int t = 0; t < sp; ++t) {
    if (t > 0 && need[t] == 0) continue;
    plan.distances.push_back(t);
    plan.compute.push_back(per_distance[t].blocks_computed() > 0);
    plan.masks.push_back(std::move(per_distance[t]));
  }
  return plan;
}

// K/V of rank r − t arrive in theirs[2·nkv] (K, then V) while ours go to rank r + t: sent
// straight from k and v, so no copy of our own K/V is made.
template <class T>
void exchange_kv(Comm& comm, int t, int sp, int r, const T* k, const T* v, int64_t nkv, T* theirs) {
  comm.send_recv(k, nkv, mod(r + t, sp), theirs, nkv, mod(r - t, sp));
  comm.send_recv(v, nkv, mod(r + t, sp), theirs + nkv, nkv, mod(r - t, sp));
}

template <class T>
void add_into(T* dst, const T* src, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t x = 0; x < n; ++x) dst[x] += src[x];
}

template <class T>
void ring_forward(Comm& comm, const RingPlan& plan, const AttnShape& local, const T* q, const T* k,
                  const T* v, T* out, T* lse, T scale) {
  check_local(comm, plan, local);
  const int sp = plan.layout.sp, r = plan.rank;
  const int64_t nq = local.B * local.H * local.Tq * local.D,
                nkv = local.B * local.Hkv * local.Tk * local.D;
  const int64_t rows = local.B * local.H * local.Tq;
  std::vector<T> theirs, po, pl;
  if (plan.distances.size() > 1) {
    theirs.resize(static_cast<size_t>(2 * nkv));
    po.resize(static_cast<size_t>(nq));
    pl.resize(static_cast<size_t>(rows));
  }
  // Step 0 (our own keys, always first) writes out and lse directly; later steps merge.
  for (size_t i = 0; i < plan.distances.size(); ++i) {
    const int t = plan.distances[i];
    if (t == 0) {
      if (plan.compute[i]) {
        flash_forward(local, plan.masks[i], q, k, v, out, lse, scale);
      } else {
        std::fill(out, out + nq, T(0));
        std::fill(lse, lse + rows, kNegInf<T>);
      }
      continue;
    }
    exchange_kv(comm, t, sp, r, k, v, nkv, theirs.data());
    if (!plan.compute[i]) continue;
    flash_forward(local, plan.masks[i], q, theirs.data(), theirs.data() + nkv, po.data(),
                  pl.data(), scale);
    merge_partial(rows, local.D, out, lse, po.data(), pl.data());
  }
}

template <class T>
void ring_backward(Comm& comm, const RingPlan& plan, const AttnShape& local, const T* q, const T* k,
                   const T* v, const T* out, const T* lse, const T* dout, T* dq, T* dk, T* dv,
                   T scale) {
  check_local(comm, plan, local);
  const int sp = plan.layout.sp, r = plan.rank;
  const int64_t nq = local.B * local.H * local.Tq * local.D,
                nkv = local.B * local.Hkv * local.Tk * local.D;
  std::vector<T> theirs, dq_p, dkv_p, dkv_back;
  if (plan.distances.size() > 1) {
    theirs.resize(static_cast<size_t>(2 * nkv));
    dq_p.resize(static_cast<size_t>(nq));
    dkv_p.resize(static_cast<size_t>(2 * nkv));
    dkv_back.resize(static_cast<size_t>(2 * nkv));
  }
  for (size_t i = 0; i < plan.distances.size(); ++i) {
    const int t = plan.distances[i];
    if (t == 0) {  // our own keys: the gradients start here
      if (plan.compute[i]) {
        flash_backward(local, plan.masks[i], q, k, v, out, lse, dout, dq, dk, dv, scale);
      } else {
        std::fill(dq, dq + nq, T(0));
        std::fill(dk, dk + nkv, T(0));
        std::fill(dv, dv + nkv, T(0));
      }
      continue;
    }
    exchange_kv(comm, t, sp, r, k, v, nkv, theirs.data());
    if (plan.compute[i]) {
      flash_backward(local, plan.masks[i], q, theirs.data(), theirs.data() + nkv, out, lse, dout,
                     dq_p.data(), dkv_p.data(), dkv_p.data() + nkv, scale);
      add_into(dq, dq_p.data(), nq);
    } else {
      std::fill(dkv_p.begin(), dkv_p.end(), T(0));
    }
    // The keys' owner is rank r − t; rank r + t returns what it computed for ours.
    comm.send_recv(dkv_p.data(), 2 * nkv, mod(r - t, sp), dkv_back.data(), 2 * nkv, mod(r + t, sp));
    add_into(dk, dkv_back.data(), nkv);
    add_into(dv, dkv_back.data() + nkv, nkv);
  }
}

template void ring_forward<float>(Comm&, const RingPlan&, const AttnShape&, const float*,
                                  const float*, const float*, float*, float*, float);
template void ring_forward<double>(Comm&, const RingPlan&, const AttnShape&, const double*,
                                   const double*, const double*, double*, double*, double);
template void ring_backward<float>(Comm&, const RingPlan&, const AttnShape&, const float*,
                                   const float*, const float*, const float*, const float*,
                                   const float*, float*, float*, float*, float);
template void ring_backward<double>(Comm&, const RingPlan&, const AttnShape&, const double*,
                                    const double*, const double*, const double*, const double*,
                                    const double*, double*, double*, double*, double);

}  // namespace longctx::attn

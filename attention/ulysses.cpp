#include "attention/ulysses.h"

#include <algorithm>
#include <vector>

#include "attention/flash.h"
#include "core/error.h"

namespace longctx::attn {

namespace {

// Which heads each rank computes: query heads [s·Hl, (s+1)·Hl) and Hkvl kv heads for them.
struct HeadSplit {
  int64_t Hl = 0, Hkvl = 0, group = 1;
  enum { exact, one_copy, copy_per_head } kv_mode = exact;

  // Each rank's query heads cover whole kv groups: every rank gets Hkv/sp kv heads, no copies.
  static bool exact_split(int64_t H, int64_t Hkv, int sp) {
    return H % sp == 0 && Hkv > 0 && H % Hkv == 0 && (H / sp) % (H / Hkv) == 0;
  }

  HeadSplit(const AttnShape& s, int sp) {
    LONGCTX_CHECK(s.H % sp == 0, "ulysses: n_head ", s.H, " is not divisible by sp ", sp,
                  "; use sp_mode: ring, or an sp that divides n_head");
    LONGCTX_CHECK(s.Hkv > 0 && s.H % s.Hkv == 0, "ulysses: n_kv_head ", s.Hkv,
                  " does not divide n_head ", s.H);
    Hl = s.H / sp;
    group = s.H / s.Hkv;
    if (exact_split(s.H, s.Hkv, sp)) {
      Hkvl = Hl / group;
    } else if (group % Hl == 0) {  // all of a rank's heads share one kv head
      kv_mode = one_copy;
      Hkvl = 1;
    } else {  // a rank's heads straddle two groups: one kv copy per query head
      kv_mode = copy_per_head;
      Hkvl = Hl;
    }
  }
  // Rank s's local head c as a head of the full tensor (kv: a kv head).
  int64_t head(int s, int64_t c, bool kv) const {
    if (!kv) return s * Hl + c;
    switch (kv_mode) {
      case exact:
        return s * Hkvl + c;
      case one_copy:
        return s * Hl / group;
      default:
        return (s * Hl + c) / group;
    }
  }
};

// One tensor moved by an exchange. Sequence side: [B, Hs, Tl, W] (every head, this rank's rows);
// head side: [B, n, T, W] (this rank's n heads, every row). `from` is read, `to` written.
template <class T>
struct Slab {
  const T* from;
  T* to;
  int64_t Hs, n, W;
  bool kv;
};

template <class T>
int64_t block_count(const std::vector<Slab<T>>& slabs, int64_t B, int64_t Tl) {
  int64_t per = 0;
  for (const Slab<T>& sl : slabs) per += B * sl.n * Tl * sl.W;
  return per;
}

// Sequence side -> head side: block s of the all-to-all carries rank s's heads of my rows.
template <class T>
void to_heads(Comm& comm, const SpLayout& l, const HeadSplit& hs, int64_t B,
              const std::vector<Slab<T>>& slabs) {
  const int64_t Tl = l.local_len(), per = block_count(slabs, B, Tl);
  std::vector<T> send(size_t(per * l.sp)), recv(size_t(per * l.sp));
  for (int s = 0; s < l.sp; ++s) {
    T* p = send.data() + s * per;
    for (const Slab<T>& sl : slabs)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < sl.n; ++c) {
          const T* src = sl.from + (b * sl.Hs + hs.head(s, c, sl.kv)) * Tl * sl.W;
          p = std::copy(src, src + Tl * sl.W, p);
        }
  }
  comm.all_to_all(send.data(), recv.data(), per);
  for (int s = 0; s < l.sp; ++s) {
    const T* p = recv.data() + s * per;
    const auto ranges = l.ranges(s);
    for (const Slab<T>& sl : slabs)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < sl.n; ++c) {
          T* dst = sl.to + (b * sl.n + c) * l.T * sl.W;
          for (const auto& [a, e] : ranges) {
            std::copy(p, p + (e - a) * sl.W, dst + a * sl.W);
            p += (e - a) * sl.W;
          }
        }
  }
}

// Head side -> sequence side, summing where several ranks hold copies of one head (replicated
// kv heads); ranks are added in order, so the sums do not depend on timing.
template <class T>
void to_sequence(Comm& comm, const SpLayout& l, const HeadSplit& hs, int64_t B,
                 const std::vector<Slab<T>>& slabs) {
  const int64_t Tl = l.local_len(), per = block_count(slabs, B, Tl);
  std::vector<T> send(size_t(per * l.sp)), recv(size_t(per * l.sp));
  for (int s = 0; s < l.sp; ++s) {
    T* p = send.data() + s * per;
    const auto ranges = l.ranges(s);
    for (const Slab<T>& sl : slabs)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < sl.n; ++c) {
          const T* src = sl.from + (b * sl.n + c) * l.T * sl.W;
          for (const auto& [a, e] : ranges) p = std::copy(src + a * sl.W, src + e * sl.W, p);
        }
  }
  comm.all_to_all(send.data(), recv.data(), per);
  for (const Slab<T>& sl : slabs) std::fill(sl.to, sl.to + B * sl.Hs * Tl * sl.W, T(0));
  for (int s = 0; s < l.sp; ++s) {
    const T* p = recv.data() + s * per;
    for (const Slab<T>& sl : slabs)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < sl.n; ++c) {
          T* dst = sl.to + (b * sl.Hs + hs.head(s, c, sl.kv)) * Tl * sl.W;
          for (int64_t x = 0; x < Tl * sl.W; ++x) dst[x] += p[x];
          p += Tl * sl.W;
        }
  }
}

// The masks of this rank's heads; masks shared by the heads are used as they are, not copied.
const MaskSet& my_heads(const MaskSet& masks, int64_t B, int64_t h0, int64_t n, MaskSet& sub) {
  if (masks.h_stride == 0) return masks;
  sub = masks.heads(B, h0, n);
  return sub;
}

void check_local(Comm& comm, const SpLayout& l, const AttnShape& s) {
  LONGCTX_CHECK(comm.size() == l.sp, "ulysses: communicator of ", comm.size(),
                " ranks for a layout over sp ", l.sp);
  LONGCTX_CHECK(s.Tq == l.local_len() && s.Tk == l.local_len(), "ulysses: local lengths Tq=", s.Tq,
                " Tk=", s.Tk, " but the layout gives each rank ", l.local_len(), " rows");
}

}  // namespace

template <class T>
void ulysses_forward(Comm& comm, const SpLayout& layout, const AttnShape& local,
                     const MaskSet& masks, const T* q, const T* k, const T* v, T* out, T* lse,
                     T scale) {
  check_local(comm, layout, local);
  const HeadSplit hs(local, layout.sp);
  const int64_t B = local.B, T_ = layout.T, D = local.D;
  const AttnShape s{B, hs.Hl, hs.Hkvl, T_, T_, D};
  std::vector<T> qh(size_t(B * hs.Hl * T_ * D)), kh(size_t(B * hs.Hkvl * T_ * D)), vh(kh.size()),
      oh(qh.size()), lh(size_t(B * hs.Hl * T_));
  to_heads<T>(comm, layout, hs, B,
              {{q, qh.data(), local.H, hs.Hl, D, false},
               {k, kh.data(), local.Hkv, hs.Hkvl, D, true},
               {v, vh.data(), local.Hkv, hs.Hkvl, D, true}});
  MaskSet sub;
  const MaskSet& mine = my_heads(masks, B, comm.rank() * hs.Hl, hs.Hl, sub);
  flash_forward(s, mine, qh.data(), kh.data(), vh.data(), oh.data(), lh.data(), scale);
  to_sequence<T>(
      comm, layout, hs, B,
      {{oh.data(), out, local.H, hs.Hl, D, false}, {lh.data(), lse, local.H, hs.Hl, 1, false}});
}

template <class T>
void ulysses_backward(Comm& comm, const SpLayout& layout, const AttnShape& local,
                      const MaskSet& masks, const T* q, const T* k, const T* v, const T* out,
                      const T* lse, const T* dout, T* dq, T* dk, T* dv, T scale) {
  check_local(comm, layout, local);
  const HeadSplit hs(local, layout.sp);
  const int64_t B = local.B, T_ = layout.T, D = local.D;
  const AttnShape s{B, hs.Hl, hs.Hkvl, T_, T_, D};
  const size_t nq = size_t(B * hs.Hl * T_ * D), nkv = size_t(B * hs.Hkvl * T_ * D);
  std::vector<T> qh(nq), oh(nq), doh(nq), dqh(nq), lh(size_t(B * hs.Hl * T_));
  std::vector<T> kh(nkv), vh(nkv), dkh(nkv), dvh(nkv);
  to_heads<T>(comm, layout, hs, B,
              {{q, qh.data(), local.H, hs.Hl, D, false},
               {out, oh.data(), local.H, hs.Hl, D, false},
               {dout, doh.data(), local.H, hs.Hl, D, false},
               {lse, lh.data(), local.H, hs.Hl, 1, false},
               {k, kh.data(), local.Hkv, hs.Hkvl, D, true},
               {v, vh.data(), local.Hkv, hs.Hkvl, D, true}});
  MaskSet sub;
  const MaskSet& mine = my_heads(masks, B, comm.rank() * hs.Hl, hs.Hl, sub);
  flash_backward(s, mine, qh.data(), kh.data(), vh.data(), oh.data(), lh.data(), doh.data(),
                 dqh.data(), dkh.data(), dvh.data(), scale);
  to_sequence<T>(comm, layout, hs, B,
                 {{dqh.data(), dq, local.H, hs.Hl, D, false},
                  {dkh.data(), dk, local.Hkv, hs.Hkvl, D, true},
                  {dvh.data(), dv, local.Hkv, hs.Hkvl, D, true}});
}

bool ulysses_keeps_head_layout(int64_t n_head, int64_t n_kv_head, int sp) {
  return HeadSplit::exact_split(n_head, n_kv_head, sp);
}

template <class T>
void ulysses_forward_kept(Comm& comm, const SpLayout& layout, const AttnShape& local,
                          const MaskSet& masks, T* q, T* k, T* v, T* out_local, T* out_heads,
                          T* lse_heads, T scale) {
  check_local(comm, layout, local);
  const HeadSplit hs(local, layout.sp);
  LONGCTX_CHECK(hs.kv_mode == HeadSplit::exact, "ulysses: kv heads are replicated (n_kv_head ",
                local.Hkv, ", sp ", layout.sp, "); the head layout cannot replace the local one");
  const int64_t B = local.B, D = local.D;
  // In place: to_heads packs every source before it writes any destination.
  to_heads<T>(comm, layout, hs, B,
              {{q, q, local.H, hs.Hl, D, false},
               {k, k, local.Hkv, hs.Hkvl, D, true},
               {v, v, local.Hkv, hs.Hkvl, D, true}});
  MaskSet sub;
  const MaskSet& mine = my_heads(masks, B, comm.rank() * hs.Hl, hs.Hl, sub);
  const AttnShape s{B, hs.Hl, hs.Hkvl, layout.T, layout.T, D};
  flash_forward(s, mine, q, k, v, out_heads, lse_heads, scale);
  to_sequence<T>(comm, layout, hs, B, {{out_heads, out_local, local.H, hs.Hl, D, false}});
}

template <class T>
void ulysses_backward_kept(Comm& comm, const SpLayout& layout, const AttnShape& local,
                           const MaskSet& masks, const T* q_heads, const T* k_heads,
                           const T* v_heads, const T* out_heads, const T* lse_heads,
                           const T* dout, T* dq, T* dk, T* dv, T scale) {
  check_local(comm, layout, local);
  const HeadSplit hs(local, layout.sp);
  const int64_t B = local.B, T_ = layout.T, D = local.D;
  const AttnShape s{B, hs.Hl, hs.Hkvl, T_, T_, D};
  const size_t nq = size_t(B * hs.Hl * T_ * D), nkv = size_t(B * hs.Hkvl * T_ * D);
  std::vector<T> doh(nq), dqh(nq), dkh(nkv), dvh(nkv);
  to_heads<T>(comm, layout, hs, B, {{dout, doh.data(), local.H, hs.Hl, D, false}});
  MaskSet sub;
  const MaskSet& mine = my_heads(masks, B, comm.rank() * hs.Hl, hs.Hl, sub);
  flash_backward(s, mine, q_heads, k_heads, v_heads, out_heads, lse_heads, doh.data(), dqh.data(),
                 dkh.data(), dvh.data(), scale);
  to_sequence<T>(comm, layout, hs, B,
                 {{dqh.data(), dq, local.H, hs.Hl, D, false},
                  {dkh.data(), dk, local.Hkv, hs.Hkvl, D, true},
                  {dvh.data(), dv, local.Hkv, hs.Hkvl, D, true}});
}

template void ulysses_forward_kept<float>(Comm&, const SpLayout&, const AttnShape&, const MaskSet&,
                                          float*, float*, float*, float*, float*, float*, float);
template void ulysses_forward_kept<double>(Comm&, const SpLayout&, const AttnShape&,
                                           const MaskSet&, double*, double*, double*, double*,
                                           double*, double*, double);
template void ulysses_backward_kept<float>(Comm&, const SpLayout&, const AttnShape&,
                                           const MaskSet&, const float*, const float*,
                                           const float*, const float*, const float*, const float*,
                                           float*, float*, float*, float);
template void ulysses_backward_kept<double>(Comm&, const SpLayout&, const AttnShape&,
                                            const MaskSet&, const double*, const double*,
                                            const double*, const double*, const double*,
                                            const double*, double*, double*, double*, double);

template void ulysses_forward<float>(Comm&, const SpLayout&, const AttnShape&, const MaskSet&,
                                     const float*, const float*, const float*, float*, float*,
                                     float);
template void ulysses_forward<double>(Comm&, const SpLayout&, const AttnShape&, const MaskSet&,
                                      const double*, const double*, const double*, double*, double*,
                                      double);
template void ulysses_backward<float>(Comm&, const SpLayout&, const AttnShape&, const MaskSet&,
                                      const float*, const float*, const float*, const float*,
                                      const float*, const float*, float*, float*, float*, float);
template void ulysses_backward<double>(Comm&, const SpLayout&, const AttnShape&, const MaskSet&,
                                       const double*, const double*, const double*, const double*,
                                       const double*, const double*, double*, double*, double*,
                                       double);

}  // namespace longctx::attn

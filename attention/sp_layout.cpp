#include "attention/sp_layout.h"

#include <algorithm>

#include "core/error.h"

namespace longctx::attn {

SpLayout SpLayout::make(SpLayoutKind kind, int64_t T, int sp) {
  LONGCTX_CHECK(sp >= 1, "sequence parallel: sp must be >= 1, got ", sp);
  const int64_t pieces = kind == SpLayoutKind::zigzag ? 2 * int64_t(sp) : sp;
  LONGCTX_CHECK(T > 0 && T % pieces == 0, "sequence parallel (", sp_layout_name(kind),
                "): sequence length ", T, " must be a positive multiple of ", pieces,
                kind == SpLayoutKind::zigzag ? " (2·sp)" : " (sp)");
  return SpLayout{kind, T, sp};
}

std::vector<std::pair<int64_t, int64_t>> SpLayout::ranges(int r) const {
  LONGCTX_CHECK(r >= 0 && r < sp, "sequence parallel: rank ", r, " outside [0, ", sp, ")");
  if (kind == SpLayoutKind::contiguous) return {{r * local_len(), (r + 1) * local_len()}};
  const int64_t c = T / (2 * sp), a = r, b = 2 * int64_t(sp) - 1 - r;
  return {{a * c, (a + 1) * c}, {b * c, (b + 1) * c}};
}

const char* sp_layout_name(SpLayoutKind kind) {
  return kind == SpLayoutKind::zigzag ? "zigzag" : "contiguous";
}

template <class T>
void sp_take_local(const SpLayout& l, int r, const T* full, T* local, int64_t BH, int64_t W) {
  const auto rs = l.ranges(r);
  const int64_t Tl = l.local_len();
  for (int64_t bh = 0; bh < BH; ++bh) {
    T* dst = local + bh * Tl * W;
    for (const auto& [a, b] : rs) {
      std::copy(full + (bh * l.T + a) * W, full + (bh * l.T + b) * W, dst);
      dst += (b - a) * W;
    }
  }
}

template void sp_take_local<float>(const SpLayout&, int, const float*, float*, int64_t, int64_t);
template void sp_take_local<double>(const SpLayout&, int, const double*, double*, int64_t, int64_t);

}  // namespace longctx::attn

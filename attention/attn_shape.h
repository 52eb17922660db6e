#pragma once
#include <cstdint>

namespace longctx::attn {

// Layout of the attention core's operands, all contiguous row-major:
//   q, out, dq, dout: [B, H, Tq, D]     k, v, dk, dv: [B, Hkv, Tk, D]     lse: [B, H, Tq]
// Query head h reads K/V head h / (H / Hkv) (MHA: Hkv == H).
struct AttnShape {
  int64_t B = 1, H = 1, Hkv = 1, Tq = 1, Tk = 1, D = 64;
  int64_t group() const { return H / Hkv; }
};

}  // namespace longctx::attn

// Tensor-core FlashAttention (bf16 operands, fp32 accumulation) over a MaskPlan's block lists:
// the kernels and the host-side orchestration that runs them, templated on a launcher so that
// the same code runs on the GPU (attention/flash_tc_cuda.cu) and, compiled as host C++ with
// LONGCTX_KERNEL_EMU, under CPU emulation in the tests. Kernel code uses only core/warp_ops.cuh.
//
// Work split (FlashAttention-2): 128 threads = 4 warps per 64 × 64 tile, each warp owning 16
// rows (query rows in the forward and dQ passes, key rows in the dK/dV pass); mma.m16n8k16 with
// the head dim padded to DP ∈ {64, 128, 256} (zeros in shared memory past D, never written
// back). Tiles live in shared memory as 32-bit words, two bf16 each: a row-major copy
// (row stride DP + 8 bf16, which puts the 8 rows × 4 words a fragment load touches in 32
// different banks) serves operands whose fragment pairs run along the head dim, a transposed
// copy (row stride 64 + 8) operands whose pairs run along the rows, since without ldmatrix.trans
// a fragment word must be two adjacent elements in memory.
#pragma once
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>

#include "attention/attn_shape.h"
#include "attention/mask_plan.h"
#include "core/error.h"
#include "core/warp_ops.cuh"

#if defined(LONGCTX_KERNEL_EMU)
#define LC_UNROLL
#else
#define LC_UNROLL _Pragma("unroll")
#endif

// The kernels compile twice, for the GPU and as host C++ under emulation, and one binary may
// hold both (an emulation test linked with the CUDA build's library): an inline namespace per
// build keeps the GPU kernels' host stubs and the emulated kernels from sharing symbols.
#if defined(LONGCTX_KERNEL_EMU)
#define LONGCTX_TC_BUILD emulated
#else
#define LONGCTX_TC_BUILD device
#endif

namespace longctx::cuda::tc {
inline namespace LONGCTX_TC_BUILD {

using bf16 = __nv_bfloat16;

inline constexpr int kThreads = 128;              // 4 warps
inline constexpr int kBlock = attn::kPlanBlock;   // rows of a tile, on both sides
inline constexpr int kTWords = (kBlock + 8) / 2;  // a transposed tile's row stride, in words
static_assert(kBlock == 64, "a bitmask row is one uint64 and 4 warps own 16 rows each");
inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;
inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// A row-major tile of 64 rows × DP head dims: row stride in words, k16 steps along the head.
template <int DP>
struct RowTile {
  static constexpr int kWords = (DP + 8) / 2;
  static constexpr int kSteps = DP / 16;
  static constexpr int kSize = kBlock * kWords;
};

// The accumulators' column slice: at most 128 head dims per block (DP = 256 runs two blocks per
// tile, each owning one half of the gradient columns), so that the fp32 accumulators of one
// warp fit in registers.
template <int DP>
inline constexpr int kSlice = DP > 128 ? 128 : DP;

// 8 bf16 (16 bytes): the unit in which tiles move from global to shared memory, read and
// written in place (may_alias: it views memory that holds bf16 or uint32 words). Rows start
// 16-byte aligned: D is a multiple of 8 and the tensors are checked to be aligned.
struct __attribute__((may_alias, aligned(16))) Words4 {
  uint32_t w[4];
};

LC_DEV Words4 load8(const bf16* src) { return *reinterpret_cast<const Words4*>(src); }

LC_DEV void store8(uint32_t* dst, const Words4& x) { *reinterpret_cast<Words4*>(dst) = x; }

LC_DEV float bf16_lo(uint32_t w) {
  const uint32_t u = w << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

LC_DEV float bf16_hi(uint32_t w) {
  const uint32_t u = w & 0xffff0000u;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// A 32-bit word over bf16 memory.
typedef uint32_t __attribute__((may_alias)) Word;

// Two adjacent elements (4-byte aligned: the column is even and D a multiple of 8).
LC_DEV void store_pair(bf16* p, float x0, float x1) {
  *reinterpret_cast<Word*>(p) = wo::pack_bf16x2(x0, x1);
}

// Row of the head's tensor at index idx of a part; -1 for padding and past the index space.
LC_DEV int64_t row_at(const int32_t* rows, int64_t idx, int64_t n) {
  if (idx >= n) return -1;
  return rows ? rows[idx] : idx;
}

// dst = rows x0 .. x0 + 63 of src [*, D] (through the part's row map), zero for padding, past
// the index space's end n and past D.
template <int DP>
LC_DEV void stage_rows(uint32_t* dst, const bf16* src, const int32_t* rows, int64_t x0, int64_t n,
                       int D) {
  constexpr int kChunks = DP / 8;
  for (int x = wo::thread_x(); x < kBlock * kChunks; x += kThreads) {
    const int r = x / kChunks, c = x % kChunks;
    const int64_t row = row_at(rows, x0 + r, n);
    Words4 w{};
    if (row >= 0 && c * 8 < D) w = load8(src + row * D + c * 8);
    store8(dst + r * RowTile<DP>::kWords + c * 4, w);
  }
}

// dst row d (d < DC, stride kTWords) = head dim c0 + d of the same 64 rows, word j holding rows
// 2j (low half) and 2j + 1. A warp writes 32 consecutive words of one row: no bank conflicts.
template <int DC>
LC_DEV void stage_transposed(uint32_t* dst, const bf16* src, const int32_t* rows, int64_t x0,
                             int64_t n, int D, int c0) {
  constexpr int kPairs = kBlock / 2, kChunks = DC / 8;
  for (int x = wo::thread_x(); x < kPairs * kChunks; x += kThreads) {
    const int j = x % kPairs, c = x / kPairs, d0 = c0 + c * 8;
    const int64_t ra = row_at(rows, x0 + 2 * j, n), rb = row_at(rows, x0 + 2 * j + 1, n);
    Words4 a{}, b{};
    if (d0 < D) {
      if (ra >= 0) a = load8(src + ra * D + d0);
      if (rb >= 0) b = load8(src + rb * D + d0);
    }
    uint32_t* col = dst + c * 8 * kTWords + j;
    for (int i = 0; i < 4; ++i) {
      col[2 * i * kTWords] = (a.w[i] & 0xffffu) | (b.w[i] << 16);
      col[(2 * i + 1) * kTWords] = (a.w[i] >> 16) | (b.w[i] & 0xffff0000u);
    }
  }
}

// The A fragment of rows row0 .. row0 + 15, k-step ks, of a tile whose rows hold the k pairs.
LC_DEV void load_a(uint32_t a[4], const uint32_t* tile, int row_words, int row0, int ks) {
  const int lane = wo::lane_id();
  const uint32_t* p = tile + (row0 + (lane >> 2)) * row_words + ks * 8 + (lane & 3);
  a[0] = p[0];
  a[1] = p[8 * row_words];
  a[2] = p[4];
  a[3] = p[8 * row_words + 4];
}

// The B fragment of columns n0 .. n0 + 7, k-step ks, from a tile whose row n holds column n's
// k pairs (B = tileᵀ).
LC_DEV void load_b(uint32_t b[2], const uint32_t* tile, int row_words, int n0, int ks) {
  const int lane = wo::lane_id();
  const uint32_t* p = tile + (n0 + (lane >> 2)) * row_words + ks * 8 + (lane & 3);
  b[0] = p[0];
  b[1] = p[4];
}

// The k16 A fragment j of a 16 × 64 accumulator held as 8 n8 C fragments (rounded to bf16):
// C's thread layout (rows g, g + 8; columns 2t, 2t + 1) is A's for two adjacent n-tiles.
LC_DEV void c_to_a(uint32_t a[4], const float (&c)[8][4], int j) {
  a[0] = wo::pack_bf16x2(c[2 * j][0], c[2 * j][1]);
  a[1] = wo::pack_bf16x2(c[2 * j][2], c[2 * j][3]);
  a[2] = wo::pack_bf16x2(c[2 * j + 1][0], c[2 * j + 1][1]);
  a[3] = wo::pack_bf16x2(c[2 * j + 1][2], c[2 * j + 1][3]);
}

// acc[n] += A·Bᵀ for the 8 n-tiles of k-step ks: A the fragment given, B from a tile whose row n
// holds column n's k pairs.
LC_DEV void mma_8n(float (&acc)[8][4], const uint32_t (&a)[4], const uint32_t* b_tile,
                   int b_row_words, int ks) {
  LC_UNROLL
  for (int n = 0; n < 8; ++n) {
    uint32_t bf[2];
    load_b(bf, b_tile, b_row_words, 8 * n, ks);
    wo::mma_bf16_16816(acc[n], a, bf);
  }
}

// The scores of 16 × 64 rows: acc += A·Bᵀ, A rows row0 .. row0 + 15 of a_tile and B the 64 rows
// of b_tile (row-major tiles), over the k-steps below ks_end (those holding any dim < D).
template <int DP>
LC_DEV void mma_tile_8n(float (&acc)[8][4], const uint32_t* a_tile, int row0,
                        const uint32_t* b_tile, int ks_end) {
  constexpr int RW = RowTile<DP>::kWords;
  LC_UNROLL
  for (int ks = 0; ks < RowTile<DP>::kSteps; ++ks) {
    if (ks >= ks_end) break;
    uint32_t af[4];
    load_a(af, a_tile, RW, row0, ks);
    mma_8n(acc, af, b_tile, RW, ks);
  }
}

// The second product: acc[d] += P·B for the n-tiles d < nt_end of the column slice, P a 16 × 64
// accumulator (rounded to bf16 on the way to A fragments), B from a transposed tile whose row d
// holds head dim d of the 64 rows.
template <int NT>
LC_DEV void mma_p_times(float (&acc)[NT][4], const float (&p)[8][4], const uint32_t* bt_tile,
                        int nt_end) {
  LC_UNROLL
  for (int j = 0; j < 4; ++j) {
    uint32_t pa[4];
    c_to_a(pa, p, j);
    LC_UNROLL
    for (int d = 0; d < NT; ++d) {
      if (d >= nt_end) break;
      uint32_t bf[2];
      load_b(bf, bt_tile, kTWords, 8 * d, j);
      wo::mma_bf16_16816(acc[d], pa, bf);
    }
  }
}

// Over the 4 lanes of a quad (one accumulator row). Every lane of the warp must call these.
LC_DEV float quad_max(float x) {
  x = fmaxf(x, wo::shfl_xor(x, 1));
  return fmaxf(x, wo::shfl_xor(x, 2));
}

LC_DEV float quad_sum(float x) {
  x += wo::shfl_xor(x, 1);
  return x + wo::shfl_xor(x, 2);
}

// Allowed keys of a full block: all but those past the index space's end n_k.
LC_DEV uint64_t key_mask(int64_t keys_left) {
  return keys_left >= kBlock ? ~uint64_t(0) : (uint64_t(1) << keys_left) - 1;
}

// Allowed keys (bit c: key column c) of row r of block entry bi (-1: full) of key block kb.
LC_DEV uint64_t row_mask(const attn::PartView& pv, int bi, int kb, int r) {
  if (bi >= 0) return pv.bits[int64_t(bi) * kBlock + r];
  return key_mask(pv.n_k - int64_t(kb) * kBlock);
}

// A gradient pair at element i: added to the fp32 accumulator when there is one (several parts
// add up there, unscaled), else written as bf16 with its factor.
LC_DEV void store_grad(float* acc32, bf16* out, int64_t i, float x0, float x1, float factor) {
  if (acc32) {
    acc32[i] += x0;
    acc32[i + 1] += x1;
  } else {
    store_pair(out + i, factor * x0, factor * x1);
  }
}

// What every kernel of one call shares: the shape and the plan's views of one part.
struct Common {
  const attn::PartView* views = nullptr;
  int64_t n_parts = 1, b_stride = 0, h_stride = 0;
  int64_t H = 1, Hkv = 1, Tq = 1, Tk = 1;
  int D = 64;
  int part = 0;
  float scale = 1;       // softmax scale
  float scale_log2 = 1;  // scale · log2(e): scores go to the exp2 domain in one multiply

  LC_DEV attn::PartView view(int64_t b, int64_t h) const {
    return views[(b * b_stride + h * h_stride) * n_parts + part];
  }
};

struct FwdArgs {
  Common c;
  const bf16 *q, *k, *v;
  bf16* out;
  float* lse;
};

template <int DP>
struct FwdSmem {  // offsets in words
  static constexpr int kQ = 0, kK = kQ + RowTile<DP>::kSize, kVt = kK + RowTile<DP>::kSize;
  static constexpr size_t kBytes = size_t(kVt + DP * kTWords) * 4;
};

// One query block of one part for one (sample, head); grid (n_qb, H, B). Online softmax in the
// exp2 domain on the S fragments; each thread owns rows g and g + 8 of its warp's 16 and keeps
// a partial row sum over its columns (the quad's sum is taken once at the end). The first part
// writes out and lse, later parts merge into them as flash.cpp's forward_block.
template <int DP>
LC_KERNEL void LC_BOUNDS(kThreads) forward_kernel(FwdArgs a) {
  using L = FwdSmem<DP>;
  constexpr int RW = RowTile<DP>::kWords, KS = RowTile<DP>::kSteps, NT = DP / 8;
  // Q's fragments stay in registers unless they would crowd out the DP = 256 accumulator.
  constexpr bool kQRegs = DP <= 128;
  const Common& c = a.c;
  const int64_t qb = wo::block_x(), h = wo::block_y(), b = wo::block_z();
  const attn::PartView pv = c.view(b, h);
  if (qb >= pv.n_qb) return;
  uint32_t* smem = reinterpret_cast<uint32_t*>(wo::dynamic_smem());
  uint32_t *sq = smem + L::kQ, *sk = smem + L::kK, *svt = smem + L::kVt;
  const int D = c.D;
  const int64_t bh = b * c.H + h, kvh = b * c.Hkv + h / (c.H / c.Hkv);
  const bf16 *kh = a.k + kvh * c.Tk * D, *vh = a.v + kvh * c.Tk * D;
  stage_rows<DP>(sq, a.q + bh * c.Tq * D, pv.q_rows, qb * kBlock, pv.n_q, D);
  wo::sync_block();

  const int w = wo::warp_id(), lane = wo::lane_id(), g = lane >> 2, t = lane & 3;
  const int ks_end = (D + 15) / 16, nt_end = (D + 7) / 8;  // steps and tiles holding any dim < D
  uint32_t qa[kQRegs ? KS : 1][4];
  if constexpr (kQRegs) {
    LC_UNROLL
    for (int ks = 0; ks < KS; ++ks) load_a(qa[ks], sq, RW, 16 * w, ks);
  }
  float o[NT][4] = {};
  float m[2] = {kNegInf, kNegInf}, l[2] = {0.f, 0.f};
  const int e_end = pv.q_ptr[qb + 1];
  for (int e = pv.q_ptr[qb]; e < e_end; ++e) {
    const int kb = pv.q_col[e], bi = pv.q_bits[e];
    wo::sync_block();  // every warp is done with the previous block's K and V
    stage_rows<DP>(sk, kh, pv.k_rows, int64_t(kb) * kBlock, pv.n_k, D);
    stage_transposed<DP>(svt, vh, pv.k_rows, int64_t(kb) * kBlock, pv.n_k, D, 0);
    wo::sync_block();

    float s[8][4] = {};
    if constexpr (kQRegs) {
      LC_UNROLL
      for (int ks = 0; ks < KS; ++ks) {
        if (ks >= ks_end) break;
        mma_8n(s, qa[ks], sk, RW, ks);
      }
    } else {
      mma_tile_8n<DP>(s, sq, 16 * w, sk, ks_end);
    }
    const uint64_t allow[2] = {row_mask(pv, bi, kb, 16 * w + g),
                               row_mask(pv, bi, kb, 16 * w + g + 8)};
    float mx[2] = {m[0], m[1]};
    LC_UNROLL
    for (int n = 0; n < 8; ++n)
      for (int r = 0; r < 2; ++r)
        for (int j = 0; j < 2; ++j) {
          float& x = s[n][2 * r + j];
          x = ((allow[r] >> (8 * n + 2 * t + j)) & 1) ? x * c.scale_log2 : kNegInf;
          mx[r] = fmaxf(mx[r], x);
        }
    float base[2];
    LC_UNROLL
    for (int r = 0; r < 2; ++r) {
      mx[r] = quad_max(mx[r]);
      // A row with nothing allowed yet keeps m = -inf; exp2 against 0 then gives exact zeros
      // instead of exp2(-inf + inf) = NaN.
      base[r] = mx[r] == kNegInf ? 0.f : mx[r];
      const float alpha = exp2f(m[r] - base[r]);
      m[r] = mx[r];
      l[r] *= alpha;
      LC_UNROLL
      for (int d = 0; d < NT; ++d) {
        o[d][2 * r] *= alpha;
        o[d][2 * r + 1] *= alpha;
      }
    }
    LC_UNROLL
    for (int n = 0; n < 8; ++n)
      for (int r = 0; r < 2; ++r)
        for (int j = 0; j < 2; ++j) {
          float& x = s[n][2 * r + j];
          x = exp2f(x - base[r]);
          l[r] += x;
        }
    mma_p_times(o, s, svt, nt_end);
  }

  float* lh = a.lse + bh * c.Tq;
  bf16* oh = a.out + bh * c.Tq * D;
  int64_t rows[2];
  float lse_old[2];
  for (int r = 0; r < 2; ++r) {
    l[r] = quad_sum(l[r]);
    rows[r] = row_at(pv.q_rows, qb * kBlock + 16 * w + g + 8 * r, pv.n_q);
    lse_old[r] = c.part > 0 && rows[r] >= 0 ? lh[rows[r]] : kNegInf;
  }
  wo::sync_block();  // every lane of a quad has read lse before the quad's first lane writes it
  LC_UNROLL
  for (int r = 0; r < 2; ++r) {
    if (rows[r] < 0) continue;
    const float lse_new = l[r] > 0.f ? m[r] * kLn2 + logf(l[r]) : kNegInf;
    const bool merge = lse_old[r] != kNegInf;
    if (merge && lse_new == kNegInf) continue;  // this part adds nothing to the row
    // out = f_old · out + f_new · o
    float f_old = 0.f, f_new = lse_new == kNegInf ? 0.f : 1.f / l[r], lse_out = lse_new;
    if (merge) {
      const float top = fmaxf(lse_old[r], lse_new);
      const float ea = expf(lse_old[r] - top), eb = expf(lse_new - top);
      f_old = ea / (ea + eb);
      f_new = eb / (ea + eb) / l[r];
      lse_out = top + logf(ea + eb);
    }
    bf16* orow = oh + rows[r] * D;
    LC_UNROLL
    for (int d = 0; d < NT; ++d) {
      const int col = 8 * d + 2 * t;
      if (col >= D) break;
      float x0 = f_new * o[d][2 * r], x1 = f_new * o[d][2 * r + 1];
      if (merge) {
        x0 += f_old * __bfloat162float(orow[col]);
        x1 += f_old * __bfloat162float(orow[col + 1]);
      }
      store_pair(orow + col, x0, x1);
    }
    if (t == 0) lh[rows[r]] = lse_out;
  }
}

struct BwdArgs {
  Common c;
  const bf16 *q, *k, *v, *dout;
  const float* lse;
  const float* dsum;  // [B, H, Tq]: rowsum(dout ∘ out)
  // fp32 accumulators [B, H, Tq, D] / [B, Hkv, Tk, D] (unscaled sums over parts); null: the
  // kernel writes the bf16 gradient itself.
  float *dq32, *dk32, *dv32;
  bf16 *dq, *dk, *dv;
};

template <int DP, bool kDq>
struct DkdvSmem {  // offsets in words
  static constexpr int DC = kSlice<DP>;
  static constexpr int kBits = 0, kLse = kBits + 2 * kBlock, kDsum = kLse + kBlock;
  static constexpr int kK = kDsum + kBlock, kV = kK + RowTile<DP>::kSize;
  // dS (64 queries × 64 keys, transposed layout) reuses Q's rows once the scores are done.
  static constexpr int kQ = kV + RowTile<DP>::kSize, kDs = kQ;
  static constexpr int kDo = kQ + RowTile<DP>::kSize, kQt = kDo + RowTile<DP>::kSize;
  static constexpr int kDot = kQt + DC * kTWords, kKt = kDot + DC * kTWords;
  static constexpr size_t kBytes = size_t(kKt + (kDq ? DC * kTWords : 0)) * 4;
  static_assert(kBlock * kTWords <= RowTile<DP>::kSize, "dS fits in Q's rows");
};

// One key block of one part for one (sample, kv head) and one slice of gradient columns; grid
// (n_kb · DP / DC, Hkv, B). Loops over the group's query heads (each with its own mask) and the
// query blocks the transposed list gives; per warp (16 keys): Sᵀ = K_w Qᵀ,
// Pᵀ = exp2(Sᵀ · c − lse₂), dV_w += Pᵀ dO, dPᵀ = V_w dOᵀ, dSᵀ = Pᵀ ∘ (dPᵀ − D), dK_w += dSᵀ Q;
// with kDq also dQ += dS K through fp32 atomics. The rows it writes are the key block's rows in
// the first listed head's key order: heads sharing a kv head share each part's key order (a
// part's order comes from the pattern's stride or a rank's share of the sequence, never from
// the head), so no two blocks of one launch write the same row.
template <int DP, bool kDq>
LC_KERNEL void LC_BOUNDS(kThreads) dkdv_kernel(BwdArgs a) {
  using L = DkdvSmem<DP, kDq>;
  constexpr int DC = kSlice<DP>, NS = DP / DC, NT = DC / 8;
  const Common& c = a.c;
  const int kb = int(wo::block_x() / NS), c0 = int(wo::block_x() % NS) * DC;
  const int64_t hkv = wo::block_y(), b = wo::block_z(), group = c.H / c.Hkv;
  int64_t h_own = -1;
  for (int64_t h = hkv * group; h < (hkv + 1) * group && h_own < 0; ++h)
    if (kb < c.view(b, h).n_kb) h_own = h;
  if (h_own < 0) return;
  const attn::PartView own = c.view(b, h_own);
  uint32_t* smem = reinterpret_cast<uint32_t*>(wo::dynamic_smem());
  uint64_t* sbits = reinterpret_cast<uint64_t*>(smem + L::kBits);
  float* slse = reinterpret_cast<float*>(smem + L::kLse);
  float* sdsum = reinterpret_cast<float*>(smem + L::kDsum);
  uint32_t *sk = smem + L::kK, *sv = smem + L::kV, *sq = smem + L::kQ, *sds = smem + L::kDs;
  uint32_t *sdo = smem + L::kDo, *sqt = smem + L::kQt, *sdot = smem + L::kDot;
  uint32_t* skt = smem + L::kKt;
  const int D = c.D;
  const int64_t kv_off = (b * c.Hkv + hkv) * c.Tk * D, x0 = int64_t(kb) * kBlock;
  stage_rows<DP>(sk, a.k + kv_off, own.k_rows, x0, own.n_k, D);
  stage_rows<DP>(sv, a.v + kv_off, own.k_rows, x0, own.n_k, D);
  if constexpr (kDq) stage_transposed<DC>(skt, a.k + kv_off, own.k_rows, x0, own.n_k, D, c0);

  const int w = wo::warp_id(), lane = wo::lane_id(), g = lane >> 2, t = lane & 3;
  const int ks_end = (D + 15) / 16, nt_end = (D - c0 + 7) / 8;
  const int kr = 16 * w + g;  // this thread's key rows in the block: kr, kr + 8
  float dk[NT][4] = {}, dv[NT][4] = {};
  for (int64_t h = h_own; h < (hkv + 1) * group; ++h) {
    const attn::PartView pv = c.view(b, h);
    if (kb >= pv.n_kb) continue;
    const int64_t bh = b * c.H + h;
    const bf16 *qh = a.q + bh * c.Tq * D, *doh = a.dout + bh * c.Tq * D;
    const int e_end = pv.k_ptr[kb + 1];
    for (int e = pv.k_ptr[kb]; e < e_end; ++e) {
      const int qb = pv.k_row[e], bi = pv.k_bits[e];
      const int64_t q0 = int64_t(qb) * kBlock;
      wo::sync_block();  // every warp is done with the previous query block (and dS)
      stage_rows<DP>(sq, qh, pv.q_rows, q0, pv.n_q, D);
      stage_rows<DP>(sdo, doh, pv.q_rows, q0, pv.n_q, D);
      stage_transposed<DC>(sqt, qh, pv.q_rows, q0, pv.n_q, D, c0);
      stage_transposed<DC>(sdot, doh, pv.q_rows, q0, pv.n_q, D, c0);
      if (const int x = wo::thread_x(); x < kBlock) {
        const int64_t row = row_at(pv.q_rows, q0 + x, pv.n_q);
        slse[x] = row >= 0 ? a.lse[bh * c.Tq + row] * kLog2e : 0.f;
        sdsum[x] = row >= 0 ? a.dsum[bh * c.Tq + row] : 0.f;
        sbits[x] = row < 0 ? 0 : row_mask(pv, bi, kb, x);
      }
      wo::sync_block();

      float p[8][4] = {};  // Sᵀ, then Pᵀ
      mma_tile_8n<DP>(p, sk, 16 * w, sq, ks_end);
      LC_UNROLL
      for (int n = 0; n < 8; ++n)
        for (int j = 0; j < 2; ++j) {
          const int qc = 8 * n + 2 * t + j;
          const uint64_t word = sbits[qc];
          for (int r = 0; r < 2; ++r) {
            float& x = p[n][2 * r + j];
            x = ((word >> (kr + 8 * r)) & 1) ? exp2f(x * c.scale_log2 - slse[qc]) : 0.f;
          }
        }
      mma_p_times(dv, p, sdot, nt_end);
      float ds[8][4] = {};  // dPᵀ, then dSᵀ
      mma_tile_8n<DP>(ds, sv, 16 * w, sdo, ks_end);
      LC_UNROLL
      for (int n = 0; n < 8; ++n)
        for (int j = 0; j < 2; ++j) {
          const float dsum = sdsum[8 * n + 2 * t + j];
          for (int r = 0; r < 2; ++r)
            ds[n][2 * r + j] = p[n][2 * r + j] * (ds[n][2 * r + j] - dsum);
        }
      mma_p_times(dk, ds, sqt, nt_end);
      if constexpr (kDq) {
        wo::sync_block();  // every warp is done reading Q's rows, which dS overwrites
        // dS rows (queries) with adjacent keys in one word: lanes g and g ^ 1 hold adjacent
        // keys; the even one writes column 2t, the odd one column 2t + 1.
        const bool even = (g & 1) == 0;
        LC_UNROLL
        for (int n = 0; n < 8; ++n)
          for (int r = 0; r < 2; ++r) {
            const float mine0 = ds[n][2 * r], mine1 = ds[n][2 * r + 1];
            const float other = wo::shfl_xor(even ? mine1 : mine0, 4);
            const int word = (16 * w + 8 * r + (g & ~1)) / 2, qc = 8 * n + 2 * t;
            if (even)
              sds[qc * kTWords + word] = wo::pack_bf16x2(mine0, other);
            else
              sds[(qc + 1) * kTWords + word] = wo::pack_bf16x2(other, mine1);
          }
        wo::sync_block();
        // This warp's 16 query rows of dQ += dS K, columns c0 .. c0 + DC.
        uint32_t da[4][4];
        for (int j = 0; j < 4; ++j) load_a(da[j], sds, kTWords, 16 * w, j);
        int64_t qrow[2];
        for (int r = 0; r < 2; ++r) qrow[r] = row_at(pv.q_rows, q0 + 16 * w + g + 8 * r, pv.n_q);
        float* dqh = a.dq32 + bh * c.Tq * D;
        LC_UNROLL
        for (int d = 0; d < NT; ++d) {
          if (d >= nt_end) break;
          float acc[4] = {};
          for (int j = 0; j < 4; ++j) {
            uint32_t bf[2];
            load_b(bf, skt, kTWords, 8 * d, j);
            wo::mma_bf16_16816(acc, da[j], bf);
          }
          const int col = c0 + 8 * d + 2 * t;
          for (int r = 0; r < 2; ++r) {
            if (qrow[r] < 0) continue;
            wo::atomic_add(dqh + qrow[r] * D + col, acc[2 * r]);
            wo::atomic_add(dqh + qrow[r] * D + col + 1, acc[2 * r + 1]);
          }
        }
      }
    }
  }

  for (int r = 0; r < 2; ++r) {
    const int64_t row = row_at(own.k_rows, x0 + kr + 8 * r, own.n_k);
    if (row < 0) continue;
    LC_UNROLL
    for (int d = 0; d < NT; ++d) {
      const int col = c0 + 8 * d + 2 * t;
      if (col >= D) break;
      const int64_t i = kv_off + row * D + col;
      store_grad(a.dk32, a.dk, i, dk[d][2 * r], dk[d][2 * r + 1], c.scale);
      store_grad(a.dv32, a.dv, i, dv[d][2 * r], dv[d][2 * r + 1], 1.f);
    }
  }
}

template <int DP>
struct DqSmem {  // offsets in words
  static constexpr int kQ = 0, kDo = kQ + RowTile<DP>::kSize, kK = kDo + RowTile<DP>::kSize;
  static constexpr int kV = kK + RowTile<DP>::kSize, kKt = kV + RowTile<DP>::kSize;
  static constexpr size_t kBytes = size_t(kKt + kSlice<DP> * kTWords) * 4;
};

// The deterministic dQ pass: one query block of one part for one (sample, head) and one slice
// of columns; grid (n_qb · DP / DC, H, B). Per warp (16 queries) and key block: S = Q_w Kᵀ,
// P = exp2(S · c − lse₂), dP = dO_w Vᵀ, dS = P ∘ (dP − D), dQ_w += dS K.
template <int DP>
LC_KERNEL void LC_BOUNDS(kThreads) dq_kernel(BwdArgs a) {
  using L = DqSmem<DP>;
  constexpr int DC = kSlice<DP>, NS = DP / DC, NT = DC / 8;
  const Common& c = a.c;
  const int qb = int(wo::block_x() / NS), c0 = int(wo::block_x() % NS) * DC;
  const int64_t h = wo::block_y(), b = wo::block_z();
  const attn::PartView pv = c.view(b, h);
  if (qb >= pv.n_qb) return;
  uint32_t* smem = reinterpret_cast<uint32_t*>(wo::dynamic_smem());
  uint32_t *sq = smem + L::kQ, *sdo = smem + L::kDo, *sk = smem + L::kK, *sv = smem + L::kV;
  uint32_t* skt = smem + L::kKt;
  const int D = c.D;
  const int64_t bh = b * c.H + h, kv_off = (b * c.Hkv + h / (c.H / c.Hkv)) * c.Tk * D;
  const int64_t q0 = int64_t(qb) * kBlock;
  stage_rows<DP>(sq, a.q + bh * c.Tq * D, pv.q_rows, q0, pv.n_q, D);
  stage_rows<DP>(sdo, a.dout + bh * c.Tq * D, pv.q_rows, q0, pv.n_q, D);

  const int w = wo::warp_id(), lane = wo::lane_id(), g = lane >> 2, t = lane & 3;
  const int ks_end = (D + 15) / 16, nt_end = (D - c0 + 7) / 8;
  int64_t qrow[2];
  float lse2[2], dsum[2];
  for (int r = 0; r < 2; ++r) {
    qrow[r] = row_at(pv.q_rows, q0 + 16 * w + g + 8 * r, pv.n_q);
    lse2[r] = qrow[r] >= 0 ? a.lse[bh * c.Tq + qrow[r]] * kLog2e : 0.f;
    dsum[r] = qrow[r] >= 0 ? a.dsum[bh * c.Tq + qrow[r]] : 0.f;
  }
  float dq[NT][4] = {};
  const int e_end = pv.q_ptr[qb + 1];
  for (int e = pv.q_ptr[qb]; e < e_end; ++e) {
    const int kb = pv.q_col[e], bi = pv.q_bits[e];
    const int64_t x0 = int64_t(kb) * kBlock;
    wo::sync_block();  // every warp is done with the previous key block
    stage_rows<DP>(sk, a.k + kv_off, pv.k_rows, x0, pv.n_k, D);
    stage_rows<DP>(sv, a.v + kv_off, pv.k_rows, x0, pv.n_k, D);
    stage_transposed<DC>(skt, a.k + kv_off, pv.k_rows, x0, pv.n_k, D, c0);
    wo::sync_block();

    float p[8][4] = {}, ds[8][4] = {};  // S then P; dP then dS
    mma_tile_8n<DP>(p, sq, 16 * w, sk, ks_end);
    mma_tile_8n<DP>(ds, sdo, 16 * w, sv, ks_end);
    uint64_t allow[2];
    for (int r = 0; r < 2; ++r)
      allow[r] = qrow[r] < 0 ? 0 : row_mask(pv, bi, kb, 16 * w + g + 8 * r);
    LC_UNROLL
    for (int n = 0; n < 8; ++n)
      for (int r = 0; r < 2; ++r)
        for (int j = 0; j < 2; ++j) {
          const int i = 2 * r + j;
          const float pr = ((allow[r] >> (8 * n + 2 * t + j)) & 1)
                               ? exp2f(p[n][i] * c.scale_log2 - lse2[r])
                               : 0.f;
          ds[n][i] = pr * (ds[n][i] - dsum[r]);
        }
    mma_p_times(dq, ds, skt, nt_end);
  }

  for (int r = 0; r < 2; ++r) {
    if (qrow[r] < 0) continue;
    LC_UNROLL
    for (int d = 0; d < NT; ++d) {
      const int col = c0 + 8 * d + 2 * t;
      if (col >= D) break;
      store_grad(a.dq32, a.dq, (bh * c.Tq + qrow[r]) * D + col, dq[d][2 * r], dq[d][2 * r + 1],
                 c.scale);
    }
  }
}

// Small elementwise kernels; grid-stride over `n_blocks` blocks (the grid's width, which
// kernel code cannot query).
struct RowDotArgs {
  const bf16 *out, *dout;
  float* dsum;
  int64_t rows, n_blocks;
  int D;
};

// dsum[i] = Σ_d out[i, d] · dout[i, d]: one warp per row, lane l holding dims 8l .. 8l + 7.
LC_KERNEL void LC_BOUNDS(kThreads) row_dot_kernel(RowDotArgs a) {
  constexpr int kWarps = kThreads / 32;
  const int lane = wo::lane_id(), d0 = 8 * lane;
  for (int64_t row = int64_t(wo::block_x()) * kWarps + wo::warp_id(); row < a.rows;
       row += a.n_blocks * kWarps) {
    float s = 0.f;
    if (d0 < a.D) {
      const Words4 o = load8(a.out + row * a.D + d0), g = load8(a.dout + row * a.D + d0);
      for (int i = 0; i < 4; ++i)
        s += bf16_lo(o.w[i]) * bf16_lo(g.w[i]) + bf16_hi(o.w[i]) * bf16_hi(g.w[i]);
    }
    for (int m = 16; m >= 1; m /= 2) s += wo::shfl_xor(s, m);
    if (lane == 0) a.dsum[row] = s;
  }
}

struct FillArgs {
  float* dst;
  int64_t n, n_blocks;
};

LC_KERNEL void LC_BOUNDS(kThreads) zero_kernel(FillArgs a) {
  for (int64_t i = int64_t(wo::block_x()) * kThreads + wo::thread_x(); i < a.n;
       i += a.n_blocks * kThreads)
    a.dst[i] = 0.f;
}

struct ConvertArgs {
  const float* src;
  bf16* dst;
  float factor;
  int64_t n, n_blocks;
};

LC_KERNEL void LC_BOUNDS(kThreads) convert_kernel(ConvertArgs a) {
  for (int64_t i = int64_t(wo::block_x()) * kThreads + wo::thread_x(); i < a.n;
       i += a.n_blocks * kThreads)
    a.dst[i] = __float2bfloat16_rn(a.factor * a.src[i]);
}

// ---- Orchestration (host) ----
//
// A launcher is called as launch(name, kernel, grid, smem_bytes, args): it runs `kernel(args)`
// on a grid of blocks of kThreads threads with smem_bytes of dynamic shared memory, in order
// after every earlier launch.

// The plan as the kernels read it: device views on the GPU, host views under emulation.
struct PlanRef {
  const attn::PartView* views = nullptr;
  int64_t n_masks = 0, n_parts = 0, b_stride = 0, h_stride = 0, seq_q = 0, seq_k = 0;
  int32_t max_qb = 0, max_kb = 0;
};

// The head dim the kernels are instantiated for.
inline int padded_dim(int64_t D) { return D <= 64 ? 64 : D <= 128 ? 128 : 256; }

inline void check_call(const attn::AttnShape& s, const PlanRef& plan, const char* who,
                       std::initializer_list<const void*> tensors) {
  LONGCTX_CHECK(s.B > 0 && s.H > 0 && s.Hkv > 0 && s.Tq > 0 && s.Tk > 0, who, ": bad shape B=", s.B,
                " H=", s.H, " Hkv=", s.Hkv, " Tq=", s.Tq, " Tk=", s.Tk);
  LONGCTX_CHECK(s.B <= 65535 && s.H <= 65535, who, ": B=", s.B, " and H=", s.H,
                " must be at most 65535 (grid dimensions)");
  LONGCTX_CHECK(s.H % s.Hkv == 0, who, ": n_kv_head ", s.Hkv, " does not divide n_head ", s.H);
  LONGCTX_CHECK(s.D >= 8 && s.D <= 256 && s.D % 8 == 0, who, ": head size ", s.D,
                " must be a multiple of 8 in [8, 256]");
  LONGCTX_CHECK(plan.views && plan.n_parts > 0 && plan.max_qb > 0 && plan.max_kb > 0, who,
                ": empty mask plan (n_parts ", plan.n_parts, ", query blocks ", plan.max_qb,
                ", key blocks ", plan.max_kb, "); expected one built for this shape");
  // A plan for fewer samples or heads, or another length, would be read out of bounds.
  LONGCTX_CHECK((s.B - 1) * plan.b_stride + (s.H - 1) * plan.h_stride < plan.n_masks &&
                    plan.seq_q == s.Tq && plan.seq_k == s.Tk,
                who, ": the mask plan (", plan.n_masks, " masks, strides ", plan.b_stride, "/",
                plan.h_stride, ", ", plan.seq_q, " x ", plan.seq_k,
                " rows) was not built for B=", s.B, " H=", s.H, " Tq=", s.Tq, " Tk=", s.Tk);
  for (const void* p : tensors)
    LONGCTX_CHECK(p && reinterpret_cast<uintptr_t>(p) % 16 == 0, who, ": tensor at ", p,
                  " must be non-null and 16-byte aligned");
}

inline Common common_of(const attn::AttnShape& s, const PlanRef& plan, float scale) {
  Common c;
  c.views = plan.views;
  c.n_parts = plan.n_parts;
  c.b_stride = plan.b_stride;
  c.h_stride = plan.h_stride;
  c.H = s.H;
  c.Hkv = s.Hkv;
  c.Tq = s.Tq;
  c.Tk = s.Tk;
  c.D = int(s.D);
  c.scale = scale;
  c.scale_log2 = scale * kLog2e;
  return c;
}

// Blocks for a grid-stride kernel over n items, `per_block` each per round.
inline unsigned stride_blocks(int64_t n, int64_t per_block) {
  return unsigned(std::clamp<int64_t>((n + per_block - 1) / per_block, 1, 4096));
}

template <class Launch>
void zero_fill(const Launch& launch, float* dst, int64_t n) {
  const unsigned nb = stride_blocks(n, kThreads);
  launch("flash_tc zero", zero_kernel, wo::Dim3{nb, 1, 1}, 0, FillArgs{dst, n, nb});
}

template <class Launch>
void convert(const Launch& launch, const float* src, bf16* dst, float factor, int64_t n) {
  const unsigned nb = stride_blocks(n, kThreads);
  launch("flash_tc convert", convert_kernel, wo::Dim3{nb, 1, 1}, 0,
         ConvertArgs{src, dst, factor, n, nb});
}

template <int DP, class Launch>
void forward_dp(const Launch& launch, const attn::AttnShape& s, const PlanRef& plan,
                const FwdArgs& args) {
  FwdArgs a = args;
  const wo::Dim3 grid{unsigned(plan.max_qb), unsigned(s.H), unsigned(s.B)};
  for (int p = 0; p < plan.n_parts; ++p) {  // a later part merges into the earlier ones' rows
    a.c.part = p;
    launch("flash_tc forward", forward_kernel<DP>, grid, FwdSmem<DP>::kBytes, a);
  }
}

// out, lse as flash_tc_forward (attention/flash_tc_cuda.h).
template <class Launch>
void forward(const Launch& launch, const attn::AttnShape& s, const PlanRef& plan, const bf16* q,
             const bf16* k, const bf16* v, bf16* out, float* lse, float scale) {
  check_call(s, plan, "flash_tc_forward", {q, k, v, out, lse});
  const FwdArgs a{common_of(s, plan, scale), q, k, v, out, lse};
  switch (padded_dim(s.D)) {
    case 64:
      return forward_dp<64>(launch, s, plan, a);
    case 128:
      return forward_dp<128>(launch, s, plan, a);
    default:
      return forward_dp<256>(launch, s, plan, a);
  }
}

// Scratch of the backward, in floats: dsum [B, H, Tq], then fp32 accumulators for dq
// [B, H, Tq, D] (atomics, or several parts) and dk, dv [B, Hkv, Tk, D] (several parts).
inline int64_t backward_scratch_floats(const attn::AttnShape& s) {
  return s.B * s.H * s.Tq * (1 + s.D) + 2 * s.B * s.Hkv * s.Tk * s.D;
}

template <int DP, class Launch>
void backward_dp(const Launch& launch, const attn::AttnShape& s, const PlanRef& plan,
                 const BwdArgs& args, const bf16* out, bool deterministic, float* scratch) {
  constexpr unsigned NS = DP / kSlice<DP>;
  const int64_t nq = s.B * s.H * s.Tq, nk = s.B * s.Hkv * s.Tk;
  float* dsum = scratch;
  float* dq32 = dsum + nq;
  float* dk32 = dq32 + nq * s.D;
  float* dv32 = dk32 + nk * s.D;
  {
    const unsigned nb = stride_blocks(nq, kThreads / 32);
    launch("flash_tc row dot", row_dot_kernel, wo::Dim3{nb, 1, 1}, 0,
           RowDotArgs{out, args.dout, dsum, nq, nb, int(s.D)});
  }
  BwdArgs a = args;
  a.dsum = dsum;
  // A single part writes every row once: bf16 straight from the registers. Several parts (and
  // dQ's atomics) sum in fp32 first, so bf16 rounding does not add up across parts.
  const bool parts = plan.n_parts > 1;
  a.dq32 = parts || !deterministic ? dq32 : nullptr;
  a.dk32 = parts ? dk32 : nullptr;
  a.dv32 = parts ? dv32 : nullptr;
  if (a.dq32) zero_fill(launch, dq32, nq * s.D);
  if (parts) zero_fill(launch, dk32, 2 * nk * s.D);
  const wo::Dim3 kgrid{unsigned(plan.max_kb) * NS, unsigned(s.Hkv), unsigned(s.B)};
  const wo::Dim3 qgrid{unsigned(plan.max_qb) * NS, unsigned(s.H), unsigned(s.B)};
  for (int p = 0; p < plan.n_parts; ++p) {  // later parts add onto the earlier ones' rows
    a.c.part = p;
    if (deterministic) {
      launch("flash_tc dk/dv", dkdv_kernel<DP, false>, kgrid, DkdvSmem<DP, false>::kBytes, a);
      launch("flash_tc dq", dq_kernel<DP>, qgrid, DqSmem<DP>::kBytes, a);
    } else {
      launch("flash_tc dk/dv/dq", dkdv_kernel<DP, true>, kgrid, DkdvSmem<DP, true>::kBytes, a);
    }
  }
  if (a.dq32) convert(launch, dq32, a.dq, a.c.scale, nq * s.D);
  if (parts) {
    convert(launch, dk32, a.dk, a.c.scale, nk * s.D);
    convert(launch, dv32, a.dv, 1.f, nk * s.D);
  }
}

// dq, dk, dv as flash_tc_backward (attention/flash_tc_cuda.h); scratch of
// backward_scratch_floats(s) floats.
template <class Launch>
void backward(const Launch& launch, const attn::AttnShape& s, const PlanRef& plan, const bf16* q,
              const bf16* k, const bf16* v, const bf16* out, const float* lse, const bf16* dout,
              bf16* dq, bf16* dk, bf16* dv, float scale, bool deterministic, float* scratch) {
  check_call(s, plan, "flash_tc_backward", {q, k, v, out, lse, dout, dq, dk, dv, scratch});
  BwdArgs a{common_of(s, plan, scale),
            q,
            k,
            v,
            dout,
            lse,
            nullptr,
            nullptr,
            nullptr,
            nullptr,
            dq,
            dk,
            dv};
  switch (padded_dim(s.D)) {
    case 64:
      return backward_dp<64>(launch, s, plan, a, out, deterministic, scratch);
    case 128:
      return backward_dp<128>(launch, s, plan, a, out, deterministic, scratch);
    default:
      return backward_dp<256>(launch, s, plan, a, out, deterministic, scratch);
  }
}

}  // namespace LONGCTX_TC_BUILD
}  // namespace longctx::cuda::tc

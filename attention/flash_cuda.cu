// FlashAttention on CUDA cores (no tensor cores yet): each query (or key) row belongs to TPR
// consecutive threads of a block, each holding 32 of its head dims in fp32 registers (dims
// e·TPR + sub), and the other operand's rows are staged 32 at a time in shared memory as fp32.
// Every thread of a block reads the same staged row at once (a broadcast) and the TPR lanes of a
// row read consecutive words, so shared-memory reads are free of bank conflicts. Nothing here
// uses atomics: the backward's dQ is a pass of its own over the keys, so results are bitwise
// reproducible.
#include <cmath>
#include <cstdint>

#include "attention/attention_cuda.h"
#include "core/cuda_check.h"
#include "core/cuda_device.cuh"
#include "core/error.h"

namespace longctx::cuda {

namespace {

constexpr int kRows = 64;  // query rows (forward, dQ) or key rows (dK, dV) per block
constexpr int kTile = 32;  // rows of the other operand staged in shared memory at a time
constexpr int kDpt = 32;   // head dims per thread; TPR threads per row cover TPR · 32 dims

// Sum over the TPR consecutive lanes of one row. The butterfly adds the same two partial sums
// in every lane (only their order differs, and fp addition commutes), so all lanes hold the
// same bits. Every lane of the warp must call it.
template <int TPR>
__device__ __forceinline__ float row_sum(float x) {
#pragma unroll
  for (int o = 1; o < TPR; o *= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// This thread's dims of one row (row: [D]; null for a row past the sequence) as fp32, zero
// beyond D.
template <class T, int TPR>
__device__ __forceinline__ void load_row(const T* row, int D, int sub, float (&r)[kDpt]) {
#pragma unroll
  for (int e = 0; e < kDpt; ++e) {
    const int d = e * TPR + sub;
    r[e] = (row != nullptr && d < D) ? to_float(row[d]) : 0.0f;
  }
}

template <class T, int TPR>
__device__ __forceinline__ void store_row(T* row, int D, int sub, const float (&r)[kDpt],
                                          float factor) {
#pragma unroll
  for (int e = 0; e < kDpt; ++e) {
    const int d = e * TPR + sub;
    if (d < D) row[d] = from_float<T>(factor * r[e]);
  }
}

// s[r · DMAX + d] = src[(r0 + r) · D + d] in fp32 for the kTile rows from r0, zero past D or
// past the sequence (seq rows). src: [seq, D]  s: [kTile, DMAX]
template <class T, int DMAX>
__device__ __forceinline__ void stage_rows(float* s, const T* src, int64_t r0, int64_t seq, int D) {
  for (int x = threadIdx.x; x < kTile * DMAX; x += blockDim.x) {
    const int r = x / DMAX, d = x % DMAX;
    s[x] = (d < D && r0 + r < seq) ? to_float(src[(r0 + r) * D + d]) : 0.0f;
  }
}

// Dot product of this thread's dims of a register row with staged row r, over the row's lanes.
template <int TPR>
__device__ __forceinline__ float dot_staged(const float (&x)[kDpt], const float* s, int r,
                                            int sub) {
  constexpr int DMAX = kDpt * TPR;
  float part = 0.0f;
#pragma unroll
  for (int e = 0; e < kDpt; ++e) part += x[e] * s[r * DMAX + e * TPR + sub];
  return row_sum<TPR>(part);
}

// acc += f · staged row r (this thread's dims).
template <int TPR>
__device__ __forceinline__ void axpy_staged(float (&acc)[kDpt], float f, const float* s, int r,
                                            int sub) {
  constexpr int DMAX = kDpt * TPR;
#pragma unroll
  for (int e = 0; e < kDpt; ++e) acc[e] += f * s[r * DMAX + e * TPR + sub];
}

struct Geometry {
  int64_t H, Hkv, group, seq;
  int D;
  float scale;
  bool causal;
  int64_t n_tiles;  // row tiles of kRows per (sample, head)
};

// Block x: query tile x % n_tiles of (sample, head) bh = x / n_tiles. Online softmax per row:
// running max m, running sum l and unnormalised output acc, rescaled when the max grows.
// q, out: [B, H, seq, D]  k, v: [B, Hkv, seq, D]  lse: [B, H, seq]
template <class T, int TPR>
__global__ void __launch_bounds__(kRows* TPR)
    flash_forward_kernel(const T* q, const T* k, const T* v, T* out, float* lse, Geometry g) {
  constexpr int DMAX = kDpt * TPR;
  __shared__ float ks[kTile * DMAX], vs[kTile * DMAX];
  const int64_t bh = blockIdx.x / g.n_tiles, q0 = (blockIdx.x % g.n_tiles) * kRows;
  const int64_t b = bh / g.H, h = bh % g.H, kvh = b * g.Hkv + h / g.group;
  const int row = threadIdx.x / TPR, sub = threadIdx.x % TPR;
  const int64_t i = q0 + row, seq = g.seq;
  const bool valid = i < seq;
  const T* kh = k + kvh * seq * g.D;
  const T* vh = v + kvh * seq * g.D;

  float qr[kDpt], acc[kDpt];
  load_row<T, TPR>(valid ? q + (bh * seq + i) * g.D : nullptr, g.D, sub, qr);
#pragma unroll
  for (int e = 0; e < kDpt; ++e) acc[e] = 0.0f;
  float m = -INFINITY, l = 0.0f;

  // Causal: no row of this tile sees keys past its last row.
  const int64_t k_end = g.causal ? min(seq, q0 + kRows) : seq;
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    __syncthreads();  // the previous tile is no longer read
    stage_rows<T, DMAX>(ks, kh, k0, seq, g.D);
    stage_rows<T, DMAX>(vs, vh, k0, seq, g.D);
    __syncthreads();
    float s[kTile];
    float tile_max = -INFINITY;
#pragma unroll
    for (int r = 0; r < kTile; ++r) {
      const float dot = dot_staged<TPR>(qr, ks, r, sub);
      const int64_t j = k0 + r;
      const bool ok = valid && j < seq && (!g.causal || j <= i);
      s[r] = ok ? dot * g.scale : -INFINITY;
      tile_max = fmaxf(tile_max, s[r]);
    }
    const float m_new = fmaxf(m, tile_max);
    if (m_new == -INFINITY) continue;     // nothing allowed yet (padding rows): contributes nothing
    const float alpha = expf(m - m_new);  // 0 on the row's first allowed tile
    l *= alpha;
#pragma unroll
    for (int e = 0; e < kDpt; ++e) acc[e] *= alpha;
#pragma unroll
    for (int r = 0; r < kTile; ++r) {
      const float p = expf(s[r] - m_new);  // exactly 0 where masked
      l += p;
      axpy_staged<TPR>(acc, p, vs, r, sub);
    }
    m = m_new;
  }
  if (valid) {
    store_row<T, TPR>(out + (bh * seq + i) * g.D, g.D, sub, acc, 1.0f / l);
    if (sub == 0) lse[bh * seq + i] = m + logf(l);
  }
}

// drow[r] = Σ_d dout[r, d] · out[r, d] in fp32, one warp per row.  out, dout: [rows, D]
template <class T>
__global__ void flash_drow_kernel(const T* out, const T* dout, float* drow, int64_t rows, int D) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;  // uniform over the warp
  float s = 0.0f;
  for (int d = lane; d < D; d += 32) s += to_float(out[r * D + d]) * to_float(dout[r * D + d]);
#pragma unroll
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) drow[r] = s;
}

// dQ for a query tile (block x as in the forward), recomputing P from lse:
// dS_ij = P_ij (dO_i · V_j − drow_i), dQ_i = scale · Σ_j dS_ij K_j.
// q, dout, dq: [B, H, seq, D]  k, v: [B, Hkv, seq, D]  lse, drow: [B, H, seq]
template <class T, int TPR>
__global__ void __launch_bounds__(kRows* TPR)
    flash_dq_kernel(const T* q, const T* k, const T* v, const float* lse, const T* dout,
                    const float* drow, T* dq, Geometry g) {
  constexpr int DMAX = kDpt * TPR;
  __shared__ float ks[kTile * DMAX], vs[kTile * DMAX];
  const int64_t bh = blockIdx.x / g.n_tiles, q0 = (blockIdx.x % g.n_tiles) * kRows;
  const int64_t b = bh / g.H, h = bh % g.H, kvh = b * g.Hkv + h / g.group;
  const int row = threadIdx.x / TPR, sub = threadIdx.x % TPR;
  const int64_t i = q0 + row, seq = g.seq;
  const bool valid = i < seq;
  const T* kh = k + kvh * seq * g.D;
  const T* vh = v + kvh * seq * g.D;

  float qr[kDpt], dor[kDpt], acc[kDpt];
  load_row<T, TPR>(valid ? q + (bh * seq + i) * g.D : nullptr, g.D, sub, qr);
  load_row<T, TPR>(valid ? dout + (bh * seq + i) * g.D : nullptr, g.D, sub, dor);
#pragma unroll
  for (int e = 0; e < kDpt; ++e) acc[e] = 0.0f;
  const float lse_i = valid ? lse[bh * seq + i] : 0.0f;
  const float drow_i = valid ? drow[bh * seq + i] : 0.0f;

  const int64_t k_end = g.causal ? min(seq, q0 + kRows) : seq;
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    __syncthreads();
    stage_rows<T, DMAX>(ks, kh, k0, seq, g.D);
    stage_rows<T, DMAX>(vs, vh, k0, seq, g.D);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kTile; ++r) {
      const float qk = dot_staged<TPR>(qr, ks, r, sub);
      const float dp = dot_staged<TPR>(dor, vs, r, sub);
      const int64_t j = k0 + r;
      const bool ok = valid && j < seq && (!g.causal || j <= i);
      const float p = ok ? expf(qk * g.scale - lse_i) : 0.0f;
      axpy_staged<TPR>(acc, p * (dp - drow_i), ks, r, sub);
    }
  }
  if (valid) store_row<T, TPR>(dq + (bh * seq + i) * g.D, g.D, sub, acc, g.scale);
}

// dK and dV for a key tile of one (sample, kv head) u = x / n_tiles: the key rows' threads loop
// over the query heads of the kv group and over staged query tiles, so each dK, dV row is summed
// by one thread group in a fixed order: dV_j = Σ_i P_ij dO_i, dK_j = scale · Σ_i dS_ij Q_i.
template <class T, int TPR>
__global__ void __launch_bounds__(kRows* TPR)
    flash_dkdv_kernel(const T* q, const T* k, const T* v, const float* lse, const T* dout,
                      const float* drow, T* dk, T* dv, Geometry g) {
  constexpr int DMAX = kDpt * TPR;
  __shared__ float qs[kTile * DMAX], dos[kTile * DMAX], lses[kTile], drs[kTile];
  const int64_t u = blockIdx.x / g.n_tiles, k0 = (blockIdx.x % g.n_tiles) * kRows;
  const int64_t b = u / g.Hkv, hk = u % g.Hkv;
  const int row = threadIdx.x / TPR, sub = threadIdx.x % TPR;
  const int64_t j = k0 + row, seq = g.seq;
  const bool valid = j < seq;

  float kr[kDpt], vr[kDpt], dka[kDpt], dva[kDpt];
  load_row<T, TPR>(valid ? k + (u * seq + j) * g.D : nullptr, g.D, sub, kr);
  load_row<T, TPR>(valid ? v + (u * seq + j) * g.D : nullptr, g.D, sub, vr);
#pragma unroll
  for (int e = 0; e < kDpt; ++e) dka[e] = dva[e] = 0.0f;

  // Causal: query rows before this key tile see none of its keys.
  const int64_t q_begin = g.causal ? (k0 / kTile) * kTile : 0;
  for (int64_t hq = 0; hq < g.group; ++hq) {
    const int64_t bh = b * g.H + hk * g.group + hq;
    const T* qh = q + bh * seq * g.D;
    const T* doh = dout + bh * seq * g.D;
    for (int64_t q0 = q_begin; q0 < seq; q0 += kTile) {
      __syncthreads();
      stage_rows<T, DMAX>(qs, qh, q0, seq, g.D);
      stage_rows<T, DMAX>(dos, doh, q0, seq, g.D);
      for (int x = threadIdx.x; x < kTile; x += blockDim.x) {
        const bool in = q0 + x < seq;
        lses[x] = in ? lse[bh * seq + q0 + x] : 0.0f;
        drs[x] = in ? drow[bh * seq + q0 + x] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int r = 0; r < kTile; ++r) {
        const float qk = dot_staged<TPR>(kr, qs, r, sub);
        const float dp = dot_staged<TPR>(vr, dos, r, sub);
        const int64_t i = q0 + r;
        const bool ok = valid && i < seq && (!g.causal || j <= i);
        const float p = ok ? expf(qk * g.scale - lses[r]) : 0.0f;
        axpy_staged<TPR>(dva, p, dos, r, sub);
        axpy_staged<TPR>(dka, p * (dp - drs[r]), qs, r, sub);
      }
    }
  }
  if (valid) {
    store_row<T, TPR>(dk + (u * seq + j) * g.D, g.D, sub, dka, g.scale);
    store_row<T, TPR>(dv + (u * seq + j) * g.D, g.D, sub, dva, 1.0f);
  }
}

void check_dims(const AttnDims& d, const char* who) {
  LONGCTX_CHECK(d.B > 0 && d.H > 0 && d.Hkv > 0 && d.T > 0, who, ": bad shape B=", d.B, " H=", d.H,
                " Hkv=", d.Hkv, " T=", d.T);
  LONGCTX_CHECK(d.H % d.Hkv == 0, who, ": n_kv_head ", d.Hkv, " does not divide n_head ", d.H);
  LONGCTX_CHECK(d.D >= 2 && d.D <= 128 && d.D % 2 == 0, who, ": head size D=", d.D,
                " is not supported (it must be even and at most 128)");
}

// Threads per row: enough 32-dim slices to cover D.
int threads_per_row(int64_t D) { return D <= 32 ? 1 : D <= 64 ? 2 : 4; }

Geometry geometry(const AttnDims& d, int64_t n_tiles, float scale) {
  return Geometry{d.H, d.Hkv, d.H / d.Hkv, d.T, int(d.D), scale, d.causal, n_tiles};
}

unsigned grid_of(int64_t blocks, const char* who) {
  LONGCTX_CHECK(blocks <= INT32_MAX, who, ": ", blocks, " blocks exceed the grid limit");
  return unsigned(blocks);
}

template <class T, int TPR>
void launch_forward(const AttnDims& d, const T* q, const T* k, const T* v, T* out, float* lse,
                    float scale, cudaStream_t stream) {
  const int64_t n_tiles = (d.T + kRows - 1) / kRows;
  flash_forward_kernel<T, TPR>
      <<<grid_of(d.B * d.H * n_tiles, "flash_forward"), kRows * TPR, 0, stream>>>(
          q, k, v, out, lse, geometry(d, n_tiles, scale));
  LONGCTX_CUDA_LAUNCHED("flash_forward_kernel");
}

template <class T, int TPR>
void launch_backward(const AttnDims& d, const T* q, const T* k, const T* v, const float* lse,
                     const T* dout, const float* drow, T* dq, T* dk, T* dv, float scale,
                     cudaStream_t stream) {
  const int64_t n_tiles = (d.T + kRows - 1) / kRows;
  const Geometry g = geometry(d, n_tiles, scale);
  flash_dq_kernel<T, TPR>
      <<<grid_of(d.B * d.H * n_tiles, "flash_backward"), kRows * TPR, 0, stream>>>(
          q, k, v, lse, dout, drow, dq, g);
  LONGCTX_CUDA_LAUNCHED("flash_dq_kernel");
  flash_dkdv_kernel<T, TPR>
      <<<grid_of(d.B * d.Hkv * n_tiles, "flash_backward"), kRows * TPR, 0, stream>>>(
          q, k, v, lse, dout, drow, dk, dv, g);
  LONGCTX_CUDA_LAUNCHED("flash_dkdv_kernel");
}

}  // namespace

int64_t flash_backward_scratch_floats(const AttnDims& d) {
  // Only the rows' Σ dout·out: dQ accumulates in registers in its own pass and is written once.
  return d.B * d.H * d.T;
}

template <class T>
void flash_forward(const AttnDims& d, const T* q, const T* k, const T* v, T* out, float* lse,
                   float scale, cudaStream_t stream) {
  check_dims(d, "flash_forward");
  switch (threads_per_row(d.D)) {
    case 1:
      launch_forward<T, 1>(d, q, k, v, out, lse, scale, stream);
      break;
    case 2:
      launch_forward<T, 2>(d, q, k, v, out, lse, scale, stream);
      break;
    default:
      launch_forward<T, 4>(d, q, k, v, out, lse, scale, stream);
      break;
  }
}

template <class T>
void flash_backward(const AttnDims& d, const T* q, const T* k, const T* v, const T* out,
                    const float* lse, const T* dout, T* dq, T* dk, T* dv, float scale,
                    float* scratch, cudaStream_t stream) {
  check_dims(d, "flash_backward");
  const int64_t rows = d.B * d.H * d.T;
  const int warps_per_block = 8;
  flash_drow_kernel<T><<<grid_of((rows + warps_per_block - 1) / warps_per_block, "flash_backward"),
                         32 * warps_per_block, 0, stream>>>(out, dout, scratch, rows, int(d.D));
  LONGCTX_CUDA_LAUNCHED("flash_drow_kernel");
  switch (threads_per_row(d.D)) {
    case 1:
      launch_backward<T, 1>(d, q, k, v, lse, dout, scratch, dq, dk, dv, scale, stream);
      break;
    case 2:
      launch_backward<T, 2>(d, q, k, v, lse, dout, scratch, dq, dk, dv, scale, stream);
      break;
    default:
      launch_backward<T, 4>(d, q, k, v, lse, dout, scratch, dq, dk, dv, scale, stream);
      break;
  }
}

template void flash_forward<float>(const AttnDims&, const float*, const float*, const float*,
                                   float*, float*, float, cudaStream_t);
template void flash_forward<bf16>(const AttnDims&, const bf16*, const bf16*, const bf16*, bf16*,
                                  float*, float, cudaStream_t);
template void flash_backward<float>(const AttnDims&, const float*, const float*, const float*,
                                    const float*, const float*, const float*, float*, float*,
                                    float*, float, float*, cudaStream_t);
template void flash_backward<bf16>(const AttnDims&, const bf16*, const bf16*, const bf16*,
                                   const bf16*, const float*, const bf16*, bf16*, bf16*, bf16*,
                                   float, float*, cudaStream_t);

}  // namespace longctx::cuda

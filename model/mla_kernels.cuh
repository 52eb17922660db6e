// The elementwise kernels of MLA's expanded form (attention/mla.h) on the GPU: RoPE on a slice of
// each row, keys assembled from per-head content parts and the shared RoPE key, and the inverse
// of that for gradients. Written against core/warp_ops.cuh only, so that they also compile as
// host C++ under LONGCTX_KERNEL_EMU and run on the CPU emulator in tests. T is float or bf16;
// arithmetic is fp32, each output rounded once. One thread per output element (grid-stride over
// `n_blocks` blocks, the grid's width, which kernel code cannot query); no atomics.
#pragma once
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/warp_ops.cuh"

namespace longctx::cuda::mla {

inline constexpr int kThreads = 256;

// Blocks for n items, capped (the grid-stride loop covers the rest).
inline int64_t blocks_for(int64_t n) {
  return std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20);
}

template <class T>
LC_DEV float to_f32(T x) {
  if constexpr (std::is_same_v<T, float>)
    return x;
  else
    return __bfloat162float(x);
}

template <class T>
LC_DEV T from_f32(float x) {
  if constexpr (std::is_same_v<T, float>)
    return x;
  else
    return __float2bfloat16_rn(x);
}

LC_DEV int64_t first_item() { return int64_t(wo::block_x()) * kThreads + wo::thread_x(); }

template <class T>
struct RopeSliceArgs {
  T* x;                    // [rows, D], rotated in place
  const float *cos, *sin;  // [max_pos, half]
  int64_t rows, Tn, D, offset, half, n_blocks;
  float sign;  // −1: the inverse rotation
};

// Dims [offset, offset + 2·half) of each row, rotate-half inside that slice (model/rope.h); row r
// at position r % Tn. One thread per pair, so each element is read and written by one thread.
template <class T>
LC_KERNEL void rope_slice_kernel(RopeSliceArgs<T> a) {
  const int64_t n = a.rows * a.half;
  for (int64_t k = first_item(); k < n; k += a.n_blocks * kThreads) {
    const int64_t row = k / a.half, i = k % a.half, p = row % a.Tn;
    const float c = a.cos[p * a.half + i], s = a.sin[p * a.half + i];
    T* x0p = a.x + row * a.D + a.offset + i;
    T* x1p = x0p + a.half;
    const float x0 = to_f32(*x0p), x1 = to_f32(*x1p);
    *x0p = from_f32<T>(x0 * c - a.sign * x1 * s);
    *x1p = from_f32<T>(x1 * c + a.sign * x0 * s);
  }
}

template <class T>
struct AssembleArgs {
  T* k;               // [B, H, Tn, Dn + R]
  const T* nope;      // [B, Tn, H, Dn]: token-major, as c·w_uk produces it
  const T* rope_key;  // [B, Tn, R]: one per token, shared by the heads
  int64_t B, Tn, H, Dn, R, n_blocks;
};

// k[b, h, t] = concat(nope[b, t, h], rope_key[b, t]), one thread per element of k.
template <class T>
LC_KERNEL void assemble_keys_kernel(AssembleArgs<T> a) {
  const int64_t D = a.Dn + a.R, n = a.B * a.H * a.Tn * D;
  for (int64_t e = first_item(); e < n; e += a.n_blocks * kThreads) {
    const int64_t d = e % D, t = (e / D) % a.Tn, h = (e / (D * a.Tn)) % a.H,
                  b = e / (D * a.Tn * a.H), token = b * a.Tn + t;
    a.k[e] = d < a.Dn ? a.nope[(token * a.H + h) * a.Dn + d] : a.rope_key[token * a.R + d - a.Dn];
  }
}

template <class T>
struct SplitArgs {
  T* dnope;      // [B, Tn, H, Dn]
  T* drope_key;  // [B, Tn, R]
  const T* dk;   // [B, H, Tn, Dn + R]
  int64_t B, Tn, H, Dn, R, n_blocks;
};

// The gradient of assemble_keys: nope[b, t, h] = dk[b, h, t, :Dn]; rope_key[b, t] = Σ_h
// dk[b, h, t, Dn:] summed in head order in fp32 (every head read the shared key). One thread per
// element of [B, Tn, H·Dn + R] (a token's content gradients, then its shared key's).
template <class T>
LC_KERNEL void split_key_grads_kernel(SplitArgs<T> a) {
  const int64_t D = a.Dn + a.R, row = a.H * a.Dn + a.R, n = a.B * a.Tn * row;
  for (int64_t e = first_item(); e < n; e += a.n_blocks * kThreads) {
    const int64_t j = e % row, token = e / row, b = token / a.Tn, t = token % a.Tn;
    const T* dk = a.dk + (b * a.H * a.Tn + t) * D;  // head 0's row of this token
    if (j < a.H * a.Dn) {
      const int64_t h = j / a.Dn, d = j % a.Dn;
      a.dnope[token * a.H * a.Dn + j] = dk[h * a.Tn * D + d];
    } else {
      const int64_t i = j - a.H * a.Dn;
      float s = 0.f;
      for (int64_t h = 0; h < a.H; ++h) s += to_f32(dk[h * a.Tn * D + a.Dn + i]);
      a.drope_key[token * a.R + i] = from_f32<T>(s);
    }
  }
}

}  // namespace longctx::cuda::mla

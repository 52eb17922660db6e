// LayerNorm and RMSNorm over rows of C (model/norm.cpp, eps 1e-5), fp32 statistics.
// Forward and dx: one block per row with block reductions. dw/db: a fixed partition of the rows
// into chunks; each chunk's column sums go to scratch, then the chunks are summed in order, so
// the result is the same bits on every run.
#include <algorithm>

#include "core/cuda_check.h"
#include "core/cuda_device.cuh"
#include "model/cuda_ops.h"

namespace longctx::cuda {

namespace {

constexpr int kRowThreads = 256;  // a multiple of 32 (the reductions assume whole warps)
constexpr int kColThreads = 256;
constexpr float kEps = 1e-5f;
constexpr int64_t kMinChunkRows = 32, kMaxChunks = 256;

// Rows split into n chunks of `rows` (the last may be shorter), fixed by N alone.
struct Chunks {
  int64_t n, rows;
};
Chunks column_chunks(int64_t N) {
  const int64_t want = std::min((N + kMinChunkRows - 1) / kMinChunkRows, kMaxChunks);
  const int64_t rows = (N + want - 1) / want;
  return {(N + rows - 1) / rows, rows};
}

template <class T>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* x, const T* w,
                                         const T* b, int64_t N, int64_t C) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* xr = x + r * C;
    float s = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += to_float(xr[c]);
    const float m = block_sum(s) / float(C);
    float var = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float d = to_float(xr[c]) - m;
      var += d * d;
    }
    const float rs = 1.0f / sqrtf(block_sum(var) / float(C) + kEps);
    T* o = out + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
      o[c] = from_float<T>((to_float(xr[c]) - m) * rs * to_float(w[c]) + to_float(b[c]));
    if (threadIdx.x == 0) {
      mean[r] = m;
      rstd[r] = rs;
    }
  }
}

template <class T>
__global__ void layernorm_dx_kernel(T* dx, const T* dout, const T* x, const T* w, const float* mean,
                                    const float* rstd, int64_t N, int64_t C) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* d = dout + r * C;
    const T* xr = x + r * C;
    const float m = mean[r], rs = rstd[r];
    float sum_g = 0, sum_gx = 0;  // Σ dout·w and Σ dout·w·x̂
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float dw = to_float(d[c]) * to_float(w[c]);
      sum_g += dw;
      sum_gx += dw * ((to_float(xr[c]) - m) * rs);
    }
    sum_g = block_sum(sum_g) / float(C);
    sum_gx = block_sum(sum_gx) / float(C);
    T* g = dx + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float xhat = (to_float(xr[c]) - m) * rs;
      const float v = rs * (to_float(d[c]) * to_float(w[c]) - sum_g - xhat * sum_gx);
      g[c] = from_float<T>(to_float(g[c]) + v);
    }
  }
}

template <class T>
__global__ void rmsnorm_forward_kernel(T* out, float* rstd, const T* x, const T* w, int64_t N,
                                       int64_t C) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* xr = x + r * C;
    float ss = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float v = to_float(xr[c]);
      ss += v * v;
    }
    const float rs = 1.0f / sqrtf(block_sum(ss) / float(C) + kEps);
    T* o = out + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
      o[c] = from_float<T>(to_float(xr[c]) * rs * to_float(w[c]));
    if (threadIdx.x == 0) rstd[r] = rs;
  }
}

template <class T>
__global__ void rmsnorm_dx_kernel(T* dx, const T* dout, const T* x, const T* w, const float* rstd,
                                  int64_t N, int64_t C) {
  for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
    const T* d = dout + r * C;
    const T* xr = x + r * C;
    const float rs = rstd[r];
    float dot = 0;  // Σ dout·w·x
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
      dot += to_float(d[c]) * to_float(w[c]) * to_float(xr[c]);
    const float k = rs * rs * rs * block_sum(dot) / float(C);
    T* g = dx + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float v = to_float(d[c]) * to_float(w[c]) * rs - to_float(xr[c]) * k;
      g[c] = from_float<T>(to_float(g[c]) + v);
    }
  }
}

// grid (column blocks, chunks): chunk k's sums over its rows for one column per thread,
// dw_part[k, c] = Σ dout·x̂ and, when db_part is set, db_part[k, c] = Σ dout. x̂ = (x − mean)·rstd
// (mean null for RMSNorm: x̂ = x·rstd).
template <class T>
__global__ void norm_column_partial_kernel(float* dw_part, float* db_part, const T* dout,
                                           const T* x, const float* mean, const float* rstd,
                                           int64_t N, int64_t C, int64_t chunk_rows) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t k = blockIdx.y, r0 = k * chunk_rows;
  const int64_t r1 = r0 + chunk_rows < N ? r0 + chunk_rows : N;
  float sdw = 0, sdb = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const float d = to_float(dout[r * C + c]);
    const float xc = mean ? to_float(x[r * C + c]) - mean[r] : to_float(x[r * C + c]);
    sdw += d * xc * rstd[r];
    sdb += d;
  }
  dw_part[k * C + c] = sdw;
  if (db_part) db_part[k * C + c] = sdb;
}

// dw[c] += Σ_k dw_part[k, c] in chunk order; the same for db when given.
__global__ void norm_column_final_kernel(float* dw, float* db, const float* dw_part,
                                         const float* db_part, int64_t n_chunks, int64_t C) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sw = 0, sb = 0;
  for (int64_t k = 0; k < n_chunks; ++k) {
    sw += dw_part[k * C + c];
    if (db) sb += db_part[k * C + c];
  }
  dw[c] += sw;
  if (db) db[c] += sb;
}

template <class T>
void column_sums(float* dw, float* db, const T* dout, const T* x, const float* mean,
                 const float* rstd, int64_t N, int64_t C, float* scratch, cudaStream_t stream) {
  const Chunks ch = column_chunks(N);
  float* dw_part = scratch;
  float* db_part = db ? scratch + ch.n * C : nullptr;
  const dim3 grid(unsigned((C + kColThreads - 1) / kColThreads), unsigned(ch.n));
  norm_column_partial_kernel<T>
      <<<grid, kColThreads, 0, stream>>>(dw_part, db_part, dout, x, mean, rstd, N, C, ch.rows);
  LONGCTX_CUDA_LAUNCHED("norm_column_partial_kernel");
  norm_column_final_kernel<<<grid.x, kColThreads, 0, stream>>>(dw, db, dw_part, db_part, ch.n, C);
  LONGCTX_CUDA_LAUNCHED("norm_column_final_kernel");
}

}  // namespace

int64_t norm_backward_scratch_floats(int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return 0;
  return 2 * column_chunks(N).n * C;
}

template <class T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* x, const T* w, const T* b,
                       int64_t N, int64_t C, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  layernorm_forward_kernel<T>
      <<<row_blocks(N), kRowThreads, 0, stream>>>(out, mean, rstd, x, w, b, N, C);
  LONGCTX_CUDA_LAUNCHED("layernorm_forward_kernel");
}

template <class T>
void layernorm_backward(T* dx, float* dw, float* db, const T* dout, const T* x, const T* w,
                        const float* mean, const float* rstd, int64_t N, int64_t C, float* scratch,
                        cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  layernorm_dx_kernel<T>
      <<<row_blocks(N), kRowThreads, 0, stream>>>(dx, dout, x, w, mean, rstd, N, C);
  LONGCTX_CUDA_LAUNCHED("layernorm_dx_kernel");
  column_sums(dw, db, dout, x, mean, rstd, N, C, scratch, stream);
}

template <class T>
void rmsnorm_forward(T* out, float* rstd, const T* x, const T* w, int64_t N, int64_t C,
                     cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  rmsnorm_forward_kernel<T><<<row_blocks(N), kRowThreads, 0, stream>>>(out, rstd, x, w, N, C);
  LONGCTX_CUDA_LAUNCHED("rmsnorm_forward_kernel");
}

template <class T>
void rmsnorm_backward(T* dx, float* dw, const T* dout, const T* x, const T* w, const float* rstd,
                      int64_t N, int64_t C, float* scratch, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  rmsnorm_dx_kernel<T><<<row_blocks(N), kRowThreads, 0, stream>>>(dx, dout, x, w, rstd, N, C);
  LONGCTX_CUDA_LAUNCHED("rmsnorm_dx_kernel");
  column_sums<T>(dw, nullptr, dout, x, nullptr, rstd, N, C, scratch, stream);
}

#define LONGCTX_NORM_CUDA(T)                                                                    \
  template void layernorm_forward<T>(T*, float*, float*, const T*, const T*, const T*, int64_t, \
                                     int64_t, cudaStream_t);                                    \
  template void layernorm_backward<T>(T*, float*, float*, const T*, const T*, const T*,         \
                                      const float*, const float*, int64_t, int64_t, float*,     \
                                      cudaStream_t);                                            \
  template void rmsnorm_forward<T>(T*, float*, const T*, const T*, int64_t, int64_t,            \
                                   cudaStream_t);                                               \
  template void rmsnorm_backward<T>(T*, float*, const T*, const T*, const T*, const float*,     \
                                    int64_t, int64_t, float*, cudaStream_t);
LONGCTX_NORM_CUDA(float)
LONGCTX_NORM_CUDA(bf16)

}  // namespace longctx::cuda

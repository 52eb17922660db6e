// Elementwise kernels: GELU (tanh form) and SwiGLU forward/backward, add, convert. Values are
// read as T, computed in fp32 with the formulas of model/activation.cpp, and rounded once.
#include <algorithm>

#include "core/cuda_check.h"
#include "core/cuda_device.cuh"
#include "model/cuda_ops.h"

namespace longctx::cuda {

namespace {

constexpr int kThreads = 256;
constexpr float kGeluC = 0.7978845608028654f;  // √(2/π)

// Grid-stride launches: enough blocks to cover n up to a cap; the loops cover the rest.

template <class T>
__global__ void gelu_forward_kernel(T* out, const T* x, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = to_float(x[i]);
    const float u = kGeluC * (v + 0.044715f * v * v * v);
    out[i] = from_float<T>(0.5f * v * (1.0f + tanhf(u)));
  }
}

template <class T>
__global__ void gelu_backward_kernel(T* dx, const T* dout, const T* x, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = to_float(x[i]);
    const float u = kGeluC * (v + 0.044715f * v * v * v);
    const float t = tanhf(u);
    const float du = kGeluC * (1.0f + float(3 * 0.044715) * v * v);
    const float g = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du;
    dx[i] = from_float<T>(to_float(dout[i]) * g);
  }
}

template <class T>
__global__ void swiglu_forward_kernel(T* out, const T* gate, const T* up, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float g = to_float(gate[i]);
    const float sig = 1.0f / (1.0f + expf(-g));
    out[i] = from_float<T>(g * sig * to_float(up[i]));
  }
}

template <class T>
__global__ void swiglu_backward_kernel(T* dgate, T* dup, const T* dout, const T* gate, const T* up,
                                       int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float g = to_float(gate[i]), d = to_float(dout[i]), u = to_float(up[i]);
    const float sig = 1.0f / (1.0f + expf(-g));
    dup[i] = from_float<T>(d * (g * sig));
    dgate[i] = from_float<T>(d * u * sig * (1.0f + g * (1.0f - sig)));
  }
}

// out may alias a or b: each element is read before it is written, by the same thread.
template <class T>
__global__ void add_kernel(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    out[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
}

// Through fp32, which holds every float and bf16 value exactly.
template <class To, class From>
__global__ void convert_kernel(To* out, const From* in, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    out[i] = from_float<To>(to_float(in[i]));
}

}  // namespace

template <class T>
void gelu_forward(T* out, const T* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_forward_kernel<T><<<grid_blocks(n, kThreads), kThreads, 0, stream>>>(out, x, n);
  LONGCTX_CUDA_LAUNCHED("gelu_forward_kernel");
}

template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_backward_kernel<T><<<grid_blocks(n, kThreads), kThreads, 0, stream>>>(dx, dout, x, n);
  LONGCTX_CUDA_LAUNCHED("gelu_backward_kernel");
}

template <class T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  swiglu_forward_kernel<T><<<grid_blocks(n, kThreads), kThreads, 0, stream>>>(out, gate, up, n);
  LONGCTX_CUDA_LAUNCHED("swiglu_forward_kernel");
}

template <class T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n,
                     cudaStream_t stream) {
  if (n <= 0) return;
  swiglu_backward_kernel<T>
      <<<grid_blocks(n, kThreads), kThreads, 0, stream>>>(dgate, dup, dout, gate, up, n);
  LONGCTX_CUDA_LAUNCHED("swiglu_backward_kernel");
}

template <class T>
void add(T* out, const T* a, const T* b, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_kernel<T><<<grid_blocks(n, kThreads), kThreads, 0, stream>>>(out, a, b, n);
  LONGCTX_CUDA_LAUNCHED("add_kernel");
}

template <class To, class From>
void convert(To* out, const From* in, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  convert_kernel<To, From><<<grid_blocks(n, kThreads), kThreads, 0, stream>>>(out, in, n);
  LONGCTX_CUDA_LAUNCHED("convert_kernel");
}

#define LONGCTX_ACT_CUDA(T)                                                                      \
  template void gelu_forward<T>(T*, const T*, int64_t, cudaStream_t);                            \
  template void gelu_backward<T>(T*, const T*, const T*, int64_t, cudaStream_t);                 \
  template void swiglu_forward<T>(T*, const T*, const T*, int64_t, cudaStream_t);                \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, cudaStream_t); \
  template void add<T>(T*, const T*, const T*, int64_t, cudaStream_t);
LONGCTX_ACT_CUDA(float)
LONGCTX_ACT_CUDA(bf16)

template void convert<bf16, float>(bf16*, const float*, int64_t, cudaStream_t);
template void convert<float, bf16>(float*, const bf16*, int64_t, cudaStream_t);
template void convert<float, float>(float*, const float*, int64_t, cudaStream_t);
template void convert<bf16, bf16>(bf16*, const bf16*, int64_t, cudaStream_t);

}  // namespace longctx::cuda

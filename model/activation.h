// MLP nonlinearities, elementwise over n values.
#pragma once
#include <cstdint>

namespace longctx {

// GELU, tanh approximation (GPT-2's): out = 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))).
template <class T>
void gelu_forward(T* out, const T* x, int64_t n);
// dx = dout · gelu'(x)   (overwrites dx)
template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n);

// SwiGLU: out = silu(gate) · up.
template <class T>
void swiglu_forward(T* out, const T* gate, const T* up, int64_t n);
// dgate, dup from dout (overwritten).
template <class T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n);

}  // namespace longctx

#include "model/embedding.h"

namespace longctx {

template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t B,
                       int64_t Tn, int64_t C, const int64_t* pos) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < B * Tn; ++r) {
    const T* e = wte + int64_t(tokens[r]) * C;
    const T* p = wpe ? wpe + (pos ? pos[r % Tn] : r % Tn) * C : nullptr;
    T* o = out + r * C;
    for (int64_t c = 0; c < C; ++c) o[c] = e[c] + (p ? p[c] : T(0));
  }
}

// Serial over rows: several rows may hit the same token, and a fixed order keeps the
// gradient bit-for-bit reproducible. The cost is O(N·C), small next to any GEMM.
template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int64_t B,
                        int64_t Tn, int64_t C, const int64_t* pos) {
  for (int64_t r = 0; r < B * Tn; ++r) {
    T* g = dwte + int64_t(tokens[r]) * C;
    const T* d = dout + r * C;
    for (int64_t c = 0; c < C; ++c) g[c] += d[c];
  }
  if (!dwpe) return;
  for (int64_t r = 0; r < B * Tn; ++r) {
    T* g = dwpe + (pos ? pos[r % Tn] : r % Tn) * C;
    const T* d = dout + r * C;
    for (int64_t c = 0; c < C; ++c) g[c] += d[c];
  }
}

template void embedding_forward<float>(float*, const int32_t*, const float*, const float*, int64_t,
                                       int64_t, int64_t, const int64_t*);
template void embedding_forward<double>(double*, const int32_t*, const double*, const double*,
                                        int64_t, int64_t, int64_t, const int64_t*);
template void embedding_backward<float>(float*, float*, const float*, const int32_t*, int64_t,
                                        int64_t, int64_t, const int64_t*);
template void embedding_backward<double>(double*, double*, const double*, const int32_t*, int64_t,
                                         int64_t, int64_t, const int64_t*);

}  // namespace longctx

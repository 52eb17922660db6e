// Token (and learned position) embedding.
#pragma once
#include <cstdint>

namespace longctx {

// out[B,T,C] = wte[tokens[b,t]] (+ wpe[pos0 + t] when wpe != nullptr). Token ids are checked
// against V by the caller (the data layer), not here.
template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t B,
                       int64_t Tn, int64_t C, int64_t pos0);

// dwte[tokens[b,t]] += dout[b,t];  dwpe[pos0 + t] += Σ_b dout[b,t]  (dwpe may be nullptr).
template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int64_t B,
                        int64_t Tn, int64_t C, int64_t pos0);

}  // namespace longctx

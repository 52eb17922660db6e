// Token (and learned position) embedding.
#pragma once
#include <cstdint>

namespace longctx {

// out[B,T,C] = wte[tokens[b,t]] (+ wpe[pos[t]] when wpe != nullptr; pos == nullptr: t). Token
// ids are checked against V by the caller (the data layer), not here.
template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t B,
                       int64_t Tn, int64_t C, const int64_t* pos);

// dwte[tokens[b,t]] += dout[b,t];  dwpe[pos[t]] += Σ_b dout[b,t]  (dwpe may be nullptr).
template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int64_t B,
                        int64_t Tn, int64_t C, const int64_t* pos);

}  // namespace longctx

// Fused softmax + cross-entropy over the vocabulary, with an ignore index.
#pragma once
#include <cstdint>

namespace longctx {

constexpr int32_t kIgnoreIndex = -1;

// losses[N] = logsumexp(logits[r]) - logits[r, target[r]] (0 where target == kIgnoreIndex).
// Returns the sum of losses in double and the number of counted targets in *count.
template <class T>
double cross_entropy_forward(T* losses, const T* logits, const int32_t* targets, int64_t N,
                             int64_t V, int64_t* count);

// dlogits[N,V] = scale · (softmax(logits) − onehot(target)); rows with ignored targets get 0.
// scale is 1 / (targets counted over the whole global batch), so the loss is a token mean.
template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, int64_t N,
                            int64_t V, T scale);

}  // namespace longctx

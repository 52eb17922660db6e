// A random permutation of [0, n) evaluated pointwise in O(1) memory: a keyed Feistel network on
// the smallest power of two ≥ n, cycle-walked back into range. A dataset of any size gets a
// fresh order every epoch without holding an index array.
#pragma once
#include <cstdint>

#include "core/rng.h"

namespace longctx {

class Permutation {
 public:
  Permutation(uint64_t n, uint64_t key) : n_(n), key_(splitmix64(key)) {
    int bits = 2;  // two halves of at least one bit each
    while (bits < 64 && (uint64_t(1) << bits) < n) ++bits;
    half_ = (bits + 1) / 2;
    mask_ = (uint64_t(1) << half_) - 1;
  }

  uint64_t size() const { return n_; }
  // The image of i (i < n); a bijection of [0, n).
  uint64_t operator()(uint64_t i) const {
    do i = feistel(i);
    while (i >= n_);  // the domain is < 4n, so this ends after a few rounds on average
    return i;
  }

 private:
  uint64_t feistel(uint64_t x) const {
    uint64_t l = x >> half_, r = x & mask_;
    for (uint64_t round = 0; round < 4; ++round) {
      const uint64_t f = splitmix64(key_ ^ (round << 56) ^ r) & mask_;
      const uint64_t t = r;
      r = l ^ f;
      l = t;
    }
    return (l << half_) | r;
  }

  uint64_t n_, key_, mask_;
  int half_;
};

}  // namespace longctx

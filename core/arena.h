// Activation memory, sized once per run: a layout function takes its buffers from the arena
// twice, first to measure (pointers are null), then, after commit(), to bind real pointers.
// Nothing is allocated on the hot path of a training step.
#pragma once
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace longctx {

template <class T>
class Arena {
 public:
  // Next `n` elements, aligned to 64 bytes; nullptr while measuring.
  T* take(int64_t n) {
    const int64_t align = 64 / static_cast<int64_t>(sizeof(T)) > 0 ? 64 / sizeof(T) : 1;
    used_ = (used_ + align - 1) / align * align;
    T* p = buf_.empty() ? nullptr : buf_.data() + used_;
    used_ += n;
    LONGCTX_CHECK(buf_.empty() || used_ <= static_cast<int64_t>(buf_.size()),
                  "activation arena overflow: layout changed between passes");
    return p;
  }
  // Allocates what the measuring pass took and rewinds for the binding pass.
  void commit() {
    buf_.assign(used_ + 64, T(0));
    used_ = 0;
  }
  int64_t bytes() const { return static_cast<int64_t>(buf_.size() * sizeof(T)); }

 private:
  std::vector<T> buf_;
  int64_t used_ = 0;
};

}  // namespace longctx

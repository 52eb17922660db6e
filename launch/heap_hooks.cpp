// Replaces the global operator new/delete of the `longctx` binary to count heap bytes, so that
// benchmarks can report the peak memory of one op. The size is read back with
// malloc_usable_size, which keeps the hooks exact without a header per block.
#include <malloc.h>

#include <cstdlib>
#include <new>

#include "core/memory.h"

namespace {
struct Enable {
  Enable() { longctx::detail::heap_enable(); }
} enable_at_start;

void* counted_alloc(std::size_t n) {
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  longctx::detail::heap_on_alloc(static_cast<int64_t>(malloc_usable_size(p)));
  return p;
}
void* counted_aligned_alloc(std::size_t n, std::align_val_t al) {
  void* p = nullptr;
  if (posix_memalign(&p, static_cast<std::size_t>(al), n ? n : 1) != 0) throw std::bad_alloc();
  longctx::detail::heap_on_alloc(static_cast<int64_t>(malloc_usable_size(p)));
  return p;
}
void counted_free(void* p) noexcept {
  if (!p) return;
  longctx::detail::heap_on_free(static_cast<int64_t>(malloc_usable_size(p)));
  std::free(p);
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t al) { return counted_aligned_alloc(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return counted_aligned_alloc(n, al); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }

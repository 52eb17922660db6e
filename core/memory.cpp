#include "core/memory.h"

#include <sys/resource.h>

#include <atomic>

namespace longctx {

namespace {
std::atomic<int64_t> g_live{0}, g_peak{0};
std::atomic<bool> g_enabled{false};
}  // namespace

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

bool heap_tracking_enabled() { return g_enabled.load(); }
int64_t heap_live_bytes() { return g_live.load(); }
int64_t heap_peak_bytes() { return g_peak.load(); }
void heap_reset_peak() { g_peak.store(g_live.load()); }

namespace detail {
void heap_enable() { g_enabled.store(true); }
void heap_on_alloc(int64_t bytes) {
  const int64_t now = g_live.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}
void heap_on_free(int64_t bytes) { g_live.fetch_sub(bytes, std::memory_order_relaxed); }
}  // namespace detail

}  // namespace longctx

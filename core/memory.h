// Memory accounting: peak resident set size of the process, and heap bytes allocated through
// operator new (counted only in binaries that link launch/heap_hooks.cpp, i.e. `longctx`).
#pragma once
#include <cstdint>

namespace longctx {

double peak_rss_mb();  // high-water RSS since process start (getrusage)

// Heap counters: bytes live now and the high-water mark since the last reset.
bool heap_tracking_enabled();
int64_t heap_live_bytes();
int64_t heap_peak_bytes();
void heap_reset_peak();  // peak := live

namespace detail {
void heap_on_alloc(int64_t bytes);
void heap_on_free(int64_t bytes);
void heap_enable();
}  // namespace detail

}  // namespace longctx

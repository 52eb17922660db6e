#include "core/ring_collectives.h"

#include <algorithm>
#include <vector>

namespace longctx {
namespace {

// Chunk i of an n-element message cut into pieces of c: [lo(i), lo(i) + len(i)).
struct Chunks {
  int64_t n, c;
  int64_t lo(int i) const { return std::min(n, int64_t(i) * c); }
  int64_t len(int i) const { return std::min(n, int64_t(i + 1) * c) - lo(i); }
};

int wrap(int i, int N) { return ((i % N) + N) % N; }

// Two chunk-sized buffers per thread, grown once: a ring pass allocates nothing per call.
template <class T>
std::vector<T>& scratch(int which, int64_t c) {
  thread_local std::vector<T> bufs[2];
  if (int64_t(bufs[which].size()) < c) bufs[which].resize(static_cast<size_t>(c));
  return bufs[which];
}

// out[len(me)] = Σ over ranks of their src chunk `me`. At step s rank r sends its partial sum
// of chunk r−s−1 to r+1 and receives r−1's partial sum of chunk r−s−2, adding its own part;
// after N−1 steps the chunk that arrived is chunk r, summed over all N ranks.
template <class T>
void reduce_scatter_chunks(Comm& comm, const T* src, const Chunks& ch, T* out) {
  const int N = comm.size(), r = comm.rank();
  if (N == 1) {
    std::copy_n(src + ch.lo(0), ch.len(0), out);
    return;
  }
  T* a = scratch<T>(0, ch.c).data();  // the partial sum to send
  T* b = scratch<T>(1, ch.c).data();  // the partial sum received
  int i = wrap(r - 1, N);
  std::copy_n(src + ch.lo(i), ch.len(i), a);
  for (int s = 0; s < N - 1; ++s) {
    const int j = wrap(r - s - 2, N);
    comm.send_recv(a, ch.len(i), (r + 1) % N, b, ch.len(j), wrap(r - 1, N));
    const T* mine = src + ch.lo(j);
    const int64_t len = ch.len(j);
    T* dst = s == N - 2 ? out : b;  // the last sum goes straight to its place
#pragma omp parallel for simd schedule(static) if (len > 65536)
    for (int64_t e = 0; e < len; ++e) dst[e] = b[e] + mine[e];
    std::swap(a, b);
    i = j;
  }
}

// Every chunk to every rank, in place: rank r holds chunk r of buf; at step s it sends chunk
// r−s to r+1 and receives chunk r−s−1 from r−1.
template <class T>
void all_gather_chunks(Comm& comm, T* buf, const Chunks& ch) {
  const int N = comm.size(), r = comm.rank();
  for (int s = 0; s < N - 1; ++s) {
    const int i = wrap(r - s, N), j = wrap(r - s - 1, N);
    comm.send_recv(buf + ch.lo(i), ch.len(i), (r + 1) % N, buf + ch.lo(j), ch.len(j),
                   wrap(r - 1, N));
  }
}

}  // namespace

template <class T>
void ring_all_reduce_sum(Comm& comm, T* buf, int64_t n) {
  const int N = comm.size();
  if (N == 1 || n == 0) return;
  const Chunks ch{n, (n + N - 1) / N};
  reduce_scatter_chunks(comm, buf, ch, buf + ch.lo(comm.rank()));
  all_gather_chunks(comm, buf, ch);
}

template <class T>
void ring_reduce_scatter_sum(Comm& comm, const T* send, T* recv, int64_t count) {
  reduce_scatter_chunks(comm, send, Chunks{count * comm.size(), count}, recv);
}

template <class T>
void ring_all_gather(Comm& comm, const T* send, T* recv, int64_t count) {
  const Chunks ch{count * comm.size(), count};
  T* mine = recv + ch.lo(comm.rank());
  if (mine != send) std::copy_n(send, count, mine);
  all_gather_chunks(comm, recv, ch);
}

template void ring_all_reduce_sum(Comm&, float*, int64_t);
template void ring_all_reduce_sum(Comm&, double*, int64_t);
template void ring_reduce_scatter_sum(Comm&, const float*, float*, int64_t);
template void ring_reduce_scatter_sum(Comm&, const double*, double*, int64_t);
template void ring_all_gather(Comm&, const float*, float*, int64_t);
template void ring_all_gather(Comm&, const double*, double*, int64_t);

}  // namespace longctx

// Bandwidth-optimal ring collectives written on Comm::send_recv (the ring of Patarasuk & Yuan
// 2009, which NCCL also uses): the message is cut into N chunks; a reduce-scatter passes each
// partial sum N−1 times around the ring, an all-gather passes each finished chunk N−1 times, so
// each rank sends (N−1)/N of the message per pass and no more. Because the traffic goes through
// send_recv, Comm's counters show the bytes actually sent — what `bench comm` compares with the
// algorithm's minimum — and the reduction order is ours (fixed: around the ring), so every rank
// ends with identical sums.
#pragma once
#include <cstdint>

#include "core/comm.h"

namespace longctx {

// buf[n] = Σ over ranks, in place; any n (chunks of ceil(n/N), the last ones shorter).
template <class T>
void ring_all_reduce_sum(Comm& comm, T* buf, int64_t n);

// recv[count] = Σ over ranks of send[rank·count, (rank+1)·count)  (Comm::reduce_scatter_sum).
template <class T>
void ring_reduce_scatter_sum(Comm& comm, const T* send, T* recv, int64_t count);

// recv[r·count, (r+1)·count) = rank r's send[count]  (Comm::all_gather).
template <class T>
void ring_all_gather(Comm& comm, const T* send, T* recv, int64_t count);

}  // namespace longctx

// The processes of a run as a dp × sp grid, sp innermost: world rank w is sp rank w mod sp of
// data-parallel replica w / sp, so consecutive ranks (one node, on a cluster) share a sequence.
#pragma once
#include <memory>

#include "core/comm.h"

namespace longctx {

struct ProcessGrid {
  std::unique_ptr<Comm> world;  // every rank
  std::unique_ptr<Comm> dp;     // the ranks with my sp rank: one per replica
  std::unique_ptr<Comm> sp;     // the ranks of my replica, sharing its sequences
  int dp_rank = 0, dp_size = 1, sp_rank = 0, sp_size = 1;

  // ConfigError naming 'parallel.sp' and the sizes when the world size is not divisible by sp.
  static ProcessGrid make(std::unique_ptr<Comm> world, int sp);
  // The world of this process: MPI's when MPI is up, else a single process.
  static ProcessGrid for_process(int sp);
};

}  // namespace longctx

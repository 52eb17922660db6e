#include "core/process_grid.h"

#include "core/error.h"
#include "core/mpi_env.h"

namespace longctx {

ProcessGrid ProcessGrid::make(std::unique_ptr<Comm> world, int sp) {
  const int n = world->size(), w = world->rank();
  if (sp < 1 || n % sp != 0)
    throw ConfigError(str("'parallel.sp' (", sp, ") must divide the number of processes (", n,
                          "); dp = processes / sp"));
  ProcessGrid g;
  g.sp_size = sp;
  g.dp_size = n / sp;
  g.sp_rank = w % sp;
  g.dp_rank = w / sp;
  g.dp = world->split(g.sp_rank, g.dp_rank);
  g.sp = world->split(g.dp_rank, g.sp_rank);
  g.world = std::move(world);
  return g;
}

ProcessGrid ProcessGrid::for_process(int sp) {
  return make(MpiEnv::active() ? make_mpi_world_comm() : make_self_comm(), sp);
}

}  // namespace longctx

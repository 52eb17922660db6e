#include "core/mpi_env.h"

#include <mpi.h>

#include <cstdlib>

#include "core/error.h"

namespace longctx {
namespace {
bool g_active = false;

bool env_int_above(const char* name, int v) {
  const char* s = std::getenv(name);
  return s && std::atoi(s) > v;
}
}  // namespace

bool MpiEnv::launched() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") ||
         std::getenv("PMIX_RANK") || env_int_above("SLURM_NTASKS", 1);
}

MpiEnv::MpiEnv(int* argc, char*** argv) {
  if (!launched()) return;
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    throw Error("MPI_Init_thread failed");
  g_active = true;
  // Errors come back as return codes, which Comm turns into exceptions naming the operation
  // (the default handler would abort the job without a word from us); split communicators
  // inherit the handler.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiEnv::~MpiEnv() {
  if (!g_active) return;
  MPI_Finalize();
  g_active = false;
}

bool MpiEnv::active() { return g_active; }

int MpiEnv::rank() {
  int r = 0;
  if (g_active) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int MpiEnv::size() {
  int n = 1;
  if (g_active) MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

void MpiEnv::abort_job(int code) {
  if (g_active && size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

int local_rank() {
  // Open MPI's first: mpirun inside a Slurm job starts its daemons with srun, so every rank
  // inherits its daemon's SLURM_LOCALID (0). MPI_LOCALRANKID is MPICH's (Hydra).
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"}) {
    const char* s = std::getenv(name);
    if (!s) continue;
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 0 || v > 1 << 20)
      throw Error(str("local rank: ", name, "='", s, "' is not a small non-negative integer"));
    return int(v);
  }
  return 0;
}

}  // namespace longctx

// MPI for the process: initialized when a launcher (mpirun, srun) started us, so that a plain
// `longctx train` needs no MPI at all; finalized at exit. A failing rank ends the whole job.
#pragma once

namespace longctx {

class MpiEnv {
 public:
  // Initializes MPI (MPI_THREAD_FUNNELED) when launched() says a launcher started us.
  MpiEnv(int* argc, char*** argv);
  ~MpiEnv();
  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;

  // True when the environment shows an MPI launcher (Open MPI, PMI/PMIx, Slurm with tasks).
  static bool launched();
  // Whether MPI is up in this process, and this process's rank and the world size (0 and 1
  // without MPI).
  static bool active();
  static int rank();
  static int size();
  // Ends every rank of the job with `code` (MPI_Abort) when the world has more than one rank;
  // returns otherwise, so that a single process exits normally.
  static void abort_job(int code);
};

// This process's index among the ranks on its node, from the launcher's environment (0 when
// none says): the CUDA device it uses. Throws Error when the variable is not a number.
int local_rank();

}  // namespace longctx

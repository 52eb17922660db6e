#pragma once
#include <string>
#include <vector>

namespace longctx {

// `longctx bench comm [--sizes ...] [--repeats N] [--json]` (under mpirun)
int bench_comm_main(const std::vector<std::string>& args);

}  // namespace longctx

#pragma once
#include <string>
#include <vector>

namespace longctx {

// `longctx bench loader DATASET [...]` and `longctx bench loader --make DIR --tokens N`
int bench_loader_main(const std::vector<std::string>& args);

}  // namespace longctx

#pragma once
#include <string>
#include <vector>

namespace longctx {

// `longctx bench train CONFIG [--set k=v ...] [--steps N] [--warmup N] [--json]`
int bench_train_main(const std::vector<std::string>& args);

}  // namespace longctx

#pragma once
#include <string>
#include <vector>

namespace longctx {

// `longctx bench attention [--pattern dense,flash,longformer,bigbird,strided] [--n 1024,4096]
//  [--heads 8] [--head-dim 64] [--batch 1] [--causal] [--block-size 64] [--window 256]
//  [--dilation 1] [--global-tokens 0] [--window-blocks 1] [--global-blocks 1]
//  [--random-blocks 3] [--stride auto] [--repeats 5] [--device cpu|cuda] [--dtype bf16|fp32]
//  [--sweep] [--time-budget S] [--json] [--jsonl FILE] [--help]`; `args` are the
// arguments after `bench attention`. Returns the exit status; bad flags throw longctx::Error.
int bench_attention_main(const std::vector<std::string>& args);

}  // namespace longctx

// Subcommands implemented outside main.cpp; each takes the arguments after its name and returns
// the exit code (errors are thrown as longctx::Error / ConfigError).
#pragma once
#include <string>
#include <vector>

namespace longctx {

int tokenize_main(const std::vector<std::string>& args);  // longctx tokenize
int data_main(const std::vector<std::string>& args);      // longctx data inspect|verify
int ckpt_main(const std::vector<std::string>& args);      // longctx ckpt inspect|export
int eval_main(const std::vector<std::string>& args);      // longctx eval
int generate_main(const std::vector<std::string>& args);  // longctx generate
int sweep_main(const std::vector<std::string>& args);     // longctx sweep

}  // namespace longctx

#include "core/error.h"
#include "eval/tasks.h"
namespace longctx {
std::vector<std::string> plot_eval_results(const std::vector<ojson>&, const std::string&) { return {}; }
}

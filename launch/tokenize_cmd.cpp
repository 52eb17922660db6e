// Placeholder until the command lands.
#include "core/error.h"
#include "launch/commands.h"
namespace longctx {
int tokenize_main(const std::vector<std::string>&) { throw Error("'tokenize' is not available yet"); }
}  // namespace longctx

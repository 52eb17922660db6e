// Placeholder until the command lands.
#include "core/error.h"
#include "launch/commands.h"
namespace longctx {
int data_main(const std::vector<std::string>&) { throw Error("'data' is not available yet"); }
}  // namespace longctx

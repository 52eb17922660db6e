// Parsing of command-line option values, shared by the subcommands: a bad value is a usage
// error (ConfigError, exit code 2) naming the option, the value and what is allowed.
#pragma once
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace longctx {

inline int64_t parse_int_option(const std::string& flag, const std::string& v, int64_t min) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE || x < min)
    throw ConfigError(str(flag, " expects an integer >= ", min, ", got '", v, "'"));
  return x;
}

}  // namespace longctx

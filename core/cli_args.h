// Parsing of command-line option values, shared by the subcommands: a bad value is a usage
// error (ConfigError, exit code 2) naming the option, the value and what is allowed. The
// default upper bound keeps a value inside an int.
#pragma once
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace longctx {

inline int64_t parse_int_option(const std::string& flag, const std::string& v, int64_t min,
                                int64_t max = INT32_MAX) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE || x < min || x > max)
    throw ConfigError(str(flag, " expects an integer in [", min, ", ", max, "], got '", v, "'"));
  return x;
}

}  // namespace longctx

// Errors a user can act on: one message, one exit code. Config mistakes exit 2, the rest 1.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace longctx {

struct Error : std::runtime_error {
  int exit_code;
  explicit Error(const std::string& msg, int code = 1) : std::runtime_error(msg), exit_code(code) {}
};

// A config key with a wrong value, type or combination; the message names the key path.
struct ConfigError : Error {
  explicit ConfigError(const std::string& msg) : Error(msg, 2) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class A, class... R>
void append(std::ostringstream& os, const A& a, const R&... r) {
  os << a;
  append(os, r...);
}
}  // namespace detail

// Builds a message from pieces: str("n_head ", 3, " does not divide ", 256).
template <class... A>
std::string str(const A&... a) {
  std::ostringstream os;
  detail::append(os, a...);
  return os.str();
}

}  // namespace longctx

// Internal invariant or user-facing precondition; the message says what was expected.
#define LONGCTX_CHECK(cond, ...)                                                          \
  do {                                                                                   \
    if (!(cond))                                                                         \
      throw ::longctx::Error(::longctx::str(__VA_ARGS__, " [", __FILE__, ":", __LINE__, \
                                            "]"));                                       \
  } while (0)

// check.h: the one way fastdl kernels report bad input or a broken invariant.
//
// FASTDL_CHECK(cond, Kind, msg...) throws fastdl::Kind with the streamed message. The bindings
// translate ValueError/TypeError/RuntimeError into the Python exceptions of the same name, so a
// bad call never aborts the interpreter. Release builds (NDEBUG) keep the message clean; debug
// builds append the file:line that raised it.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace fastdl {

struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct RuntimeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace fastdl

#ifdef NDEBUG
#define FASTDL_WHERE_ ""
#else
#define FASTDL_WHERE_ fastdl::detail::concat(" [", __FILE__, ":", __LINE__, "]")
#endif

#define FASTDL_CHECK(cond, Kind, ...)                                                    \
  do {                                                                                   \
    if (!(cond))                                                                         \
      throw fastdl::Kind(fastdl::detail::concat(__VA_ARGS__) + FASTDL_WHERE_);           \
  } while (0)

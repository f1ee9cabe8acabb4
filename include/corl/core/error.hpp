// corl/core/error.hpp — corl::Error, the one exception type corl throws for bad input, and the helpers that build its
// message. A message says what was wrong and where: "<where>: <array>[<index>] = <value>, expected <condition>".
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace corl {

/// Thrown for every invalid input (shape mismatch, NaN/inf, empty group, out-of-range token id, missing file,
/// malformed config, failed CUDA launch). what() names the function or file, the array or field, and the condition.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Throws corl::Error whose message is the concatenation of the streamed parts.
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  throw Error(os.str());
}

/// Throws corl::Error built from `parts` when `condition` is false.
template <class... Parts>
void require(bool condition, Parts&&... parts) {
  if (!condition) fail(std::forward<Parts>(parts)...);
}

}  // namespace corl

// Small helpers shared by the unit tests (tests/unit/logprob_from_logits.cpp, tests/unit/logprob_grpo_from_logits.cpp).
#pragma once

#include <span>
#include <string>
#include <vector>

#include <corl/core/error.hpp>

namespace corl_test {

/// A read-only span over a whole vector (the library takes std::span<const T>).
template <class T>
std::span<const T> cview(const std::vector<T>& v) {
  return {v.data(), v.size()};
}

/// The message of the corl::Error that fn() throws, or "no error".
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const corl::Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace corl_test

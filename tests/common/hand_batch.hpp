// The hand-computed 2 x 2 batch of the objective tests (tests/unit/objective_behavior.cpp, where its loss, gradients
// and metrics are worked out by hand; tests/unit/input_validation.cpp uses it as a valid batch to corrupt).
#pragma once

#include <cmath>

#include <corl/core/batch.hpp>

namespace corl_test {

/// B = 2, T = 2, every token a loss token. Sequence 0 (A = +1): r = 1.5 then 1; sequence 1 (A = -1): r = 0.5 then 1.
/// l = logp - logp_ref = 0.5, 0, -0.5, 0; entropy 2, 1, 0.5, 0.
inline corl::Batch<double> hand_batch() {
  corl::Batch<double> b(2, 2);
  b.set_length(0, 2);
  b.set_length(1, 2);
  b.advantages = {1.0, -1.0};
  b.group = {0, 0};
  b.logp = {-1.0, -2.0, -1.0, -0.5};
  b.logp_old = {-1.0 - std::log(1.5), -2.0, -1.0 - std::log(0.5), -0.5};
  b.logp_ref = {-1.5, -2.0, -0.5, -0.5};
  b.entropy = {2.0, 1.0, 0.5, 0.0};
  return b;
}

}  // namespace corl_test

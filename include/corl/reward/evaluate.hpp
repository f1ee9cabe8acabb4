// corl/reward/evaluate.hpp — the rollout/reward interface: call a reward with or without the policy.
//
// evaluate_reward(r, policy, sample) calls r(policy, sample) when R is a policy_reward_function (it may run the
// policy, e.g. to re-caption a generated image) and r(sample) otherwise. A result that is NaN is passed through (the
// advantage estimators treat NaN as "could not be computed": ignored in group statistics, advantage 0); +-inf is an
// error, because no reward in corl is unbounded. NoPolicy is a stand-in for scoring without a model.
#pragma once

#include <cmath>

#include "corl/concepts/reward_function.hpp"
#include "corl/core/error.hpp"

namespace corl {

/// Placeholder policy for evaluating rewards that do not need one.
struct NoPolicy {};

template <class R, class Policy, class Sample>
  requires reward_for<R, Policy, Sample>
double evaluate_reward(const R& reward, const Policy& policy, const Sample& sample) {
  double value;
  if constexpr (policy_reward_function<R, Policy, Sample>) {
    value = static_cast<double>(reward(policy, sample));
  } else {
    (void)policy;
    value = static_cast<double>(reward(sample));
  }
  require(!std::isinf(value), "corl::evaluate_reward: reward returned ", value, ", expected a finite value (or NaN for ",
          "'could not be computed')");
  return value;
}

}  // namespace corl

// corl/reward/evaluate.hpp — the rollout/reward interface: call a reward with or without the policy.
//
// evaluate_reward(r, policy, sample) calls r(policy, sample) when R is a policy_reward_function (it may run the
// policy, e.g. to re-caption a generated image) and r(sample) otherwise. A result that is NaN is passed through (the
// advantage estimators treat NaN as "could not be computed": ignored in group statistics, advantage 0); +-inf is an
// error, because no reward in corl is unbounded. NoPolicy is a stand-in for scoring without a model.
// evaluate_rewards(r, policy, samples) scores a whole batch: with r.score_batch when R is a batch_reward_function
// (checked: one finite-or-NaN value per sample), else sample by sample with evaluate_reward.
#pragma once

#include <cmath>
#include <span>
#include <vector>

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

template <class R, class Policy, class Sample>
  requires reward_for<R, Policy, Sample>
std::vector<double> evaluate_rewards(const R& reward, const Policy& policy, std::span<const Sample> samples) {
  if constexpr (batch_reward_function<R, Policy, Sample>) {
    std::vector<double> values = reward.score_batch(policy, samples);
    require(values.size() == samples.size(), "corl::evaluate_rewards: score_batch returned ", values.size(),
            " values for ", samples.size(), " samples, expected one per sample");
    for (std::size_t i = 0; i < values.size(); ++i)
      require(!std::isinf(values[i]), "corl::evaluate_rewards: score_batch returned ", values[i], " for sample ", i,
              ", expected a finite value (or NaN for 'could not be computed')");
    return values;
  } else {
    std::vector<double> values;
    values.reserve(samples.size());
    for (const Sample& s : samples) values.push_back(evaluate_reward(reward, policy, s));
    return values;
  }
}

}  // namespace corl

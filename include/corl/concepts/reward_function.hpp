// corl/concepts/reward_function.hpp — what corl calls a reward function.
//
// A reward scores one sampled completion (and whatever the sample carries: the prompt, the reference answer, the
// generated image) with a real number, higher is better. Two flavours exist because some rewards must run the model:
//   * corl::reward_function<R, Sample>: `r(sample)` is a real number. Pure scoring (format, accuracy, text F1).
//   * corl::policy_reward_function<R, Policy, Sample>: `r(policy, sample)` is a real number. The reward may call the
//     policy (CoRL's cycle consistency re-captions the generated image with the policy's own understanding path; the
//     TIM reward reads the policy's hidden states). The policy is passed as a const reference: a reward must not
//     change the parameters it is judging.
// corl::reward_for<R, Policy, Sample> accepts either; corl::evaluate_reward (corl/reward/evaluate.hpp) calls whichever
// form R provides, so composite rewards (corl/reward/combine.hpp) can mix both.
//
// T satisfies reward_function<T, Sample> if:
//   1. `std::as_const(t)(sample)` is valid for a `const Sample&` and its result converts to double;
//   2. the call has no observable side effects and returns the same value for the same sample (rewards are replayed
//      on resume and must be deterministic; any randomness must come from the sample's counter key).
// T satisfies policy_reward_function<T, Policy, Sample> if:
//   1. `std::as_const(t)(std::as_const(policy), sample)` is valid and converts to double;
//   2. the same determinism requirement holds for a fixed policy.
#pragma once

#include <concepts>

namespace corl {

template <class R, class Sample>
concept reward_function = requires(const R& r, const Sample& s) {
  { r(s) } -> std::convertible_to<double>;
};

template <class R, class Policy, class Sample>
concept policy_reward_function = requires(const R& r, const Policy& p, const Sample& s) {
  { r(p, s) } -> std::convertible_to<double>;
};

template <class R, class Policy, class Sample>
concept reward_for = reward_function<R, Sample> || policy_reward_function<R, Policy, Sample>;

}  // namespace corl

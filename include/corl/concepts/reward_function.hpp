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
// A reward may in addition score a whole step's samples at once (corl::batch_reward_function: `r.score_batch(policy,
// samples)`, like TRL's reward functions that take lists of completions), e.g. to run the policy once over all
// generated images, or on several threads. corl::evaluate_rewards (and the stage pipelines) then call it instead of the
// per-sample form; its values must be those the per-sample form gives, sample for sample.
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
#include <span>
#include <vector>

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

/// T satisfies batch_reward_function<T, Policy, Sample> if it is a reward_for the sample type and
/// `std::as_const(t).score_batch(std::as_const(policy), samples)` (samples a std::span<const Sample>) returns one value
/// per sample, std::vector<double>, equal to what the per-sample form returns for each (same determinism rules).
template <class R, class Policy, class Sample>
concept batch_reward_function =
    reward_for<R, Policy, Sample> && requires(const R& r, const Policy& p, std::span<const Sample> samples) {
      { r.score_batch(p, samples) } -> std::same_as<std::vector<double>>;
    };

}  // namespace corl

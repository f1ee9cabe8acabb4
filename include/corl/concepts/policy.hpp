// corl/concepts/policy.hpp — what corl's stage pipelines need from a model: corl::policy.
//
// A policy maps prompts to completions (text answers, image-token sequences, ...) and can be differentiated through
// its per-token log-probs. The pipeline never looks inside prompts or completions; it only moves them between the
// policy, the reward and the objective. Vocabulary:
//   SampleKey{seed, offset}   the counter-based RNG coordinates of one sampling call; row r, sample g of the call draw
//                             from Philox stream r * group + g (corl/core/rng.hpp), and draw d of a sample may use
//                             offset + d for d < 2^16 (the pipeline's offsets are 2^16 apart). The pipeline derives the offset
//                             from (stage, step, task), so every draw is a pure function of (seed, stage, step, task,
//                             row, sample, draw) and a resumed run samples exactly what the uninterrupted one did.
//   Rollout<C, Real>          a sampled completion and the sampler's log-prob of each of its tokens.
//
// P satisfies corl::policy if:
//   1. it names real_type (float or double), prompt_type, completion_type and scored_type, and scored_type has a member
//      `logp`, a std::vector<std::vector<real_type>> with one entry per completion token;
//   2. `cp.sample(prompts, group, key)` (cp const) returns std::vector<Rollout<completion_type, real_type>> of
//      prompts.size() * group rollouts, prompt-major (index p * group + g), a pure function of (parameters, prompts,
//      group, key);
//   3. `cp.score(prompts, completions)` returns a scored_type whose logp[r][t] is the log-prob of completion r's token
//      t given prompt r, under the SAME distribution the sampler drew from (same temperature, same guidance), so that
//      on-policy it equals the rollout's sampler log-prob up to rounding;
//   4. `cp.backward(scored, dlogp, grad)` ADDS to `grad` (a std::span<real_type> of parameters().size()) the gradient
//      of sum_{r,t} dlogp[r][t] * logp[r][t];
//   5. `p.parameters()` is a std::span<real_type> over ALL trainable parameters, contiguous, in a fixed order (the
//      optimizer, weight merging and checkpoints work on it); `cp.parameters()` a std::span<const real_type>;
//   6. `cp.snapshot()` returns an independent P with the same parameters (the frozen reference policy; also how the
//      pipeline hands a policy from stage to stage).
// P also satisfies corl::entropy_policy (optional; needed by objectives with an entropy bonus or an entropy mask) if:
//   7. `cp.entropy(scored)` returns std::vector<std::vector<real_type>>: entropy[r][t] = H(pi(. | prompt r, tokens < t))
//      of the same distribution logp[r][t] is read from (same temperature, same guidance), in nats;
//   8. `cp.backward(scored, dlogp, dentropy, grad)` ADDS to `grad` the gradient of
//      sum_{r,t} dlogp[r][t] * logp[r][t] + dentropy[r][t] * entropy[r][t].
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

namespace corl {

/// Counter-RNG coordinates of one sampling call (see the header comment).
struct SampleKey {
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
  friend bool operator==(const SampleKey&, const SampleKey&) = default;
};

/// A sampled completion and the sampler's per-token log-probs.
template <class Completion, class Real>
struct Rollout {
  Completion completion;
  std::vector<Real> logp;
};

template <class P>
concept policy =
    requires {
      typename P::real_type;
      typename P::prompt_type;
      typename P::completion_type;
      typename P::scored_type;
    } && std::floating_point<typename P::real_type> &&
    requires(P& p, const P& cp, const std::vector<typename P::prompt_type>& prompts,
             const std::vector<typename P::completion_type>& completions, int group, SampleKey key,
             const typename P::scored_type& scored, const std::vector<std::vector<typename P::real_type>>& dlogp,
             std::span<typename P::real_type> grad) {
      { cp.sample(prompts, group, key) }
        -> std::same_as<std::vector<Rollout<typename P::completion_type, typename P::real_type>>>;
      { cp.score(prompts, completions) } -> std::same_as<typename P::scored_type>;
      { scored.logp } -> std::convertible_to<const std::vector<std::vector<typename P::real_type>>&>;
      { cp.backward(scored, dlogp, grad) };
      { p.parameters() } -> std::same_as<std::span<typename P::real_type>>;
      { cp.parameters() } -> std::convertible_to<std::span<const typename P::real_type>>;
      { cp.snapshot() } -> std::same_as<P>;
    };

/// A policy that also gives the per-token entropy of its distribution and its gradient (items 7-8 above).
template <class P>
concept entropy_policy =
    policy<P> && requires(const P& cp, const typename P::scored_type& scored,
                          const std::vector<std::vector<typename P::real_type>>& dlogp,
                          const std::vector<std::vector<typename P::real_type>>& dentropy,
                          std::span<typename P::real_type> grad) {
      { cp.entropy(scored) } -> std::same_as<std::vector<std::vector<typename P::real_type>>>;
      { cp.backward(scored, dlogp, dentropy, grad) };
    };

}  // namespace corl

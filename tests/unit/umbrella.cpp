// The umbrella headers: <corl/grpo.hpp> and <corl/concepts.hpp> compile on their own (and twice), their components
// satisfy the concepts, and a hand-computed GRPO step runs through them.
#include <corl/grpo.hpp>
#include <corl/concepts.hpp>
#include <corl/grpo.hpp>  // include guards: a second inclusion is harmless

#include <doctest/doctest.h>

#include <cmath>
#include <span>
#include <vector>

static_assert(corl::policy_loss<corl::PpoClip>);
static_assert(corl::policy_loss<corl::DualClipPpo>);
static_assert(corl::policy_loss<corl::Gspo>);
static_assert(corl::policy_loss<corl::Cispo>);
static_assert(corl::policy_loss<corl::Reinforce>);
static_assert(corl::kl_estimator<corl::NoKl>);
static_assert(corl::kl_estimator<corl::K3>);
static_assert(corl::aggregation<corl::TokenMean>);
static_assert(corl::aggregation<corl::SeqMeanTokenSumNorm>);
static_assert(corl::advantage_estimator<corl::GroupZScore>);
static_assert(corl::advantage_estimator<corl::Rloo>);
static_assert(!corl::policy_loss<corl::K3>, "a KL estimator is not a policy loss");
static_assert(!corl::aggregation<corl::PpoClip>, "a policy loss is not an aggregation mode");

TEST_CASE("umbrella: a hand-computed GRPO step through <corl/grpo.hpp>") {
  // One group of two completions with rewards 1 and 0. Group z-score (unbiased std, eps 1e-4):
  //   mean 0.5, std sqrt(0.5) = 0.70710678, A = +-0.5 / (0.70710678 + 1e-4) = +-0.70700680.
  const std::vector<double> rewards{1.0, 0.0};
  const std::vector<corl::index_t> group{0, 0};
  std::vector<double> adv(2);
  const corl::AdvantageStats stats =
      corl::GroupZScore{}.compute<double>(corl::RewardBatch<double>{rewards, group, 1}, adv);
  CHECK(adv[0] == doctest::Approx(0.7070067953266834).epsilon(1e-14));
  CHECK(adv[1] == doctest::Approx(-0.7070067953266834).epsilon(1e-14));
  CHECK(stats.reward_mean == doctest::Approx(0.5));

  // Completion 0 has 2 tokens, completion 1 has 1; on-policy (ratio 1), PPO clip, token mean over N = 3 tokens:
  //   loss = -(2 A0 + A1) / 3 = -0.70700680 / 3 = -0.23566893;  dL/dlogp = -A_b / 3 at every loss token, 0 elsewhere.
  corl::Batch<double> batch(2, 2);
  batch.group = group;
  batch.advantages = adv;
  batch.set_length(0, 2);
  batch.set_length(1, 1);
  batch.logp = {-0.5, -1.0, -2.0, 0.0};
  const corl::Objective<corl::PpoClip, corl::NoKl, corl::TokenMean> objective;
  const corl::Normalizers totals = objective.count_normalizers(batch.view());
  CHECK(totals.total_tokens == 3.0);
  CHECK(totals.total_sequences == 2.0);
  const auto result = objective.evaluate(batch.view(), totals);
  CHECK(result.loss == doctest::Approx(-0.23566893177556114).epsilon(1e-13));
  CHECK(result.grad_logp(0, 0) == doctest::Approx(-0.23566893177556114).epsilon(1e-13));
  CHECK(result.grad_logp(0, 1) == doctest::Approx(-0.23566893177556114).epsilon(1e-13));
  CHECK(result.grad_logp(1, 0) == doctest::Approx(0.23566893177556114).epsilon(1e-13));
  CHECK(result.grad_logp(1, 1) == 0.0);  // padding
  CHECK(result.metrics.tokens == 3.0);
}

TEST_CASE("umbrella: the from-logits backward and AdamW compose (one step lowers the loss)") {
  // One token over a 3-token vocabulary, logits 0: p = 1/3 each, target 2, loss = -logp = log 3.
  std::vector<double> logits{0.0, 0.0, 0.0}, dlogits(3), logp(1), lse(1);
  const std::vector<std::int32_t> target{2};
  corl::logprobs_from_logits<double, double>(logits, 3, target, 1.0, logp, {}, lse);
  CHECK(logp[0] == doctest::Approx(-std::log(3.0)).epsilon(1e-15));
  // dL/dlogp = -1  ->  dL/dlogits = -(onehot - p) = (1/3, 1/3, -2/3).
  const std::vector<double> dlogp{-1.0};
  corl::logprobs_backward_from_logits<double, double, double>(logits, 3, target, 1.0, lse, dlogp, dlogits);
  CHECK(dlogits[0] == doctest::Approx(1.0 / 3.0).epsilon(1e-15));
  CHECK(dlogits[2] == doctest::Approx(-2.0 / 3.0).epsilon(1e-15));
  // AdamW's first step moves each parameter by lr against the sign of its gradient (m/sqrt(v) = sign(g)).
  corl::AdamW<double> opt(corl::AdamWConfig{.lr = 0.1, .eps = 1e-12, .weight_decay = 0.0});
  opt.add_parameter(logits);
  opt.step({std::span<const double>(dlogits)});
  CHECK(logits[0] == doctest::Approx(-0.1).epsilon(1e-9));
  CHECK(logits[2] == doctest::Approx(0.1).epsilon(1e-9));
  corl::logprobs_from_logits<double, double>(logits, 3, target, 1.0, logp, {}, lse);
  CHECK(-logp[0] < std::log(3.0));
}

TEST_CASE("umbrella: bad input reaches the caller as corl::Error") {
  const std::vector<double> rewards{1.0, 0.0};
  const std::vector<corl::index_t> group{0, 3};
  std::vector<double> adv(2);
  CHECK_THROWS_AS(corl::GroupZScore{}.compute<double>(corl::RewardBatch<double>{rewards, group, 2}, adv), corl::Error);
}

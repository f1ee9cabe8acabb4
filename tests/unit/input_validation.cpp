// Bad input across the library gives a corl::Error that names what was wrong, and leaves nothing half-updated: the
// cases an audit of the public API found accepted (an out-of-bounds read, NaN that reached a loss, a gradient or the
// parameters, settings that silently disabled a feature, an optimizer step that stopped half-way).
#include <doctest/doctest.h>

#include <cmath>
#include <corl/advantage/advantage.hpp>
#include <corl/advantage/dynamic_sampling.hpp>
#include <corl/advantage/group_mean.hpp>
#include <corl/advantage/group_zscore.hpp>
#include <corl/advantage/overlong_penalty.hpp>
#include <corl/advantage/rloo.hpp>
#include <corl/core/error.hpp>
#include <corl/logprob/from_logits.hpp>
#include <corl/logprob/grpo_from_logits.hpp>
#include <corl/loss/aggregate.hpp>
#include <corl/loss/delta_clip.hpp>
#include <corl/loss/dual_clip.hpp>
#include <corl/loss/kl.hpp>
#include <corl/loss/kl_controller.hpp>
#include <corl/loss/objective.hpp>
#include <corl/loss/ppo_clip.hpp>
#include <corl/loss/reinforce.hpp>
#include <corl/loss/sapo.hpp>
#include <corl/optim/adamw.hpp>
#include <corl/pipeline/adamw_optimizer.hpp>
#include <corl/pipeline/merge.hpp>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "common/hand_batch.hpp"

namespace {
using doctest::Contains;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

using corl_test::hand_batch;

template <class Loss, class Kl = corl::NoKl>
void check_objective_rejects(const Loss& loss, const char* message, corl::ObjectiveConfig cfg = {}, Kl kl = {}) {
  const corl::Batch<double> b = hand_batch();
  const corl::Objective obj(loss, kl, corl::TokenMean{}, cfg);
  CHECK_THROWS_WITH_AS((void)obj.count_normalizers(b.view()), Contains(message), corl::Error);
}
}  // namespace

TEST_CASE("objective: a short mask is an error in count_normalizers and sequence_weights, not an out-of-bounds read") {
  const corl::Batch<double> b = hand_batch();
  const corl::Objective obj(corl::PpoClip{}, corl::NoKl{}, corl::TokenMean{}, corl::ObjectiveConfig{});
  auto v = b.view();
  v.mask = v.mask.first(2);  // [B * T] = 4 expected
  CHECK_THROWS_AS((void)obj.count_normalizers(v), corl::Error);
  const corl::Normalizers z = obj.count_normalizers(b.view());
  std::vector<double> w(2);
  CHECK_THROWS_AS(obj.sequence_weights(v, z, std::span<double>(w)), corl::Error);
}

TEST_CASE("objective: loss, KL and config settings that would disable or corrupt the loss are named errors") {
  check_objective_rejects(corl::DeltaClip{.delta = kNaN}, "DeltaClip.delta");
  check_objective_rejects(corl::DeltaClip{.delta = 1.1}, "DeltaClip.delta");  // must exceed 1 + eps_high = 1.2
  check_objective_rejects(corl::DualClipPpo{.clip_ratio_c = 0.0}, "DualClipPpo.clip_ratio_c");
  check_objective_rejects(corl::PpoClip{.eps_low = -5.0}, "PpoClip.eps_low");
  check_objective_rejects(corl::PpoClip{.eps_high = kInf}, "PpoClip.eps_high");
  check_objective_rejects(corl::PpoClip{.exp_clamp = -1.0}, "PpoClip.exp_clamp");
  check_objective_rejects(corl::PpoClip{.exp_clamp = 1000.0}, "PpoClip.exp_clamp");
  check_objective_rejects(corl::Sapo{.tau_pos = 0.0}, "Sapo.tau_pos");
  corl::ObjectiveConfig kl_cfg;
  kl_cfg.beta = 0.1;
  check_objective_rejects(corl::PpoClip{}, "K3.value_max", kl_cfg, corl::K3{.value_max = -1.0});
  check_objective_rejects(corl::PpoClip{}, "BiasCorrected.exp_clamp", kl_cfg,
                          corl::BiasCorrected<corl::K3>{.exp_clamp = 0.0});
  check_objective_rejects(corl::PpoClip{}, "K3.exp_clamp", kl_cfg, corl::K3Plus{.base = corl::K3{.exp_clamp = kNaN}});
  corl::ObjectiveConfig neg_beta;
  neg_beta.beta = -1.0;
  check_objective_rejects(corl::PpoClip{}, "config.beta = -1", neg_beta, corl::K3{});
  corl::ObjectiveConfig nan_threshold;
  nan_threshold.entropy_threshold = kNaN;
  check_objective_rejects(corl::PpoClip{}, "config.entropy_threshold", nan_threshold);
  // beta representable in double but not in float: a float objective says so instead of reporting a "bug"
  corl::ObjectiveConfig huge_beta;
  huge_beta.beta = 1e39;
  corl::Batch<float> bf(1, 1);
  bf.set_length(0, 1);
  bf.advantages = {1.0f};
  bf.group = {0};
  bf.logp = {-1.0f};
  bf.logp_ref = {-1.0f};
  const corl::Objective fobj(corl::PpoClip{}, corl::K3{}, corl::TokenMean{}, huge_beta);
  CHECK_THROWS_WITH_AS((void)fobj.count_normalizers(bf.view()), Contains("config.beta = 1e+39"), corl::Error);
  // valid settings still work
  const corl::Batch<double> b = hand_batch();
  const corl::Objective ok(corl::DeltaClip{}, corl::K3{}, corl::TokenMean{}, kl_cfg);
  CHECK(std::isfinite(ok.evaluate(b.view(), ok.count_normalizers(b.view())).loss));
}

TEST_CASE("log-probs: a temperature whose inverse overflows, overflowing scaled logits and NaN upstream gradients") {
  const std::vector<float> logits{1.0f, 2.0f, 3.0f};
  const std::vector<std::int32_t> targets{1};
  std::vector<float> logp(1), lse(1);
  CHECK_THROWS_WITH_AS((corl::logprobs_from_logits<float, float>(logits, 3, targets, 1e-40f, logp, {}, lse)),
                       Contains("temperature = "), corl::Error);
  const std::vector<float> big{1e30f, 0.0f, 0.0f};
  CHECK_THROWS_WITH_AS((corl::logprobs_from_logits<float, float>(big, 3, targets, 1e-10f, logp, {}, lse)),
                       Contains("overflows when divided by the temperature"), corl::Error);
  corl::logprobs_from_logits<float, float>(logits, 3, targets, 1.0f, logp, {}, lse);
  std::vector<float> dlogits(3, 0.0f);
  const std::vector<float> nan_g{std::numeric_limits<float>::quiet_NaN()};
  CHECK_THROWS_WITH_AS((corl::logprobs_backward_from_logits<float, float, float>(logits, 3, targets, 1.0f, lse, nan_g,
                                                                                 dlogits)),
                       Contains("dlogp = nan"), corl::Error);
  const std::vector<float> inf_logits{1.0f, std::numeric_limits<float>::infinity(), 3.0f};
  const std::vector<float> g{1.0f};
  CHECK_THROWS_WITH_AS((corl::logprobs_backward_from_logits<float, float, float>(inf_logits, 3, targets, 1.0f, lse, g,
                                                                                 dlogits)),
                       Contains("logits[row 0, column 1]"), corl::Error);
  const std::vector<float> entropy{1.0f}, nan_h{std::numeric_limits<float>::quiet_NaN()};
  CHECK_THROWS_WITH_AS((corl::logprobs_backward_from_logits<float, float, float>(logits, 3, targets, 1.0f, lse, g,
                                                                                 dlogits, entropy, nan_h)),
                       Contains("dentropy = nan"), corl::Error);
}

TEST_CASE("grpo_loss_from_logits validates the policy loss's settings") {
  const std::vector<double> logits{1, 2, 3, 0, 0, 0};
  const std::vector<std::int32_t> targets{2, 0};
  const std::vector<double> adv{1.0}, weight{0.5};
  corl::GrpoLogitsBatch<double, double> in;
  in.logits = logits;
  in.sequences = 1;
  in.seq_len = 2;
  in.vocab = 3;
  in.targets = targets;
  in.advantages = adv;
  in.token_weight = weight;
  std::vector<double> grad(6);
  CHECK_THROWS_WITH_AS((corl::grpo_loss_from_logits<double>(in, corl::Sapo{.tau_pos = 0.0}, corl::NoKl{},
                                                            std::span<double>(grad))),
                       Contains("Sapo.tau_pos = 0"), corl::Error);
  CHECK(std::isfinite(
      corl::grpo_loss_from_logits<double>(in, corl::Sapo{}, corl::NoKl{}, std::span<double>(grad)).loss));
}

TEST_CASE("AdamW: NaN gradients, an eps that rounds to zero, a sign-flipping decay and a failed step change nothing") {
  std::vector<float> p0{1.0f, 2.0f}, p1{3.0f};
  corl::AdamW<float> adam(corl::AdamWConfig{});
  adam.add_parameter(p0);
  adam.add_parameter(p1);
  const std::vector<float> g0{0.1f, 0.2f}, g1_nan{std::numeric_limits<float>::quiet_NaN()}, g1_short{};
  std::vector<std::span<const float>> grads{g0, g1_nan};
  CHECK_THROWS_WITH_AS(adam.step(grads), Contains("nothing was updated"), corl::Error);
  grads = {g0, g1_short};
  CHECK_THROWS_WITH_AS(adam.step(grads), Contains("grads[1] has 0 entries"), corl::Error);
  CHECK(p0 == std::vector<float>{1.0f, 2.0f});  // buffer 0 untouched by the failed steps
  CHECK(adam.steps_taken() == 0);
  CHECK(adam.first_moment(0)[0] == 0.0f);
  CHECK_THROWS_WITH_AS(corl::adamw_scalars<float>(corl::AdamWConfig{.eps = 1e-50}, 1), Contains("rounds to 0"),
                       corl::Error);
  CHECK_THROWS_WITH_AS(corl::AdamW<float>(corl::AdamWConfig{.lr = 1.0, .weight_decay = 3.0}),
                       Contains("lr * weight_decay = 3"), corl::Error);
  CHECK_THROWS_AS(adam.set_lr(kNaN), corl::Error);
  CHECK(adam.config().lr == 1e-3);  // the old rate is kept
  CHECK_THROWS_AS(corl::AdamW<float>(corl::AdamWConfig{.eps = kInf}), corl::Error);
}

TEST_CASE("StageAdamW::load_state rejects negative or NaN moments before restoring anything") {
  std::vector<double> params{1.0, 2.0};
  const std::vector<double> grads{0.5, -0.5};
  corl::StageAdamW<double> opt(corl::AdamWConfig{});
  opt.step(params, grads, 1e-3);
  std::string state = opt.state();
  const double bad_v = -1.0;
  std::memcpy(state.data() + 22 + 3 * sizeof(double), &bad_v, sizeof(double));  // v[1]
  CHECK_THROWS_WITH_AS(opt.load_state(state), Contains("second moment [1] = -1"), corl::Error);
  const double bad_m = kNaN;
  std::string state2 = opt.state();
  std::memcpy(state2.data() + 22, &bad_m, sizeof(double));  // m[0]
  CHECK_THROWS_WITH_AS(opt.load_state(state2), Contains("first moment [0] = nan"), corl::Error);
  opt.load_state(opt.state());  // a valid state still loads
  CHECK(opt.steps_taken() == 1);
}

TEST_CASE("the adaptive KL controller never makes beta negative and needs a finite max_error") {
  corl::AdaptiveKlController c;
  CHECK_THROWS_WITH_AS(c.update(0.0, 100000), Contains("would make beta <= 0"), corl::Error);
  CHECK(c.value() == 0.1);
  c.max_error = kNaN;
  CHECK_THROWS_WITH_AS(c.update(12.0, 10), Contains("max_error = nan"), corl::Error);
  c.max_error = 0.2;
  c.update(12.0, 100);  // KL above target: beta grows by 1 + 0.2 * 100 / 10000
  CHECK(c.value() == doctest::Approx(0.1 * 1.002));
}

TEST_CASE("merging: NaN or inf weights are errors, huge precisions do not overflow") {
  const std::vector<double> a{1.0, 2.0}, b_bad{kNaN, 0.0}, b{3.0, 4.0};
  std::vector<double> out(2);
  CHECK_THROWS_WITH_AS(corl::merge_linear<double>(a, b_bad, 0.0, out), Contains("b[0] = nan"), corl::Error);
  const std::vector<double> base_bad{kInf, 0.0};
  CHECK_THROWS_WITH_AS(corl::merge_task_arithmetic<double>(base_bad, {std::span<const double>(b)}, {1.0}, out),
                       Contains("base[0] = inf"), corl::Error);
  const std::vector<double> p_huge{1e308, 1e308};
  corl::merge_precision_weighted<double>(a, p_huge, b, p_huge, out);
  CHECK(out == std::vector<double>{2.0, 3.0});
  const std::vector<float> af{3e38f}, bf{-3e38f};  // 3e38 + 2 (-3e38 - 3e38) = -9e38: beyond float
  std::vector<float> outf(1);
  CHECK_THROWS_WITH_AS(corl::merge_task_arithmetic<float>(af, {std::span<const float>(bf)}, {2.0}, outf),
                       Contains("not finite in the output"), corl::Error);
}

TEST_CASE("dynamic sampling: a NaN mean bound is an error, not a disabled filter") {
  const std::vector<double> r{0, 1, 1, 1};
  const std::vector<corl::index_t> g{0, 0, 1, 1};
  const corl::RewardBatch<double> batch{r, g, 2};
  CHECK_THROWS_WITH_AS(corl::filter_groups(corl::GroupFilter{.min_mean = kNaN}, batch), Contains("not NaN"),
                       corl::Error);
}

TEST_CASE("group advantages: rewards that overflow the arithmetic are an error, an underflowed std is a zero-std group") {
  const std::vector<corl::index_t> g3{0, 0, 0}, g2{0, 0};
  // the group sum overflows a double: mean inf, advantages NaN before the check
  const std::vector<double> huge{1e308, 1e308, -1e308};
  CHECK_THROWS_WITH_AS((void)corl::compute_advantages(corl::GroupZScore{}, corl::RewardBatch<double>{huge, g3, 1}),
                       Contains("GroupZScore::compute: group 0 (sequence 0"), corl::Error);
  CHECK_THROWS_WITH_AS((void)corl::compute_advantages(corl::GroupMean{}, corl::RewardBatch<double>{huge, g3, 1}),
                       Contains("overflow"), corl::Error);
  // the spread overflows while the mean does not: the z-score would silently be 0 without the check
  const std::vector<double> spread{1e308, -1e308, 1e308, -1e308};
  const std::vector<corl::index_t> g4{0, 0, 0, 0};
  CHECK_THROWS_WITH_AS((void)corl::compute_advantages(corl::GroupZScore{}, corl::RewardBatch<double>{spread, g4, 1}),
                       Contains("sum of squared deviations"), corl::Error);
  // finite in double, not in float: RLOO's n / (n - 1) (r - mean) = 2 x 3e38
  const std::vector<float> big_float{3e38f, -3e38f};
  CHECK_THROWS_WITH_AS((void)corl::compute_advantages(corl::Rloo{}, corl::RewardBatch<float>{big_float, g2, 1}),
                       Contains("not finite as float"), corl::Error);
  // the same rewards are fine for the z-score (|A| = 0.707)
  const auto [z, zs] = corl::compute_advantages(corl::GroupZScore{}, corl::RewardBatch<float>{big_float, g2, 1});
  CHECK(z[0] == doctest::Approx(std::sqrt(0.5)).epsilon(1e-6));
  CHECK(z[1] == doctest::Approx(-std::sqrt(0.5)).epsilon(1e-6));
  // eps = 0 and rewards that differ by a denormal: the std underflows to 0, the group gets A = 0, no inf / NaN
  const std::vector<double> tiny{0.0, 5e-324};
  const auto [a, st] =
      corl::compute_advantages(corl::GroupZScore{.eps = 0.0}, corl::RewardBatch<double>{tiny, g2, 1});
  CHECK(a[0] == 0.0);
  CHECK(a[1] == 0.0);
}

TEST_CASE("overlong penalty: an infinite factor or a shaped reward that overflows is an error, NaN stays NaN") {
  const std::vector<corl::index_t> lengths{120, 50};
  std::vector<double> r{1.0, 2.0};
  const corl::OverlongPenalty inf_factor{.max_length = 100, .cache_length = 20, .penalty_factor = kInf};
  CHECK_THROWS_WITH_AS(inf_factor.apply(std::span<double>(r), std::span<const corl::index_t>(lengths)),
                       Contains("penalty_factor = inf, expected finite >= 0"), corl::Error);
  const corl::OverlongPenalty dapo{.max_length = 100, .cache_length = 20, .penalty_factor = 1.0};
  const corl::OverlongPenalty big{.max_length = 100, .cache_length = 20, .penalty_factor = 1e38};
  std::vector<float> edge{-3e38f, 0.5f};  // -3e38 - 1e38 is not a float
  CHECK_THROWS_WITH_AS(big.apply(std::span<float>(edge), std::span<const corl::index_t>(lengths)),
                       Contains("rewards[0]"), corl::Error);
  std::vector<double> with_nan{kNaN, 0.5};
  dapo.apply(std::span<double>(with_nan), std::span<const corl::index_t>(lengths));
  CHECK(std::isnan(with_nan[0]));
  CHECK(with_nan[1] == 0.5);
}

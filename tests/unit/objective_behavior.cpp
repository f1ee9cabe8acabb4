// The objective on small hand-computed batches: the full formula, metrics, importance correction, truncation and
// entropy masks, zero-std groups, stability at extreme log-ratios, and errors (never a NaN) for bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <corl/core/error.hpp>
#include <corl/loss/aggregate.hpp>
#include <corl/loss/cispo.hpp>
#include <corl/loss/delta_clip.hpp>
#include <corl/loss/dual_clip.hpp>
#include <corl/loss/entropy_mask.hpp>
#include <corl/loss/gmpo.hpp>
#include <corl/loss/gspo.hpp>
#include <corl/loss/kl.hpp>
#include <corl/loss/objective.hpp>
#include <corl/loss/ppo_clip.hpp>
#include <corl/loss/reinforce.hpp>
#include <corl/loss/sapo.hpp>
#include <limits>

#include "common/hand_batch.hpp"

namespace {
using doctest::Approx;

using corl_test::hand_batch;
}  // namespace

TEST_CASE("PPO clip + 0.1 k3 + 0.01 entropy bonus, token-mean: hand-computed loss, gradients and metrics") {
  // Per token: policy -1.2 (clipped high), -1, 0.8 (clipped low), 1; k3 0.10653..., 0, 0.14872..., 0;
  // entropy term -0.02, -0.01, -0.005, 0. Loss = sum / 4.
  corl::ObjectiveConfig cfg;
  cfg.beta = 0.1;
  cfg.entropy_coef = 0.01;
  const corl::Objective obj(corl::PpoClip{}, corl::K3{}, corl::TokenMean{}, cfg);
  const auto b = hand_batch();
  const auto z = obj.count_normalizers(b.view());
  CHECK(z.total_tokens == 4);
  CHECK(z.total_sequences == 2);
  const auto r = obj.evaluate(b.view(), z);
  CHECK(r.loss == Approx(-0.10236870173968099));
  CHECK(r.grad_logp(0, 0) == Approx(0.009836733507184165));  // policy clipped: only 0.1 k3' / 4
  CHECK(r.grad_logp(0, 1) == Approx(-0.25));
  CHECK(r.grad_logp(1, 0) == Approx(-0.016218031767503204));
  CHECK(r.grad_logp(1, 1) == Approx(0.25));
  for (int i = 0; i < 4; ++i) CHECK(r.grad_entropy(i / 2, i % 2) == Approx(-0.0025));
  const auto& m = r.metrics;
  CHECK(m.tokens == 4);
  CHECK(m.clip_fraction_low() == Approx(0.25));
  CHECK(m.clip_fraction_high() == Approx(0.25));
  CHECK(m.dual_clip_fraction() == 0.0);
  CHECK(m.ratio_mean() == Approx(1.0));
  CHECK(m.ratio_min == Approx(0.5));
  CHECK(m.ratio_max == Approx(1.5));
  CHECK(m.kl_mean() == Approx(0.0638129826031904));
  CHECK(m.entropy_mean() == Approx(0.875));
  CHECK(m.advantage_mean() == Approx(0.0));
  CHECK(m.advantage_std() == Approx(1.0));
  CHECK(m.zero_std_group_fraction() == 0.0);
  CHECK(m.policy_loss + m.kl_loss + m.entropy_loss == Approx(r.loss));
  CHECK(m.entropy_loss == Approx(-0.035 / 4));
}

TEST_CASE("float and double agree on the hand-computed batch") {
  const auto d = hand_batch();
  corl::Batch<float> f(2, 2);
  const auto cast = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  f.mask = d.mask;
  f.lengths = d.lengths;
  f.group = d.group;
  f.advantages = cast(d.advantages);
  f.logp = cast(d.logp);
  f.logp_old = cast(d.logp_old);
  f.logp_ref = cast(d.logp_ref);
  corl::ObjectiveConfig cfg;
  cfg.beta = 0.1;
  const corl::Objective obj(corl::DualClipPpo{}, corl::K3{}, corl::SeqMeanTokenMean{}, cfg);
  const auto rd = obj.evaluate(d.view(), obj.count_normalizers(d.view()));
  const auto rf = obj.evaluate(f.view(), obj.count_normalizers(f.view()));
  CHECK(rf.loss == Approx(rd.loss).epsilon(1e-6));
  CHECK((rf.grad_logp.cast<double>() - rd.grad_logp).cwiseAbs().maxCoeff() < 1e-6);
}

TEST_CASE("REINFORCE without logp_old is on-policy: loss = -mean A, gradient -A w") {
  corl::Batch<double> b(3, 2);
  for (int s = 0; s < 3; ++s) b.set_length(s, 2);
  b.advantages = {1.0, 2.0, -0.5};
  b.logp = {-1, -2, -3, -1, -2, -3};
  const corl::Objective<corl::Reinforce> obj;
  const auto r = obj.evaluate(b.view(), obj.count_normalizers(b.view()));
  CHECK(r.loss == Approx(-2.5 / 3.0));
  CHECK(r.grad_logp(1, 0) == Approx(-2.0 / 6.0));
  CHECK(r.metrics.ratio_mean() == 1.0);
  CHECK(r.grad_entropy.size() == 0);
}

TEST_CASE("importance correction: token TIS truncates, MIS masks, sequence level uses the product of ratios") {
  // One sequence, two tokens, REINFORCE on-policy with A = 1; log rho = 0.5 and -0.3.
  corl::Batch<double> b(1, 2);
  b.set_length(0, 2);
  b.advantages = {1.0};
  b.logp = {-1.0, -1.0};
  b.logp_old = b.logp;
  b.logp_sampler = {-1.5, -0.7};
  corl::ObjectiveConfig cfg;
  cfg.importance.level = corl::ImportanceLevel::token;
  cfg.importance.upper = 1.2;
  corl::Objective<corl::Reinforce> obj({}, {}, {}, cfg);
  const auto z = obj.count_normalizers(b.view());
  auto r = obj.evaluate(b.view(), z);  // c = min(e^0.5, 1.2) = 1.2 and e^-0.3
  CHECK(r.loss == Approx(-0.970409110340859));
  CHECK(r.grad_logp(0, 0) == Approx(-0.6));
  CHECK(r.grad_logp(0, 1) == Approx(-0.37040911034085894));
  CHECK(r.metrics.importance_weight_mean() == Approx(0.970409110340859));

  obj.config.importance.mode = corl::ImportanceMode::mask;
  obj.config.importance.lower = 0.8;
  obj.config.importance.upper = 1.5;
  r = obj.evaluate(b.view(), z);  // e^0.5 > 1.5 and e^-0.3 < 0.8: both masked
  CHECK(r.loss == 0.0);
  CHECK(r.grad_logp.isZero());
  obj.config.importance.lower = 0.5;
  r = obj.evaluate(b.view(), z);
  CHECK(r.grad_logp(0, 0) == 0.0);
  CHECK(r.grad_logp(0, 1) == Approx(-0.37040911034085894));

  obj.config.importance = {};
  obj.config.importance.level = corl::ImportanceLevel::sequence;
  r = obj.evaluate(b.view(), z);  // rho = e^(0.5 - 0.3) = 1.2214 < 2: weight on both tokens
  CHECK(r.loss == Approx(-1.2214027581601699));
  CHECK(r.grad_logp(0, 1) == Approx(-1.2214027581601699 / 2));

  b.logp_sampler.clear();
  CHECK_THROWS_WITH_AS((void)obj.evaluate(b.view(), z), doctest::Contains("logp_sampler is absent"), corl::Error);
}

TEST_CASE("truncated completions are masked and leave the normalisers") {
  corl::Batch<double> b(2, 2);
  b.set_length(0, 2);
  b.set_length(1, 1);
  b.advantages = {3.0, 1.0};
  b.group = {0, 0};
  b.truncated = {1, 0};
  corl::ObjectiveConfig cfg;
  cfg.mask_truncated = true;
  const corl::Objective obj(corl::Reinforce{}, corl::NoKl{}, corl::SeqMeanTokenMean{}, cfg);
  const auto z = obj.count_normalizers(b.view());
  CHECK(z.total_tokens == 1);
  CHECK(z.total_sequences == 1);
  const auto r = obj.evaluate(b.view(), z);
  CHECK(r.loss == Approx(-1.0));
  CHECK(r.grad_logp.row(0).isZero());
  b.truncated.clear();
  CHECK_THROWS_WITH_AS((void)obj.count_normalizers(b.view()), doctest::Contains("truncated is absent"), corl::Error);
}

TEST_CASE("top-entropy mask keeps the top rho fraction of loss tokens") {
  corl::Batch<double> b(1, 5);
  b.set_length(0, 4);  // the fifth entropy is padding and must be ignored
  b.advantages = {1.0};
  b.entropy = {3.0, 1.0, 2.0, 0.5, 100.0};
  CHECK(corl::top_entropy_threshold(b.view(), 0.5) == 2.0);   // keep 2 of 4
  CHECK(corl::top_entropy_threshold(b.view(), 0.3) == 2.0);   // ceil(0.3 * 4) = 2
  CHECK(corl::top_entropy_threshold(b.view(), 0.25) == 3.0);  // keep 1
  CHECK(corl::top_entropy_threshold(b.view(), 1.0) == 0.5);   // keep all
  CHECK_THROWS_WITH_AS((void)corl::top_entropy_threshold(b.view(), 0.0), doctest::Contains("rho = 0"), corl::Error);
  corl::ObjectiveConfig cfg;
  cfg.entropy_threshold = corl::top_entropy_threshold(b.view(), 0.5);
  const corl::Objective obj(corl::Reinforce{}, corl::NoKl{}, corl::TokenMean{}, cfg);
  const auto z = obj.count_normalizers(b.view());
  CHECK(z.total_tokens == 2);
  const auto r = obj.evaluate(b.view(), z);
  CHECK(r.loss == Approx(-1.0));
  CHECK(r.grad_logp(0, 0) == Approx(-0.5));
  CHECK(r.grad_logp(0, 1) == 0.0);
  CHECK(r.grad_logp(0, 2) == Approx(-0.5));
  CHECK(r.grad_logp(0, 3) == 0.0);
}

TEST_CASE("zero-std groups: counted in the metrics, zero policy gradient") {
  corl::Batch<double> b(4, 1);
  for (int s = 0; s < 4; ++s) b.set_length(s, 1);
  b.group = {0, 0, 1, 1};
  b.advantages = {0.0, 0.0, 0.5, -0.5};
  const corl::Objective<corl::PpoClip> obj;
  const auto r = obj.evaluate(b.view(), obj.count_normalizers(b.view()));
  CHECK(r.metrics.groups == 2);
  CHECK(r.metrics.zero_std_groups == 1);
  CHECK(r.metrics.zero_std_group_fraction() == Approx(0.5));
  CHECK(r.grad_logp(0, 0) == 0.0);
  CHECK(r.grad_logp(1, 0) == 0.0);
  CHECK(r.grad_logp(2, 0) == Approx(-0.125));
  CHECK(r.loss == Approx(0.0));
}

namespace {
template <class Real, class Loss>
void check_extreme(const Loss& loss) {
  // |logp - logp_ref| = 50 and |log r| = 50 in both directions, with entropy bonus and sequence-level IS.
  corl::Batch<Real> b(4, 2);
  for (int s = 0; s < 4; ++s) b.set_length(s, 2);
  b.advantages = {Real(1), Real(-1), Real(2), Real(-2)};
  b.group = {0, 0, 1, 1};
  b.logp = {Real(-0.1), Real(-60), Real(-0.1), Real(-60), Real(-1), Real(-1), Real(-55), Real(-0.5)};
  b.logp_old = {Real(-50.1), Real(-10), Real(-0.1), Real(-60), Real(-1), Real(-51), Real(-5), Real(-0.5)};
  b.logp_ref = {Real(-50.1), Real(-10), Real(-50.1), Real(-10), Real(-51), Real(-1), Real(-5), Real(-50.5)};
  b.logp_sampler = {Real(-0.1), Real(-60), Real(-80), Real(-60), Real(-1), Real(-1), Real(-5), Real(-0.5)};
  b.entropy.assign(8, Real(1));
  corl::ObjectiveConfig cfg;
  cfg.beta = 1.0;
  cfg.entropy_coef = 0.01;
  cfg.importance.level = corl::ImportanceLevel::sequence;
  const corl::Objective obj(loss, corl::K3{}, corl::SeqMeanTokenMean{}, cfg);
  const auto r = obj.evaluate(b.view(), obj.count_normalizers(b.view()));
  CHECK(std::isfinite(r.loss));
  CHECK(r.grad_logp.allFinite());
  CHECK(r.grad_entropy.allFinite());
  CHECK(std::isfinite(r.metrics.ratio_max));
  CHECK(std::isfinite(r.metrics.kl_mean()));
}
template <class Real>
void check_extreme_all() {
  check_extreme<Real>(corl::PpoClip{});
  check_extreme<Real>(corl::DualClipPpo{});
  check_extreme<Real>(corl::DeltaClip{});
  check_extreme<Real>(corl::Gspo{});
  check_extreme<Real>(corl::Gmpo{});
  check_extreme<Real>(corl::Cispo{});
  check_extreme<Real>(corl::Sapo{});
  check_extreme<Real>(corl::Reinforce{});
}
}  // namespace

TEST_CASE("stability: |logp - logp_ref| = 50 and |log r| = 50 give finite losses and gradients (float, double)") {
  check_extreme_all<float>();
  check_extreme_all<double>();
}

TEST_CASE("bad input is a corl::Error naming the function, array and index, never a NaN loss") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  corl::ObjectiveConfig cfg;
  cfg.beta = 0.1;
  const corl::Objective obj(corl::PpoClip{}, corl::K3{}, corl::TokenMean{}, cfg);
  auto b = hand_batch();
  const auto z = obj.count_normalizers(b.view());
  b.logp[3] = nan;
  CHECK_THROWS_WITH_AS((void)obj.evaluate(b.view(), z),
                       doctest::Contains("Objective::evaluate: logp[1, 1] = nan, expected a finite value"), corl::Error);
  b = hand_batch();
  b.logp_ref[0] = -std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS((void)obj.evaluate(b.view(), z), doctest::Contains("logp_ref[0, 0] = -inf"), corl::Error);
  b = hand_batch();
  b.advantages[0] = nan;
  CHECK_THROWS_WITH_AS((void)obj.evaluate(b.view(), z), doctest::Contains("advantages[0] = nan"), corl::Error);
  b = hand_batch();
  b.logp_ref.clear();
  CHECK_THROWS_WITH_AS((void)obj.evaluate(b.view(), z), doctest::Contains("logp_ref is absent"), corl::Error);
  b = hand_batch();
  corl::ObjectiveConfig ent;
  ent.entropy_coef = 0.01;
  b.entropy.clear();
  const corl::Objective with_entropy(corl::PpoClip{}, corl::NoKl{}, corl::TokenMean{}, ent);
  CHECK_THROWS_WITH_AS((void)with_entropy.evaluate(b.view(), z), doctest::Contains("entropy is absent"), corl::Error);
  corl::ObjectiveConfig bad_beta;
  bad_beta.beta = nan;
  const corl::Objective nan_beta(corl::PpoClip{}, corl::K3{}, corl::TokenMean{}, bad_beta);
  CHECK_THROWS_WITH_AS((void)nan_beta.evaluate(hand_batch().view(), z), doctest::Contains("config.beta = nan"),
                       corl::Error);
  // NaN in padding is ignored: the loss stays finite and the padding gradient is 0.
  b = hand_batch();
  b.set_length(1, 1);
  b.logp[3] = nan;
  b.logp_ref[3] = nan;
  const auto r = obj.evaluate(b.view(), obj.count_normalizers(b.view()));
  CHECK(std::isfinite(r.loss));
  CHECK(r.grad_logp(1, 1) == 0.0);
}

TEST_CASE("sequence_weights exports w_b for the CUDA kernels") {
  const auto b = hand_batch();
  const corl::Objective<corl::PpoClip, corl::NoKl, corl::SeqMeanTokenMean> obj;
  auto b2 = b;
  b2.set_length(1, 1);
  const auto z = obj.count_normalizers(b2.view());
  std::vector<float> w(2);
  obj.sequence_weights(b2.view(), z, std::span<float>(w));
  CHECK(w[0] == Approx(0.25));  // 1 / (n_0 = 2 * N_seq = 2)
  CHECK(w[1] == Approx(0.5));   // 1 / (1 * 2)
  std::vector<float> wrong(3);
  CHECK_THROWS_WITH_AS(obj.sequence_weights(b2.view(), z, std::span<float>(wrong)),
                       doctest::Contains("out has 3 elements, expected batch = 2"), corl::Error);
}

TEST_CASE("per-token advantages replace the sequence advantage token by token") {
  corl::Batch<double> b(1, 2);
  b.set_length(0, 2);
  b.advantages = {100.0};  // ignored when token_advantages is present
  b.token_advantages = {1.0, 2.0};
  const corl::Objective<corl::Reinforce> obj;
  const auto r = obj.evaluate(b.view(), obj.count_normalizers(b.view()));
  CHECK(r.loss == Approx(-1.5));
  CHECK(r.grad_logp(0, 0) == Approx(-0.5));
  CHECK(r.grad_logp(0, 1) == Approx(-1.0));
}

TEST_CASE("GSPO through the objective: sequence pass then token pass") {
  // One sequence with log r = 0.1, -0.1, 0.3 (s = e^0.1) and a masked-out fourth token with log r = 5 that must not
  // enter the statistic; A = 1, eps 0.2 (unclipped), seq-mean-token-mean: loss = -s, dL/dlogp_t = -s / 3.
  corl::Batch<double> b(1, 4);
  b.set_length(0, 4);
  b.mask[3] = 0;
  b.advantages = {1.0};
  b.logp = {-1.0, -1.0, -1.0, -1.0};
  b.logp_old = {-1.1, -0.9, -1.3, -6.0};
  const corl::Objective obj(corl::Gspo{0.2, 0.2}, corl::NoKl{}, corl::SeqMeanTokenMean{}, corl::ObjectiveConfig{});
  const auto r = obj.evaluate(b.view(), obj.count_normalizers(b.view()));
  CHECK(r.loss == Approx(-1.1051709180756477));
  for (int t = 0; t < 3; ++t) CHECK(r.grad_logp(0, t) == Approx(-1.1051709180756477 / 3));
  CHECK(r.grad_logp(0, 3) == 0.0);
  CHECK(r.metrics.ratio_mean() == Approx(1.1051709180756477));
}

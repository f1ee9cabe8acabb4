// Hand-computed values, gradients (finite differences in double) and stability of every per-token policy loss.
#include <doctest/doctest.h>

#include <cmath>
#include <corl/loss/cispo.hpp>
#include <corl/loss/delta_clip.hpp>
#include <corl/loss/dual_clip.hpp>
#include <corl/loss/gmpo.hpp>
#include <corl/loss/gspo.hpp>
#include <corl/loss/ppo_clip.hpp>
#include <corl/loss/reinforce.hpp>
#include <corl/loss/sapo.hpp>
#include <random>

namespace {
using doctest::Approx;
const double kLn15 = std::log(1.5), kLn05 = std::log(0.5);

template <class Loss>
corl::TokenTerm<double> tok(const Loss& l, double log_ratio, double adv, double seq_stat = 0.0) {
  return l.template token<double>(-1.0 + log_ratio, -1.0, adv, seq_stat);
}
}  // namespace

TEST_CASE("PpoClip: hand-computed values, gradients and clip flags (eps 0.2)") {
  const corl::PpoClip ppo{};
  auto t = tok(ppo, kLn15, 1.0);  // r = 1.5 > 1.2, A > 0: clipped high
  CHECK(t.value == Approx(-1.2));
  CHECK(t.grad == 0.0);
  CHECK(t.flags == corl::kClippedHigh);
  t = tok(ppo, kLn15, -1.0);  // A < 0: the unclipped branch -rA = 1.5 is the larger loss
  CHECK(t.value == Approx(1.5));
  CHECK(t.grad == Approx(1.5));
  CHECK(t.flags == 0);
  t = tok(ppo, kLn05, -1.0);  // r = 0.5 < 0.8, A < 0: clipped low
  CHECK(t.value == Approx(0.8));
  CHECK(t.grad == 0.0);
  CHECK(t.flags == corl::kClippedLow);
  t = tok(ppo, kLn05, 1.0);
  CHECK(t.value == Approx(-0.5));
  CHECK(t.grad == Approx(-0.5));
  t = tok(corl::PpoClip{0.2, 0.28}, std::log(1.25), 2.0);  // clip-higher: 1.25 < 1.28 is not clipped
  CHECK(t.value == Approx(-2.5));
  CHECK(t.grad == Approx(-2.5));
}

TEST_CASE("DualClipPpo: A < 0 is bounded by -c A (c = 3)") {
  const corl::DualClipPpo dual{};
  auto t = tok(dual, std::log(4.0), -1.0);  // PPO would give 4; the dual bound is 3
  CHECK(t.value == Approx(3.0));
  CHECK(t.grad == 0.0);
  CHECK(t.flags == corl::kDualClipped);
  t = tok(dual, std::log(2.0), -1.0);  // 2 < 3: unclipped, gradient -rA = 2
  CHECK(t.value == Approx(2.0));
  CHECK(t.grad == Approx(2.0));
  CHECK(t.flags == 0);
  t = tok(dual, std::log(4.0), 1.0);  // A > 0: ordinary PPO clip
  CHECK(t.value == Approx(-1.2));
  CHECK(t.flags == corl::kClippedHigh);
  t = tok(dual, kLn05, -1.0);
  CHECK(t.value == Approx(0.8));
  CHECK(t.flags == corl::kClippedLow);
}

TEST_CASE("DeltaClip: the ratio is capped at delta = 4 for negative advantages") {
  const corl::DeltaClip dc{};
  auto t = tok(dc, std::log(5.0), -1.0);
  CHECK(t.value == Approx(4.0));
  CHECK(t.grad == 0.0);
  CHECK(t.flags == corl::kDualClipped);
  t = tok(dc, std::log(3.0), -1.0);
  CHECK(t.value == Approx(3.0));
  CHECK(t.grad == Approx(3.0));
  t = tok(dc, std::log(5.0), 1.0);
  CHECK(t.value == Approx(-1.2));
  CHECK(t.grad == 0.0);
  CHECK(t.flags == corl::kClippedHigh);
}

TEST_CASE("Gspo: sequence ratio exp(mean log r), clipped at the sequence level") {
  // Tokens with log r = 0.1, -0.1, 0.3: mean 0.1, s = e^0.1 = 1.1051709180756477.
  const corl::Gspo g{};
  double stat = 0;
  for (double lr : {0.1, -0.1, 0.3}) stat += g.seq_stat_term<double>(-1.0 + lr, -1.0, 1.0);
  stat /= 3.0;
  CHECK(stat == Approx(0.1));
  auto t = g.token<double>(-2.0, -2.0, 1.0, stat);  // default eps_high 4e-4: clipped
  CHECK(t.value == Approx(-1.0004));
  CHECK(t.grad == 0.0);
  CHECK(t.flags == corl::kClippedHigh);
  CHECK(t.ratio == Approx(1.1051709180756477));
  t = g.token<double>(-2.0, -2.0, -1.0, stat);  // A < 0: unclipped branch is the larger loss
  CHECK(t.value == Approx(1.1051709180756477));
  CHECK(t.grad == Approx(1.1051709180756477));
  const corl::Gspo wide{0.2, 0.2};
  t = wide.token<double>(-2.0, -2.0, 1.0, stat);
  CHECK(t.value == Approx(-1.1051709180756477));
  CHECK(t.grad == Approx(-1.1051709180756477));
}

TEST_CASE("Gmpo: geometric mean of log-space clipped ratios") {
  const corl::Gmpo g{};  // eps 0.4 in log space
  const double lrs[3] = {0.5, -0.6, 0.1};
  // A > 0: l' = min(l, clip(l)) = 0.4, -0.6, 0.1; S = exp(-0.1 / 3) = 0.9672161004820059.
  double stat = 0;
  for (double lr : lrs) stat += g.seq_stat_term<double>(-1.0 + lr, -1.0, 1.0);
  stat /= 3.0;
  CHECK(stat == Approx(-0.1 / 3.0));
  auto t0 = g.token<double>(-1.0 + lrs[0], -1.0, 1.0, stat);
  auto t1 = g.token<double>(-1.0 + lrs[1], -1.0, 1.0, stat);
  CHECK(t0.value == Approx(-0.9672161004820059));
  CHECK(t0.grad == 0.0);
  CHECK(t0.flags == corl::kClippedHigh);
  CHECK(t1.grad == Approx(-0.9672161004820059));
  // A < 0: l' = max(l, clip(l)) = 0.5, -0.4, 0.1; S = exp(0.2 / 3) = 1.0689391057472464; loss = -A S.
  stat = 0;
  for (double lr : lrs) stat += g.seq_stat_term<double>(-1.0 + lr, -1.0, -1.0);
  stat /= 3.0;
  t0 = g.token<double>(-1.0 + lrs[0], -1.0, -1.0, stat);
  t1 = g.token<double>(-1.0 + lrs[1], -1.0, -1.0, stat);
  CHECK(t0.value == Approx(1.0689391057472464));
  CHECK(t0.grad == Approx(1.0689391057472464));
  CHECK(t1.grad == 0.0);
  CHECK(t1.flags == corl::kClippedLow);
}

TEST_CASE("Cispo: gradient -clip(r) A, value the continuous potential") {
  const corl::Cispo c{};  // eps_high 0.2, no lower bound
  auto t = tok(c, kLn15, 1.0);
  CHECK(t.grad == Approx(-1.2));
  CHECK(t.value == Approx(-1.4677722615770517));  // -1.2 (1 + ln 1.5 - ln 1.2)
  CHECK(t.flags == corl::kClippedHigh);
  t = tok(c, kLn05, 2.0);
  CHECK(t.grad == Approx(-1.0));
  CHECK(t.value == Approx(-1.0));
  t = tok(c, 0.0, 3.0);  // on-policy: -A
  CHECK(t.value == Approx(-3.0));
  CHECK(t.grad == Approx(-3.0));
}

TEST_CASE("Sapo: soft gate 4/tau sigmoid(tau (r - 1)) with tau_pos / tau_neg") {
  const corl::Sapo s{};
  auto t = tok(s, 0.0, 1.0);  // r = 1: value -2 / tau, gradient weight exactly 1
  CHECK(t.value == Approx(-2.0));
  CHECK(t.grad == Approx(-1.0));
  t = tok(s, std::log(2.0), 1.0);
  CHECK(t.value == Approx(-2.9242343145200196));
  CHECK(t.grad == Approx(-1.5728954659318548));
  t = tok(s, 0.0, -1.0);  // tau_neg = 1.05
  CHECK(t.value == Approx(1.9047619047619047));
  CHECK(t.grad == Approx(1.0));
}

TEST_CASE("Reinforce: gradient -A, value -A (1 + logp - logp_old), -A on-policy") {
  const corl::Reinforce r{};
  auto t = r.token<double>(-1.0, -1.5, 2.0, 0.0);
  CHECK(t.value == Approx(-3.0));
  CHECK(t.grad == Approx(-2.0));
  t = r.token<double>(-0.7, -0.7, 2.0, 0.0);
  CHECK(t.value == Approx(-2.0));
  CHECK(t.ratio == Approx(1.0));
}

namespace {
// Finite-difference check of d value / d logp for token-level losses (sequence-level ones are checked through the
// whole objective in objective_gradcheck.cpp).
template <class Loss>
void check_token_fd(const Loss& loss) {
  std::mt19937_64 rng(1234);
  std::uniform_real_distribution<double> lr(-1.0, 1.0), adv(-2.0, 2.0);
  const double h = 1e-6;
  for (int k = 0; k < 500; ++k) {
    const double logp_old = -1.5, logp = logp_old + lr(rng), a = adv(rng);
    const auto t = loss.template token<double>(logp, logp_old, a, 0.0);
    const double fd = (loss.template token<double>(logp + h, logp_old, a, 0.0).value -
                       loss.template token<double>(logp - h, logp_old, a, 0.0).value) /
                      (2 * h);
    INFO("log r = ", logp - logp_old, ", A = ", a);
    CHECK(t.grad == Approx(fd).epsilon(1e-6).scale(1.0));
  }
}
}  // namespace

TEST_CASE("token-level losses: grad is d value / d logp (finite differences, double)") {
  check_token_fd(corl::PpoClip{});
  check_token_fd(corl::PpoClip{0.2, 0.28});
  check_token_fd(corl::DualClipPpo{});
  check_token_fd(corl::DeltaClip{0.2, 0.2, 1.5});
  check_token_fd(corl::Cispo{});
  check_token_fd(corl::Cispo{0.3, 0.2});
  check_token_fd(corl::Sapo{});
  check_token_fd(corl::Reinforce{});
}

namespace {
template <class Loss, class Real>
void check_finite(const Loss& loss) {
  for (Real lr : {Real(50), Real(-50), Real(200), Real(-200)}) {
    for (Real a : {Real(-3), Real(0), Real(3)}) {
      const Real stat = loss.template seq_stat_term<Real>(Real(-1) + lr, Real(-1), a);
      const auto t = loss.template token<Real>(Real(-1) + lr, Real(-1), a, stat);
      INFO("log r = ", double(lr), ", A = ", double(a));
      CHECK(std::isfinite(t.value));
      CHECK(std::isfinite(t.grad));
      CHECK(std::isfinite(t.ratio));
    }
  }
}
template <class Real>
void check_all_finite() {
  check_finite<corl::PpoClip, Real>(corl::PpoClip{});
  check_finite<corl::DualClipPpo, Real>(corl::DualClipPpo{});
  check_finite<corl::DeltaClip, Real>(corl::DeltaClip{});
  check_finite<corl::Gspo, Real>(corl::Gspo{});
  check_finite<corl::Gmpo, Real>(corl::Gmpo{});
  check_finite<corl::Cispo, Real>(corl::Cispo{});
  check_finite<corl::Sapo, Real>(corl::Sapo{});
  check_finite<corl::Reinforce, Real>(corl::Reinforce{});
}
}  // namespace

TEST_CASE("every policy loss is finite at |log r| = 50 and 200, float and double") {
  check_all_finite<float>();
  check_all_finite<double>();
  // Saturated exponent: the ratio is constant there, so the gradient is 0 (consistent with the clamped value).
  const auto t = corl::PpoClip{}.token<double>(49.0, -1.0, -1.0, 0.0);
  CHECK(t.ratio == Approx(std::exp(20.0)));
  CHECK(t.grad == 0.0);
}

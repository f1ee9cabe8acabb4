// KL estimators (hand-computed values, finite-difference gradients, straight-through and bias-corrected variants,
// stability at |logp - logp_ref| = 50) and the fixed / adaptive KL coefficient controllers.
#include <doctest/doctest.h>

#include <cmath>
#include <corl/core/error.hpp>
#include <corl/loss/kl.hpp>
#include <corl/loss/kl_controller.hpp>

namespace {
using doctest::Approx;
template <class Kl>
corl::TokenTerm<double> kl_at(const Kl& k, double l, double log_ratio = 0.0) {
  // logp = -1 + l, logp_ref = -1, logp_old = logp - log_ratio.
  return k.template token<double>(-1.0 + l, -1.0, -1.0 + l - log_ratio);
}
}  // namespace

TEST_CASE("k1, abs, k2, k3: hand-computed values and gradients") {
  auto t = kl_at(corl::K1{}, 0.5);
  CHECK(t.value == Approx(0.5));
  CHECK(t.grad == 1.0);
  t = kl_at(corl::K1{}, -0.5);
  CHECK(t.value == Approx(-0.5));
  t = kl_at(corl::AbsKl{}, -0.5);
  CHECK(t.value == Approx(0.5));
  CHECK(t.grad == -1.0);
  t = kl_at(corl::AbsKl{}, 0.0);
  CHECK(t.value == 0.0);
  CHECK(t.grad == 0.0);
  t = kl_at(corl::K2{}, 0.5);
  CHECK(t.value == Approx(0.125));
  CHECK(t.grad == Approx(0.5));
  t = kl_at(corl::K3{}, 0.5);  // exp(-0.5) + 0.5 - 1
  CHECK(t.value == Approx(0.10653065971263342));
  CHECK(t.grad == Approx(0.3934693402873666));
  t = kl_at(corl::K3{}, -0.5);  // exp(0.5) - 0.5 - 1
  CHECK(t.value == Approx(0.1487212707001282));
  CHECK(t.grad == Approx(-0.6487212707001282));
  t = kl_at(corl::K3{}, 0.0);
  CHECK(t.value == 0.0);
  CHECK(t.grad == 0.0);
  t = kl_at(corl::NoKl{}, 3.0);
  CHECK(t.value == 0.0);
  CHECK(t.grad == 0.0);
}

TEST_CASE("K3: exponent clamp and optional value clamp (verl low_var_kl clamps at 10)") {
  auto t = kl_at(corl::K3{}, -50.0);  // exp(50) clamped to exp(20): value e^20 - 50 - 1, gradient 1
  CHECK(t.value == Approx(485165144.4097903));
  CHECK(t.grad == 1.0);
  t = kl_at(corl::K3{}, 50.0);
  CHECK(t.value == Approx(49.0));
  CHECK(t.grad == Approx(1.0));
  corl::K3 capped{};
  capped.value_max = 10.0;
  t = kl_at(capped, -50.0);
  CHECK(t.value == 10.0);
  CHECK(t.grad == 0.0);
  corl::K3 narrow{};
  narrow.exp_clamp = 5.0;
  t = kl_at(narrow, -6.0);
  CHECK(t.value == Approx(std::exp(5.0) - 7.0));
  for (float l : {50.0f, -50.0f, 300.0f, -300.0f}) {
    const auto f = corl::K3{}.token<float>(-1.0f + l, -1.0f, -1.0f);
    CHECK(std::isfinite(f.value));
    CHECK(std::isfinite(f.grad));
  }
}

TEST_CASE("k1, abs, k2, k3: grad is d value / d logp (finite differences, double)") {
  const double h = 1e-6;
  for (double l = -2.95; l < 3.0; l += 0.1) {
    const auto fd = [&](const auto& k) { return (kl_at(k, l + h).value - kl_at(k, l - h).value) / (2 * h); };
    INFO("l = ", l);
    CHECK(kl_at(corl::K1{}, l).grad == Approx(fd(corl::K1{})).epsilon(1e-7));
    CHECK(kl_at(corl::AbsKl{}, l).grad == Approx(fd(corl::AbsKl{})).epsilon(1e-7));
    CHECK(kl_at(corl::K2{}, l).grad == Approx(fd(corl::K2{})).epsilon(1e-7));
    CHECK(kl_at(corl::K3{}, l).grad == Approx(fd(corl::K3{})).epsilon(1e-6));
  }
}

TEST_CASE("straight-through k1+ / abs+ / k3+: value of kX, gradient of k2 (= l)") {
  auto t = kl_at(corl::K3Plus{}, 0.5);
  CHECK(t.value == Approx(0.10653065971263342));
  CHECK(t.grad == Approx(0.5));
  t = kl_at(corl::K1Plus{}, -0.25);
  CHECK(t.value == Approx(-0.25));
  CHECK(t.grad == Approx(-0.25));
  t = kl_at(corl::AbsKlPlus{}, -0.25);
  CHECK(t.value == Approx(0.25));
  CHECK(t.grad == Approx(-0.25));
  static_assert(!corl::gradient_is_derivative_v<corl::K3Plus>);
  static_assert(corl::gradient_is_derivative_v<corl::K3>);
}

TEST_CASE("bias-corrected KL: r k3 with r a stop-gradient weight") {
  // l = 0.5, log r = 0.2: value e^0.2 k3(0.5), gradient e^0.2 (1 - e^-0.5).
  const auto t = kl_at(corl::BiasCorrected<corl::K3>{}, 0.5, 0.2);
  CHECK(t.value == Approx(0.13011684160163295));
  CHECK(t.grad == Approx(0.480584537478452));
  CHECK(t.ratio == Approx(std::exp(0.2)));
  // The ratio carries no gradient: moving logp and logp_old together (r fixed) reproduces the gradient.
  const double h = 1e-6;
  const corl::BiasCorrected<corl::K3> bc{};
  const double fd = (bc.token<double>(-0.5 + h, -1.0, -0.7 + h).value - bc.token<double>(-0.5 - h, -1.0, -0.7 - h).value) /
                    (2 * h);
  CHECK(t.grad == Approx(fd).epsilon(1e-7));
  const auto big = kl_at(bc, 50.0, 50.0);
  CHECK(std::isfinite(big.value));
  CHECK(std::isfinite(big.grad));
}

TEST_CASE("FixedKlController keeps beta, AdaptiveKlController follows Ziegler et al. 2019") {
  corl::FixedKlController fixed{0.02};
  fixed.update(100.0, 64);
  CHECK(fixed.value() == 0.02);

  corl::AdaptiveKlController ad{0.1, 6.0, 10000.0};
  ad.update(9.0, 1000);  // e = clip(9/6 - 1, +-0.2) = 0.2; beta = 0.1 (1 + 0.2 * 1000 / 10000) = 0.102
  CHECK(ad.value() == Approx(0.102));
  ad.update(5.4, 500);  // e = 5.4/6 - 1 = -0.1; beta = 0.102 (1 - 0.1 * 0.05) = 0.10149
  CHECK(ad.value() == Approx(0.10149));
  ad.update(0.0, 10000);  // e = -1 clipped to -0.2: beta * 0.8
  CHECK(ad.value() == Approx(0.081192));
  CHECK_THROWS_WITH_AS(ad.update(std::nan(""), 10), doctest::Contains("observed_kl"), corl::Error);
  CHECK_THROWS_WITH_AS(ad.update(1.0, -1), doctest::Contains("n_steps = -1"), corl::Error);
}

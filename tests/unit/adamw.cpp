// AdamW CPU reference: a hand-computed first step, agreement with the textbook (bias-corrected m-hat / v-hat) form over
// many steps, pure weight decay, convergence on a quadratic, the const accessors of the moments, the bf16 copy, Eigen
// buffers, and input errors.
#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include <corl/core/rng.hpp>
#include <corl/optim/adamw.hpp>

TEST_CASE("first step by hand") {
  // p = 1, g = 0.5, lr = 0.1, wd = 0.01: p <- 0.999; m = 0.05, v = 0.00025; m-hat = 0.5, v-hat = 0.25
  // p <- 0.999 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.899 + 2e-9 (approximately: 0.1 * (1 - 2e-8))
  std::vector<double> p{1.0}, m{0.0}, v{0.0};
  const std::vector<double> g{0.5};
  const corl::AdamWConfig cfg{.lr = 0.1, .weight_decay = 0.01};
  corl::adamw_update<double>(p, g, m, v, corl::adamw_scalars<double>(cfg, 1));
  CHECK(m[0] == doctest::Approx(0.05).epsilon(1e-14));
  CHECK(v[0] == doctest::Approx(0.00025).epsilon(1e-14));
  CHECK(p[0] == doctest::Approx(0.999 - 0.1 * 0.5 / (0.5 + 1e-8)).epsilon(1e-14));
}

TEST_CASE("matches the textbook bias-corrected form over 50 steps (double)") {
  const corl::AdamWConfig cfg{.lr = 3e-3, .beta1 = 0.85, .beta2 = 0.995, .eps = 1e-6, .weight_decay = 0.1};
  const std::size_t n = 33;
  corl::CounterRng rng(7, 0);
  std::vector<double> p(n), m(n, 0.0), v(n, 0.0), ref_p(n), ref_m(n, 0.0), ref_v(n, 0.0), g(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = ref_p[i] = rng.normal();
  for (std::int64_t t = 1; t <= 50; ++t) {
    for (std::size_t i = 0; i < n; ++i) g[i] = rng.normal() * 0.1;
    corl::adamw_update<double>(p, g, m, v, corl::adamw_scalars<double>(cfg, t));
    for (std::size_t i = 0; i < n; ++i) {
      ref_p[i] -= cfg.lr * cfg.weight_decay * ref_p[i];
      ref_m[i] = cfg.beta1 * ref_m[i] + (1 - cfg.beta1) * g[i];
      ref_v[i] = cfg.beta2 * ref_v[i] + (1 - cfg.beta2) * g[i] * g[i];
      const double mhat = ref_m[i] / (1 - std::pow(cfg.beta1, double(t)));
      const double vhat = ref_v[i] / (1 - std::pow(cfg.beta2, double(t)));
      ref_p[i] -= cfg.lr * mhat / (std::sqrt(vhat) + cfg.eps);
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    CHECK(p[i] == doctest::Approx(ref_p[i]).epsilon(1e-11));
    CHECK(m[i] == doctest::Approx(ref_m[i]).epsilon(1e-12));
    CHECK(v[i] == doctest::Approx(ref_v[i]).epsilon(1e-12));
  }
}

TEST_CASE("zero gradient: only the decoupled weight decay acts") {
  std::vector<float> p{2.0f, -4.0f}, m{0, 0}, v{0, 0};
  const std::vector<float> g{0, 0};
  const corl::AdamWConfig cfg{.lr = 0.5, .weight_decay = 0.2};  // decay factor 0.9 per step
  for (int t = 1; t <= 3; ++t) corl::adamw_update<float>(p, g, m, v, corl::adamw_scalars<float>(cfg, t));
  CHECK(p[0] == doctest::Approx(2.0 * 0.729).epsilon(1e-6));
  CHECK(p[1] == doctest::Approx(-4.0 * 0.729).epsilon(1e-6));
  CHECK(m[0] == 0.0f);
  CHECK(v[1] == 0.0f);
}

TEST_CASE("AdamW class on Eigen buffers minimises a quadratic and float tracks double") {
  Eigen::VectorXf wf = Eigen::VectorXf::Zero(4);
  Eigen::VectorXd wd = Eigen::VectorXd::Zero(4);
  Eigen::VectorXd bias = Eigen::VectorXd::Zero(1);
  const Eigen::Vector4d target(1.0, -2.0, 0.5, 3.0);
  corl::AdamW<float> opt_f({.lr = 0.05, .weight_decay = 0.0});
  corl::AdamW<double> opt_d({.lr = 0.05, .weight_decay = 0.0});
  opt_f.add_parameter(std::span<float>(wf.data(), 4));
  opt_d.add_parameter(std::span<double>(wd.data(), 4));
  opt_d.add_parameter(std::span<double>(bias.data(), 1));
  for (int t = 0; t < 2000; ++t) {
    const Eigen::VectorXf gf = 2.0f * (wf - target.cast<float>());
    const Eigen::VectorXd gd = 2.0 * (wd - target);
    const Eigen::VectorXd gb = 2.0 * (bias.array() - 1.0).matrix();
    opt_f.step(std::vector<std::span<const float>>{{gf.data(), 4}});
    opt_d.step(std::vector<std::span<const double>>{{gd.data(), 4}, {gb.data(), 1}});
  }
  CHECK(opt_d.steps_taken() == 2000);
  for (int i = 0; i < 4; ++i) {
    CHECK(wd[i] == doctest::Approx(target[i]).epsilon(1e-3));
    CHECK(wf[i] == doctest::Approx(wd[i]).epsilon(1e-3));
  }
  CHECK(bias[0] == doctest::Approx(1.0).epsilon(1e-3));
  std::vector<std::span<const double>> wrong{{wd.data(), 4}};
  CHECK_THROWS_WITH_AS(opt_d.step(wrong), "AdamW::step: grads has 1 buffers, expected 2 (one per parameter)",
                       corl::Error);
}

TEST_CASE("a const AdamW reads the same moments and step count as the mutable one") {
  std::vector<double> a{1.0, -2.0, 0.5}, b{3.0};
  corl::AdamW<double> opt({.lr = 0.1, .weight_decay = 0.01});
  opt.add_parameter(a);
  opt.add_parameter(b);
  // the same steps on plain buffers: the moments the optimizer must hold
  std::vector<double> pa{1.0, -2.0, 0.5}, ma(3, 0.0), va(3, 0.0), pb{3.0}, mb(1, 0.0), vb(1, 0.0);
  for (std::int64_t t = 1; t <= 3; ++t) {
    const std::vector<double> ga{0.5 * double(t), -0.25, 1.0}, gb{-2.0};
    opt.step(std::vector<std::span<const double>>{ga, gb});
    const auto s = corl::adamw_scalars<double>(opt.config(), t);
    corl::adamw_update<double>(pa, ga, ma, va, s);
    corl::adamw_update<double>(pb, gb, mb, vb, s);
  }
  const corl::AdamW<double>& view = opt;
  static_assert(std::is_same_v<decltype(view.first_moment(0)), std::span<const double>>);
  static_assert(std::is_same_v<decltype(view.second_moment(0)), std::span<const double>>);
  CHECK(view.steps_taken() == 3);
  for (std::size_t k = 0; k < 2; ++k) {
    CAPTURE(k);
    // the const accessors view the optimizer's own storage, the one the mutable accessors expose
    CHECK(view.first_moment(k).data() == opt.first_moment(k).data());
    CHECK(view.second_moment(k).data() == opt.second_moment(k).data());
    CHECK(view.first_moment(k).size() == opt.first_moment(k).size());
    CHECK(view.second_moment(k).size() == opt.second_moment(k).size());
  }
  const std::span<const double> m0 = view.first_moment(0), v0 = view.second_moment(0);
  const std::span<const double> m1 = view.first_moment(1), v1 = view.second_moment(1);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(m0[i] == ma[i]);
    CHECK(v0[i] == va[i]);
    CHECK(a[i] == pa[i]);
  }
  CHECK(m1[0] == mb[0]);
  CHECK(v1[0] == vb[0]);
  CHECK(b[0] == pb[0]);
  // a write through the mutable accessor (a checkpoint restore) is what the const one reads next
  opt.first_moment(1)[0] = 42.0;
  CHECK(view.first_moment(1)[0] == 42.0);
  CHECK_THROWS_AS(static_cast<void>(view.second_moment(2)), std::out_of_range);
}

TEST_CASE("bf16 copy is the updated parameter rounded to nearest even") {
  corl::CounterRng rng(11, 0);
  const std::size_t n = 257;
  std::vector<float> p(n), m(n, 0.f), v(n, 0.f), g(n);
  for (std::size_t i = 0; i < n; ++i) {
    p[i] = static_cast<float>(rng.normal());
    g[i] = static_cast<float>(rng.normal());
  }
  std::vector<corl::bfloat16> copy(n);
  corl::adamw_update<float>(p, g, m, v, corl::adamw_scalars<float>({}, 1), copy);
  for (std::size_t i = 0; i < n; ++i) {
    CHECK(copy[i] == corl::bfloat16(p[i]));
    CHECK(std::abs(corl::to_real<float>(copy[i]) - p[i]) <= std::abs(p[i]) * (1.0f / 256.0f));
  }
}

TEST_CASE("bad input") {
  std::vector<float> p(3), m(3), v(2);
  const std::vector<float> g(3);
  const auto s = corl::adamw_scalars<float>({}, 1);
  CHECK_THROWS_WITH_AS(corl::adamw_update<float>(p, g, m, v, s),
                       "adamw_update: v has 2 entries, expected 3 (one per parameter)", corl::Error);
  CHECK_THROWS_WITH_AS(corl::adamw_scalars<float>({}, 0),
                       "adamw_scalars: step = 0, expected >= 1 (the first update is step 1)", corl::Error);
  CHECK_THROWS_WITH_AS(corl::adamw_scalars<float>({.beta2 = 1.0}, 1),
                       "adamw_scalars: beta2 = 1, expected 0 <= beta2 < 1", corl::Error);
  CHECK_THROWS_WITH_AS(corl::AdamW<float>({.eps = 0.0}), "AdamW: eps = 0, expected > 0", corl::Error);
}

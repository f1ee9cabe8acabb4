// Tests of corl/logprob/grpo_from_logits.hpp: a hand-computed V = 3 batch (PPO clip, one clipped token), finite
// differences of the whole loss in double (PPO clip + K3 KL + entropy bonus + temperature + mask; GSPO), masked rows,
// thread invariance, in-place bf16, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <corl/core/half_types.hpp>
#include <corl/logprob/grpo_from_logits.hpp>
#include <corl/loss/gspo.hpp>
#include <corl/loss/kl.hpp>
#include <corl/loss/ppo_clip.hpp>

#include "common/test_util.hpp"

namespace {

using corl_test::cview;
using corl_test::error_of;

/// A random batch in double: B sequences of T tokens over V, every 3rd token masked, logp_old / logp_ref near logp.
struct RandomBatch {
  corl::index_t B, T, V;
  std::vector<double> logits, logp_old, logp_ref, adv, weight;
  std::vector<std::int32_t> targets;
  std::vector<std::uint8_t> mask;

  RandomBatch(corl::index_t b, corl::index_t t, corl::index_t v, double temperature, unsigned seed) : B(b), T(t), V(v) {
    std::mt19937 gen(seed);
    std::normal_distribution<double> normal(0.0, 1.5);
    std::uniform_int_distribution<std::int32_t> tok(0, static_cast<std::int32_t>(V - 1));
    const corl::index_t rows = B * T;
    logits.resize(static_cast<std::size_t>(rows * V));
    for (auto& x : logits) x = normal(gen);
    targets.resize(static_cast<std::size_t>(rows));
    for (auto& y : targets) y = tok(gen);
    mask.resize(static_cast<std::size_t>(rows));
    corl::index_t tokens = 0;
    for (corl::index_t i = 0; i < rows; ++i) {
      mask[static_cast<std::size_t>(i)] = (i % 3 == 2) ? 0 : 1;
      tokens += mask[static_cast<std::size_t>(i)];
    }
    // current log-probs, so that old / ref can be placed at a chosen distance
    std::vector<double> lp(static_cast<std::size_t>(rows));
    corl::logprobs_from_logits<double>(cview(logits), V, cview(targets), temperature, std::span<double>(lp));
    std::uniform_real_distribution<double> offset(-0.1, 0.1);
    for (corl::index_t i = 0; i < rows; ++i) {
      logp_old.push_back(lp[static_cast<std::size_t>(i)] + offset(gen));
      logp_ref.push_back(lp[static_cast<std::size_t>(i)] + 3 * offset(gen));
    }
    for (corl::index_t s = 0; s < B; ++s) {
      adv.push_back(normal(gen));
      weight.push_back(1.0 / static_cast<double>(tokens));  // token-mean aggregation
    }
  }

  corl::GrpoLogitsBatch<double, double> view(const std::vector<double>& x, double temperature, double kl_coef,
                                             double entropy_coef) const {
    corl::GrpoLogitsBatch<double, double> in;
    in.logits = cview(x);
    in.sequences = B;
    in.seq_len = T;
    in.vocab = V;
    in.targets = cview(targets);
    in.mask = cview(mask);
    in.logp_old = cview(logp_old);
    in.logp_ref = cview(logp_ref);
    in.advantages = cview(adv);
    in.token_weight = cview(weight);
    in.temperature = temperature;
    in.kl_coef = kl_coef;
    in.entropy_coef = entropy_coef;
    return in;
  }
};

template <class Policy, class Kl>
double max_fd_error(const RandomBatch& batch, const Policy& policy, const Kl& kl, double temperature, double kl_coef,
                    double entropy_coef) {
  std::vector<double> grad(batch.logits.size()), scratch(batch.logits.size());
  corl::grpo_loss_from_logits<double>(batch.view(batch.logits, temperature, kl_coef, entropy_coef), policy, kl,
                                      std::span<double>(grad));
  auto loss = [&](const std::vector<double>& x) {
    return corl::grpo_loss_from_logits<double>(batch.view(x, temperature, kl_coef, entropy_coef), policy, kl,
                                               std::span<double>(scratch))
        .loss;
  };
  const double h = 1e-6;
  double worst = 0;
  for (std::size_t k = 0; k < batch.logits.size(); ++k) {
    auto xp = batch.logits, xm = batch.logits;
    xp[k] += h;
    xm[k] -= h;
    worst = std::max(worst, std::abs((loss(xp) - loss(xm)) / (2 * h) - grad[k]));
  }
  return worst;
}

}  // namespace

TEST_CASE("hand-computed batch: PPO clip with one clipped token, token-mean weights") {
  // One sequence, two tokens, V = 3. Row 0: x = [1, 2, 3], y = 2, logp = -0.4076059644443806; logp_old chosen so the
  // ratio is 1.5 > 1 + eps (A = 1): clipped, value -1.2, gradient 0. Row 1: x = [0, 0, 0], y = 0, logp = -log 3,
  // logp_old = logp: ratio 1, value -1, gradient -1. Weight 1/2 each: loss = (-1.2 - 1) / 2 = -1.1;
  // dlogits row 1 = (1/2)(-1)([1, 0, 0] - 1/3) = [-1/3, 1/6, 1/6]; row 0 = 0.
  const std::vector<double> logits{1, 2, 3, 0, 0, 0};
  const std::vector<std::int32_t> targets{2, 0};
  const std::vector<double> logp_old{-0.4076059644443806 - std::log(1.5), -1.0986122886681098};
  const std::vector<double> adv{1.0}, weight{0.5};
  corl::GrpoLogitsBatch<double, double> in;
  in.logits = cview(logits);
  in.sequences = 1;
  in.seq_len = 2;
  in.vocab = 3;
  in.targets = cview(targets);
  in.logp_old = cview(logp_old);
  in.advantages = cview(adv);
  in.token_weight = cview(weight);
  std::vector<double> grad(6, 99.0), logp(2);
  const auto totals = corl::grpo_loss_from_logits<double>(in, corl::PpoClip{}, corl::NoKl{}, std::span<double>(grad),
                                                          std::span<double>(logp));
  CHECK(totals.loss == doctest::Approx(-1.1).epsilon(1e-12));
  CHECK(totals.policy_loss == doctest::Approx(-1.1).epsilon(1e-12));
  CHECK(totals.tokens == 2);
  CHECK(totals.clipped_high == 1);
  CHECK(totals.clipped_low == 0);
  CHECK(totals.ratio_sum == doctest::Approx(2.5).epsilon(1e-12));
  CHECK(logp[0] == doctest::Approx(-0.4076059644443806).epsilon(1e-14));
  for (int v = 0; v < 3; ++v) CHECK(grad[static_cast<std::size_t>(v)] == 0.0);
  CHECK(grad[3] == doctest::Approx(-1.0 / 3).epsilon(1e-13));
  CHECK(grad[4] == doctest::Approx(1.0 / 6).epsilon(1e-13));
  CHECK(grad[5] == doctest::Approx(1.0 / 6).epsilon(1e-13));
}

TEST_CASE("finite differences of the loss match dL/dlogits: PPO clip + K3 + entropy bonus, temperature 0.8, mask") {
  const RandomBatch batch(3, 4, 6, 0.8, 2024);
  CHECK(max_fd_error(batch, corl::PpoClip{}, corl::K3{}, 0.8, 0.05, 0.01) < 1e-7);
  CHECK(max_fd_error(batch, corl::PpoClip{0.05, 0.05}, corl::K2{}, 0.8, 0.3, 0.0) < 1e-7);  // some clipped tokens
}

TEST_CASE("finite differences match for a sequence-level loss (GSPO, seq_stat reduced between the passes)") {
  const RandomBatch batch(3, 5, 4, 1.3, 77);
  CHECK(max_fd_error(batch, corl::Gspo{0.5, 0.5}, corl::NoKl{}, 1.3, 0.0, 0.0) < 1e-7);
}

TEST_CASE("masked rows get zero gradient and zero outputs, and on-policy without logp_old has ratio 1") {
  RandomBatch batch(2, 3, 5, 1.0, 5);
  auto in = batch.view(batch.logits, 1.0, 0.0, 0.0);
  in.logp_old = {};
  std::vector<double> grad(batch.logits.size(), 42.0), logp(6, 42.0), ent(6, 42.0);
  const auto totals = corl::grpo_loss_from_logits<double>(in, corl::PpoClip{}, corl::NoKl{}, std::span<double>(grad),
                                                          std::span<double>(logp), std::span<double>(ent));
  CHECK(totals.tokens == 4);  // rows 2 and 5 are masked
  CHECK(totals.ratio_sum == doctest::Approx(4.0).epsilon(1e-15));
  for (int v = 0; v < 5; ++v) {
    CHECK(grad[static_cast<std::size_t>(2 * 5 + v)] == 0.0);
    CHECK(grad[static_cast<std::size_t>(5 * 5 + v)] == 0.0);
  }
  CHECK(logp[2] == 0.0);
  CHECK(ent[5] == 0.0);
  CHECK(ent[0] > 0.0);
  // on-policy PPO: loss = -sum_t w A_b over unmasked tokens = -(2 A_0 + 2 A_1) / 4
  CHECK(totals.loss == doctest::Approx(-(batch.adv[0] + batch.adv[1]) / 2).epsilon(1e-12));
}

TEST_CASE("float / bf16: bitwise identical results for 1 and 3 threads, in place equals out of place") {
  const corl::index_t B = 3, T = 7, V = 301, rows = B * T;
  std::mt19937 gen(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<corl::bfloat16> x(static_cast<std::size_t>(rows * V));
  for (auto& v : x) v = corl::bfloat16(normal(gen));
  std::vector<std::int32_t> y(static_cast<std::size_t>(rows));
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>((i * 37) % V);
  std::vector<float> old(static_cast<std::size_t>(rows), -5.0f), ref(static_cast<std::size_t>(rows), -5.5f);
  const std::vector<float> adv{1.0f, -0.5f, 0.25f}, w{0.1f, 0.1f, 0.05f};
  corl::GrpoLogitsBatch<corl::bfloat16, float> in;
  in.logits = cview(x);
  in.sequences = B;
  in.seq_len = T;
  in.vocab = V;
  in.targets = cview(y);
  in.logp_old = cview(old);
  in.logp_ref = cview(ref);
  in.advantages = cview(adv);
  in.token_weight = cview(w);
  in.temperature = 0.9f;
  in.kl_coef = 0.04f;
  in.entropy_coef = 0.001f;
  std::vector<corl::bfloat16> g1(x.size()), g3(x.size());
  const auto t1 = corl::grpo_loss_from_logits<float>(in, corl::PpoClip{}, corl::K3{}, std::span<corl::bfloat16>(g1),
                                                     {}, {}, 1);
  const auto t3 = corl::grpo_loss_from_logits<float>(in, corl::PpoClip{}, corl::K3{}, std::span<corl::bfloat16>(g3),
                                                     {}, {}, 3);
  CHECK(g1 == g3);
  CHECK(std::memcmp(&t1.loss, &t3.loss, sizeof(double)) == 0);
  auto inplace = x;
  in.logits = std::span<const corl::bfloat16>(inplace.data(), inplace.size());
  const auto ti = corl::grpo_loss_from_logits<float>(in, corl::PpoClip{}, corl::K3{},
                                                     std::span<corl::bfloat16>(inplace), {}, {}, 2);
  CHECK(inplace == g1);
  CHECK(ti.loss == t1.loss);
  CHECK(std::isfinite(t1.loss));
  CHECK(t1.kl > 0.0);
}

TEST_CASE("bad input raises corl::Error naming the array and index") {
  RandomBatch batch(2, 2, 3, 1.0, 3);
  std::vector<double> grad(batch.logits.size());
  auto run = [&](const corl::GrpoLogitsBatch<double, double>& in) {
    return error_of(
        [&] { corl::grpo_loss_from_logits<double>(in, corl::PpoClip{}, corl::K3{}, std::span<double>(grad)); });
  };
  auto in = batch.view(batch.logits, 1.0, 0.1, 0.0);
  auto bad_targets = batch.targets;
  bad_targets[3] = 3;
  in.targets = cview(bad_targets);
  CHECK(run(in) == "grpo_loss_from_logits: targets[3] = 3, expected in [0, vocab = 3)");
  in = batch.view(batch.logits, 1.0, 0.1, 0.0);
  auto masked_bad = batch.targets;  // row 2 is masked (i % 3 == 2): a bad id there is never read
  masked_bad[2] = 99;
  in.targets = cview(masked_bad);
  CHECK(run(in) == "no error");
  in = batch.view(batch.logits, 1.0, 0.1, 0.0);
  auto adv = batch.adv;
  adv[1] = std::nan("");
  in.advantages = cview(adv);
  CHECK(run(in) == "grpo_loss_from_logits: advantages[1] = nan, expected finite");
  in = batch.view(batch.logits, 1.0, 0.1, 0.0);
  in.logp_ref = {};
  CHECK(run(in) ==
        "grpo_loss_from_logits: kl_coef = 0.1 but logp_ref is empty, expected kl_coef == 0 without reference log-probs");
  in = batch.view(batch.logits, 1.0, 0.1, 0.0);
  const std::vector<double> short_weight{1.0};
  in.token_weight = cview(short_weight);
  CHECK(run(in) == "grpo_loss_from_logits: token_weight has 1 elements, expected 2");
  in = batch.view(batch.logits, 1.0, 0.1, 0.0);
  auto x = batch.logits;
  x[3 * 3 + 1] = INFINITY;
  in.logits = cview(x);
  CHECK(run(in) == "grpo_loss_from_logits: logits[row 3, column 1] = inf, expected a finite value");
}

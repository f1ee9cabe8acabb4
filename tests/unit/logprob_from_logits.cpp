// Tests of corl/logprob/from_logits.hpp: hand values (V = 3), finite-difference gradients in double (temperature != 1,
// entropy term), thread-count invariance (bitwise), in-place backward, and the errors for bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <corl/core/half_types.hpp>
#include <corl/logprob/from_logits.hpp>

#include "common/test_util.hpp"

using corl_test::cview;
using corl_test::error_of;

TEST_CASE("log-prob, entropy and lse of V = 3 rows match hand values") {
  // Reference values computed in double with Python's math module:
  //   row 0: x = [1, 2, 3], y = 2, T = 1: p = [0.0900306, 0.2447285, 0.6652410]
  //   row 1: x = [0, 0, 0], y = 0: logp = -log 3, entropy = log 3
  // row 2 (separate call, T = 2): x = [2, -4, 0], y = 1, z = [1, -2, 0]
  const std::vector<double> logits{1, 2, 3, 0, 0, 0};
  const std::vector<std::int32_t> targets{2, 0};
  std::vector<double> logp(2), entropy(2), lse(2);
  corl::logprobs_from_logits<double>(cview(logits), 3, cview(targets), 1.0, std::span<double>(logp),
                                     std::span<double>(entropy), std::span<double>(lse));
  CHECK(lse[0] == doctest::Approx(3.4076059644443806).epsilon(1e-14));
  CHECK(logp[0] == doctest::Approx(-0.4076059644443806).epsilon(1e-14));
  CHECK(entropy[0] == doctest::Approx(0.832395581839939).epsilon(1e-13));
  CHECK(logp[1] == doctest::Approx(-1.0986122886681098).epsilon(1e-14));
  CHECK(entropy[1] == doctest::Approx(1.0986122886681096).epsilon(1e-13));

  const std::vector<double> x2{2, -4, 0};
  const std::vector<std::int32_t> y2{1};
  std::vector<double> logp2(1), entropy2(1), lse2(1);
  corl::logprobs_from_logits<double>(cview(x2), 3, cview(y2), 2.0, std::span<double>(logp2), std::span<double>(entropy2),
                                     std::span<double>(lse2));
  CHECK(lse2[0] == doctest::Approx(1.3490122167681864).epsilon(1e-14));
  CHECK(logp2[0] == doctest::Approx(-3.3490122167681866).epsilon(1e-14));
  CHECK(entropy2[0] == doctest::Approx(0.7138657579886247).epsilon(1e-13));

  // backward with dL/dlogp = 1: dx = ([v == y] - p) / T
  std::vector<double> dx2(3);
  const std::vector<double> one{1.0};
  corl::logprobs_backward_from_logits<double>(cview(x2), 3, cview(y2), 2.0, cview(lse2), cview(one),
                                              std::span<double>(dx2));
  CHECK(dx2[0] == doctest::Approx(-0.7053845126982412 / 2).epsilon(1e-13));
  CHECK(dx2[1] == doctest::Approx((1 - 0.035119026959339716) / 2).epsilon(1e-13));
  CHECK(dx2[2] == doctest::Approx(-0.25949646034241913 / 2).epsilon(1e-13));
  std::vector<double> dx(6);
  const std::vector<double> g{1.0, 0.0};
  corl::logprobs_backward_from_logits<double>(cview(logits), 3, cview(targets), 1.0, cview(lse), cview(g),
                                              std::span<double>(dx));
  CHECK(dx[0] == doctest::Approx(-0.09003057317038043).epsilon(1e-13));
  CHECK(dx[1] == doctest::Approx(-0.24472847105479759).epsilon(1e-13));
  CHECK(dx[2] == doctest::Approx(1 - 0.6652409557748217).epsilon(1e-13));
  CHECK(dx[3] == 0.0);
}

TEST_CASE("float and bf16 logits give the double result to float accuracy, large logits stay finite") {
  // Logits near 80: a naive exp would overflow float; the online log-sum-exp must not.
  const std::vector<float> logits{80.0f, 81.0f, 82.0f, -80.0f, 0.0f, 80.0f};
  const std::vector<std::int32_t> targets{2, 0};
  std::vector<float> logp(2), entropy(2);
  corl::logprobs_from_logits<float>(cview(logits), 3, cview(targets), 1.0f, std::span<float>(logp),
                                    std::span<float>(entropy));
  CHECK(logp[0] == doctest::Approx(-0.4076059644443806).epsilon(1e-6));
  CHECK(entropy[0] == doctest::Approx(0.832395581839939).epsilon(1e-5));
  CHECK(logp[1] == doctest::Approx(-160.0).epsilon(1e-6));  // exp(-160) is far below the other terms
  std::vector<corl::bfloat16> lb;
  for (float v : logits) lb.push_back(corl::bfloat16(v));  // 80, 81, 82 are exact in bf16
  std::vector<float> logp_b(2);
  corl::logprobs_from_logits<float>(cview(lb), 3, cview(targets), 1.0f, std::span<float>(logp_b));
  CHECK(logp_b[0] == logp[0]);
}

TEST_CASE("dL/dlogits matches central finite differences in double, with temperature 0.7 and the entropy term") {
  const corl::index_t rows = 5, vocab = 7;
  const double temperature = 0.7;
  std::mt19937 gen(1234);
  std::normal_distribution<double> normal(0.0, 2.0);
  std::vector<double> x(rows * vocab), a(rows), c(rows);
  for (auto& v : x) v = normal(gen);
  for (auto& v : a) v = normal(gen);
  for (auto& v : c) v = normal(gen);
  const std::vector<std::int32_t> y{0, 6, 3, 3, 1};
  // L = sum_i a_i logp_i + c_i entropy_i
  auto loss = [&](const std::vector<double>& xs) {
    std::vector<double> lp(rows), ent(rows);
    corl::logprobs_from_logits<double>(cview(xs), vocab, cview(y), temperature, std::span<double>(lp),
                                       std::span<double>(ent));
    double l = 0;
    for (corl::index_t i = 0; i < rows; ++i) l += a[i] * lp[i] + c[i] * ent[i];
    return l;
  };
  std::vector<double> lp(rows), ent(rows), lse(rows), dx(rows * vocab);
  corl::logprobs_from_logits<double>(cview(x), vocab, cview(y), temperature, std::span<double>(lp),
                                     std::span<double>(ent), std::span<double>(lse));
  corl::logprobs_backward_from_logits<double>(cview(x), vocab, cview(y), temperature, cview(lse), cview(a),
                                              std::span<double>(dx), cview(ent), cview(c));
  const double h = 1e-6;
  double worst = 0;
  for (std::size_t k = 0; k < x.size(); ++k) {
    auto xp = x, xm = x;
    xp[k] += h;
    xm[k] -= h;
    const double fd = (loss(xp) - loss(xm)) / (2 * h);
    worst = std::max(worst, std::abs(fd - dx[k]));
  }
  CHECK(worst < 1e-7);  // central differences: truncation O(h^2) ~ 1e-12, rounding ~ 1e-16 / 1e-6 = 1e-10 per term
}

TEST_CASE("results are bitwise identical for 1, 2, 3 and 8 threads (float and bf16 logits)") {
  const corl::index_t rows = 37, vocab = 1001;
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<std::int32_t> token(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<float> x(rows * vocab);
  for (auto& v : x) v = normal(gen);
  std::vector<corl::bfloat16> xb;
  for (float v : x) xb.push_back(corl::bfloat16(v));
  std::vector<std::int32_t> y(rows);
  for (auto& v : y) v = token(gen);
  std::vector<float> g(rows), hcoef(rows);
  for (auto& v : g) v = normal(gen);
  for (auto& v : hcoef) v = normal(gen);

  auto run = [&](auto const& logits, int threads) {
    std::vector<float> lp(rows), ent(rows), lse(rows), dx(rows * vocab);
    corl::logprobs_from_logits<float>(cview(logits), vocab, cview(y), 1.3f, std::span<float>(lp),
                                      std::span<float>(ent), std::span<float>(lse), threads);
    corl::logprobs_backward_from_logits<float>(cview(logits), vocab, cview(y), 1.3f, cview(lse), cview(g),
                                               std::span<float>(dx), cview(ent), cview(hcoef), threads);
    lp.insert(lp.end(), ent.begin(), ent.end());
    lp.insert(lp.end(), dx.begin(), dx.end());
    return lp;
  };
  for (int which = 0; which < 2; ++which) {
    const auto ref = which == 0 ? run(x, 1) : run(xb, 1);
    for (int threads : {2, 3, 8}) {
      const auto got = which == 0 ? run(x, threads) : run(xb, threads);
      REQUIRE(got.size() == ref.size());
      CHECK(std::memcmp(got.data(), ref.data(), ref.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("backward in place over bf16 logits equals the out-of-place result") {
  const corl::index_t rows = 4, vocab = 33;
  std::mt19937 gen(99);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<corl::bfloat16> x(rows * vocab);
  for (auto& v : x) v = corl::bfloat16(normal(gen));
  const std::vector<std::int32_t> y{0, 32, 5, 17};
  std::vector<float> lp(rows), lse(rows), g{1.0f, -0.5f, 2.0f, 0.25f};
  corl::logprobs_from_logits<float>(cview(x), vocab, cview(y), 1.0f, std::span<float>(lp), std::span<float>{},
                                    std::span<float>(lse));
  std::vector<corl::bfloat16> out(rows * vocab);
  corl::logprobs_backward_from_logits<float>(cview(x), vocab, cview(y), 1.0f, cview(lse), cview(g),
                                             std::span<corl::bfloat16>(out));
  std::vector<corl::bfloat16> inplace = x;
  corl::logprobs_backward_from_logits<float>(std::span<const corl::bfloat16>(inplace.data(), inplace.size()), vocab,
                                             cview(y), 1.0f, cview(lse), cview(g),
                                             std::span<corl::bfloat16>(inplace));
  CHECK(inplace == out);
  // the gradient of a log-prob sums to zero over the vocabulary (here up to bf16 rounding of each element)
  float sum = 0;
  for (corl::index_t v = 0; v < vocab; ++v) sum += static_cast<float>(out[v]);
  CHECK(std::abs(sum) < 0.02f);
}

TEST_CASE("bad input raises corl::Error naming the function, array and row") {
  const std::vector<float> x{0, 1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> lp(3);
  auto fwd = [&](const std::vector<float>& logits, const std::vector<std::int32_t>& y, float t = 1.0f) {
    return error_of([&] {
      corl::logprobs_from_logits<float>(cview(logits), 3, cview(y), t, std::span<float>(lp), {}, {}, 2);
    });
  };
  CHECK(fwd(x, {0, 3, 1}) == "logprobs_from_logits: targets[1] = 3, expected in [0, vocab = 3)");
  CHECK(fwd(x, {0, 1, -1}) == "logprobs_from_logits: targets[2] = -1, expected in [0, vocab = 3)");
  auto bad = x;
  bad[7] = std::numeric_limits<float>::quiet_NaN();
  CHECK(fwd(bad, {0, 1, 2}) == "logprobs_from_logits: logits[row 2, column 1] = nan, expected a finite value");
  bad[7] = 7;
  bad[4] = -std::numeric_limits<float>::infinity();
  CHECK(fwd(bad, {0, 1, 2}) == "logprobs_from_logits: logits[row 1, column 1] = -inf, expected a finite value");
  CHECK(fwd(x, {0, 1, 2}, 0.0f) == "logprobs_from_logits: temperature = 0, expected a finite value > 0");
  CHECK(fwd(x, {0, 1}).find("logits has 9 elements, expected rows * vocab = 2 * 3") != std::string::npos);
  // two bad rows in different threads' chunks: the lowest row is reported, whatever the thread count
  CHECK(fwd(x, {0, 9, 9}) == "logprobs_from_logits: targets[1] = 9, expected in [0, vocab = 3)");
  const std::vector<float> lse(3), g(3);
  std::vector<float> dx(9);
  const std::vector<std::int32_t> y{0, 1, 2};
  CHECK(error_of([&] {
          corl::logprobs_backward_from_logits<float>(cview(x), 3, cview(y), 1.0f, cview(lse), cview(g),
                                                     std::span<float>(dx), {}, cview(g));
        }) == "logprobs_backward_from_logits: entropy has 0 elements, expected 3 (needed with dentropy)");
}

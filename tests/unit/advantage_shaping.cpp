// Multi-reward combination (sum then normalise, GDPO normalise then sum), DAPO dynamic sampling and overlong penalty.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <corl/advantage/advantage.hpp>

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

TEST_CASE("weighted_reward_sum: NaN components are skipped, all-NaN rows stay NaN") {
  // rows: (1, 0.5), (NaN, 1), (NaN, NaN); weights 1, 0.8
  const std::vector<double> t{1, 0.5, kNaN, 1, kNaN, kNaN};
  const std::vector<double> w{1.0, 0.8};
  const auto s = corl::weighted_reward_sum(corl::RewardTable<double>{t, 3, 2}, w);
  CHECK(s[0] == doctest::Approx(1.4));
  CHECK(s[1] == doctest::Approx(0.8));
  CHECK(std::isnan(s[2]));
  const std::vector<double> w_bad{1.0};
  CHECK_THROWS_WITH_AS(corl::weighted_reward_sum(corl::RewardTable<double>{t, 3, 2}, w_bad),
                       "weighted_reward_sum: weights has 1 entries, expected num_rewards = 2", corl::Error);
  CHECK_THROWS_WITH_AS(corl::weighted_reward_sum(corl::RewardTable<double>{t, 2, 2}, w),
                       "weighted_reward_sum: table.values has 6 entries, expected num_seqs * num_rewards = 4",
                       corl::Error);
}

TEST_CASE("weighted_reward_sum: infinite rewards and overflowing sums are errors naming the sequence") {
  const std::vector<double> w{1.0, 0.8};
  const std::vector<double> t_inf{1, 0.5, 2, std::numeric_limits<double>::infinity()};
  CHECK_THROWS_WITH_AS(corl::weighted_reward_sum(corl::RewardTable<double>{t_inf, 2, 2}, w),
                       doctest::Contains("weighted_reward_sum: reward 1 of sequence 1 = inf"), corl::Error);
  // Each part is finite, the double sum is not.
  const double big = std::numeric_limits<double>::max();
  const std::vector<double> t_big{1, 0.5, big, big};
  CHECK_THROWS_WITH_AS(corl::weighted_reward_sum(corl::RewardTable<double>{t_big, 2, 2}, std::vector<double>{1.0, 1.0}),
                       doctest::Contains("the weighted sum of sequence 1's rewards overflows"), corl::Error);
  // In float the sum fits a double but not the float result.
  const std::vector<float> tf{3e38f, 3e38f};
  CHECK_THROWS_WITH_AS(corl::weighted_reward_sum(corl::RewardTable<float>{tf, 1, 2}, std::vector<double>{1.0, 1.0}),
                       doctest::Contains("the weighted sum of sequence 0's rewards overflows"), corl::Error);
  // GDPO goes through the same checks.
  const std::vector<corl::index_t> g{0, 0};
  std::vector<double> adv(2);
  CHECK_THROWS_WITH_AS(corl::normalize_then_sum(corl::GroupZScore{}, corl::RewardTable<double>{t_inf, 2, 2}, w, g, 1,
                                                std::span<double>(adv)),
                       doctest::Contains("normalize_then_sum: reward 1 of sequence 1 = inf"), corl::Error);
  // and names itself when the weighted sum overflows (float rewards, each finite)
  const std::vector<float> tf2{3e38f, 3e38f, 1.0f, 2.0f};
  std::vector<float> adv_f(2);
  CHECK_THROWS_WITH_AS(corl::normalize_then_sum(corl::GroupZScore{}, corl::RewardTable<float>{tf2, 2, 2},
                                                std::vector<double>{1.0, 1.0}, g, 1, std::span<float>(adv_f)),
                       doctest::Contains("normalize_then_sum: the weighted sum of sequence 0's rewards overflows"),
                       corl::Error);
}

TEST_CASE("sum then normalise vs GDPO normalise then sum: hand-computed group of four") {
  // Two binary rewards on one group of 4: reward a = (1, 1, 0, 0), reward b = (1, 0, 1, 0), weights 1 and 1.
  // Sum: (2, 1, 1, 0), mean 1, biased std sqrt(0.5): z = (sqrt 2, 0, 0, -sqrt 2). The middle two collapse to 0.
  const std::vector<double> t{1, 1, 1, 0, 0, 1, 0, 0};
  const std::vector<double> w{1.0, 1.0};
  const std::vector<corl::index_t> g{0, 0, 0, 0};
  const corl::GroupZScore z{.eps = 0.0, .unbiased = false};
  std::vector<double> adv(4);
  corl::sum_then_normalize(z, corl::RewardTable<double>{t, 4, 2}, w, g, 1, std::span<double>(adv));
  CHECK(adv[0] == doctest::Approx(std::sqrt(2.0)));
  CHECK(adv[1] == 0.0);
  CHECK(adv[3] == doctest::Approx(-std::sqrt(2.0)));
  // GDPO: per-reward z-scores a -> (1, 1, -1, -1), b -> (1, -1, 1, -1); sum (2, 0, 0, -2); batch whitening with the
  // unbiased std sqrt(8/3): (2, 0, 0, -2) / (sqrt(8/3) + 1e-4)
  corl::normalize_then_sum(z, corl::RewardTable<double>{t, 4, 2}, w, g, 1, std::span<double>(adv));
  CHECK(adv[0] == doctest::Approx(2.0 / (std::sqrt(8.0 / 3.0) + 1e-4)));
  CHECK(adv[1] == doctest::Approx(0.0).scale(1.0));
  CHECK(adv[3] == doctest::Approx(-2.0 / (std::sqrt(8.0 / 3.0) + 1e-4)));
  // without the batch whitening: the plain sum
  corl::normalize_then_sum(z, corl::RewardTable<double>{t, 4, 2}, w, g, 1, std::span<double>(adv), {}, false);
  CHECK(adv[0] == doctest::Approx(2.0));
  CHECK(adv[3] == doctest::Approx(-2.0));
  // weights: 2 on a, 0.5 on b -> per-reward sum (2.5, 1.5, -1.5, -2.5)
  const std::vector<double> w2{2.0, 0.5};
  corl::normalize_then_sum(z, corl::RewardTable<double>{t, 4, 2}, w2, g, 1, std::span<double>(adv), {}, false);
  CHECK(adv[1] == doctest::Approx(1.5));
  CHECK(adv[2] == doctest::Approx(-1.5));
}

TEST_CASE("normalise then sum: NaN rows get 0 and nothing leaks") {
  const std::vector<double> t{1, kNaN, 0, 1, kNaN, kNaN, 1, 0};
  const std::vector<double> w{1.0, 0.8};
  const std::vector<corl::index_t> g{0, 0, 0, 0};
  std::vector<float> adv(4);
  std::vector<float> tf(t.begin(), t.end());
  corl::normalize_then_sum(corl::GroupZScore{}, corl::RewardTable<float>{tf, 4, 2}, w, g, 1, std::span<float>(adv));
  for (float a : adv) CHECK(std::isfinite(a));
  CHECK(adv[2] == 0.0f);
}

TEST_CASE("dynamic sampling: DAPO zero-std filter and the mean-range filter") {
  // group 0: 1 1 1 (all agree) | group 1: 0 1 (mean .5) | group 2: 0 0 1 1 1 (mean .6) | group 3: NaN only | group 4: 0.9
  const std::vector<double> r{1, 1, 1, 0, 1, 0, 0, 1, 1, 1, kNaN, 0.9};
  const std::vector<corl::index_t> g{0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 3, 4};
  const corl::RewardBatch<double> batch{r, g, 5};
  auto res = corl::filter_groups(corl::GroupFilter{}, batch);
  CHECK(res.keep_group == std::vector<char>{0, 1, 1, 0, 0});
  CHECK(res.kept_groups == 2);
  CHECK(res.dropped_zero_std == 2);  // group 0 and the group of one
  CHECK(res.dropped_empty == 1);
  CHECK(res.keep_seq == std::vector<char>{0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0});
  res = corl::filter_groups(corl::GroupFilter{.min_mean = 0.55, .max_mean = 0.8}, batch);
  CHECK(res.keep_group == std::vector<char>{0, 0, 1, 0, 0});
  CHECK(res.dropped_mean_range == 1);
  res = corl::filter_groups(corl::GroupFilter{.drop_zero_std = false}, batch);
  CHECK(res.keep_group == std::vector<char>{1, 1, 1, 0, 1});
  CHECK_THROWS_WITH_AS(corl::filter_groups(corl::GroupFilter{.min_mean = 1.0, .max_mean = 0.0}, batch),
                       "filter_groups: min_mean = 1 > max_mean = 0, expected min_mean <= max_mean", corl::Error);
}

TEST_CASE("DAPO overlong penalty: 0, linear ramp over the last L_cache tokens, then -f") {
  const corl::OverlongPenalty p{.max_length = 100, .cache_length = 20};
  CHECK(p.penalty(0) == 0.0);
  CHECK(p.penalty(80) == 0.0);
  CHECK(p.penalty(81) == doctest::Approx(-0.05));
  CHECK(p.penalty(90) == doctest::Approx(-0.5));
  CHECK(p.penalty(100) == doctest::Approx(-1.0));
  CHECK(p.penalty(101) == -1.0);
  const corl::OverlongPenalty half{.max_length = 100, .cache_length = 20, .penalty_factor = 0.5};
  CHECK(half.penalty(90) == doctest::Approx(-0.25));
  std::vector<double> r{1.0, kNaN, 0.5};
  const std::vector<corl::index_t> len{85, 95, 200};
  p.apply(std::span<double>(r), len);
  CHECK(r[0] == doctest::Approx(0.75));
  CHECK(std::isnan(r[1]));
  CHECK(r[2] == doctest::Approx(-0.5));
  const corl::OverlongPenalty bad{.max_length = 10, .cache_length = 11};
  CHECK_THROWS_WITH_AS(bad.penalty(5),
                       "OverlongPenalty::penalty: cache_length = 11, expected 1 <= cache_length <= max_length = 10",
                       corl::Error);
  const std::vector<corl::index_t> len_short{1};
  CHECK_THROWS_WITH_AS(p.apply(std::span<double>(r), len_short),
                       "OverlongPenalty::apply: lengths has 1 entries, expected 3 (one per reward)", corl::Error);
}

TEST_CASE("group index <-> segment offsets (the CUDA kernels' layout)") {
  const std::vector<corl::index_t> g{0, 0, 0, 2, 2, 3};
  const auto offsets = corl::group_offsets_from_index(g, 5);
  CHECK(offsets == std::vector<corl::index_t>{0, 3, 3, 5, 6, 6});  // group 1 and group 4 are empty
  CHECK(corl::group_index_from_offsets(offsets) == g);
  const std::vector<corl::index_t> unsorted{0, 1, 0};
  CHECK_THROWS_WITH_AS(corl::group_offsets_from_index(unsorted, 2),
                       "group_offsets_from_index: group[2] = 0 < group[1] = 1, expected non-decreasing group ids "
                       "(contiguous groups)",
                       corl::Error);
  const std::vector<corl::index_t> bad{0, 4, 2};
  CHECK_THROWS_WITH_AS(corl::group_index_from_offsets(bad),
                       "group_index_from_offsets: offsets[2] = 2 < offsets[1] = 4, expected non-decreasing offsets",
                       corl::Error);
}

// Hand-computed values for every group estimator on one batch with unequal, interleaved groups, a NaN, a group of one,
// a zero-variance group and an unused group id.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <corl/advantage/advantage.hpp>

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// index:                       0    1    2    3    4    5    6    7    8    9     10
const std::vector<double> kRewards{1.0, 0.2, 0.0, 0.7, 1.0, 0.0, 0.5, 1.0, 1.0, kNaN, 1.0};
const std::vector<corl::index_t> kGroup{0, 1, 0, 2, 3, 0, 1, 3, 0, 1, 3};
// group 0 = {0, 2, 5, 8}: rewards 1 0 0 1, mean 0.5, unbiased std sqrt(1/3)
// group 1 = {1, 6, (9 NaN)}: rewards 0.2 0.5, mean 0.35, unbiased std sqrt(0.045)
// group 2 = {3}: a group of one;  group 3 = {4, 7, 10}: all 1 (zero variance);  group 4: unused
const std::vector<corl::index_t> kLengths{10, 5, 20, 7, 8, 30, 15, 9, 60, 100, 11};
constexpr corl::index_t kNumGroups = 5;

template <class Estimator>
std::vector<double> run(const Estimator& est, corl::AdvantageStats* stats = nullptr) {
  const corl::RewardBatch<double> batch{kRewards, kGroup, kNumGroups, kLengths};
  auto [adv, s] = corl::compute_advantages(est, batch);
  if (stats != nullptr) *stats = s;
  return adv;
}

void check_values(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("index " << i);
    CHECK(std::isfinite(got[i]));
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));
  }
}

}  // namespace

TEST_CASE("group z-score (TRL scale_rewards=group): hand-computed values") {
  corl::AdvantageStats stats;
  // g0: +-0.5 / (sqrt(1/3) + 1e-4) = +-0.8658754297607016;  g1: -+0.15 / (sqrt(0.045) + 1e-4) = -+0.7067736049140153
  const double a0 = 0.8658754297607016, a1 = 0.7067736049140153;
  check_values(run(corl::GroupZScore{}, &stats), {a0, -a1, -a0, 0, 0, -a0, a1, 0, a0, 0, 0});
  CHECK(stats.num_seqs == 11);
  CHECK(stats.num_valid == 10);
  CHECK(stats.num_groups == 4);       // groups with a valid reward
  CHECK(stats.zero_std_groups == 2);  // the group of one and the all-ones group
  CHECK(stats.zero_std_fraction() == 0.5);
  CHECK(stats.reward_mean == doctest::Approx(0.64));
  // biased std: 0.5 / (sqrt(0.25) + 0) = 1 exactly for group 0; group 1: 0.15 / 0.15 = 1
  check_values(run(corl::GroupZScore{.eps = 0.0, .unbiased = false}), {1, -1, -1, 0, 0, -1, 1, 0, 1, 0, 0});
  // std floor 0.3 applies to group 1 only (sqrt(0.045) = 0.2121 < 0.3): 0.15 / (0.3 + 1e-4) = 0.49983338887037654
  const double f1 = 0.15 / (0.3 + 1e-4);
  check_values(run(corl::GroupZScore{.std_floor = 0.3}), {a0, -f1, -a0, 0, 0, -a0, f1, 0, a0, 0, 0});
}

TEST_CASE("group mean (Dr.GRPO, scale_rewards=none): hand-computed values") {
  check_values(run(corl::GroupMean{}), {0.5, -0.15, -0.5, 0, 0, -0.5, 0.15, 0, 0.5, 0, 0});
}

TEST_CASE("group mean / batch std (scale_rewards=batch): hand-computed values") {
  // valid rewards 1 .2 0 .7 1 0 .5 1 1 1: mean 0.64, unbiased std 0.43256341860022224
  const double s = 0.43256341860022224 + 1e-4;
  check_values(run(corl::GroupMeanBatchStd{}),
               {0.5 / s, -0.15 / s, -0.5 / s, 0, 0, -0.5 / s, 0.15 / s, 0, 0.5 / s, 0, 0});
  CHECK(0.5 / s == doctest::Approx(1.155632712415644).epsilon(1e-12));
}

TEST_CASE("RLOO: r_i minus the mean of the others") {
  // g0: 1 - mean(0, 0, 1) = 2/3, 0 - mean(1, 0, 1) = -2/3;  g1: 0.2 - 0.5 = -0.3, 0.5 - 0.2 = 0.3
  check_values(run(corl::Rloo{}), {2.0 / 3, -0.3, -2.0 / 3, 0, 0, -2.0 / 3, 0.3, 0, 2.0 / 3, 0, 0});
}

TEST_CASE("REINFORCE++: batch whitening ignores groups") {
  // (r - 0.64) / (0.43256341860022224 + 1e-8); the all-ones group is NOT zeroed (no group baseline)
  const double p1 = 0.8322478882807132, p02 = -1.017191863454205, p0 = -1.4795518013879345, p07 = 0.13870798138011872;
  check_values(run(corl::ReinforcePlusPlus{}), {p1, p02, p0, p07, p1, p0, (0.5 - 0.64) / (0.43256341860022224 + 1e-8),
                                                p1, p1, 0, p1});
}

TEST_CASE("REINFORCE++-baseline: group mean, then divide by the batch std of the centred rewards") {
  // centred: .5 -.15 -.5 0 0 -.5 .15 0 .5 (NaN) 0, unbiased std over 10 values 0.3407508050043479
  const double a = 1.4673479210713556, b = 0.4402043763214067;
  check_values(run(corl::ReinforcePlusPlusBaseline{}), {a, -b, -a, 0, 0, -a, b, 0, a, 0, 0});
}

TEST_CASE("OPO: length-weighted baseline") {
  // g0 lengths 10 20 30 60 -> b = (1*10 + 1*60) / 120 = 7/12;  g1 lengths 5 15 (NaN's 100 left out) -> b = 8.5/20
  const double b0 = 7.0 / 12.0, b1 = 0.425;
  check_values(run(corl::Opo{}), {1 - b0, 0.2 - b1, -b0, 0, 0, -b0, 0.5 - b1, 0, 1 - b0, 0, 0});
  const corl::RewardBatch<double> no_lengths{kRewards, kGroup, kNumGroups};
  std::vector<double> out(kRewards.size());
  CHECK_THROWS_WITH_AS(corl::Opo{}.compute(no_lengths, std::span<double>(out)),
                       doctest::Contains("Opo::compute: lengths has 0 entries"), corl::Error);
}

TEST_CASE("GPG: group mean scaled by B / B_valid") {
  // B = 11 sequences, B_valid = 4 (g0) + 2 (g1) = 6 -> alpha = 11/6
  const double al = 11.0 / 6.0;
  check_values(run(corl::Gpg{}),
               {al * 0.5, -al * 0.15, -al * 0.5, 0, 0, -al * 0.5, al * 0.15, 0, al * 0.5, 0, 0});
  // with F_norm = std: group 0 -> alpha * 0.5 / (sqrt(1/3) + 1e-4)
  const auto scaled = run(corl::Gpg{.scale_by_std = true});
  CHECK(scaled[0] == doctest::Approx(al * 0.8658754297607016).epsilon(1e-12));
}

TEST_CASE("pass@k: hand-computed binary group") {
  // n = 4, c = 1, k = 2: R = 1 - C(3,2)/C(4,2) = 0.5, sigma = 0.5
  // A_pos = 0.5 / 0.5 = 1;  A_neg = (1 - 0.5 - C(2,1)/C(3,1)) / 0.5 = (0.5 - 2/3) / 0.5 = -1/3
  const std::vector<double> r{0, 1, 0, 0, /*group 1: all correct*/ 1, 1, /*group 2: 3 of 5 correct*/ 1, 0, 1, 1, 0};
  const std::vector<corl::index_t> g{0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2};
  auto [adv, stats] = corl::compute_advantages(corl::PassAtK{.k = 2}, corl::RewardBatch<double>{r, g, 3});
  CHECK(adv[0] == doctest::Approx(-1.0 / 3).epsilon(1e-12));
  CHECK(adv[1] == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(adv[2] == doctest::Approx(-1.0 / 3).epsilon(1e-12));
  CHECK(adv[4] == 0.0);  // sigma = 0
  CHECK(adv[5] == 0.0);
  // group 2: n = 5, n_neg = 2, k = 2: R = 1 - C(2,2)/C(5,2) = 0.9, sigma = 0.3
  // A_pos = 0.1 / 0.3 = 1/3;  A_neg = (0.1 - C(1,1)/C(4,1)) / 0.3 = (0.1 - 0.25) / 0.3 = -0.5
  CHECK(adv[6] == doctest::Approx(1.0 / 3).epsilon(1e-12));
  CHECK(adv[7] == doctest::Approx(-0.5).epsilon(1e-12));
  CHECK(adv[10] == doctest::Approx(-0.5).epsilon(1e-12));
  // k = 3 in group 2: C(2,3) = 0 -> every 3-subset passes: sigma = 0 -> all 0; group 0 with n = 4, k = 3:
  // R = 1 - C(3,3)/C(4,3) = 0.75, sigma = sqrt(0.1875); A_neg = (0.25 - C(2,2)/C(3,2)) / sigma = (0.25 - 1/3) / sigma
  auto [adv3, stats3] = corl::compute_advantages(corl::PassAtK{.k = 3}, corl::RewardBatch<double>{r, g, 3});
  CHECK(adv3[6] == 0.0);
  CHECK(adv3[0] == doctest::Approx((0.25 - 1.0 / 3) / std::sqrt(0.1875)).epsilon(1e-12));
  CHECK(adv3[1] == doctest::Approx(0.25 / std::sqrt(0.1875)).epsilon(1e-12));
  // k larger than the group: 0
  auto [adv9, stats9] = corl::compute_advantages(corl::PassAtK{.k = 9}, corl::RewardBatch<double>{r, g, 3});
  for (double a : adv9) CHECK(a == 0.0);
}

TEST_CASE("pass@1 equals the biased z-score without eps") {
  const std::vector<double> r{0, 1, 1, 0, 0, 1, 0, 0, 1, 1};
  const std::vector<corl::index_t> g{0, 0, 0, 1, 1, 1, 1, 1, 2, 2};
  auto [p, s1] = corl::compute_advantages(corl::PassAtK{.k = 1}, corl::RewardBatch<double>{r, g, 3});
  auto [z, s2] = corl::compute_advantages(corl::GroupZScore{.eps = 0.0, .unbiased = false},
                                          corl::RewardBatch<double>{r, g, 3});
  for (std::size_t i = 0; i < r.size(); ++i) CHECK(p[i] == doctest::Approx(z[i]).epsilon(1e-12));
}

TEST_CASE("pass@k rejects non-binary rewards") {
  const std::vector<double> r{0, 0.5};
  const std::vector<corl::index_t> g{0, 0};
  std::vector<double> out(2);
  CHECK_THROWS_WITH_AS(corl::PassAtK{.k = 1}.compute(corl::RewardBatch<double>{r, g, 1}, std::span<double>(out)),
                       doctest::Contains("PassAtK::compute: rewards[1] = 0.5, expected 0 or 1"), corl::Error);
}

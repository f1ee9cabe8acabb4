// Properties every estimator must have: permuting sequences / relabelling groups permutes the advantages; NaN rewards
// give 0 and never leak; groups of one and zero-variance groups give 0; float agrees with double; bad input throws.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include <corl/advantage/advantage.hpp>
#include <corl/core/rng.hpp>

namespace {

struct RandomBatch {
  std::vector<double> rewards;
  std::vector<corl::index_t> group, lengths;
  corl::index_t num_groups = 0;
  corl::RewardBatch<double> view() const { return {rewards, group, num_groups, lengths}; }
};

// Groups of sizes 1..9, members shuffled through the batch, binary or continuous rewards, ~10% NaN.
RandomBatch make_batch(std::uint64_t seed, bool binary) {
  corl::CounterRng rng(seed, 0);
  RandomBatch b;
  b.num_groups = 3 + static_cast<corl::index_t>(rng.below(10));
  for (corl::index_t g = 0; g < b.num_groups; ++g) {
    const auto size = 1 + static_cast<corl::index_t>(rng.below(9));
    for (corl::index_t j = 0; j < size; ++j) {
      double r = binary ? static_cast<double>(rng.below(2)) : rng.uniform() * 4.0 - 1.0;
      if (rng.uniform() < 0.1) r = std::numeric_limits<double>::quiet_NaN();
      b.rewards.push_back(r);
      b.group.push_back(g);
      b.lengths.push_back(1 + static_cast<corl::index_t>(rng.below(500)));
    }
  }
  // shuffle the sequences (Fisher-Yates with the counter RNG)
  for (std::size_t i = b.rewards.size(); i > 1; --i) {
    const auto j = static_cast<std::size_t>(rng.below(i));
    std::swap(b.rewards[i - 1], b.rewards[j]);
    std::swap(b.group[i - 1], b.group[j]);
    std::swap(b.lengths[i - 1], b.lengths[j]);
  }
  return b;
}

template <class Estimator>
void check_properties(const Estimator& est, bool binary) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    INFO("estimator " << Estimator::name << ", seed " << seed);
    const RandomBatch b = make_batch(seed, binary);
    const auto [adv, stats] = corl::compute_advantages(est, b.view());
    const auto n = b.rewards.size();
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(std::isfinite(adv[i]));
      if (std::isnan(b.rewards[i])) CHECK(adv[i] == 0.0);
    }
    // permutation of sequences (which also permutes the members within every group) and relabelling of groups
    corl::CounterRng rng(seed, 99);
    std::vector<std::size_t> perm(n);
    std::iota(perm.begin(), perm.end(), std::size_t{0});
    for (std::size_t i = n; i > 1; --i) std::swap(perm[i - 1], perm[static_cast<std::size_t>(rng.below(i))]);
    std::vector<corl::index_t> relabel(static_cast<std::size_t>(b.num_groups));
    std::iota(relabel.begin(), relabel.end(), corl::index_t{0});
    std::reverse(relabel.begin(), relabel.end());
    RandomBatch p = b;
    for (std::size_t i = 0; i < n; ++i) {
      p.rewards[i] = b.rewards[perm[i]];
      p.group[i] = relabel[static_cast<std::size_t>(b.group[perm[i]])];
      p.lengths[i] = b.lengths[perm[i]];
    }
    const auto [padv, pstats] = corl::compute_advantages(est, p.view());
    for (std::size_t i = 0; i < n; ++i) CHECK(padv[i] == doctest::Approx(adv[perm[i]]).epsilon(1e-12));
    CHECK(pstats.zero_std_groups == stats.zero_std_groups);
    // float agrees with double
    std::vector<float> rf(b.rewards.begin(), b.rewards.end());
    const auto [fadv, fstats] =
        corl::compute_advantages(est, corl::RewardBatch<float>{rf, b.group, b.num_groups, b.lengths});
    for (std::size_t i = 0; i < n; ++i) {
      CHECK(std::isfinite(fadv[i]));
      CHECK(static_cast<double>(fadv[i]) == doctest::Approx(adv[i]).epsilon(1e-4).scale(1.0));
    }
  }
}

}  // namespace

TEST_CASE("permutation and relabelling equivariance, NaN -> 0, float vs double") {
  check_properties(corl::GroupZScore{}, false);
  check_properties(corl::GroupZScore{.eps = 1e-6, .unbiased = false, .std_floor = 0.1}, false);
  check_properties(corl::GroupMean{}, false);
  check_properties(corl::GroupMeanBatchStd{}, false);
  check_properties(corl::Rloo{}, false);
  check_properties(corl::ReinforcePlusPlus{}, false);
  check_properties(corl::ReinforcePlusPlusBaseline{}, false);
  check_properties(corl::Opo{}, false);
  check_properties(corl::Gpg{}, false);
  check_properties(corl::PassAtK{.k = 1}, true);
  check_properties(corl::PassAtK{.k = 3}, true);
}

TEST_CASE("group-baseline advantages sum to zero within each group") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    const RandomBatch b = make_batch(seed, false);
    for (int which = 0; which < 3; ++which) {
      std::vector<double> adv;
      if (which == 0) adv = corl::compute_advantages(corl::GroupZScore{}, b.view()).first;
      if (which == 1) adv = corl::compute_advantages(corl::Rloo{}, b.view()).first;
      if (which == 2) adv = corl::compute_advantages(corl::PassAtK{.k = 2}, make_batch(seed, true).view()).first;
      std::vector<double> sum(static_cast<std::size_t>(b.num_groups), 0.0);
      for (std::size_t i = 0; i < adv.size(); ++i) sum[static_cast<std::size_t>(b.group[i])] += adv[i];
      for (double s : sum) CHECK(s == doctest::Approx(0.0).scale(1.0).epsilon(1e-9));
    }
  }
}

TEST_CASE("groups of one and zero-variance groups give exactly 0, even when r - mean would round") {
  // 0.1 three times: the double mean is 0.10000000000000002, so r - mean != 0 without the zero-std rule
  const std::vector<double> r{0.1, 0.1, 0.1, 0.3};
  const std::vector<corl::index_t> g{0, 0, 0, 1};
  const corl::RewardBatch<double> batch{r, g, 2};
  const std::vector<corl::index_t> len{3, 4, 5, 6};
  const corl::RewardBatch<double> with_len{r, g, 2, len};
  for (const auto& adv : {corl::compute_advantages(corl::GroupZScore{.eps = 0.0}, batch).first,
                          corl::compute_advantages(corl::GroupMean{}, batch).first,
                          corl::compute_advantages(corl::GroupMeanBatchStd{}, batch).first,
                          corl::compute_advantages(corl::Rloo{}, batch).first,
                          corl::compute_advantages(corl::ReinforcePlusPlusBaseline{}, batch).first,
                          corl::compute_advantages(corl::Opo{}, with_len).first,
                          corl::compute_advantages(corl::Gpg{}, batch).first}) {
    for (double a : adv) CHECK(a == 0.0);
  }
  const auto stats = corl::compute_advantages(corl::GroupZScore{}, batch).second;
  CHECK(stats.zero_std_groups == 2);
  CHECK(stats.zero_std_fraction() == 1.0);
  // a batch made only of NaN: every advantage 0, no group counted
  const std::vector<double> nan4(4, std::numeric_limits<double>::quiet_NaN());
  const auto [adv, s] = corl::compute_advantages(corl::GroupZScore{}, corl::RewardBatch<double>{nan4, g, 2});
  for (double a : adv) CHECK(a == 0.0);
  CHECK(s.num_groups == 0);
  CHECK(s.zero_std_fraction() == 0.0);
}

TEST_CASE("bad input throws corl::Error naming the function, array, index and condition") {
  const std::vector<double> r{1.0, 0.0, 0.5};
  const std::vector<corl::index_t> g{0, 0, 1};
  std::vector<double> out(3), short_out(2);
  const corl::GroupZScore z;
  CHECK_THROWS_WITH_AS(z.compute(corl::RewardBatch<double>{r, g, 2}, std::span<double>(short_out)),
                       "GroupZScore::compute: advantages has 2 entries, expected 3 (one per reward)", corl::Error);
  const std::vector<corl::index_t> g_short{0, 0};
  CHECK_THROWS_WITH_AS(z.compute(corl::RewardBatch<double>{r, g_short, 2}, std::span<double>(out)),
                       "GroupZScore::compute: group has 2 entries, expected 3 (one per reward)", corl::Error);
  const std::vector<corl::index_t> g_neg{0, -1, 1};
  CHECK_THROWS_WITH_AS(z.compute(corl::RewardBatch<double>{r, g_neg, 2}, std::span<double>(out)),
                       "GroupZScore::compute: group[1] = -1, expected 0 <= group < num_groups = 2", corl::Error);
  const std::vector<corl::index_t> g_big{0, 0, 2};
  CHECK_THROWS_WITH_AS(corl::Rloo{}.compute(corl::RewardBatch<double>{r, g_big, 2}, std::span<double>(out)),
                       "Rloo::compute: group[2] = 2, expected 0 <= group < num_groups = 2", corl::Error);
  const std::vector<double> empty;
  const std::vector<corl::index_t> g_empty;
  std::vector<double> out_empty;
  CHECK_THROWS_WITH_AS(
      corl::GroupMean{}.compute(corl::RewardBatch<double>{empty, g_empty, 1}, std::span<double>(out_empty)),
      "GroupMean::compute: rewards is empty, expected at least one sequence", corl::Error);
  CHECK_THROWS_WITH_AS(z.compute(corl::RewardBatch<double>{r, g, 0}, std::span<double>(out)),
                       "GroupZScore::compute: num_groups = 0, expected >= 1", corl::Error);
  const std::vector<double> r_inf{1.0, std::numeric_limits<double>::infinity(), 0.5};
  CHECK_THROWS_WITH_AS(z.compute(corl::RewardBatch<double>{r_inf, g, 2}, std::span<double>(out)),
                       doctest::Contains("GroupZScore::compute: rewards[1] = inf, expected a finite value or NaN"),
                       corl::Error);
  const std::vector<corl::index_t> bad_len{3, 0, 2};
  CHECK_THROWS_WITH_AS(corl::Opo{}.compute(corl::RewardBatch<double>{r, g, 2, bad_len}, std::span<double>(out)),
                       "Opo::compute: lengths[1] = 0, expected > 0", corl::Error);
  CHECK_THROWS_WITH_AS((corl::GroupZScore{.eps = -1.0}.compute(corl::RewardBatch<double>{r, g, 2}, std::span<double>(out))),
                       "GroupZScore::compute: eps = -1, expected >= 0", corl::Error);
  CHECK_THROWS_WITH_AS(corl::PassAtK{.k = 0}.compute(corl::RewardBatch<double>{r, g, 2}, std::span<double>(out)),
                       "PassAtK::compute: k = 0, expected >= 1", corl::Error);
}

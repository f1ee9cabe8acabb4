// corl/advantage/pass_at_k.hpp — the analytical pass@k advantage for binary rewards.
// For a group of n valid samples with c correct (r = 1) and n_neg = n - c wrong (r = 0), the group reward is the
// unbiased pass@k estimate over all k-subsets, and each sample's advantage is the expected reward of the k-subsets that
// contain it minus that mean, divided by the std of the subset reward:
//   R = 1 - C(n_neg, k) / C(n, k),        sigma = sqrt(R (1 - R))
//   A_pos = (1 - R) / sigma                                            (every subset with a correct sample scores 1)
//   A_neg = (1 - R - C(n_neg - 1, k - 1) / C(n - 1, k - 1)) / sigma   (it scores 0 only if the other k-1 are wrong)
// k = 1 gives GRPO's z-score with the biased std and eps = 0. Ratios of binomials are computed as products
// C(a, k) / C(b, k) = prod_{j<k} (a - j) / (b - j) in double (no overflow). Defined values: NaN rewards, groups with
// fewer than k valid samples, and groups with sigma = 0 (all correct, or so few wrong that every k-subset passes) get
// A = 0. Valid rewards must be exactly 0 or 1.
// Source: Chen et al. 2025 "Pass@k Training for Adaptively Balancing Exploration and Exploitation of Large Reasoning
// Models", section 3 (analytical derivation of the group advantage).
#pragma once

#include <cmath>
#include <span>
#include <vector>

#include "corl/advantage/group_stats.hpp"

namespace corl {

struct PassAtK {
  static constexpr const char* name = "pass_at_k";
  index_t k = 1;

  /// C(a, m) / C(b, m) for 0 <= a <= b, m >= 0 (0 when a < m).
  static double binomial_ratio(index_t a, index_t b, index_t m) {
    if (a < m) return 0.0;
    double ratio = 1.0;
    for (index_t j = 0; j < m; ++j) ratio *= static_cast<double>(a - j) / static_cast<double>(b - j);
    return ratio;
  }

  template <class Real>
  AdvantageStats compute(const RewardBatch<Real>& batch, std::span<Real> advantages) const {
    constexpr const char* where = "PassAtK::compute";
    validate_reward_batch(where, batch, std::span<const Real>(advantages));
    require(k >= 1, where, ": k = ", k, ", expected >= 1");
    std::vector<index_t> correct(static_cast<std::size_t>(batch.num_groups), 0);
    for (std::size_t i = 0; i < batch.rewards.size(); ++i) {
      const Real r = batch.rewards[i];
      if (!reward_is_valid(r)) continue;
      require(r == Real(0) || r == Real(1), where, ": rewards[", i, "] = ", r, ", expected 0 or 1 (binary) or NaN");
      if (r == Real(1)) ++correct[static_cast<std::size_t>(batch.group[i])];
    }
    const auto groups = group_statistics(batch);
    for (std::size_t i = 0; i < batch.rewards.size(); ++i) {
      const Real r = batch.rewards[i];
      const auto g = static_cast<std::size_t>(batch.group[i]);
      const index_t n = groups[g].count, n_neg = n - correct[g];
      double a = 0.0;
      if (reward_is_valid(r) && n >= k) {
        const double mean = 1.0 - binomial_ratio(n_neg, n, k);
        const double sigma = std::sqrt(mean * (1.0 - mean));
        if (sigma > 0.0) {
          a = r == Real(1) ? (1.0 - mean) / sigma
                           : (1.0 - mean - binomial_ratio(n_neg - 1, n - 1, k - 1)) / sigma;
        }
      }
      advantages[i] = static_cast<Real>(a);
    }
    return summarize_rewards(batch, groups);
  }
};

}  // namespace corl

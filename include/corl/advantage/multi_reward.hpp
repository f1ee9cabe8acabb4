// corl/advantage/multi_reward.hpp — several reward functions with weights, combined before or after normalisation.
// Rewards of K functions for N sequences form a row-major table R[N x K] (NaN = this function does not apply or
// failed), weights w[K].
//   sum then normalise  [TRL `reward_weights`]:  r_i = sum_{j : R_ij not NaN} w_j R_ij   (NaN when every R_ij is NaN,
//                                                 like TRL's nansum, but without turning "no reward" into 0),
//                                                 A = estimator(r)
//   normalise then sum  [GDPO]:                  A_ij = estimator(R_.j) per function (NaN -> 0),
//                                                 s_i = sum_j w_j A_ij,  A_i = (s_i - mean_B(s)) / (std_B(s) + eps)
//                                                 over the sequences with at least one valid R_ij (others: A = 0);
//                                                 the final batch whitening can be switched off.
// Normalising each reward within its group before summing keeps a reward with a large scale or variance from drowning
// the others (GDPO), whereas summing first lets reward combinations that differ collapse to the same advantage.
// Sources: TRL GRPOConfig `reward_weights`; Liu et al. 2026 "GDPO: Group reward-Decoupled Normalization Policy
// Optimization for Multi-reward RL Optimization".
#pragma once

#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "corl/advantage/group_stats.hpp"
#include "corl/concepts/advantage_estimator.hpp"

namespace corl {

/// Row-major [num_seqs x num_rewards] view of per-function rewards.
template <class Real>
struct RewardTable {
  std::span<const Real> values;  ///< values[i * num_rewards + j] = reward j of sequence i
  index_t num_seqs = 0;
  index_t num_rewards = 0;
  Real at(index_t i, index_t j) const { return values[static_cast<std::size_t>(i * num_rewards + j)]; }
};

namespace detail {
template <class Real>
void validate_reward_table(const char* where, const RewardTable<Real>& table, std::span<const double> weights) {
  require(table.num_seqs > 0 && table.num_rewards > 0, where, ": table is ", table.num_seqs, " x ", table.num_rewards,
          ", expected at least 1 x 1");
  require(static_cast<index_t>(table.values.size()) == table.num_seqs * table.num_rewards, where, ": table.values has ",
          table.values.size(), " entries, expected num_seqs * num_rewards = ", table.num_seqs * table.num_rewards);
  require(static_cast<index_t>(weights.size()) == table.num_rewards, where, ": weights has ", weights.size(),
          " entries, expected num_rewards = ", table.num_rewards);
  for (std::size_t j = 0; j < weights.size(); ++j) {
    require(std::isfinite(weights[j]), where, ": weights[", j, "] = ", weights[j], ", expected a finite value");
  }
  for (index_t i = 0; i < table.num_seqs; ++i) {
    for (index_t j = 0; j < table.num_rewards; ++j) {
      const Real r = table.at(i, j);
      require(!std::isinf(r), where, ": reward ", j, " of sequence ", i, " = ", r,
              ", expected a finite value (or NaN: does not apply)");
    }
  }
}
}  // namespace detail

namespace detail {
/// The weighted sum of each sequence's valid rewards (NaN when it has none), for a table already validated by
/// validate_reward_table(where, ...).
template <class Real>
std::vector<Real> weighted_sum_of_valid(const char* where, const RewardTable<Real>& table,
                                        std::span<const double> weights) {
  std::vector<Real> out(static_cast<std::size_t>(table.num_seqs));
  for (index_t i = 0; i < table.num_seqs; ++i) {
    double sum = 0.0;
    bool any = false;
    for (index_t j = 0; j < table.num_rewards; ++j) {
      const Real r = table.at(i, j);
      if (!reward_is_valid(r)) continue;
      any = true;
      sum += weights[static_cast<std::size_t>(j)] * static_cast<double>(r);
    }
    // An overflowing sum (or one outside Real's range) would reach the estimator as inf: say where it came from.
    require(!any || (std::isfinite(sum) && std::abs(sum) <= static_cast<double>(std::numeric_limits<Real>::max())),
            where, ": the weighted sum of sequence ", i, "'s rewards overflows (", sum, ")");
    out[static_cast<std::size_t>(i)] = any ? static_cast<Real>(sum) : std::numeric_limits<Real>::quiet_NaN();
  }
  return out;
}
}  // namespace detail

/// r_i = sum over the non-NaN R_ij of w_j R_ij; NaN when all of sequence i's rewards are NaN. Throws corl::Error
/// naming the sequence (and function) for an infinite reward or a sum that overflows Real.
template <class Real>
std::vector<Real> weighted_reward_sum(const RewardTable<Real>& table, std::span<const double> weights) {
  detail::validate_reward_table("weighted_reward_sum", table, weights);
  return detail::weighted_sum_of_valid("weighted_reward_sum", table, weights);
}

/// Sum the weighted rewards, then run `estimator` on the sum. Returns the estimator's stats.
template <class Real, advantage_estimator_for<Real> Estimator>
AdvantageStats sum_then_normalize(const Estimator& estimator, const RewardTable<Real>& table,
                                  std::span<const double> weights, std::span<const index_t> group, index_t num_groups,
                                  std::span<Real> advantages, std::span<const index_t> lengths = {}) {
  const std::vector<Real> summed = weighted_reward_sum(table, weights);
  return estimator.compute(RewardBatch<Real>{summed, group, num_groups, lengths}, advantages);
}

/// GDPO: run `estimator` on each reward function separately, sum the weighted advantages, then (optionally) whiten the
/// sum over the batch. Returns the stats of the weighted reward sum as the sum-then-normalise path would see it.
template <class Real, advantage_estimator_for<Real> Estimator>
AdvantageStats normalize_then_sum(const Estimator& estimator, const RewardTable<Real>& table,
                                  std::span<const double> weights, std::span<const index_t> group, index_t num_groups,
                                  std::span<Real> advantages, std::span<const index_t> lengths = {},
                                  bool batch_whiten = true, double eps = 1e-4) {
  constexpr const char* where = "normalize_then_sum";
  detail::validate_reward_table(where, table, weights);
  require(eps >= 0.0, where, ": eps = ", eps, ", expected >= 0");
  require(static_cast<index_t>(advantages.size()) == table.num_seqs, where, ": advantages has ", advantages.size(),
          " entries, expected num_seqs = ", table.num_seqs);
  const auto n = static_cast<std::size_t>(table.num_seqs);
  std::vector<double> sum(n, 0.0);
  std::vector<Real> column(n), column_adv(n);
  for (index_t j = 0; j < table.num_rewards; ++j) {
    for (std::size_t i = 0; i < n; ++i) column[i] = table.at(static_cast<index_t>(i), j);
    estimator.compute(RewardBatch<Real>{column, group, num_groups, lengths}, std::span<Real>(column_adv));
    for (std::size_t i = 0; i < n; ++i) sum[i] += weights[static_cast<std::size_t>(j)] * static_cast<double>(column_adv[i]);
  }
  const std::vector<Real> summed = detail::weighted_sum_of_valid(where, table, weights);
  const auto valid = [&](index_t i) { return reward_is_valid(summed[static_cast<std::size_t>(i)]); };
  const GroupStats b = batch_statistics(table.num_seqs, [&](index_t i) { return sum[static_cast<std::size_t>(i)]; }, valid);
  for (std::size_t i = 0; i < n; ++i) {
    double a = 0.0;
    if (valid(static_cast<index_t>(i))) {
      a = !batch_whiten ? sum[i] : (b.zero_std() ? 0.0 : (sum[i] - b.mean) / (b.std(true) + eps));
    }
    advantages[i] = static_cast<Real>(a);
  }
  const RewardBatch<Real> summed_batch{summed, group, num_groups, lengths};
  return summarize_rewards(summed_batch, group_statistics(summed_batch));
}

}  // namespace corl

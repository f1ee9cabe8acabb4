// corl/advantage/group_mean_batch_std.hpp — group-mean baseline scaled by the batch std of the rewards.
//   A_i = (r_i - mean_g) / (std_B + eps),   std_B = std of all valid rewards of the batch (ddof 1 or 0)
// As in TRL, std_B is the std of the raw rewards (not of the centred ones). A zero-std group (incl. a group of one)
// and a NaN reward get A = 0 exactly. When the whole batch has std_B = 0 every group is zero-std, so every A is 0.
// Sources: Liu et al. 2025 "Tricks or Traps? A Deep Dive into RL for LLM Reasoning" (group mean, batch std);
// TRL `scale_rewards="batch"`.
#pragma once

#include <span>

#include "corl/advantage/group_stats.hpp"

namespace corl {

struct GroupMeanBatchStd {
  static constexpr const char* name = "group_mean_batch_std";
  double eps = 1e-4;     ///< added to std_B
  bool unbiased = true;  ///< ddof 1 (true, torch default) or 0 for std_B

  template <class Real>
  AdvantageStats compute(const RewardBatch<Real>& batch, std::span<Real> advantages) const {
    constexpr const char* where = "GroupMeanBatchStd::compute";
    validate_reward_batch(where, batch, std::span<const Real>(advantages));
    require(eps >= 0.0, where, ": eps = ", eps, ", expected >= 0");
    const auto groups = group_statistics(batch);
    const GroupStats b = batch_statistics(
        batch.num_seqs(), [&](index_t i) { return static_cast<double>(batch.rewards[static_cast<std::size_t>(i)]); },
        [&](index_t i) { return reward_is_valid(batch.rewards[static_cast<std::size_t>(i)]); });
    const double denom = b.std(unbiased) + eps;
    fill_group_advantages(where, batch, groups, advantages,
                          [&](index_t, double r, const GroupStats& s) { return (r - s.mean) / denom; });
    return summarize_rewards(batch, groups);
  }
};

}  // namespace corl

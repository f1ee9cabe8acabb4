// corl/advantage/opo.hpp — OPO: on-policy RL with the optimal (length-weighted) reward baseline.
//   b_g = sum_{i in V_g} len_i r_i / sum_{i in V_g} len_i,      A_i = r_i - b_g
// len_i is the completion length in tokens (RewardBatch::lengths, required, > 0). Under the sequence-sum loss the
// gradient variance is minimised by this baseline. NaN rewards and zero-std groups (incl. groups of one) get A = 0.
// Sources: Hao et al. 2025 "On-Policy RL with Optimal Reward Baseline" (OPO); verl `algorithm.adv_estimator=opo`.
#pragma once

#include <span>
#include <vector>

#include "corl/advantage/group_stats.hpp"

namespace corl {

struct Opo {
  static constexpr const char* name = "opo";

  template <class Real>
  AdvantageStats compute(const RewardBatch<Real>& batch, std::span<Real> advantages) const {
    validate_reward_batch("Opo::compute", batch, std::span<const Real>(advantages), /*need_lengths=*/true);
    const auto groups = group_statistics(batch);
    std::vector<double> weighted(groups.size(), 0.0), total_len(groups.size(), 0.0);
    for (std::size_t i = 0; i < batch.rewards.size(); ++i) {
      if (!reward_is_valid(batch.rewards[i])) continue;
      const auto g = static_cast<std::size_t>(batch.group[i]);
      const double len = static_cast<double>(batch.lengths[i]);
      weighted[g] += len * static_cast<double>(batch.rewards[i]);
      total_len[g] += len;
    }
    fill_group_advantages("Opo::compute", batch, groups, advantages, [&](index_t i, double r, const GroupStats&) {
      const auto g = static_cast<std::size_t>(batch.group[static_cast<std::size_t>(i)]);
      return r - weighted[g] / total_len[g];
    });
    return summarize_rewards(batch, groups);
  }
};

}  // namespace corl

// corl/advantage/group_mean.hpp — group-mean baseline without std scaling (Dr.GRPO).
//   A_i = r_i - mean_g
// Dividing by std_g over-weights easy and hard prompts (near-zero variance); Dr.GRPO drops it.
// NaN rewards and zero-std groups (incl. groups of one) get A = 0 exactly.
// Sources: Liu et al. 2025 "Understanding R1-Zero-Like Training" (Dr.GRPO); TRL `scale_rewards="none"`;
// verl `algorithm.adv_estimator=grpo` with `norm_adv_by_std_in_grpo=False`.
#pragma once

#include <span>

#include "corl/advantage/group_stats.hpp"

namespace corl {

struct GroupMean {
  static constexpr const char* name = "group_mean";

  template <class Real>
  AdvantageStats compute(const RewardBatch<Real>& batch, std::span<Real> advantages) const {
    validate_reward_batch("GroupMean::compute", batch, std::span<const Real>(advantages));
    const auto groups = group_statistics(batch);
    fill_group_advantages("GroupMean::compute", batch, groups, advantages,
                          [](index_t, double r, const GroupStats& s) { return r - s.mean; });
    return summarize_rewards(batch, groups);
  }
};

}  // namespace corl

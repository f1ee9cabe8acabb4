// corl/advantage/advantage.hpp — all of corl's advantage estimators and reward shaping in one include, plus
// compute_advantages(), which allocates the output.
#pragma once

#include <span>
#include <utility>
#include <vector>

#include "corl/advantage/dynamic_sampling.hpp"
#include "corl/advantage/gpg.hpp"
#include "corl/advantage/group_mean.hpp"
#include "corl/advantage/group_mean_batch_std.hpp"
#include "corl/advantage/group_stats.hpp"
#include "corl/advantage/group_zscore.hpp"
#include "corl/advantage/multi_reward.hpp"
#include "corl/advantage/opo.hpp"
#include "corl/advantage/overlong_penalty.hpp"
#include "corl/advantage/pass_at_k.hpp"
#include "corl/advantage/reinforce_pp.hpp"
#include "corl/advantage/rloo.hpp"
#include "corl/concepts/advantage_estimator.hpp"

namespace corl {

static_assert(advantage_estimator<GroupZScore> && advantage_estimator<GroupMean> &&
              advantage_estimator<GroupMeanBatchStd> && advantage_estimator<Rloo> &&
              advantage_estimator<ReinforcePlusPlus> && advantage_estimator<ReinforcePlusPlusBaseline> &&
              advantage_estimator<Opo> && advantage_estimator<Gpg> && advantage_estimator<PassAtK>);

/// Runs `estimator` and returns the advantages with the stats.
template <class Real, advantage_estimator_for<Real> Estimator>
std::pair<std::vector<Real>, AdvantageStats> compute_advantages(const Estimator& estimator,
                                                                const RewardBatch<Real>& batch) {
  std::vector<Real> out(batch.rewards.size());
  const AdvantageStats stats = estimator.compute(batch, std::span<Real>(out));
  return {std::move(out), stats};
}

}  // namespace corl

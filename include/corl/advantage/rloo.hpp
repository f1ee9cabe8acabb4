// corl/advantage/rloo.hpp — REINFORCE leave-one-out (RLOO) baseline.
//   A_i = r_i - (1 / (n_g - 1)) sum_{j in V_g, j != i} r_j  =  n_g / (n_g - 1) * (r_i - mean_g)
// (the second form is what is computed). A group of one valid reward has no other sample: A = 0. NaN rewards and
// zero-std groups get A = 0 exactly.
// Sources: Kool et al. 2019 "Buy 4 REINFORCE samples, get a baseline for free"; Ahmadian et al. 2024;
// verl `algorithm.adv_estimator=rloo`; TRL RLOOTrainer.
#pragma once

#include <span>

#include "corl/advantage/group_stats.hpp"

namespace corl {

struct Rloo {
  static constexpr const char* name = "rloo";

  template <class Real>
  AdvantageStats compute(const RewardBatch<Real>& batch, std::span<Real> advantages) const {
    validate_reward_batch("Rloo::compute", batch, std::span<const Real>(advantages));
    const auto groups = group_statistics(batch);
    fill_group_advantages("Rloo::compute", batch, groups, advantages, [](index_t, double r, const GroupStats& s) {
      const double n = static_cast<double>(s.count);  // >= 2 here: groups of one are zero-std
      return n / (n - 1.0) * (r - s.mean);
    });
    return summarize_rewards(batch, groups);
  }
};

}  // namespace corl

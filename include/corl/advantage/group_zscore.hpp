// corl/advantage/group_zscore.hpp — GRPO's group z-score advantage.
//   A_i = (r_i - mean_g) / (max(std_g, std_floor) + eps)         g = group of sequence i
// std_g with ddof 1 (unbiased, TRL / torch default and the CoRL reference code) or 0; eps = 1e-4 as in TRL and the
// CoRL reference code (verl uses 1e-6). NaN rewards and zero-std groups (incl. groups of one, and with eps = 0 groups
// whose std underflows to 0) get A = 0 exactly; rewards so large that an advantage overflows are a corl::Error.
// Sources: Shao et al. 2024 (DeepSeekMath, GRPO); TRL `scale_rewards="group"`; verl `algorithm.adv_estimator=grpo`
// with `norm_adv_by_std_in_grpo=True`.
#pragma once

#include <span>

#include "corl/advantage/group_stats.hpp"

namespace corl {

struct GroupZScore {
  static constexpr const char* name = "group_zscore";
  double eps = 1e-4;        ///< added to the (floored) std
  bool unbiased = true;     ///< ddof 1 (true) or 0 (false)
  double std_floor = 0.0;   ///< lower bound on std_g before eps is added (0: none)

  template <class Real>
  AdvantageStats compute(const RewardBatch<Real>& batch, std::span<Real> advantages) const {
    constexpr const char* where = "GroupZScore::compute";
    validate_reward_batch(where, batch, std::span<const Real>(advantages));
    require(eps >= 0.0, where, ": eps = ", eps, ", expected >= 0");
    require(std_floor >= 0.0, where, ": std_floor = ", std_floor, ", expected >= 0");
    const auto groups = group_statistics(batch);
    fill_group_advantages(where, batch, groups, advantages, [&](index_t, double r, const GroupStats& s) {
      const double sd = s.std(unbiased);
      const double denom = (sd > std_floor ? sd : std_floor) + eps;
      return denom > 0.0 ? (r - s.mean) / denom : 0.0;  // 0: the spread underflowed to 0 (eps = 0), a zero-std group
    });
    return summarize_rewards(batch, groups);
  }
};

}  // namespace corl

// corl/advantage/gpg.hpp — GPG: group policy gradient advantage with the valid-sample correction.
//   A_i = alpha (r_i - mean_g),   alpha = B / B_valid
// B = number of sequences in the batch; B_valid = number of sequences that carry a gradient: valid reward in a group
// that is not zero-std. Samples of zero-std groups (and NaN rewards) have A = 0 and add nothing to a loss averaged
// over B, so alpha rescales the gradient to the average over the samples that do. When B_valid = 0 every A is 0
// (alpha is reported as 1). GPG optionally divides by std_g (F_norm); `scale_by_std` enables it (ddof 1, + eps).
// Source: Chu et al. 2025 "GPG: A Simple and Strong Reinforcement Learning Baseline for Model Reasoning", eq. (6)-(7).
#pragma once

#include <span>

#include "corl/advantage/group_stats.hpp"

namespace corl {

struct Gpg {
  static constexpr const char* name = "gpg";
  bool scale_by_std = false;  ///< F_norm = std_g + eps instead of 1
  double eps = 1e-4;

  /// alpha = B / B_valid for this batch (1 when B_valid = 0).
  template <class Real>
  static double alpha(const RewardBatch<Real>& batch, const std::vector<GroupStats>& groups) {
    index_t valid = 0;
    for (std::size_t i = 0; i < batch.rewards.size(); ++i) {
      if (reward_is_valid(batch.rewards[i]) && !groups[static_cast<std::size_t>(batch.group[i])].zero_std()) ++valid;
    }
    return valid > 0 ? static_cast<double>(batch.num_seqs()) / static_cast<double>(valid) : 1.0;
  }

  template <class Real>
  AdvantageStats compute(const RewardBatch<Real>& batch, std::span<Real> advantages) const {
    constexpr const char* where = "Gpg::compute";
    validate_reward_batch(where, batch, std::span<const Real>(advantages));
    require(eps >= 0.0, where, ": eps = ", eps, ", expected >= 0");
    const auto groups = group_statistics(batch);
    const double a = alpha(batch, groups);
    fill_group_advantages(where, batch, groups, advantages, [&](index_t, double r, const GroupStats& s) {
      const double f_norm = scale_by_std ? s.std(true) + eps : 1.0;
      return f_norm > 0.0 ? a * (r - s.mean) / f_norm : 0.0;  // 0: the std underflowed to 0 with eps = 0
    });
    return summarize_rewards(batch, groups);
  }
};

}  // namespace corl

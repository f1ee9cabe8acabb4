// corl/advantage/reinforce_pp.hpp — REINFORCE++ (batch whitening) and REINFORCE++-baseline.
// For outcome rewards the return of a sequence is its reward, so (sequence level):
//   REINFORCE++:           A_i = (r_i - mean_B) / (std_B + eps)              over all valid rewards of the batch
//   REINFORCE++-baseline:  x_i = r_i - mean_g  (0 for zero-std groups),  A_i = x_i / (std_B(x) + eps)
// std_B with ddof 1 (default, as verl's masked_var) or 0. REINFORCE++ ignores the groups: a group whose rewards all
// agree still gets A != 0 (there is no group baseline); a batch with std_B = 0 gets A = 0. In the baseline variant the
// mean of x over the batch is 0 in exact arithmetic, so x is divided by its std without re-centring (verl re-centres,
// which changes nothing but rounding); zero-std groups get exactly 0. NaN rewards get A = 0.
// verl whitens over tokens (each sequence weighted by its length); corl whitens over sequences — weight by length
// before calling if the token-weighted form is wanted.
// Sources: Hu 2025 "REINFORCE++"; verl `algorithm.adv_estimator=reinforce_plus_plus` and
// `reinforce_plus_plus_baseline`.
#pragma once

#include <span>

#include "corl/advantage/group_stats.hpp"

namespace corl {

struct ReinforcePlusPlus {
  static constexpr const char* name = "reinforce_plus_plus";
  double eps = 1e-8;
  bool unbiased = true;

  template <class Real>
  AdvantageStats compute(const RewardBatch<Real>& batch, std::span<Real> advantages) const {
    constexpr const char* where = "ReinforcePlusPlus::compute";
    validate_reward_batch(where, batch, std::span<const Real>(advantages));
    require(eps >= 0.0, where, ": eps = ", eps, ", expected >= 0");
    const auto reward = [&](index_t i) { return batch.rewards[static_cast<std::size_t>(i)]; };
    const GroupStats b = batch_statistics(
        batch.num_seqs(), [&](index_t i) { return static_cast<double>(reward(i)); },
        [&](index_t i) { return reward_is_valid(reward(i)); });
    const double sd = b.std(unbiased);
    for (index_t i = 0; i < batch.num_seqs(); ++i) {
      const Real r = reward(i);
      advantages[static_cast<std::size_t>(i)] =
          (!reward_is_valid(r) || b.zero_std()) ? Real(0)
                                                : static_cast<Real>((static_cast<double>(r) - b.mean) / (sd + eps));
    }
    return summarize_rewards(batch, group_statistics(batch));
  }
};

struct ReinforcePlusPlusBaseline {
  static constexpr const char* name = "reinforce_plus_plus_baseline";
  double eps = 1e-8;
  bool unbiased = true;

  template <class Real>
  AdvantageStats compute(const RewardBatch<Real>& batch, std::span<Real> advantages) const {
    constexpr const char* where = "ReinforcePlusPlusBaseline::compute";
    validate_reward_batch(where, batch, std::span<const Real>(advantages));
    require(eps >= 0.0, where, ": eps = ", eps, ", expected >= 0");
    const auto groups = group_statistics(batch);
    std::vector<double> centred(static_cast<std::size_t>(batch.num_seqs()), 0.0);
    std::vector<char> valid(centred.size(), 0);
    for (std::size_t i = 0; i < centred.size(); ++i) {
      const Real r = batch.rewards[i];
      if (!reward_is_valid(r)) continue;
      valid[i] = 1;
      const GroupStats& s = groups[static_cast<std::size_t>(batch.group[i])];
      centred[i] = s.zero_std() ? 0.0 : static_cast<double>(r) - s.mean;
    }
    const GroupStats b = batch_statistics(
        batch.num_seqs(), [&](index_t i) { return centred[static_cast<std::size_t>(i)]; },
        [&](index_t i) { return valid[static_cast<std::size_t>(i)] != 0; });
    const double denom = b.std(unbiased) + eps;
    for (std::size_t i = 0; i < centred.size(); ++i) {
      advantages[i] = (valid[i] == 0 || centred[i] == 0.0) ? Real(0) : static_cast<Real>(centred[i] / denom);
    }
    return summarize_rewards(batch, groups);
  }
};

}  // namespace corl

// corl/advantage/dynamic_sampling.hpp — DAPO dynamic sampling: which groups to keep for the update.
// A group whose valid rewards all agree (zero std, incl. a group of one) has zero advantage under every group-baseline
// estimator and only dilutes the batch; DAPO drops it and samples more prompts until the batch is full. The mean-range
// filter additionally keeps only groups with min_mean <= mean_g <= max_mean (e.g. an accuracy band 0.2..0.8, as in
// online difficulty filtering). Groups with no valid reward are always dropped. A sequence is kept iff its group is.
// Sources: Yu et al. 2025 "DAPO", section 3.2 (dynamic sampling: keep 0 < #correct < G); verl
// `algorithm.filter_groups.enable` / `metric`.
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "corl/advantage/group_stats.hpp"

namespace corl {

struct GroupFilter {
  bool drop_zero_std = true;                                   ///< DAPO: drop groups whose rewards all agree
  double min_mean = -std::numeric_limits<double>::infinity();  ///< keep groups with mean_g >= min_mean
  double max_mean = std::numeric_limits<double>::infinity();   ///< keep groups with mean_g <= max_mean
};

struct GroupFilterResult {
  std::vector<char> keep_group;  ///< [num_groups] 1 = keep
  std::vector<char> keep_seq;    ///< [num_seqs] 1 = the sequence's group is kept
  index_t kept_groups = 0;
  index_t dropped_empty = 0;       ///< groups with no valid reward (incl. unused ids)
  index_t dropped_zero_std = 0;    ///< groups dropped because their rewards all agree
  index_t dropped_mean_range = 0;  ///< groups (with spread) dropped because mean_g is outside [min_mean, max_mean]
};

template <class Real>
GroupFilterResult filter_groups(const GroupFilter& filter, const RewardBatch<Real>& batch) {
  constexpr const char* where = "filter_groups";
  require(!std::isnan(filter.min_mean) && !std::isnan(filter.max_mean), where, ": min_mean = ", filter.min_mean,
          ", max_mean = ", filter.max_mean, ", expected numbers (use -inf / +inf for no bound), not NaN");
  require(!(filter.min_mean > filter.max_mean), where, ": min_mean = ", filter.min_mean, " > max_mean = ",
          filter.max_mean, ", expected min_mean <= max_mean");
  validate_reward_batch(where, batch, batch.rewards);
  const auto groups = group_statistics(batch);
  GroupFilterResult out;
  out.keep_group.assign(groups.size(), 0);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const GroupStats& s = groups[g];
    if (s.count == 0) {
      ++out.dropped_empty;
    } else if (filter.drop_zero_std && s.zero_std()) {
      ++out.dropped_zero_std;
    } else if (s.mean < filter.min_mean || s.mean > filter.max_mean) {
      ++out.dropped_mean_range;
    } else {
      out.keep_group[g] = 1;
      ++out.kept_groups;
    }
  }
  out.keep_seq.resize(batch.rewards.size());
  for (std::size_t i = 0; i < batch.rewards.size(); ++i) {
    out.keep_seq[i] = out.keep_group[static_cast<std::size_t>(batch.group[i])];
  }
  return out;
}

}  // namespace corl

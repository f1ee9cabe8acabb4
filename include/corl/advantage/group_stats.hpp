// corl/advantage/group_stats.hpp — the input every advantage estimator reads, its validation, and the per-group
// statistics they share.
//
// Input (RewardBatch): rewards r[num_seqs] (NaN = "could not be computed"), a group index g[num_seqs] in
// [0, num_groups) per sequence (groups may have different sizes and need not be contiguous), and, for the estimators
// that use them, completion lengths len[num_seqs] > 0.
// Statistics of group g are taken over its VALID members V_g = { i : g_i = g, r_i is not NaN }:
//   n_g = |V_g|,  mean_g = (1/n_g) sum_{i in V_g} r_i,  M2_g = sum_{i in V_g} (r_i - mean_g)^2   (two-pass, in double)
//   std_g = sqrt(M2_g / (n_g - ddof)), ddof = 1 (unbiased, torch.std default) or 0 (biased); std_g = 0 when
//   n_g - ddof <= 0 (torch would give NaN for one sample; corl gives the defined value 0).
// A group is "zero-std" (degenerate) when n_g >= 1 and all its valid rewards are equal (this includes n_g = 1). Every
// group-baseline estimator gives such groups, and every estimator gives a NaN reward, an advantage of exactly 0 (not
// whatever rounding would make of r - mean). Batch-whitening REINFORCE++ has no group baseline and is the exception.
// AdvantageStats reports the fraction of zero-std groups (TRL metric `frac_reward_zero_std`).
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"

namespace corl {

/// One batch of sequence-level rewards with their groups. Views only: the caller owns the memory.
template <class Real>
struct RewardBatch {
  std::span<const Real> rewards;       ///< [num_seqs]; NaN marks a reward that could not be computed
  std::span<const index_t> group;      ///< [num_seqs]; group id of each sequence, in [0, num_groups)
  index_t num_groups = 0;              ///< number of groups (ids need not all be used)
  std::span<const index_t> lengths{};  ///< [num_seqs] completion lengths (> 0), for length-aware estimators (OPO)

  index_t num_seqs() const { return static_cast<index_t>(rewards.size()); }
};

/// What an estimator reports besides the advantages.
struct AdvantageStats {
  index_t num_seqs = 0;         ///< sequences in the batch
  index_t num_valid = 0;        ///< sequences whose reward is not NaN
  index_t num_groups = 0;       ///< groups with at least one valid reward
  index_t zero_std_groups = 0;  ///< of those, groups whose valid rewards are all equal (incl. groups of one)
  double reward_mean = 0.0;     ///< mean of the valid rewards (0 when there are none)
  double reward_std = 0.0;      ///< biased std of the valid rewards over the batch
  /// zero_std_groups / num_groups (0 when there are no groups with valid rewards).
  double zero_std_fraction() const {
    return num_groups > 0 ? static_cast<double>(zero_std_groups) / static_cast<double>(num_groups) : 0.0;
  }
};

/// Per-group statistics over the valid members (see the header comment).
struct GroupStats {
  index_t count = 0;    ///< n_g
  double mean = 0.0;    ///< mean_g (0 when n_g = 0)
  double m2 = 0.0;      ///< sum of squared deviations from mean_g
  double min = 0.0;     ///< smallest valid reward (0 when n_g = 0)
  double max = 0.0;     ///< largest valid reward
  bool zero_std() const { return count >= 1 && min == max; }
  /// sqrt(M2 / (n - ddof)), 0 when n - ddof <= 0 or the group is zero-std.
  double std(bool unbiased) const {
    const index_t dof = count - (unbiased ? 1 : 0);
    if (dof <= 0 || zero_std()) return 0.0;
    return std::sqrt(m2 / static_cast<double>(dof));
  }
};

/// True for a reward that takes part in the statistics (not NaN; inf is rejected by validation).
template <class Real>
CORL_HD bool reward_is_valid(Real r) {
  return r == r;
}

/// Checks the batch for `where` (the calling function's name): sizes agree, the batch is not empty, group ids are in
/// range, rewards are finite or NaN, lengths (when `need_lengths`, or whenever given) are positive; and `out` has
/// num_seqs entries. Throws corl::Error naming the function, the array, the index and the expected condition.
template <class Real>
void validate_reward_batch(const char* where, const RewardBatch<Real>& batch, std::span<const Real> out_view,
                           bool need_lengths = false) {
  const index_t n = batch.num_seqs();
  require(n > 0, where, ": rewards is empty, expected at least one sequence");
  require(batch.num_groups >= 1, where, ": num_groups = ", batch.num_groups, ", expected >= 1");
  require(static_cast<index_t>(batch.group.size()) == n, where, ": group has ", batch.group.size(),
          " entries, expected ", n, " (one per reward)");
  require(static_cast<index_t>(out_view.size()) == n, where, ": advantages has ", out_view.size(),
          " entries, expected ", n, " (one per reward)");
  for (index_t i = 0; i < n; ++i) {
    const index_t g = batch.group[static_cast<std::size_t>(i)];
    require(g >= 0 && g < batch.num_groups, where, ": group[", i, "] = ", g, ", expected 0 <= group < num_groups = ",
            batch.num_groups);
    const Real r = batch.rewards[static_cast<std::size_t>(i)];
    require(!std::isinf(r), where, ": rewards[", i, "] = ", r, ", expected a finite value or NaN (missing)");
  }
  if (need_lengths || !batch.lengths.empty()) {
    require(static_cast<index_t>(batch.lengths.size()) == n, where, ": lengths has ", batch.lengths.size(),
            " entries, expected ", n, " (one per reward)");
    for (index_t i = 0; i < n; ++i) {
      const index_t len = batch.lengths[static_cast<std::size_t>(i)];
      require(len > 0, where, ": lengths[", i, "] = ", len, ", expected > 0");
    }
  }
}

/// Per-group statistics of the valid rewards, two passes in double (deterministic: members in index order).
template <class Real>
std::vector<GroupStats> group_statistics(const RewardBatch<Real>& batch) {
  std::vector<GroupStats> stats(static_cast<std::size_t>(batch.num_groups));
  const index_t n = batch.num_seqs();
  std::vector<double> sum(stats.size(), 0.0);
  for (index_t i = 0; i < n; ++i) {
    const Real r = batch.rewards[static_cast<std::size_t>(i)];
    if (!reward_is_valid(r)) continue;
    const auto g = static_cast<std::size_t>(batch.group[static_cast<std::size_t>(i)]);
    GroupStats& s = stats[g];
    const double x = static_cast<double>(r);
    if (s.count == 0) {
      s.min = s.max = x;
    } else {
      s.min = x < s.min ? x : s.min;
      s.max = x > s.max ? x : s.max;
    }
    ++s.count;
    sum[g] += x;
  }
  for (std::size_t g = 0; g < stats.size(); ++g) {
    if (stats[g].count > 0) stats[g].mean = sum[g] / static_cast<double>(stats[g].count);
  }
  for (index_t i = 0; i < n; ++i) {
    const Real r = batch.rewards[static_cast<std::size_t>(i)];
    if (!reward_is_valid(r)) continue;
    GroupStats& s = stats[static_cast<std::size_t>(batch.group[static_cast<std::size_t>(i)])];
    const double d = static_cast<double>(r) - s.mean;
    s.m2 += d * d;
  }
  return stats;
}

/// Mean, M2 and count of the values x_i over the sequences where `valid(i)` holds (two passes, double).
template <class Value, class Valid>
GroupStats batch_statistics(index_t n, Value value, Valid valid) {
  GroupStats s;
  double sum = 0.0;
  for (index_t i = 0; i < n; ++i) {
    if (!valid(i)) continue;
    const double x = value(i);
    s.min = s.count == 0 ? x : (x < s.min ? x : s.min);
    s.max = s.count == 0 ? x : (x > s.max ? x : s.max);
    ++s.count;
    sum += x;
  }
  if (s.count == 0) return s;
  s.mean = sum / static_cast<double>(s.count);
  for (index_t i = 0; i < n; ++i) {
    if (!valid(i)) continue;
    const double d = value(i) - s.mean;
    s.m2 += d * d;
  }
  return s;
}

/// Fills the parts of AdvantageStats every estimator reports (counts, zero-std groups, batch reward mean/std).
template <class Real>
AdvantageStats summarize_rewards(const RewardBatch<Real>& batch, const std::vector<GroupStats>& groups) {
  AdvantageStats out;
  out.num_seqs = batch.num_seqs();
  for (const GroupStats& g : groups) {
    if (g.count == 0) continue;
    ++out.num_groups;
    out.num_valid += g.count;
    if (g.zero_std()) ++out.zero_std_groups;
  }
  const GroupStats b = batch_statistics(
      batch.num_seqs(), [&](index_t i) { return static_cast<double>(batch.rewards[static_cast<std::size_t>(i)]); },
      [&](index_t i) { return reward_is_valid(batch.rewards[static_cast<std::size_t>(i)]); });
  out.reward_mean = b.mean;
  out.reward_std = b.std(false);
  return out;
}

/// Offsets [num_groups + 1] of a batch whose groups are contiguous and in order (group[i] non-decreasing, ids in
/// [0, num_groups)), the segmented layout the CUDA kernels take: group g owns sequences offsets[g] .. offsets[g + 1].
/// Unused ids give empty segments. Throws corl::Error when the layout is not contiguous.
inline std::vector<index_t> group_offsets_from_index(std::span<const index_t> group, index_t num_groups) {
  constexpr const char* where = "group_offsets_from_index";
  require(num_groups >= 1, where, ": num_groups = ", num_groups, ", expected >= 1");
  std::vector<index_t> offsets(static_cast<std::size_t>(num_groups + 1), 0);
  for (std::size_t i = 0; i < group.size(); ++i) {
    require(group[i] >= 0 && group[i] < num_groups, where, ": group[", i, "] = ", group[i],
            ", expected 0 <= group < num_groups = ", num_groups);
    require(i == 0 || group[i] >= group[i - 1], where, ": group[", i, "] = ", group[i], " < group[", i - 1, "] = ",
            group[i - 1], ", expected non-decreasing group ids (contiguous groups)");
    ++offsets[static_cast<std::size_t>(group[i]) + 1];
  }
  for (std::size_t g = 1; g < offsets.size(); ++g) offsets[g] += offsets[g - 1];
  return offsets;
}

/// The group id of every sequence from segment offsets (offsets[0] = 0, non-decreasing).
inline std::vector<index_t> group_index_from_offsets(std::span<const index_t> offsets) {
  constexpr const char* where = "group_index_from_offsets";
  require(offsets.size() >= 2, where, ": offsets has ", offsets.size(), " entries, expected num_groups + 1 >= 2");
  require(offsets[0] == 0, where, ": offsets[0] = ", offsets[0], ", expected 0");
  std::vector<index_t> group;
  for (std::size_t g = 0; g + 1 < offsets.size(); ++g) {
    require(offsets[g + 1] >= offsets[g], where, ": offsets[", g + 1, "] = ", offsets[g + 1], " < offsets[", g,
            "] = ", offsets[g], ", expected non-decreasing offsets");
    group.insert(group.end(), static_cast<std::size_t>(offsets[g + 1] - offsets[g]), static_cast<index_t>(g));
  }
  return group;
}

/// Writes advantages[i] = formula(i, r_i, stats of i's group) for valid rewards in non-degenerate groups, and exactly 0
/// for NaN rewards and zero-std groups (incl. groups of one). `formula` returns double; the result is cast to Real.
/// An advantage that is not finite in Real (rewards so large that the group mean or the difference overflows) is a
/// corl::Error naming `where`, the sequence and its group; nothing is written past it.
template <class Real, class Formula>
void fill_group_advantages(const char* where, const RewardBatch<Real>& batch, const std::vector<GroupStats>& groups,
                           std::span<Real> advantages, Formula formula) {
  for (index_t i = 0; i < batch.num_seqs(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    const Real r = batch.rewards[k];
    const GroupStats& s = groups[static_cast<std::size_t>(batch.group[k])];
    if (!reward_is_valid(r) || s.zero_std()) {
      advantages[k] = Real(0);
      continue;
    }
    require(std::isfinite(s.mean) && std::isfinite(s.m2), where, ": group ", batch.group[k], " (sequence ", i,
            ", reward ", static_cast<double>(r), "): its mean or spread overflows a double (mean ", s.mean,
            ", sum of squared deviations ", s.m2, "); the rewards overflow the estimator's arithmetic, scale them down");
    const double a = formula(i, static_cast<double>(r), s);
    require(std::isfinite(a) && std::abs(a) <= static_cast<double>(std::numeric_limits<Real>::max()), where,
            ": the advantage of sequence ", i, " (group ", batch.group[k], ", reward ", static_cast<double>(r),
            ", group mean ", s.mean, ") is ", a, ", not finite as ", sizeof(Real) == 4 ? "float" : "double",
            "; the rewards overflow the estimator's arithmetic, scale them down");
    advantages[k] = static_cast<Real>(a);
  }
}

}  // namespace corl

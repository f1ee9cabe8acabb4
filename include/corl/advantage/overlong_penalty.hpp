// corl/advantage/overlong_penalty.hpp — DAPO soft overlong punishment, added to the reward before the advantage.
//   R_len(|y|) = 0                                          |y| <= L_max - L_cache
//              = ((L_max - L_cache) - |y|) / L_cache * f     L_max - L_cache < |y| <= L_max   (linear from 0 to -f)
//              = -f                                         |y| > L_max
// L_max = max_length, L_cache = cache_length (the soft buffer), f = penalty_factor (1 in DAPO). A NaN reward stays NaN.
// Sources: Yu et al. 2025 "DAPO", eq. (13); verl `reward_model.overlong_buffer.len` (L_cache), `.penalty_factor`,
// `data.max_response_length` (L_max).
#pragma once

#include <cmath>
#include <limits>
#include <span>

#include "corl/advantage/group_stats.hpp"

namespace corl {

struct OverlongPenalty {
  index_t max_length = 0;      ///< L_max, > 0
  index_t cache_length = 0;    ///< L_cache, in [1, L_max]
  double penalty_factor = 1.0; ///< f >= 0

  void validate(const char* where) const {
    require(max_length > 0, where, ": max_length = ", max_length, ", expected > 0");
    require(cache_length >= 1 && cache_length <= max_length, where, ": cache_length = ", cache_length,
            ", expected 1 <= cache_length <= max_length = ", max_length);
    require(penalty_factor >= 0.0 && std::isfinite(penalty_factor), where, ": penalty_factor = ", penalty_factor,
            ", expected finite >= 0");
  }

  /// R_len for a completion of `length` tokens.
  double penalty(index_t length) const {
    validate("OverlongPenalty::penalty");
    require(length >= 0, "OverlongPenalty::penalty: length = ", length, ", expected >= 0");
    const index_t expected = max_length - cache_length;
    if (length <= expected) return 0.0;
    if (length > max_length) return -penalty_factor;
    return static_cast<double>(expected - length) / static_cast<double>(cache_length) * penalty_factor;
  }

  /// rewards[i] += R_len(lengths[i]) (NaN rewards stay NaN).
  template <class Real>
  void apply(std::span<Real> rewards, std::span<const index_t> lengths) const {
    constexpr const char* where = "OverlongPenalty::apply";
    validate(where);
    require(rewards.size() == lengths.size(), where, ": lengths has ", lengths.size(), " entries, expected ",
            rewards.size(), " (one per reward)");
    for (std::size_t i = 0; i < rewards.size(); ++i) {
      require(lengths[i] >= 0, where, ": lengths[", i, "] = ", lengths[i], ", expected >= 0");
      const double shaped = static_cast<double>(rewards[i]) + penalty(lengths[i]);
      require(std::isnan(static_cast<double>(rewards[i])) ||
                  (std::isfinite(shaped) && std::abs(shaped) <= static_cast<double>(std::numeric_limits<Real>::max())),
              where, ": rewards[", i, "] = ", static_cast<double>(rewards[i]), " plus the penalty ",
              penalty(lengths[i]), " is not a finite reward; expected finite rewards");
      rewards[i] = static_cast<Real>(shaped);
    }
  }
};

}  // namespace corl

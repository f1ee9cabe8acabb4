// corl/concepts/advantage_estimator.hpp — what an advantage estimator is.
//
// T satisfies advantage_estimator_for<T, Real> if:
//   1. Real is float or double;
//   2. T::name is a constant convertible to std::string_view (used in logs and configs);
//   3. for a `const T& est`, a `const RewardBatch<Real>& batch` and a `std::span<Real> advantages` of the batch's size,
//      `est.compute(batch, advantages)` writes one advantage per sequence and returns an AdvantageStats.
// T satisfies advantage_estimator if it satisfies advantage_estimator_for for both float and double.
// Semantic requirements (checked by the tests, not by the compiler): NaN rewards get advantage 0; invalid input throws
// corl::Error; relabelling groups or permuting sequences permutes the advantages the same way.
#pragma once

#include <concepts>
#include <span>
#include <string_view>

#include "corl/advantage/group_stats.hpp"

namespace corl {

template <class T, class Real>
concept advantage_estimator_for =
    (std::same_as<Real, float> || std::same_as<Real, double>) &&
    requires(const T& est, const RewardBatch<Real>& batch, std::span<Real> advantages) {
      { T::name } -> std::convertible_to<std::string_view>;
      { est.compute(batch, advantages) } -> std::same_as<AdvantageStats>;
    };

template <class T>
concept advantage_estimator = advantage_estimator_for<T, float> && advantage_estimator_for<T, double>;

}  // namespace corl

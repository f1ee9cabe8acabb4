// corl/reward/combine.hpp — composing rewards at compile time: weighted sums, clipping and normalisation to [0, 1].
//
//   WeightedSum<R1, ..., Rn>{{w1, ..., wn}, r1, ..., rn}(x)  = sum_k w_k r_k(x)
//   Clipped<R>{r, lo, hi}(x)                                   = min(max(r(x), lo), hi)
//   Normalized<R>{r, lo, hi}(x)                                = clip((r(x) - lo) / (hi - lo), 0, 1)
// Each combinator is a reward_function when all its parts are, and a policy_reward_function always (parts that need
// the policy get it, the others are called without it), so the CoRL unified reward
//   R = R_cycle + R_TIM + 0.8 (R_acc + R_format)
// is WeightedSum{{1, 1, 0.8, 0.8}, cycle, tim, acc, format}. A NaN part ("could not be computed") makes the sum NaN:
// the advantage estimators then give that sample advantage 0 instead of silently scoring it as 0.
// Why normalisation: the reference code summed rewards of different scales; DESIGN.md section 1 asks for [0, 1] parts.
#pragma once

#include <array>
#include <cmath>
#include <tuple>
#include <utility>

#include "corl/core/error.hpp"
#include "corl/reward/evaluate.hpp"

namespace corl {

template <class... Rewards>
struct WeightedSum {
  static_assert(sizeof...(Rewards) >= 1, "corl::WeightedSum needs at least one reward");
  std::array<double, sizeof...(Rewards)> weights;
  std::tuple<Rewards...> parts;

  WeightedSum(std::array<double, sizeof...(Rewards)> w, Rewards... rs) : weights(w), parts(std::move(rs)...) {
    for (std::size_t k = 0; k < weights.size(); ++k)
      require(std::isfinite(weights[k]), "corl::WeightedSum: weights[", k, "] = ", weights[k], ", expected finite");
  }

  template <class Sample>
    requires(reward_function<Rewards, Sample> && ...)
  double operator()(const Sample& s) const {
    return sum([&](const auto& r) { return evaluate_reward(r, NoPolicy{}, s); });
  }

  template <class Policy, class Sample>
    requires(reward_for<Rewards, Policy, Sample> && ...)
  double operator()(const Policy& p, const Sample& s) const {
    return sum([&](const auto& r) { return evaluate_reward(r, p, s); });
  }

  /// Each part's value on a sample (unweighted), for logging the reward breakdown.
  template <class Policy, class Sample>
  std::array<double, sizeof...(Rewards)> parts_values(const Policy& p, const Sample& s) const {
    std::array<double, sizeof...(Rewards)> out{};
    std::size_t k = 0;
    std::apply([&](const auto&... r) { ((out[k++] = evaluate_reward(r, p, s)), ...); }, parts);
    return out;
  }

 private:
  template <class F>
  double sum(F&& eval) const {
    double total = 0;
    std::size_t k = 0;
    std::apply([&](const auto&... r) { ((total += weights[k++] * eval(r)), ...); }, parts);
    return total;
  }
};

template <class... Rewards>
WeightedSum(std::array<double, sizeof...(Rewards)>, Rewards...) -> WeightedSum<Rewards...>;

template <class R>
struct Clipped {
  R reward;
  double lo = 0.0;
  double hi = 1.0;

  Clipped(R r, double low, double high) : reward(std::move(r)), lo(low), hi(high) {
    require(lo <= hi, "corl::Clipped: lo = ", lo, ", hi = ", hi, ", expected lo <= hi");
  }
  double apply(double v) const { return std::isnan(v) ? v : std::min(std::max(v, lo), hi); }

  template <class Sample>
    requires reward_function<R, Sample>
  double operator()(const Sample& s) const {
    return apply(evaluate_reward(reward, NoPolicy{}, s));
  }
  template <class Policy, class Sample>
    requires reward_for<R, Policy, Sample>
  double operator()(const Policy& p, const Sample& s) const {
    return apply(evaluate_reward(reward, p, s));
  }
};

template <class R>
struct Normalized {
  R reward;
  double lo = 0.0;
  double hi = 1.0;

  Normalized(R r, double low, double high) : reward(std::move(r)), lo(low), hi(high) {
    require(std::isfinite(lo) && std::isfinite(hi) && lo < hi, "corl::Normalized: lo = ", lo, ", hi = ", hi,
            ", expected finite lo < hi");
  }
  double apply(double v) const { return std::isnan(v) ? v : std::min(std::max((v - lo) / (hi - lo), 0.0), 1.0); }

  template <class Sample>
    requires reward_function<R, Sample>
  double operator()(const Sample& s) const {
    return apply(evaluate_reward(reward, NoPolicy{}, s));
  }
  template <class Policy, class Sample>
    requires reward_for<R, Policy, Sample>
  double operator()(const Policy& p, const Sample& s) const {
    return apply(evaluate_reward(reward, p, s));
  }
};

}  // namespace corl

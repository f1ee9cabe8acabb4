// corl/pipeline/merge.hpp — merging the weights of policies trained from one starting point (CoRL combines its
// multiple-choice and open-ended refined policies this way).
//
//   merge_linear(a, b, alpha)                theta = (1 - alpha) theta_a + alpha theta_b           (weight averaging)
//   merge_task_arithmetic(base, {t_k}, {w_k}) theta = theta_base + sum_k w_k (theta_k - theta_base)  (Ilharco et al.
//                                            2023, "task vectors"; w_k = 1/K is the linear average)
//   merge_precision_weighted(a, pa, b, pb)   theta = (pa theta_a + pb theta_b) / (pa + pb), per parameter: the mean of
//                                            the product of two diagonal Gaussians N(theta_a, 1/pa) N(theta_b, 1/pb)
//                                            (Fisher merging, Matena & Raffel 2022, with pa, pb e.g. mean squared
//                                            gradients). Where pa + pb = 0 the plain average is used.
// About "Gaussian merging": the CoRL paper merges its two QA policies but we could not pin down a formula for the
// Gaussian variant it names, so we do not claim to reproduce it. The Gaussian-product merge above is the standard,
// documented reading of merging two Gaussian posteriors; with equal precisions it reduces to merge_linear(0.5).
// All functions check sizes and finiteness and throw corl::Error naming the function, the argument and the index.
#pragma once

#include <cmath>
#include <span>
#include <vector>

#include "corl/concepts/policy.hpp"
#include "corl/core/error.hpp"

namespace corl {

namespace detail {
/// Throws corl::Error "<fn>: <arg>[i] = x, expected finite" unless x is finite.
template <class Real>
void require_finite_entry(Real x, const char* fn, const char* arg, std::size_t i) {
  require(std::isfinite(x), fn, ": ", arg, "[", i, "] = ", x, ", expected finite");
}
/// Stores a merged value, which must be finite in Real (a float can overflow where the double sum did not).
template <class Real>
void store_merged(double value, std::span<Real> out, std::size_t i, const char* fn) {
  const Real r = static_cast<Real>(value);
  require(std::isfinite(r), fn, ": the merged value [", i, "] = ", value,
          " is not finite in the output's floating-point type");
  out[i] = r;
}
}  // namespace detail

template <class Real>
void merge_linear(std::span<const Real> a, std::span<const Real> b, double alpha, std::span<Real> out) {
  require(std::isfinite(alpha) && alpha >= 0.0 && alpha <= 1.0, "corl::merge_linear: alpha = ", alpha,
          ", expected 0 <= alpha <= 1");
  require(a.size() == b.size() && a.size() == out.size(), "corl::merge_linear: sizes a = ", a.size(), ", b = ",
          b.size(), ", out = ", out.size(), ", expected all equal");
  constexpr const char* fn = "corl::merge_linear";
  for (std::size_t i = 0; i < a.size(); ++i) {
    detail::require_finite_entry(a[i], fn, "a", i);
    detail::require_finite_entry(b[i], fn, "b", i);
    detail::store_merged((1.0 - alpha) * static_cast<double>(a[i]) + alpha * static_cast<double>(b[i]), out, i, fn);
  }
}

template <class Real>
void merge_task_arithmetic(std::span<const Real> base, const std::vector<std::span<const Real>>& tuned,
                           const std::vector<double>& weights, std::span<Real> out) {
  require(!tuned.empty(), "corl::merge_task_arithmetic: no tuned models, expected at least one");
  require(tuned.size() == weights.size(), "corl::merge_task_arithmetic: ", tuned.size(), " tuned models but ",
          weights.size(), " weights, expected one weight per model");
  require(out.size() == base.size(), "corl::merge_task_arithmetic: out has ", out.size(), " values, base ",
          base.size());
  for (std::size_t k = 0; k < tuned.size(); ++k) {
    require(tuned[k].size() == base.size(), "corl::merge_task_arithmetic: tuned[", k, "] has ", tuned[k].size(),
            " values, expected ", base.size(), " (same as base)");
    require(std::isfinite(weights[k]), "corl::merge_task_arithmetic: weights[", k, "] = ", weights[k],
            ", expected finite");
  }
  constexpr const char* fn = "corl::merge_task_arithmetic";
  for (std::size_t i = 0; i < base.size(); ++i) {
    detail::require_finite_entry(base[i], fn, "base", i);
    double v = static_cast<double>(base[i]);
    for (std::size_t k = 0; k < tuned.size(); ++k) {
      require(std::isfinite(tuned[k][i]), fn, ": tuned[", k, "][", i, "] = ", tuned[k][i], ", expected finite");
      v += weights[k] * (static_cast<double>(tuned[k][i]) - static_cast<double>(base[i]));
    }
    detail::store_merged(v, out, i, fn);
  }
}

template <class Real>
void merge_precision_weighted(std::span<const Real> a, std::span<const Real> precision_a, std::span<const Real> b,
                              std::span<const Real> precision_b, std::span<Real> out) {
  const std::size_t n = a.size();
  require(b.size() == n && precision_a.size() == n && precision_b.size() == n && out.size() == n,
          "corl::merge_precision_weighted: sizes a = ", n, ", b = ", b.size(), ", precision_a = ", precision_a.size(),
          ", precision_b = ", precision_b.size(), ", out = ", out.size(), ", expected all equal");
  for (std::size_t i = 0; i < n; ++i) {
    const double pa = static_cast<double>(precision_a[i]), pb = static_cast<double>(precision_b[i]);
    require(std::isfinite(pa) && pa >= 0, "corl::merge_precision_weighted: precision_a[", i, "] = ", pa,
            ", expected finite >= 0");
    require(std::isfinite(pb) && pb >= 0, "corl::merge_precision_weighted: precision_b[", i, "] = ", pb,
            ", expected finite >= 0");
    detail::require_finite_entry(a[i], "corl::merge_precision_weighted", "a", i);
    detail::require_finite_entry(b[i], "corl::merge_precision_weighted", "b", i);
    const double xa = static_cast<double>(a[i]), xb = static_cast<double>(b[i]);
    // weights pa / (pa + pb) and pb / (pa + pb) from precisions scaled by their max, so pa + pb cannot overflow
    const double scale = pa > pb ? pa : pb;
    const double wa = scale > 0 ? (pa / scale) / (pa / scale + pb / scale) : 0.5;
    detail::store_merged(wa * xa + (1.0 - wa) * xb, out, i, "corl::merge_precision_weighted");
  }
}

/// A new policy whose parameters are merge_linear(a, b, alpha) (a's snapshot with merged weights).
template <policy P>
P merge_policies_linear(const P& a, const P& b, double alpha) {
  P out = a.snapshot();
  merge_linear<typename P::real_type>(a.parameters(), b.parameters(), alpha, out.parameters());
  return out;
}

}  // namespace corl

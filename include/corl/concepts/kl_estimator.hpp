// corl/concepts/kl_estimator.hpp — what corl calls a per-token KL estimator (the penalty to the reference policy).
//
// A KL estimator maps, for one token, (logp, logp_ref, logp_old) to a TokenTerm: the estimate of KL(pi || pi_ref) at
// that token and its derivative with respect to logp. logp_old is only read by estimators that reweight by the
// importance ratio (bias-corrected KL, corl/loss/kl.hpp). Functions are CORL_HD (shared with the CUDA kernels).
//
// T satisfies kl_estimator if:
//   1. T is copyable;
//   2. for Real in {float, double}: `t.template token<Real>(logp, logp_ref, logp_old)` returns TokenTerm<Real>;
//   3. `T::uses_reference` is a constant convertible to bool (false only for corl::NoKl, which needs no logp_ref);
//   4. (semantic) `grad` = d value / d logp unless `T::gradient_is_derivative` is false (straight-through "+" variants
//      and the bias-corrected KL, whose ratio factor is a stop-gradient constant).
// corl::kl_estimator_of<T, Real> checks item 2 for one Real only.
#pragma once

#include <concepts>

#include "corl/loss/token_term.hpp"

namespace corl {

template <class T, class Real>
concept kl_estimator_of = std::copy_constructible<T> && requires(const T& kl, Real x) {
  { T::uses_reference } -> std::convertible_to<bool>;
  { kl.template token<Real>(x, x, x) } -> std::same_as<TokenTerm<Real>>;
};

template <class T>
concept kl_estimator = kl_estimator_of<T, float> && kl_estimator_of<T, double>;

}  // namespace corl

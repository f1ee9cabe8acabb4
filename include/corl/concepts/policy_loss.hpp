// corl/concepts/policy_loss.hpp — what corl calls a per-token policy loss (the surrogate of the GRPO family).
//
// A policy loss maps, for one token, (logp, logp_old, advantage, sequence statistic) to a TokenTerm (value to be
// MINIMISED, its derivative d value / d logp, the ratio used, metric flags). Its member functions are CORL_HD so the
// CPU objective (corl/loss/objective.hpp) and the CUDA kernels run the same arithmetic. Sequence-level losses (GSPO,
// GMPO) first reduce `seq_stat_term` to its masked mean over each sequence, then call `token` with that mean.
//
// T satisfies policy_loss if:
//   1. T is copyable (it is passed by value to kernels) and `T::sequence_level` is a constant convertible to bool;
//   2. for Real in {float, double}: `t.template seq_stat_term<Real>(logp, logp_old, adv)` returns Real;
//   3. for Real in {float, double}: `t.template token<Real>(logp, logp_old, adv, seq_stat)` returns TokenTerm<Real>;
//   4. (semantic) `grad` is the derivative of `value` with respect to logp, holding logp_old, adv and any stop-gradient
//      quantity fixed, where the loss's source defines one; the sequence statistic's dependence on logp is folded into
//      `grad` (see gspo.hpp). Losses whose `value` is a pure surrogate set `T::gradient_is_derivative = false`.
// corl::policy_loss_of<T, Real> checks items 2-3 for one Real only.
#pragma once

#include <concepts>

#include "corl/loss/token_term.hpp"

namespace corl {

template <class T, class Real>
concept policy_loss_of = std::copy_constructible<T> && requires(const T& loss, Real x) {
  { T::sequence_level } -> std::convertible_to<bool>;
  { loss.template seq_stat_term<Real>(x, x, x) } -> std::same_as<Real>;
  { loss.template token<Real>(x, x, x, x) } -> std::same_as<TokenTerm<Real>>;
};

template <class T>
concept policy_loss = policy_loss_of<T, float> && policy_loss_of<T, double>;

}  // namespace corl

// corl/loss/sapo.hpp — SAPO: a smooth, temperature-controlled gate in place of the hard PPO clip.
//   r = exp(logp - logp_old);  tau = tau_pos if A > 0 else tau_neg
//   f(r) = (4 / tau) sigmoid(tau (r - 1));    loss_t = -f(r) A
//   d loss_t / d logp = -A f'(r) r = -A * 4 sigmoid(x) (1 - sigmoid(x)) * r,   x = tau (r - 1)
// On-policy (r = 1) the gradient weight is exactly 1 (as in the unclipped surrogate); it decays smoothly as r leaves
// 1, faster for larger tau. The paper uses a larger temperature for negative advantages (tau_neg > tau_pos) because
// negative-advantage tokens destabilise training more.
// Source: Qwen team 2025, "Soft Adaptive Policy Optimization" (SAPO), tau_pos = 1.0, tau_neg = 1.05.
#pragma once

#include <cmath>

#include "corl/concepts/policy_loss.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

struct Sapo {
  double tau_pos = 1.0;   ///< gate temperature for A > 0
  double tau_neg = 1.05;  ///< gate temperature for A <= 0
  double exp_clamp = kDefaultExpClamp;
  static constexpr bool sequence_level = false;

  /// Throws corl::Error naming `where` and the field unless tau_pos and tau_neg are finite and > 0 and exp_clamp is in
  /// (0, 80].
  void validate(std::string_view where) const {
    detail::check_param(std::isfinite(tau_pos) && tau_pos > 0.0, where, "Sapo.tau_pos", tau_pos, "finite and > 0");
    detail::check_param(std::isfinite(tau_neg) && tau_neg > 0.0, where, "Sapo.tau_neg", tau_neg, "finite and > 0");
    detail::check_exp_clamp(exp_clamp, where, "Sapo.exp_clamp");
  }

  template <class Real>
  CORL_HD Real seq_stat_term(Real, Real, Real) const {
    return Real(0);
  }

  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_old, Real adv, Real /*seq_stat*/) const {
    using std::exp;
    bool sat = false;
    const Real r = clamped_exp<Real>(logp - logp_old, static_cast<Real>(exp_clamp), &sat);
    const Real tau = static_cast<Real>(adv > Real(0) ? tau_pos : tau_neg);
    const Real x = tau * (r - Real(1));
    // sigmoid and sigmoid (1 - sigmoid) from e = exp(-|x|) <= 1: no overflow for any x.
    const Real e = exp(x < Real(0) ? x : -x);
    const Real sig = x >= Real(0) ? Real(1) / (Real(1) + e) : e / (Real(1) + e);
    const Real dsig = e / ((Real(1) + e) * (Real(1) + e));
    TokenTerm<Real> t{};
    t.ratio = r;
    t.value = -adv * (Real(4) / tau) * sig;
    t.grad = sat ? Real(0) : -adv * Real(4) * dsig * r;
    return t;
  }
};

static_assert(policy_loss<Sapo>, "Sapo is a corl::policy_loss");

}  // namespace corl

// corl/loss/gmpo.hpp — GMPO: maximise the geometric mean of the token-level clipped ratios instead of their
// arithmetic mean, which damps outlier ratios. Clipping is done on log-ratios.
//   l_bt  = logp_bt - logp_old_bt;   sgn = sign(A)
//   l'_bt = sgn * min(sgn l_bt, sgn clip(l_bt, -eps_low, eps_high))      (pessimistic clip in log space)
//   S_b   = exp( (1/n_b) sum_t mask_bt l'_bt )                            (seq_stat = the masked mean of l')
//   loss_bt = -A S_b                                                      (same value on every token of b)
//   d/dlogp_bt = -A S_b when l'_bt = l_bt (token unclipped), else 0  (exact through the sequence mean, as in gspo.hpp)
// Source: Zhao et al. 2025, "Geometric-Mean Policy Optimization" (eps_low = eps_high = 0.4, i.e. ratio range
// (e^-0.4, e^0.4)).
#pragma once

#include "corl/concepts/policy_loss.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

struct Gmpo {
  double eps_low = 0.4;   ///< log-space lower clip
  double eps_high = 0.4;  ///< log-space upper clip
  double exp_clamp = kDefaultExpClamp;
  static constexpr bool sequence_level = true;

  /// Throws corl::Error naming `where` and the field unless eps_low and eps_high are finite and >= 0 and exp_clamp is
  /// in (0, 80].
  void validate(std::string_view where) const {
    detail::check_param(std::isfinite(eps_low) && eps_low >= 0.0, where, "Gmpo.eps_low", eps_low, "finite and >= 0");
    detail::check_param(std::isfinite(eps_high) && eps_high >= 0.0, where, "Gmpo.eps_high", eps_high,
                        "finite and >= 0");
    detail::check_exp_clamp(exp_clamp, where, "Gmpo.exp_clamp");
  }

  /// l'_bt, the pessimistically clipped log-ratio.
  template <class Real>
  CORL_HD Real seq_stat_term(Real logp, Real logp_old, Real adv) const {
    const Real l = logp - logp_old;
    const Real c = clamp_value(l, -static_cast<Real>(eps_low), static_cast<Real>(eps_high));
    if (adv > Real(0)) return l < c ? l : c;
    if (adv < Real(0)) return l > c ? l : c;
    return l;
  }

  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_old, Real adv, Real seq_stat) const {
    bool sat = false;
    const Real big_s = clamped_exp<Real>(seq_stat, static_cast<Real>(exp_clamp), &sat);
    const Real l = logp - logp_old;
    const bool unclipped = seq_stat_term<Real>(logp, logp_old, adv) == l;
    TokenTerm<Real> t{};
    t.ratio = big_s;
    t.value = -adv * big_s;
    t.grad = (unclipped && !sat) ? -adv * big_s : Real(0);
    if (!unclipped) t.flags = static_cast<std::uint8_t>(adv < Real(0) ? kClippedLow : kClippedHigh);
    return t;
  }
};

static_assert(policy_loss<Gmpo>, "Gmpo is a corl::policy_loss");

}  // namespace corl

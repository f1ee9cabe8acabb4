// corl/loss/gspo.hpp — GSPO: PPO clipping applied to a sequence-level ratio (the geometric mean of the token ratios).
//   s_b = exp( (1/n_b) sum_t mask_bt (logp_bt - logp_old_bt) )            (seq_stat = the masked mean log-ratio)
//   loss_bt = -min(s_b A_bt, clip(s_b, 1 - eps_low, 1 + eps_high) A_bt)   (same value on every token of b)
//   GSPO-token gradient: d/dlogp_bt = -s_b A_bt if unclipped, else 0.
// Why this is the exact gradient: with a per-sequence aggregation weight w_b the sequence contributes
// w_b n_b L(s_b); d s_b / d logp_bt = s_b / n_b, so d/dlogp_bt = w_b L'(s_b) s_b = w_b * token.grad. (Exact when A is
// constant over the sequence; with per-token advantages it is the GSPO-token paper's gradient by definition.)
// Sources: Zheng et al. 2025, "Group Sequence Policy Optimization" (eps_low 3e-4, eps_high 4e-4);
// TRL `importance_sampling_level="sequence"` / `"sequence_token"`; verl `policy_loss.loss_mode=gspo`.
#pragma once

#include "corl/concepts/policy_loss.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

struct Gspo {
  double eps_low = 3e-4;
  double eps_high = 4e-4;
  double exp_clamp = kDefaultExpClamp;  ///< bound on the mean log-ratio inside exp
  static constexpr bool sequence_level = true;

  /// Throws corl::Error naming `where` and the field unless eps_low and eps_high are finite and >= 0 and exp_clamp is
  /// in (0, 80].
  void validate(std::string_view where) const {
    detail::check_param(std::isfinite(eps_low) && eps_low >= 0.0, where, "Gspo.eps_low", eps_low, "finite and >= 0");
    detail::check_param(std::isfinite(eps_high) && eps_high >= 0.0, where, "Gspo.eps_high", eps_high,
                        "finite and >= 0");
    detail::check_exp_clamp(exp_clamp, where, "Gspo.exp_clamp");
  }

  /// The per-token term whose masked mean is log s_b.
  template <class Real>
  CORL_HD Real seq_stat_term(Real logp, Real logp_old, Real /*adv*/) const {
    return logp - logp_old;
  }

  template <class Real>
  CORL_HD TokenTerm<Real> token(Real /*logp*/, Real /*logp_old*/, Real adv, Real seq_stat) const {
    bool sat = false;
    const Real s = clamped_exp<Real>(seq_stat, static_cast<Real>(exp_clamp), &sat);
    const Real lo = Real(1) - static_cast<Real>(eps_low), hi = Real(1) + static_cast<Real>(eps_high);
    const Real unclipped = s * adv;
    const Real clipped = clamp_value(s, lo, hi) * adv;
    TokenTerm<Real> t{};
    t.ratio = s;
    if (unclipped <= clipped) {
      t.value = -unclipped;
      t.grad = sat ? Real(0) : -unclipped;
    } else {
      t.value = -clipped;
      t.grad = Real(0);
      t.flags = static_cast<std::uint8_t>(adv < Real(0) ? kClippedLow : kClippedHigh);
    }
    return t;
  }
};

static_assert(policy_loss<Gspo>, "Gspo is a corl::policy_loss");

}  // namespace corl

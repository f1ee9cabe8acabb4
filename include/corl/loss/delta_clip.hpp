// corl/loss/delta_clip.hpp — two-sided clipping (INTELLECT-2): PPO clip, plus an upper bound delta on the ratio that
// also applies to negative-advantage tokens, where plain PPO leaves the ratio unbounded.
//   r = exp(logp - logp_old);  loss_t = -min(min(r, delta) A, clip(r, 1 - eps_low, 1 + eps_high) A)
//   d loss_t / d logp = -r A when min(r, delta) A is the minimum and r < delta, else 0.
// With delta > 1 + eps_high the bound only matters for A < 0 (then it acts like dual-clip with c = delta).
// Source: Prime Intellect, "INTELLECT-2" technical report (2025), section on two-sided GRPO clipping (delta = 4).
#pragma once

#include "corl/concepts/policy_loss.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

struct DeltaClip {
  double eps_low = 0.2;
  double eps_high = 0.2;
  double delta = 4.0;                   ///< upper bound on the ratio (> 1 + eps_high)
  double exp_clamp = kDefaultExpClamp;  ///< bound on |logp - logp_old| inside exp
  static constexpr bool sequence_level = false;

  /// Throws corl::Error naming `where` and the field unless eps_low in [0, 1], eps_high >= 0, delta finite and
  /// > 1 + eps_high, exp_clamp in (0, 80].
  void validate(std::string_view where) const {
    detail::check_clip_bounds(eps_low, eps_high, where, "DeltaClip.eps_low", "DeltaClip.eps_high");
    detail::check_param(std::isfinite(delta) && delta > 1.0 + eps_high, where, "DeltaClip.delta", delta,
                        "finite and > 1 + eps_high");
    detail::check_exp_clamp(exp_clamp, where, "DeltaClip.exp_clamp");
  }

  template <class Real>
  CORL_HD Real seq_stat_term(Real, Real, Real) const {
    return Real(0);
  }

  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_old, Real adv, Real /*seq_stat*/) const {
    bool sat = false;
    const Real r = clamped_exp<Real>(logp - logp_old, static_cast<Real>(exp_clamp), &sat);
    const Real d = static_cast<Real>(delta);
    const Real lo = Real(1) - static_cast<Real>(eps_low), hi = Real(1) + static_cast<Real>(eps_high);
    const bool capped = !(r < d);
    const Real bounded = (capped ? d : r) * adv;
    const Real clipped = clamp_value(r, lo, hi) * adv;
    TokenTerm<Real> t{};
    t.ratio = r;
    if (bounded <= clipped) {
      t.value = -bounded;
      t.grad = (capped || sat) ? Real(0) : -bounded;
      if (capped) t.flags = kDualClipped;
    } else {
      t.value = -clipped;
      t.grad = Real(0);
      t.flags = static_cast<std::uint8_t>(adv < Real(0) ? kClippedLow : kClippedHigh);
    }
    return t;
  }
};

static_assert(policy_loss<DeltaClip>, "DeltaClip is a corl::policy_loss");

}  // namespace corl

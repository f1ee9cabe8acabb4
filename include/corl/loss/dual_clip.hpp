// corl/loss/dual_clip.hpp — dual-clip PPO: the PPO clipped surrogate, plus a floor on the loss of negative-advantage
// tokens so that a huge ratio cannot make one token dominate.
//   r = exp(logp - logp_old);  ppo_t = max(-r A, -clip(r, 1 - eps_low, 1 + eps_high) A)
//   loss_t = ppo_t                     if A >= 0
//          = min(ppo_t, -c A)          if A <  0     (c > 1, default 3)
//   d loss_t / d logp = -r A where the unclipped branch is active, else 0 (PPO clip, or the dual bound -c A).
// Sources: Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL" (dual-clip PPO);
// verl `clip_ratio_c` (default 3.0).
#pragma once

#include "corl/concepts/policy_loss.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

struct DualClipPpo {
  double eps_low = 0.2;
  double eps_high = 0.2;
  double clip_ratio_c = 3.0;            ///< the dual bound c (> 1)
  double exp_clamp = kDefaultExpClamp;  ///< bound on |logp - logp_old| inside exp
  static constexpr bool sequence_level = false;

  /// Throws corl::Error naming `where` and the field unless eps_low in [0, 1], eps_high >= 0, clip_ratio_c finite and
  /// > 1, exp_clamp in (0, 80].
  void validate(std::string_view where) const {
    detail::check_clip_bounds(eps_low, eps_high, where, "DualClipPpo.eps_low", "DualClipPpo.eps_high");
    detail::check_param(std::isfinite(clip_ratio_c) && clip_ratio_c > 1.0, where, "DualClipPpo.clip_ratio_c",
                        clip_ratio_c, "finite and > 1");
    detail::check_exp_clamp(exp_clamp, where, "DualClipPpo.exp_clamp");
  }

  template <class Real>
  CORL_HD Real seq_stat_term(Real, Real, Real) const {
    return Real(0);
  }

  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_old, Real adv, Real /*seq_stat*/) const {
    bool sat = false;
    const Real r = clamped_exp<Real>(logp - logp_old, static_cast<Real>(exp_clamp), &sat);
    const Real lo = Real(1) - static_cast<Real>(eps_low), hi = Real(1) + static_cast<Real>(eps_high);
    const Real unclipped = -r * adv;
    const Real clipped = -clamp_value(r, lo, hi) * adv;
    TokenTerm<Real> t{};
    t.ratio = r;
    bool flows = false;
    if (unclipped >= clipped) {  // PPO: the larger loss is the unclipped one
      t.value = unclipped;
      flows = true;
    } else {
      t.value = clipped;
      t.flags = static_cast<std::uint8_t>(adv < Real(0) ? kClippedLow : kClippedHigh);
    }
    if (adv < Real(0)) {
      const Real dual = -static_cast<Real>(clip_ratio_c) * adv;
      if (t.value > dual) {
        t.value = dual;
        flows = false;
        t.flags = kDualClipped;
      }
    }
    t.grad = (flows && !sat) ? unclipped : Real(0);
    return t;
  }
};

static_assert(policy_loss<DualClipPpo>, "DualClipPpo is a corl::policy_loss");

}  // namespace corl

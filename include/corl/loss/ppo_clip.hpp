// corl/loss/ppo_clip.hpp — PPO clipped surrogate with asymmetric bounds (DAPO "clip-higher").
//   r = exp(logp - logp_old);  loss_t = -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)
//   d loss_t / d logp = -r A when the unclipped branch is the minimum, else 0.
// Sources: Schulman et al. 2017 (PPO); DAPO (Yu et al. 2025) eps_high; TRL `epsilon`, `epsilon_high`;
// verl `clip_ratio_low`, `clip_ratio_high`.
#pragma once

#include "corl/concepts/policy_loss.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

struct PpoClip {
  double eps_low = 0.2;
  double eps_high = 0.2;
  double exp_clamp = kDefaultExpClamp;  ///< bound on |logp - logp_old| inside exp
  static constexpr bool sequence_level = false;

  /// Throws corl::Error naming `where` and the field unless eps_low in [0, 1], eps_high >= 0, exp_clamp in (0, 80].
  void validate(std::string_view where) const {
    detail::check_clip_bounds(eps_low, eps_high, where, "PpoClip.eps_low", "PpoClip.eps_high");
    detail::check_exp_clamp(exp_clamp, where, "PpoClip.exp_clamp");
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
    const Real unclipped = r * adv;
    const Real clipped = clamp_value(r, lo, hi) * adv;
    TokenTerm<Real> t{};
    t.ratio = r;
    if (unclipped <= clipped) {  // the minimum is the unclipped branch: gradient flows
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

static_assert(policy_loss<PpoClip>, "PpoClip is a corl::policy_loss");

}  // namespace corl

// corl/loss/cispo.hpp — CISPO: clip the importance-sampling WEIGHT (as a stop-gradient constant) instead of the
// update, so every token keeps a gradient.
//   r = exp(logp - logp_old);  w = sg(clip(r, 1 - eps_low, 1 + eps_high))
//   source objective: loss_t = -w A logp      =>  d loss_t / d logp = -w A
// The source's value -w A logp depends on the absolute log-prob and is not a useful number to report, so corl reports
// the potential whose derivative is exactly the CISPO gradient (continuous in r, equal to -A on-policy):
//   value = -A r                                  for lo <= r <= hi
//         = -A c (1 + log r - log c)              otherwise, with c = clip(r, lo, hi)
// (d/dlogp of -A r is -A r = -w A inside the band; of -A c log r it is -A c = -w A outside.)
// Source: MiniMax 2025, "MiniMax-M1" (CISPO; eps_low effectively unbounded, eps_high tuned);
// verl `policy_loss.loss_mode=cispo`.
#pragma once

#include <cmath>

#include "corl/concepts/policy_loss.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

struct Cispo {
  double eps_low = 1.0;   ///< 1.0 = no lower bound on the weight (lo = 0), as in MiniMax-M1
  double eps_high = 0.2;  ///< upper bound 1 + eps_high on the weight
  double exp_clamp = kDefaultExpClamp;
  static constexpr bool sequence_level = false;

  /// Throws corl::Error naming `where` and the field unless eps_low in [0, 1], eps_high >= 0, exp_clamp in (0, 80].
  void validate(std::string_view where) const {
    detail::check_clip_bounds(eps_low, eps_high, where, "Cispo.eps_low", "Cispo.eps_high");
    detail::check_exp_clamp(exp_clamp, where, "Cispo.exp_clamp");
  }

  template <class Real>
  CORL_HD Real seq_stat_term(Real, Real, Real) const {
    return Real(0);
  }

  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_old, Real adv, Real /*seq_stat*/) const {
    using std::log;
    const Real bound = static_cast<Real>(exp_clamp);
    const Real lr = clamp_value(logp - logp_old, -bound, bound);
    bool sat = false;
    const Real r = clamped_exp<Real>(lr, bound, &sat);
    sat = (lr != logp - logp_old);
    const Real lo = Real(1) - static_cast<Real>(eps_low), hi = Real(1) + static_cast<Real>(eps_high);
    const Real w = clamp_value(r, lo, hi);
    TokenTerm<Real> t{};
    t.ratio = r;
    if (w == r) {
      t.value = -adv * r;
    } else {
      t.value = -adv * w * (Real(1) + lr - log(w));
      t.flags = static_cast<std::uint8_t>(r > hi ? kClippedHigh : kClippedLow);
    }
    t.grad = sat ? Real(0) : -adv * w;
    return t;
  }
};

static_assert(policy_loss<Cispo>, "Cispo is a corl::policy_loss");

}  // namespace corl

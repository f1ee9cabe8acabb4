// corl/loss/reinforce.hpp — REINFORCE with the advantage as the weight (ratio fixed to 1): the CoRL unified trainer.
//   gradient:  d loss_t / d logp = -A          (the policy-gradient estimator -A grad logp)
//   value:     loss_t = -A (1 + logp - logp_old)
// The value is the first-order potential of the usual PyTorch form -A exp(logp - sg(logp)): it has the same gradient
// and, on-policy (logp_old = logp, or no logp_old in the batch), the same value -A. Unlike -A logp it does not depend
// on the absolute log-prob, so the reported loss is comparable across batches. The ratio is reported for metrics only.
// Sources: Williams 1992; ULM-R1 / CoRL reference trainer (plain REINFORCE with a group baseline);
// verl `policy_loss.loss_mode` "vanilla" with clipping off.
#pragma once

#include "corl/concepts/policy_loss.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

struct Reinforce {
  double exp_clamp = kDefaultExpClamp;  ///< only for the reported ratio
  static constexpr bool sequence_level = false;

  /// Throws corl::Error naming `where` unless exp_clamp is in (0, 80].
  void validate(std::string_view where) const { detail::check_exp_clamp(exp_clamp, where, "Reinforce.exp_clamp"); }

  template <class Real>
  CORL_HD Real seq_stat_term(Real, Real, Real) const {
    return Real(0);
  }

  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_old, Real adv, Real /*seq_stat*/) const {
    bool sat = false;
    TokenTerm<Real> t{};
    t.ratio = clamped_exp<Real>(logp - logp_old, static_cast<Real>(exp_clamp), &sat);
    t.value = -adv * (Real(1) + (logp - logp_old));
    t.grad = -adv;
    return t;
  }
};

static_assert(policy_loss<Reinforce>, "Reinforce is a corl::policy_loss");

}  // namespace corl

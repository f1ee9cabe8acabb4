// expect: satisfaction of .*kl_estimator<Kl>
// A KL estimator must return a TokenTerm<Real> (value AND gradient), not just the value: the error names the concept
// corl::kl_estimator.
#include <corl/loss/objective.hpp>
#include <corl/loss/ppo_clip.hpp>

struct ValueOnlyKl {
  static constexpr bool uses_reference = true;
  template <class Real>
  Real token(Real logp, Real logp_ref, Real) const {
    return logp - logp_ref;
  }
};

int main() {
  corl::Objective<corl::PpoClip, ValueOnlyKl> objective;
  (void)objective;
}

// expect: satisfaction of .*policy_loss<Loss>
// A policy loss without the per-token function cannot be composed into an Objective: the error names the concept
// corl::policy_loss and the missing expression `loss.token<Real>(...)`.
#include <corl/loss/objective.hpp>

struct LossWithoutToken {
  static constexpr bool sequence_level = false;
  template <class Real>
  Real seq_stat_term(Real, Real, Real) const {
    return Real(0);
  }
};

int main() {
  corl::Objective<LossWithoutToken> objective;
  (void)objective;
}

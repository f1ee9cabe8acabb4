// corl/loss/kl.hpp — per-token estimators of KL(pi || pi_ref) for the KL penalty beta * KL.
// With l = logp - logp_ref (pi = current policy, pi_ref = reference) and tokens sampled from pi (or pi_old):
//   K1       k1 = l                          d/dlogp = 1                              unbiased, high variance, can be < 0
//   AbsKl    |l|                             d/dlogp = sign(l)  (0 at l = 0)
//   K2       k2 = l^2 / 2                    d/dlogp = l                              its gradient is that of the true KL
//   K3       k3 = exp(-l) + l - 1 >= 0       d/dlogp = 1 - exp(-l)                    unbiased, low variance ("low_var_kl")
//            the exponent -l is clamped to [-exp_clamp, exp_clamp] (derivative 0 of the exp part when active), and
//            optionally the value to <= value_max (verl clamps to 10; derivative 0 when active).
//   StraightThrough<KX>  ("k1+", "k3+", ...): value of KX, gradient of k2 (= l). Not the derivative of its value.
//   BiasCorrected<KX>    r * kX with r = exp(logp - logp_old) a STOP-GRADIENT importance weight (tokens were sampled
//            from pi_old, not pi): value r kX, gradient r dkX/dlogp; the ratio carries no gradient.
//   NoKl     zero (beta = 0; needs no logp_ref).
// Sources: Schulman 2020, "Approximating KL Divergence" (k1, k2, k3); verl `kl_loss_type` = kl|k1, abs, mse|k2,
// low_var_kl|k3, and "+" suffixes (straight-through); TRL `beta` (k3); DeepSeek-V3.2 report (importance-weighted,
// "unbiased" KL estimate).
#pragma once

#include <cmath>

#include "corl/concepts/kl_estimator.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

struct NoKl {
  static constexpr bool uses_reference = false;
  template <class Real>
  CORL_HD TokenTerm<Real> token(Real, Real, Real) const {
    return TokenTerm<Real>{Real(0), Real(0), Real(1), 0};
  }
};

struct K1 {
  static constexpr bool uses_reference = true;
  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_ref, Real /*logp_old*/) const {
    return TokenTerm<Real>{logp - logp_ref, Real(1), Real(1), 0};
  }
};

struct AbsKl {
  static constexpr bool uses_reference = true;
  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_ref, Real /*logp_old*/) const {
    const Real l = logp - logp_ref;
    const Real sign = l > Real(0) ? Real(1) : (l < Real(0) ? Real(-1) : Real(0));
    return TokenTerm<Real>{sign * l, sign, Real(1), 0};
  }
};

struct K2 {
  static constexpr bool uses_reference = true;
  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_ref, Real /*logp_old*/) const {
    const Real l = logp - logp_ref;
    return TokenTerm<Real>{Real(0.5) * l * l, l, Real(1), 0};
  }
};

struct K3 {
  double exp_clamp = kDefaultExpClamp;  ///< bound on |l| inside exp(-l)
  double value_max = 0;                 ///< > 0: clamp the value to <= value_max (verl: 10); 0 = no clamp
  static constexpr bool uses_reference = true;

  /// Throws corl::Error naming `where` and the field unless exp_clamp is in (0, 80] and value_max finite and >= 0.
  void validate(std::string_view where) const {
    detail::check_exp_clamp(exp_clamp, where, "K3.exp_clamp");
    detail::check_param(std::isfinite(value_max) && value_max >= 0.0, where, "K3.value_max", value_max,
                        "finite and >= 0 (0 = no clamp)");
  }
  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_ref, Real /*logp_old*/) const {
    const Real l = logp - logp_ref;
    bool sat = false;
    const Real e = clamped_exp<Real>(-l, static_cast<Real>(exp_clamp), &sat);
    TokenTerm<Real> t{e + l - Real(1), sat ? Real(1) : Real(1) - e, Real(1), 0};
    if (value_max > 0 && t.value > static_cast<Real>(value_max)) {
      t.value = static_cast<Real>(value_max);
      t.grad = Real(0);
    }
    return t;
  }
};

/// "kX+": the value of Base, the gradient of k2 (l = logp - logp_ref).
template <class Base>
struct StraightThrough {
  Base base{};
  static constexpr bool uses_reference = true;
  static constexpr bool gradient_is_derivative = false;
  /// Validates the base estimator (when it has parameters).
  void validate(std::string_view where) const { detail::validate_component(base, where); }
  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_ref, Real logp_old) const {
    TokenTerm<Real> t = base.template token<Real>(logp, logp_ref, logp_old);
    t.grad = logp - logp_ref;
    return t;
  }
};

/// sg(r) * Base with r = exp(logp - logp_old): value r kX, gradient r dkX/dlogp.
template <class Base = K3>
struct BiasCorrected {
  Base base{};
  double exp_clamp = kDefaultExpClamp;  ///< bound on |logp - logp_old| inside exp
  static constexpr bool uses_reference = true;
  static constexpr bool gradient_is_derivative = false;
  /// Throws corl::Error naming `where` unless exp_clamp is in (0, 80] and the base estimator is valid.
  void validate(std::string_view where) const {
    detail::check_exp_clamp(exp_clamp, where, "BiasCorrected.exp_clamp");
    detail::validate_component(base, where);
  }
  template <class Real>
  CORL_HD TokenTerm<Real> token(Real logp, Real logp_ref, Real logp_old) const {
    bool sat = false;
    const Real r = clamped_exp<Real>(logp - logp_old, static_cast<Real>(exp_clamp), &sat);
    TokenTerm<Real> t = base.template token<Real>(logp, logp_ref, logp_old);
    t.value *= r;
    t.grad *= r;
    t.ratio = r;
    return t;
  }
};

using K1Plus = StraightThrough<K1>;
using AbsKlPlus = StraightThrough<AbsKl>;
using K3Plus = StraightThrough<K3>;

static_assert(kl_estimator<NoKl>, "NoKl is a corl::kl_estimator");
static_assert(kl_estimator<K1>, "K1 is a corl::kl_estimator");
static_assert(kl_estimator<AbsKl>, "AbsKl is a corl::kl_estimator");
static_assert(kl_estimator<K2>, "K2 is a corl::kl_estimator");
static_assert(kl_estimator<K3>, "K3 is a corl::kl_estimator");
static_assert(kl_estimator<K3Plus>, "StraightThrough<K3> is a corl::kl_estimator");
static_assert(kl_estimator<BiasCorrected<K3>>, "BiasCorrected<K3> is a corl::kl_estimator");

}  // namespace corl

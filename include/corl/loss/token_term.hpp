// corl/loss/token_term.hpp — the per-token contract shared by the CPU objective and the CUDA kernels.
//
// Every policy loss and KL estimator in corl is a small struct whose member functions are CORL_HD (host + device), so
// the arithmetic is written exactly once. A per-token function returns a TokenTerm: the token's contribution to the loss
// (before aggregation weights) and its exact derivative with respect to the current policy's log-prob of that token.
//
// Policy losses (concept corl::policy_loss, corl/concepts/policy_loss.hpp):
//   static constexpr bool sequence_level;                          // true for GSPO / GMPO
//   template <class Real> CORL_HD Real seq_stat_term(Real logp, Real logp_old, Real adv) const;
//       per-token term whose masked mean over a sequence is the sequence statistic (GSPO: log r_t); token-level
//       losses return 0 and the statistic is ignored.
//   template <class Real> CORL_HD TokenTerm<Real> token(Real logp, Real logp_old, Real adv, Real seq_stat) const;
// KL estimators (concept corl::kl_estimator):
//   template <class Real> CORL_HD TokenTerm<Real> token(Real logp, Real logp_ref, Real logp_old) const;
// Conventions: l = logp - logp_ref (KL), log r = logp - logp_old (ratio); exponents are clamped by clamp_exponent so
// that no input produces inf/NaN. Loss terms are to be MINIMISED (policy losses carry the minus sign).
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"

namespace corl {

/// Flags a per-token loss sets for the metrics (clip fractions).
enum TokenFlag : std::uint8_t {
  kClippedLow = 1u << 0,   ///< ratio below 1 - eps_low with A < 0: gradient cut by the lower clip
  kClippedHigh = 1u << 1,  ///< ratio above 1 + eps_high with A > 0: gradient cut by the upper clip
  kDualClipped = 1u << 2,  ///< A < 0 and the dual-clip bound -c A was active
};

/// A token's contribution: value, d value / d logp (current policy), the ratio it used, and metric flags.
template <class Real>
struct TokenTerm {
  Real value;
  Real grad;
  Real ratio;
  std::uint8_t flags;
};

/// Default bound on exponents: exp(20) ~ 4.9e8 keeps float finite and differences meaningful.
inline constexpr double kDefaultExpClamp = 20.0;

/// Largest exp_clamp accepted: exp(80) ~ 5.5e34 stays finite in float.
inline constexpr double kMaxExpClamp = 80.0;

namespace detail {
/// The host-side parameter checks of the loss and KL structs (their validate members, called by corl::Objective):
/// throws corl::Error "<where>: <name> = <value>, expected <what>" unless `ok`.
inline void check_param(bool ok, std::string_view where, const char* name, double value, const char* what) {
  require(ok, where, ": ", name, " = ", value, ", expected ", what);
}
inline void check_exp_clamp(double exp_clamp, std::string_view where, const char* name) {
  check_param(exp_clamp > 0.0 && exp_clamp <= kMaxExpClamp, where, name, exp_clamp,
              "in (0, 80] (exp of it must stay finite in float)");
}
/// eps_low in [0, 1] and eps_high finite and >= 0 (ratio bounds 1 - eps_low >= 0 and 1 + eps_high).
inline void check_clip_bounds(double eps_low, double eps_high, std::string_view where, const char* low_name,
                              const char* high_name) {
  check_param(eps_low >= 0.0 && eps_low <= 1.0, where, low_name, eps_low, "in [0, 1]");
  check_param(std::isfinite(eps_high) && eps_high >= 0.0, where, high_name, eps_high, "finite and >= 0");
}
/// Calls c.validate(where) when the component has one (user-defined losses need not).
template <class Component>
void validate_component(const Component& c, std::string_view where) {
  if constexpr (requires { c.validate(where); }) c.validate(where);
}
}  // namespace detail

/// min(max(x, lo), hi) usable on host and device.
template <class Real>
CORL_HD Real clamp_value(Real x, Real lo, Real hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

/// exp of x clamped to [-bound, bound]; returns also whether the clamp was active (its derivative is then 0).
template <class Real>
CORL_HD Real clamped_exp(Real x, Real bound, bool* active) {
  const Real c = clamp_value(x, -bound, bound);
  *active = (c != x);
  using std::exp;
  return exp(c);
}

/// True when T::gradient_is_derivative is absent or true: `grad` is the derivative of `value` (finite differences of
/// the value reproduce it). Straight-through KL variants, the bias-corrected KL and stop-gradient surrogates say false.
template <class T>
constexpr bool gradient_is_derivative_v = [] {
  if constexpr (requires { T::gradient_is_derivative; }) return static_cast<bool>(T::gradient_is_derivative);
  else return true;
}();

}  // namespace corl

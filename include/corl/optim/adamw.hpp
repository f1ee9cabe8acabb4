// corl/optim/adamw.hpp — AdamW (decoupled weight decay) on plain buffers; the CPU reference of corl/cuda/adamw.cuh.
// Per element, at step t >= 1 (PyTorch torch.optim.AdamW, non-amsgrad):
//   p <- p (1 - lr wd)                                  decoupled weight decay
//   m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
//   p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The step-dependent scalars (bias corrections) are computed once per step in double and rounded to Real
// (AdamWScalars); the per-element update adamw_update_element is CORL_HD, so the CUDA kernel runs the same operations
// in the same order. On the device it uses the _rn intrinsics (no FMA contraction), so a host build that does not
// contract either (x86-64 without -mfma, the default) gives the GPU's bits exactly.
// API: buffers are spans (Eigen: std::span<float>(matrix.data(), matrix.size())); AdamW<Real> owns m and v for a list of
// parameter buffers and counts steps. Optionally each step also writes a bf16 copy of the parameters.
// Sources: Loshchilov & Hutter 2019 "Decoupled Weight Decay Regularization"; Kingma & Ba 2015; PyTorch AdamW docs.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/core/half_types.hpp"
#include "corl/core/hd.hpp"

namespace corl {

struct AdamWConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;

  void validate(const char* where) const {
    require(std::isfinite(lr) && lr >= 0.0, where, ": lr = ", lr, ", expected a finite value >= 0");
    require(beta1 >= 0.0 && beta1 < 1.0, where, ": beta1 = ", beta1, ", expected 0 <= beta1 < 1");
    require(beta2 >= 0.0 && beta2 < 1.0, where, ": beta2 = ", beta2, ", expected 0 <= beta2 < 1");
    require(eps > 0.0, where, ": eps = ", eps, ", expected > 0");
    require(std::isfinite(eps), where, ": eps = ", eps, ", expected a finite value");
    require(std::isfinite(weight_decay) && weight_decay >= 0.0, where, ": weight_decay = ", weight_decay,
            ", expected a finite value >= 0");
    require(lr * weight_decay <= 1.0, where, ": lr * weight_decay = ", lr * weight_decay,
            ", expected <= 1 (the decay factor 1 - lr * weight_decay would flip the parameters' sign)");
  }
};

/// The per-step constants of the update, rounded to Real once.
template <class Real>
struct AdamWScalars {
  Real decay;            ///< 1 - lr wd
  Real beta1, one_minus_beta1;
  Real beta2, one_minus_beta2;
  Real step_size;        ///< lr / (1 - b1^t)
  Real inv_sqrt_bc2;     ///< 1 / sqrt(1 - b2^t)
  Real eps;
};

/// Scalars for step t >= 1 (the first update is t = 1).
template <class Real>
AdamWScalars<Real> adamw_scalars(const AdamWConfig& config, std::int64_t step) {
  config.validate("adamw_scalars");
  require(step >= 1, "adamw_scalars: step = ", step, ", expected >= 1 (the first update is step 1)");
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(config.beta1, t), bc2 = 1.0 - std::pow(config.beta2, t);
  AdamWScalars<Real> s{};
  s.decay = static_cast<Real>(1.0 - config.lr * config.weight_decay);
  s.beta1 = static_cast<Real>(config.beta1);
  s.one_minus_beta1 = static_cast<Real>(1.0 - config.beta1);
  s.beta2 = static_cast<Real>(config.beta2);
  s.one_minus_beta2 = static_cast<Real>(1.0 - config.beta2);
  s.step_size = static_cast<Real>(config.lr / bc1);
  s.inv_sqrt_bc2 = static_cast<Real>(1.0 / std::sqrt(bc2));
  s.eps = static_cast<Real>(config.eps);
  require(s.eps > Real(0), "adamw_scalars: eps = ", config.eps,
          " rounds to 0 in the optimizer's floating-point type, expected a value it can represent");
  return s;
}

namespace detail {
// Rounded arithmetic that the device compiler may not fuse into FMAs (so host and device agree bit for bit).
template <class Real>
CORL_HD Real mul_rn(Real a, Real b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(Real) == 4) return __fmul_rn(a, b); else return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
template <class Real>
CORL_HD Real add_rn(Real a, Real b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(Real) == 4) return __fadd_rn(a, b); else return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
template <class Real>
CORL_HD Real div_rn(Real a, Real b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(Real) == 4) return __fdiv_rn(a, b); else return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
template <class Real>
CORL_HD Real sqrt_rn(Real a) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(Real) == 4) return __fsqrt_rn(a); else return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
}  // namespace detail

/// One element's update, in place (see the header comment for the formula and the order of operations).
template <class Real>
CORL_HD void adamw_update_element(Real& p, Real& m, Real& v, Real g, const AdamWScalars<Real>& s) {
  using detail::add_rn;
  using detail::div_rn;
  using detail::mul_rn;
  p = mul_rn(p, s.decay);
  m = add_rn(mul_rn(s.beta1, m), mul_rn(s.one_minus_beta1, g));
  v = add_rn(mul_rn(s.beta2, v), mul_rn(s.one_minus_beta2, mul_rn(g, g)));
  const Real denom = add_rn(mul_rn(detail::sqrt_rn(v), s.inv_sqrt_bc2), s.eps);
  p = add_rn(p, -mul_rn(s.step_size, div_rn(m, denom)));
}

namespace detail {
/// Throws corl::Error naming `where` and the first non-finite gradient entry (before anything is updated).
template <class Real>
void require_finite_grad(std::span<const Real> grad, const char* where, std::size_t buffer) {
  for (std::size_t i = 0; i < grad.size(); ++i)
    require(std::isfinite(grad[i]), where, ": gradient of buffer ", buffer, " [", i, "] = ", grad[i],
            ", expected finite (nothing was updated)");
}
}  // namespace detail

/// Updates one buffer in place. All spans have the same size; `param_bf16`, when not empty, receives the updated
/// parameters rounded to bf16 (round to nearest even). A non-finite gradient entry throws before anything changes.
template <class Real>
void adamw_update(std::span<Real> param, std::span<const Real> grad, std::span<Real> m, std::span<Real> v,
                  const AdamWScalars<Real>& scalars, std::span<bfloat16> param_bf16 = {}) {
  constexpr const char* where = "adamw_update";
  const std::size_t n = param.size();
  require(grad.size() == n, where, ": grad has ", grad.size(), " entries, expected ", n, " (one per parameter)");
  require(m.size() == n, where, ": m has ", m.size(), " entries, expected ", n, " (one per parameter)");
  require(v.size() == n, where, ": v has ", v.size(), " entries, expected ", n, " (one per parameter)");
  require(param_bf16.empty() || param_bf16.size() == n, where, ": param_bf16 has ", param_bf16.size(),
          " entries, expected 0 (no copy) or ", n);
  detail::require_finite_grad(grad, where, 0);
  for (std::size_t i = 0; i < n; ++i) {
    adamw_update_element(param[i], m[i], v[i], grad[i], scalars);
    if (!param_bf16.empty()) param_bf16[i] = bfloat16(static_cast<float>(param[i]));
  }
}

/// AdamW over a list of parameter buffers that it does not own; it owns their moments and counts steps.
template <class Real>
class AdamW {
 public:
  explicit AdamW(AdamWConfig config) : config_(config) { config_.validate("AdamW"); }

  /// Registers a parameter buffer (its moments start at 0); returns its index. The buffer must outlive the optimizer.
  std::size_t add_parameter(std::span<Real> param) {
    params_.push_back(param);
    m_.emplace_back(param.size(), Real(0));
    v_.emplace_back(param.size(), Real(0));
    return params_.size() - 1;
  }

  /// One step: grads[k] is the gradient of parameter k. Increments the step count first (the first step is 1).
  void step(std::span<const std::span<const Real>> grads) {
    require(grads.size() == params_.size(), "AdamW::step: grads has ", grads.size(), " buffers, expected ",
            params_.size(), " (one per parameter)");
    const AdamWScalars<Real> s = adamw_scalars<Real>(config_, step_ + 1);
    // Every buffer is checked before any is updated, so a failed step changes nothing and can be retried.
    for (std::size_t k = 0; k < params_.size(); ++k) {
      require(grads[k].size() == params_[k].size(), "AdamW::step: grads[", k, "] has ", grads[k].size(),
              " entries, expected ", params_[k].size(), " (nothing was updated)");
      detail::require_finite_grad(grads[k], "AdamW::step", k);
    }
    for (std::size_t k = 0; k < params_.size(); ++k) adamw_update<Real>(params_[k], grads[k], m_[k], v_[k], s);
    ++step_;
  }
  void step(const std::vector<std::span<const Real>>& grads) { step(std::span<const std::span<const Real>>(grads)); }

  std::int64_t steps_taken() const { return step_; }
  const AdamWConfig& config() const { return config_; }
  /// Throws corl::Error (and keeps the old rate) unless the new configuration is valid.
  void set_lr(double lr) {
    AdamWConfig next = config_;
    next.lr = lr;
    next.validate("AdamW::set_lr");
    config_ = next;
  }
  /// The moments m and v of parameter k (writable, to restore them from a checkpoint; read-only on a const AdamW).
  std::span<Real> first_moment(std::size_t k) { return m_.at(k); }
  std::span<Real> second_moment(std::size_t k) { return v_.at(k); }
  std::span<const Real> first_moment(std::size_t k) const { return m_.at(k); }
  std::span<const Real> second_moment(std::size_t k) const { return v_.at(k); }
  /// Restores the step count (with the moments, through first_moment / second_moment) from a checkpoint.
  void set_steps_taken(std::int64_t steps) {
    require(steps >= 0, "AdamW::set_steps_taken: steps = ", steps, ", expected >= 0");
    step_ = steps;
  }

 private:
  AdamWConfig config_;
  std::vector<std::span<Real>> params_;
  std::vector<std::vector<Real>> m_, v_;
  std::int64_t step_ = 0;
};

}  // namespace corl

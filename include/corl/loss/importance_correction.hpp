// corl/loss/importance_correction.hpp — correcting for the gap between the inference engine's log-probs (the sampler,
// e.g. vLLM in bf16) and the trainer's log-probs of the same policy.
//   log rho_t = logp_old_t - logp_sampler_t          (token level; logp_old = the trainer's pre-update log-prob, or
//                                                      logp itself when the batch has no logp_old)
//   log rho_b = sum_t mask_bt log rho_t              (sequence level: the product of the token ratios)
//   truncate (TIS): c = min(rho, upper)
//   mask (MIS):     c = rho if lower <= rho <= upper, else 0
// c multiplies the POLICY-LOSS term of the token (value and gradient), not the KL or entropy terms, and is a constant:
// it carries no gradient. Exponents are clamped to [-exp_clamp, exp_clamp] so that c is always finite.
// Sources: Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training" (TIS);
// verl `rollout_is`, `rollout_is_level` = token|sequence, `rollout_is_mode` = truncate|mask,
// `rollout_is_threshold` (upper, 2.0), `rollout_is_threshold_lower`; TRL `vllm_importance_sampling_correction`,
// `vllm_importance_sampling_cap`.
#pragma once

#include <cmath>

#include "corl/core/hd.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

enum class ImportanceLevel : std::uint8_t { none, token, sequence };
enum class ImportanceMode : std::uint8_t { truncate, mask };

struct ImportanceCorrection {
  ImportanceLevel level = ImportanceLevel::none;
  ImportanceMode mode = ImportanceMode::truncate;
  double upper = 2.0;  ///< truncation cap (TIS) / upper acceptance bound (MIS)
  double lower = 0.5;  ///< lower acceptance bound (MIS only)
  double exp_clamp = kDefaultExpClamp;

  /// The constant weight c for a token or sequence with log-ratio `log_rho`.
  template <class Real>
  CORL_HD Real weight(Real log_rho) const {
    if (level == ImportanceLevel::none) return Real(1);
    bool sat = false;
    const Real rho = clamped_exp<Real>(log_rho, static_cast<Real>(exp_clamp), &sat);
    const Real hi = static_cast<Real>(upper);
    if (mode == ImportanceMode::truncate) return rho < hi ? rho : hi;
    return (rho >= static_cast<Real>(lower) && rho <= hi) ? rho : Real(0);
  }
};

}  // namespace corl

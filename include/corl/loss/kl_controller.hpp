// corl/loss/kl_controller.hpp — the KL coefficient beta: fixed, or adapted towards a target KL.
//   Fixed:     beta stays constant.
//   Adaptive:  e = clip(KL_observed / KL_target - 1, -max_error, max_error);  beta <- beta (1 + e n_steps / horizon)
//              (n_steps = number of samples since the last update; max_error = 0.2).
// Source: Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences" (section 2.2);
// verl `algorithm.kl_ctrl.type` = fixed|adaptive, `kl_coef`, `target_kl`, `horizon`; TRL (PPO) `adap_kl_ctrl`.
#pragma once

#include <cmath>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"

namespace corl {

struct FixedKlController {
  double beta = 0.0;
  [[nodiscard]] double value() const { return beta; }
  void update(double /*observed_kl*/, index_t /*n_steps*/) {}
};

struct AdaptiveKlController {
  double beta = 0.1;       ///< initial (then current) coefficient
  double target = 6.0;     ///< target KL per sequence (Ziegler et al.)
  double horizon = 10000;  ///< samples over which beta may change by a factor e^{max_error}
  double max_error = 0.2;

  [[nodiscard]] double value() const { return beta; }
  /// One update after observing `observed_kl` (mean KL) over `n_steps` samples.
  void update(double observed_kl, index_t n_steps) {
    require(std::isfinite(observed_kl), "AdaptiveKlController::update: observed_kl = ", observed_kl,
            ", expected a finite value");
    require(n_steps >= 0, "AdaptiveKlController::update: n_steps = ", n_steps, ", expected >= 0");
    require(std::isfinite(target) && target > 0 && std::isfinite(horizon) && horizon > 0,
            "AdaptiveKlController::update: target = ", target, ", horizon = ", horizon, ", expected both finite and > 0");
    require(std::isfinite(max_error) && max_error >= 0, "AdaptiveKlController::update: max_error = ", max_error,
            ", expected finite and >= 0");
    require(std::isfinite(beta) && beta >= 0, "AdaptiveKlController::update: beta = ", beta,
            ", expected finite and >= 0");
    double e = observed_kl / target - 1.0;
    e = e < -max_error ? -max_error : (e > max_error ? max_error : e);
    const double factor = 1.0 + e * static_cast<double>(n_steps) / horizon;
    require(factor > 0, "AdaptiveKlController::update: the factor 1 + e * n_steps / horizon = ", factor,
            " (e = ", e, ", n_steps = ", n_steps, ", horizon = ", horizon,
            ") would make beta <= 0, expected n_steps * max_error < horizon");
    beta *= factor;
  }
};

}  // namespace corl

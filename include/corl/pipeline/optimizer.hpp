// corl/pipeline/optimizer.hpp — what a stage needs from an optimizer: corl::stage_optimizer.
//
// O satisfies stage_optimizer<O, Real> if:
//   1. `o.step(params, grads, lr)` updates the flat parameters (std::span<Real>) in place from the gradients
//      (std::span<const Real>, same size) with learning rate lr (a double; a stage passes its learning_rate);
//   2. `co.state()` returns its whole internal state (moments, step counter) as a std::string, and
//      `o.load_state(s)` restores it, so that a resumed stage takes bit-identical steps (checkpointed with the policy);
//   3. a fresh optimizer is built per stage by the pipeline's factory `make(const StageConfig&, index_t num_params)`.
#pragma once

#include <concepts>
#include <span>
#include <string>

namespace corl {

template <class O, class Real>
concept stage_optimizer = requires(O& o, const O& co, std::span<Real> params, std::span<const Real> grads, double lr,
                                   const std::string& s) {
  o.step(params, grads, lr);
  { co.state() } -> std::convertible_to<std::string>;
  o.load_state(s);
};

}  // namespace corl

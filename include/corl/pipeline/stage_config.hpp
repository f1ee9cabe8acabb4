// corl/pipeline/stage_config.hpp — the hyper-parameters of one CoRL stage, their defaults, and their validation.
//
// CoRL (arXiv 2505.17534, Sec. 3; DESIGN.md section 1):
//   unified stage  two tasks (text-to-image and multimodal understanding) sampled for every row; one reward and one
//                  group advantage per (image, answer) pair, applied to both completions; loss = w_0 L_t2i + w_1 L_mm2t
//                  with w = (1, 1); G = 8; beta = 0 (no KL term); lr 4e-6 in the paper; plain REINFORCE.
//   refined stage  one task; G = 16; beta = 0.02 (KL to the stage's starting policy, k3); lr 1e-6 in the paper.
// The learning rates here are the paper's; the bundled tiny model overrides them in its config file.
// Learning-rate schedule per step (stage_learning_rate), the formulas of Hugging Face transformers' schedulers (TRL's
// GRPOConfig `lr_scheduler_type`, `warmup_steps`; transformers' TrainingArguments default is "linear"), with
// s = step (0-based), W = warmup_steps, N = steps, p = (s - W) / max(1, N - W):
//   constant  lr                                    (after warm-up: get_constant_schedule_with_warmup)
//   linear    lr * max(0, (N - s) / max(1, N - W))  (get_linear_schedule_with_warmup)
//   cosine    lr * max(0, (1 + cos(pi p)) / 2)      (get_cosine_schedule_with_warmup, half a cycle)
//   warm-up   lr * s / max(1, W) for s < W, in every schedule (so step 0 of a warm-up has lr 0, as in transformers).
// validate_stage_config names the stage and the field: "corl::StageConfig 'unified': group_size = 1, expected >= 2".
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"

namespace corl {

/// How the learning rate moves over a stage's steps (see the header comment).
enum class LrSchedule { constant, linear, cosine };

struct StageConfig {
  std::string name = "stage";
  index_t group_size = 8;          ///< G: completions per prompt (per task)
  index_t rows_per_step = 16;      ///< data rows (prompts) per optimizer step
  index_t steps = 100;             ///< optimizer steps in the stage
  double learning_rate = 4e-6;     ///< peak learning rate (the schedule's lr)
  LrSchedule lr_schedule = LrSchedule::constant;
  index_t warmup_steps = 0;        ///< linear warm-up from 0 over the first warmup_steps steps
  double beta = 0.0;               ///< KL coefficient (0: no reference policy is scored)
  std::vector<double> task_weights = {1.0};  ///< one weight per task: the loss is sum_k w_k L_k
  double max_grad_norm = 1.0;      ///< global gradient-norm clip (0: off)
  index_t checkpoint_every = 0;    ///< also checkpoint every N steps (0: only at the end of the stage)
  double advantage_eps = 1e-4;     ///< group z-score: (r - mean) / (std + eps), unbiased std (the reference code)
};

/// The unified stage: two tasks weighted 1:1, G = 8, beta = 0, lr = 4e-6 (paper).
inline StageConfig unified_stage_defaults(std::string name = "unified") {
  StageConfig c;
  c.name = std::move(name);
  c.group_size = 8;
  c.beta = 0.0;
  c.learning_rate = 4e-6;
  c.task_weights = {1.0, 1.0};
  return c;
}

/// A refined stage: one task, G = 16, beta = 0.02, lr = 1e-6 (paper).
inline StageConfig refined_stage_defaults(std::string name = "refined") {
  StageConfig c;
  c.name = std::move(name);
  c.group_size = 16;
  c.beta = 0.02;
  c.learning_rate = 1e-6;
  c.task_weights = {1.0};
  return c;
}

/// Throws corl::Error naming the stage, the field, its value and the condition. `num_tasks` is the stage's task count.
inline void validate_stage_config(const StageConfig& c, index_t num_tasks) {
  const std::string where = "corl::StageConfig '" + c.name + "'";
  require(!c.name.empty(), "corl::StageConfig: name is empty, expected a stage name");
  require(c.group_size >= 2, where, ": group_size = ", c.group_size,
          ", expected >= 2 (a group advantage needs at least two samples)");
  require(c.group_size <= 65536, where, ": group_size = ", c.group_size, ", expected <= 65536");
  require(c.rows_per_step >= 1, where, ": rows_per_step = ", c.rows_per_step, ", expected >= 1");
  require(c.steps >= 0, where, ": steps = ", c.steps, ", expected >= 0");
  require(c.steps < (index_t(1) << 36), where, ": steps = ", c.steps, ", expected < 2^36");
  require(std::isfinite(c.learning_rate) && c.learning_rate >= 0, where, ": learning_rate = ", c.learning_rate,
          ", expected a finite value >= 0");
  require(c.lr_schedule == LrSchedule::constant || c.lr_schedule == LrSchedule::linear ||
              c.lr_schedule == LrSchedule::cosine,
          where, ": lr_schedule = ", static_cast<int>(c.lr_schedule), ", expected constant, linear or cosine");
  require(c.warmup_steps >= 0 && c.warmup_steps <= c.steps, where, ": warmup_steps = ", c.warmup_steps,
          ", expected 0 <= warmup_steps <= steps = ", c.steps);
  require(std::isfinite(c.beta) && c.beta >= 0, where, ": beta = ", c.beta, ", expected a finite value >= 0");
  require(static_cast<index_t>(c.task_weights.size()) == num_tasks, where, ": task_weights has ",
          c.task_weights.size(), " entries, expected ", num_tasks, " (one per task of the stage)");
  for (std::size_t k = 0; k < c.task_weights.size(); ++k)
    require(std::isfinite(c.task_weights[k]) && c.task_weights[k] >= 0, where, ": task_weights[", k,
            "] = ", c.task_weights[k], ", expected a finite value >= 0");
  require(std::isfinite(c.max_grad_norm) && c.max_grad_norm >= 0, where, ": max_grad_norm = ", c.max_grad_norm,
          ", expected a finite value >= 0 (0 = no clipping)");
  require(c.checkpoint_every >= 0, where, ": checkpoint_every = ", c.checkpoint_every, ", expected >= 0");
  require(std::isfinite(c.advantage_eps) && c.advantage_eps >= 0, where, ": advantage_eps = ", c.advantage_eps,
          ", expected a finite value >= 0");
}

/// The learning rate of step `step` (0-based) of a stage (see the header comment for the formulas).
inline double stage_learning_rate(const StageConfig& c, index_t step) {
  const double s = static_cast<double>(step), W = static_cast<double>(c.warmup_steps), N = static_cast<double>(c.steps);
  if (step < c.warmup_steps) return c.learning_rate * s / std::max(1.0, W);
  switch (c.lr_schedule) {
    case LrSchedule::linear:
      return c.learning_rate * std::max(0.0, (N - s) / std::max(1.0, N - W));
    case LrSchedule::cosine: {
      const double p = (s - W) / std::max(1.0, N - W);
      return c.learning_rate * std::max(0.0, 0.5 * (1.0 + std::cos(3.14159265358979323846 * p)));
    }
    case LrSchedule::constant:
      break;
  }
  return c.learning_rate;
}

}  // namespace corl

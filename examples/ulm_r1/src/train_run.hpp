// train_run.hpp — `ulm_r1 train`: SFT (or a loaded checkpoint) -> CoRL unified stage -> refined stages (T2I, MC, OE;
// the MC and OE policies merged) -> evaluation, with metrics, report and plots written to the output directory.
//
// The run (all stages are corl::Pipeline runs over corl::Stage objects, corl/pipeline/):
//   1. SFT warm-up (sft.hpp) or --sft-ckpt; evaluate it: the baseline.
//   2. unified stage from SFT: tasks (T2I, QA) on the same rows, reward cycle R_cycle + tim R_TIM + lambda (R_acc +
//      R_format) (the paper: cycle = tim = 1; the default: tim = 0, see configs/README.md),
//      one group advantage per (image, answer) pair, loss w_t2i L_t2i + w_mm2t L_mm2t; evaluate.
//   3. three refined stages, each from the unified policy: T2I (cycle R_cycle + tim R_TIM), MC QA and OE QA
//      (R_acc + R_format) on the rows of their question type; QA policy = merge_linear(MC, OE, qa_alpha).
//   4. the CoRL policy = task arithmetic from the unified policy: U + (T2I - U) + (QA - U); evaluate.
//   Every sampling call and row choice is keyed by (seed, stage, step, task, row, sample) (corl/pipeline/schedule.hpp);
//   each branch has its own seed (seed + branch * 1000003) so that branches do not share draws.
// Outputs in out_dir: metrics.jsonl (one line per optimizer step: stage, step, reward statistics and parts, loss, KL,
// ratio, |logp - logp_sampler|, grad norm, seconds), checkpoints/ (pipeline checkpoints), sft.safetensors,
// corl.safetensors, report.json, report.md, reward_curves.png, eval_bars.png, samples_before_after.png; with
// --ablation also the paradigm table (SFT, unified only, refined only, CoRL) and the reward ablation (R_cycle only,
// R_TIM only, R_cycle + R_TIM; the one equal to the main run reuses it).
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "corl/pipeline/stage.hpp"
#include "evaluate.hpp"
#include "train_config.hpp"

namespace ulm {

struct StepRecord {
  corl::StepMetrics metrics;
  std::vector<double> parts;  ///< RewardLog means: cycle_image, cycle_text, tim, acc, format
};

struct StageRecord {
  std::string name;  ///< e.g. "unified", "refined_t2i"
  std::string run;   ///< which run it belongs to: "corl", "refined_only", "reward_cycle_only", ...
  int steps = 0;
  double wall_seconds = 0;
  std::vector<StepRecord> steps_log;
};

struct EvalRecord {
  std::string name;  ///< "sft", "unified", "refined_t2i", "qa_merged", "corl", "refined_only", ...
  EvalResult result;  ///< the held-out evaluation (test split): the metric
  double wall_seconds = 0;
  GenEvalTally train_prompts;  ///< world-GenEval on fresh rows of the training prompt specs (in-distribution view)
  double qa_accuracy() const;  ///< (mc_correct + oe_correct) / (mc_total + oe_total)
  /// One standard error of qa_accuracy() from the finite sample of questions: sqrt(p (1 - p) / n).
  double qa_standard_error() const;
};

/// after - before on the two target metrics (held-out GenEval overall, QA over all questions), each with one
/// standard error of the difference: the two evaluations' errors in quadrature, as if independent (they share the
/// prompts and questions, so this overstates it: conservative).
struct Improvement {
  double geneval = 0, geneval_se = 0, qa = 0, qa_se = 0;
};
Improvement improvement(const EvalRecord& before, const EvalRecord& after);

struct TrainResult {
  std::vector<StageRecord> stages;
  std::vector<EvalRecord> evals;
  double sft_seconds = 0;
  int sft_steps = 0;
  double total_seconds = 0;
  const EvalRecord& eval(const std::string& name) const;  ///< throws naming the evaluation when absent
};

/// Runs everything described above. Progress (bar with ETA and live mean reward) goes to `progress` (may be null).
TrainResult run_training(const TrainConfig& config, std::ostream* progress);

/// `ulm_r1 train [--config FILE] [--<key> VALUE ...] [--sft-ckpt F] [--out DIR] [--seed S] [--ablation]`
int cmd_train(const std::vector<std::string>& args);

}  // namespace ulm

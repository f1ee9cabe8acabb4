// corl/pipeline/pipeline.hpp — stages chained at compile time: the policy is handed from stage to stage, checkpointed
// after each stage (and every checkpoint_every steps), and a run can resume at any (stage, step) with identical results.
//
//   corl::Pipeline pipeline{unified, refined};                       // corl::Stage objects (corl/pipeline/stage.hpp)
//   P trained = pipeline.run(initial_policy, options, make_optimizer, on_step, on_stage_end);
// Stage s starts from the policy stage s-1 ended with; its reference policy (beta > 0) is a snapshot of that starting
// policy; a fresh optimizer is built for it by make_optimizer(config, num_params).
// Checkpoints: <dir>/stage<s>-<name>-step<k>.ckpt after k steps (k = steps: the end of the stage). Resume at
// (stage s, step k) loads that file (k = 0: the end of stage s-1, or the initial policy for s = 0) and continues; since
// every row choice and random draw is a function of (seed, stage, step, task, row, sample) and the checkpoint carries
// parameters, reference and optimizer state, the remaining steps reproduce the uninterrupted run bit for bit.
#pragma once

#include <filesystem>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "corl/concepts/policy.hpp"
#include "corl/core/error.hpp"
#include "corl/pipeline/checkpoint.hpp"
#include "corl/pipeline/stage.hpp"

namespace corl {

struct PipelineOptions {
  std::uint64_t seed = 0;
  std::string checkpoint_dir;  ///< empty: no checkpoints (and no resume)
  index_t resume_stage = -1;   ///< < 0: start from the beginning
  index_t resume_step = 0;     ///< steps already taken in resume_stage
};

/// Path of the checkpoint after `step` steps of stage `stage_index` named `name`.
inline std::string checkpoint_path(const std::string& dir, index_t stage_index, const std::string& name, index_t step) {
  return (std::filesystem::path(dir) /
          ("stage" + std::to_string(stage_index) + "-" + name + "-step" + std::to_string(step) + ".ckpt"))
      .string();
}

struct NoStepCallback {
  void operator()(const StepMetrics&) const {}
};
struct NoStageCallback {
  template <class P>
  void operator()(index_t, const std::string&, const P&) const {}
};

template <class... Stages>
class Pipeline {
 public:
  static constexpr std::size_t num_stages = sizeof...(Stages);
  explicit Pipeline(Stages... stages) : stages_(std::move(stages)...) {}

  std::tuple<Stages...>& stages() { return stages_; }

  /// Runs every stage from `initial` (or from the resume point) and returns the final policy.
  template <policy P, class MakeOptimizer, class OnStep = NoStepCallback, class OnStageEnd = NoStageCallback>
  P run(const P& initial, const PipelineOptions& options, MakeOptimizer make_optimizer, OnStep on_step = {},
        OnStageEnd on_stage_end = {}) {
    using Real = typename P::real_type;
    require(options.resume_stage < static_cast<index_t>(num_stages), "corl::Pipeline::run: resume_stage = ",
            options.resume_stage, ", expected < ", num_stages, " (the number of stages)");
    require(options.resume_stage < 0 || !options.checkpoint_dir.empty(),
            "corl::Pipeline::run: resume_stage = ", options.resume_stage, " needs a checkpoint_dir");
    if (!options.checkpoint_dir.empty()) std::filesystem::create_directories(options.checkpoint_dir);
    P current = initial.snapshot();
    const index_t first_stage = options.resume_stage < 0 ? 0 : options.resume_stage;
    if (first_stage > 0 && options.resume_step == 0) {
      // the start of stage s is the end of stage s-1
      const auto prev = stage_config(first_stage - 1);
      const auto ck = read_checkpoint<Real>(
          checkpoint_path(options.checkpoint_dir, first_stage - 1, prev.name, prev.steps));
      load_policy_parameters(current, ck.parameters, "corl::Pipeline: checkpoint parameters");
    }
    index_t s = 0;
    std::apply(
        [&](auto&... stage) {
          (
              [&] {
                const index_t idx = s++;
                if (idx < first_stage) return;
                const index_t start_step = idx == first_stage && options.resume_stage >= 0 ? options.resume_step : 0;
                run_one(stage, idx, start_step, current, options, make_optimizer, on_step);
                on_stage_end(idx, stage.config.name, std::as_const(current));
              }(),
              ...);
        },
        stages_);
    return current;
  }

 private:
  StageConfig stage_config(index_t index) const {
    StageConfig out;
    index_t s = 0;
    std::apply([&](const auto&... stage) { ((s++ == index ? (void)(out = stage.config) : (void)0), ...); }, stages_);
    return out;
  }

  template <class StageT, class P, class MakeOptimizer, class OnStep>
  static void run_one(const StageT& stage, index_t idx, index_t start_step, P& current, const PipelineOptions& options,
                      MakeOptimizer& make_optimizer, OnStep& on_step) {
    using Real = typename P::real_type;
    const StageConfig& cfg = stage.config;
    validate_stage_config(cfg, static_cast<index_t>(StageT::num_tasks));
    require(start_step >= 0 && start_step <= cfg.steps, "corl::Pipeline::run: resume_step = ", start_step,
            ", expected 0..", cfg.steps, " for stage '", cfg.name, "'");
    const auto num_params = static_cast<index_t>(current.parameters().size());
    auto optimizer = make_optimizer(cfg, num_params);
    P reference = current.snapshot();  // the stage's starting policy
    const bool need_ref = cfg.beta > 0.0;
    if (start_step > 0) {
      const std::string path = checkpoint_path(options.checkpoint_dir, idx, cfg.name, start_step);
      const auto ck = read_checkpoint<Real>(path);
      require(ck.stage == idx && ck.step == start_step && ck.stage_name == cfg.name, "corl::Pipeline::run: '", path,
              "' holds stage ", ck.stage, " '", ck.stage_name, "' step ", ck.step, ", expected stage ", idx, " '",
              cfg.name, "' step ", start_step);
      load_policy_parameters(current, ck.parameters, "corl::Pipeline: checkpoint parameters");
      if (need_ref) {
        require(!ck.reference.empty(), "corl::Pipeline::run: '", path, "' has no reference policy, stage '", cfg.name,
                "' has beta = ", cfg.beta);
        load_policy_parameters(reference, ck.reference, "corl::Pipeline: checkpoint reference");
      }
      optimizer.load_state(ck.optimizer_state);
    }
    std::vector<Real> grad(static_cast<std::size_t>(num_params));
    for (index_t step = start_step; step < cfg.steps; ++step) {
      StepMetrics m = run_stage_step(stage, idx, step, options.seed, current, need_ref ? &reference : nullptr,
                                     optimizer, grad);
      on_step(std::as_const(m));
      const index_t done = step + 1;
      const bool periodic = cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0;
      if (!options.checkpoint_dir.empty() && (periodic || done == cfg.steps)) {
        PipelineCheckpoint<Real> ck;
        ck.stage = idx;
        ck.stage_name = cfg.name;
        ck.step = done;
        const auto params = std::as_const(current).parameters();
        ck.parameters.assign(params.begin(), params.end());
        if (need_ref) {
          const auto ref = std::as_const(reference).parameters();
          ck.reference.assign(ref.begin(), ref.end());
        }
        ck.optimizer_state = optimizer.state();
        write_checkpoint(checkpoint_path(options.checkpoint_dir, idx, cfg.name, done), ck);
      }
    }
    if (cfg.steps == 0 && !options.checkpoint_dir.empty()) {
      PipelineCheckpoint<Real> ck;
      ck.stage = idx;
      ck.stage_name = cfg.name;
      const auto params = std::as_const(current).parameters();
      ck.parameters.assign(params.begin(), params.end());
      ck.optimizer_state = optimizer.state();
      write_checkpoint(checkpoint_path(options.checkpoint_dir, idx, cfg.name, 0), ck);
    }
  }

  std::tuple<Stages...> stages_;
};

template <class... Stages>
Pipeline(Stages...) -> Pipeline<Stages...>;

}  // namespace corl

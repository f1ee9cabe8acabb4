// train_run.cpp — see train_run.hpp.
#include "train_run.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "checkpoint.hpp"
#include "corl/core/error.hpp"
#include "corl/pipeline/adamw_optimizer.hpp"
#include "corl/pipeline/merge.hpp"
#include "corl/pipeline/pipeline.hpp"
#include "corl_policy.hpp"
#include "corl_world_rewards.hpp"
#include "json.hpp"
#include "plot_charts.hpp"
#include "report_writer.hpp"
#include "sft.hpp"

namespace ulm {

double EvalRecord::qa_accuracy() const {
  const int total = result.mc_total + result.oe_total;
  return total > 0 ? static_cast<double>(result.mc_correct + result.oe_correct) / total : 0.0;
}

double EvalRecord::qa_standard_error() const {
  const int total = result.mc_total + result.oe_total;
  const double p = qa_accuracy();
  return total > 0 ? std::sqrt(p * (1.0 - p) / total) : 0.0;
}

Improvement improvement(const EvalRecord& before, const EvalRecord& after) {
  const GenEvalTally& a = before.result.geneval;
  const GenEvalTally& b = after.result.geneval;
  Improvement d;
  d.geneval = b.overall() - a.overall();
  d.geneval_se = std::hypot(a.overall_standard_error(), b.overall_standard_error());
  d.qa = after.qa_accuracy() - before.qa_accuracy();
  d.qa_se = std::hypot(before.qa_standard_error(), after.qa_standard_error());
  return d;
}

const EvalRecord& TrainResult::eval(const std::string& name) const {
  for (const auto& e : evals)
    if (e.name == name) return e;
  corl::fail("ulm::TrainResult::eval: no evaluation named '", name, "'");
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) s = 0;
  const long t = std::lround(s);
  std::ostringstream os;
  if (t >= 60) os << t / 60 << "m" << std::setw(2) << std::setfill('0') << t % 60 << "s";
  else os << t << "s";
  return os.str();
}

/// A one-line progress bar on a terminal stream: stage, step, bar, mean reward, elapsed, ETA (over all RL steps).
class Progress {
 public:
  Progress(std::ostream* os, int total_steps) : os_(os), total_(std::max(total_steps, 1)), start_(Clock::now()) {}
  void step(const std::string& stage, int s, int steps, double reward) {
    ++done_;
    if (!os_) return;
    const double elapsed = seconds_since(start_);
    const double eta = elapsed / done_ * (total_ - done_);
    const int width = 24, filled = static_cast<int>(std::lround(width * static_cast<double>(done_) / total_));
    std::ostringstream line;
    line << "\r[" << stage << " " << s << "/" << steps << "] [" << std::string(static_cast<std::size_t>(filled), '#')
         << std::string(static_cast<std::size_t>(std::max(0, width - filled)), '.') << "] " << std::setw(3)
         << (100 * done_ / total_) << "%  reward " << std::fixed << std::setprecision(3) << reward << "  elapsed "
         << format_duration(elapsed) << "  eta " << format_duration(eta) << "   ";
    *os_ << line.str() << std::flush;
    mid_line_ = true;
  }
  void message(const std::string& text) {
    if (!os_) return;
    if (mid_line_) *os_ << "\n";
    mid_line_ = false;
    *os_ << text << "\n" << std::flush;
  }

 private:
  std::ostream* os_;
  int total_;
  int done_ = 0;
  bool mid_line_ = false;
  Clock::time_point start_;
};

struct Runner {
  const TrainConfig& cfg;
  WorldContext ctx;
  std::vector<UnifiedRow> rows, mc_rows, oe_rows;
  TrainResult result;
  Progress progress;
  std::ofstream metrics;
  RewardLog log;

  Runner(const TrainConfig& c, std::ostream* os, int total_steps)
      : cfg(c), ctx(WorldConfig{}), progress(os, total_steps) {}

  corl::StageConfig stage_cfg(const std::string& name) const { return cfg.stage_config(name); }
  corl::DefaultStageObjective objective(const std::string& name) const {
    corl::DefaultStageObjective o;
    o.config.entropy_coef = cfg.stage_settings(name).entropy_coef;
    return o;
  }

  WorldReward reward(WorldRewardWeights w, int image_task, int qa_task) {
    WorldReward r;
    r.ctx = &ctx;
    r.weights = w;
    r.image_task = image_task;
    r.qa_task = qa_task;
    r.caption_max_tokens = cfg.caption_max_tokens;
    r.log = &log;
    return r;
  }

  /// Runs one stage as a one-stage corl::Pipeline from `start`, logging every step.
  template <class StageT>
  UlmPolicy run_stage(StageT stage, const UlmPolicy& start, const std::string& run, std::uint64_t seed) {
    const std::string name = stage.config.name;
    StageRecord rec;
    rec.name = name;
    rec.run = run;
    rec.steps = static_cast<int>(stage.config.steps);
    const auto t0 = Clock::now();
    corl::Pipeline pipeline{std::move(stage)};
    corl::PipelineOptions opt;
    opt.seed = seed;
    opt.checkpoint_dir = (std::filesystem::path(cfg.out_dir) / "checkpoints" / run).string();
    auto make_opt = [](const corl::StageConfig&, corl::index_t) {
      return corl::StageAdamW<float>(corl::AdamWConfig{1e-4, 0.9, 0.99, 1e-8, 0.0});
    };
    log.reset();
    UlmPolicy out = pipeline.run(start, opt, make_opt, [&](const corl::StepMetrics& m) {
      StepRecord sr;
      sr.metrics = m;
      for (std::size_t k = 0; k < RewardLog::kNames.size(); ++k) sr.parts.push_back(log.mean(k));
      log.reset();
      Json j = Json::object();
      j.set("run", run);
      j.set("stage", m.stage_name);
      j.set("step", static_cast<std::int64_t>(m.step));
      j.set("reward_mean", m.reward_mean);
      j.set("reward_std", m.reward_std);
      j.set("reward_min", m.reward_min);
      j.set("reward_max", m.reward_max);
      Json parts = Json::object();
      for (std::size_t k = 0; k < RewardLog::kNames.size(); ++k) parts.set(RewardLog::kNames[k], sr.parts[k]);
      j.set("reward_parts", parts);
      j.set("zero_std_fraction", m.zero_std_fraction);
      j.set("loss", m.loss);
      j.set("kl", m.kl);
      j.set("ratio_mean", m.ratio_mean);
      j.set("max_abs_logp_diff", m.max_abs_logp_diff);
      j.set("grad_norm", m.grad_norm);
      j.set("lr", m.learning_rate);
      if (cfg.stage_settings(m.stage_name).entropy_coef != 0.0) j.set("entropy", m.entropy);
      j.set("seconds", m.wall_seconds);
      metrics << dump_json(j) << "\n" << std::flush;
      rec.steps_log.push_back(sr);
      progress.step(run + "/" + name, static_cast<int>(m.step) + 1, rec.steps, m.reward_mean);
    });
    rec.wall_seconds = seconds_since(t0);
    if (!rec.steps_log.empty()) {
      std::ostringstream os;
      os << run << "/" << name << ": " << rec.steps << " steps in " << format_duration(rec.wall_seconds)
         << ", mean reward " << std::fixed << std::setprecision(3) << rec.steps_log.front().metrics.reward_mean
         << " -> " << rec.steps_log.back().metrics.reward_mean;
      progress.message(os.str());
    }
    result.stages.push_back(std::move(rec));
    return out;
  }

  void evaluate_named(const std::string& name, const Model<float>& model) {
    EvalOptions eo;
    eo.rows = cfg.eval_rows;
    eo.seed = cfg.eval_seed;
    eo.cfg_weight = cfg.cfg_weight;
    const auto t0 = Clock::now();
    EvalRecord rec{name, evaluate(model, eo), 0.0, {}};
    EvalOptions in_dist = eo;
    in_dist.split = Split::train;
    in_dist.qa = false;
    rec.train_prompts = evaluate(model, in_dist).geneval;
    rec.wall_seconds = seconds_since(t0);
    std::ostringstream os;
    os << "eval " << name << ": geneval overall " << std::fixed << std::setprecision(3) << rec.result.geneval.overall()
       << " (train prompts " << rec.train_prompts.overall() << ")  qa mc " << rec.result.mc() << " oe "
       << rec.result.oe() << " all " << rec.qa_accuracy() << "  (" << format_duration(rec.wall_seconds) << ")";
    progress.message(os.str());
    result.evals.push_back(std::move(rec));
  }

  /// unified.ckpt: the policy parameters of a checkpoint the unified stage wrote (same model shape, float).
  void load_unified_checkpoint(UlmPolicy& policy) {
    const auto ckpt = corl::read_checkpoint<float>(cfg.unified_ckpt);
    corl::require(ckpt.stage_name == "unified", "ulm_r1 train: unified.ckpt = '", cfg.unified_ckpt,
                  "' is a checkpoint of stage '", ckpt.stage_name, "', expected one of stage 'unified'");
    corl::load_policy_parameters(policy, ckpt.parameters, "ulm_r1 train: unified.ckpt = '" + cfg.unified_ckpt + "'");
    progress.message("loaded the unified policy from " + cfg.unified_ckpt + " (" + std::to_string(ckpt.step) +
                     " unified steps); the unified stage is not run");
  }

  struct CorlPolicies {
    UlmPolicy unified, corl;
  };

  /// Unified stage (optional) then the three refined stages and the merges. `run` names the run in the logs.
  CorlPolicies run_corl(const UlmPolicy& start, WorldRewardWeights w, const std::string& run, bool with_unified,
                        bool evaluate_parts) {
    const T2iTask t2i{&ctx};
    const QaTask qa{&ctx};
    UlmPolicy unified = start.snapshot();
    if (with_unified && run == "corl" && !cfg.unified_ckpt.empty()) {
      load_unified_checkpoint(unified);
      if (evaluate_parts) evaluate_named("unified", unified.model());
    } else if (with_unified) {
      unified = run_stage(corl::make_unified_stage(stage_cfg("unified"), rows, reward(w, 0, 1), t2i, qa, objective("unified")), start, run,
                          cfg.seed);
      if (evaluate_parts) evaluate_named(run == "corl" ? "unified" : run + "_unified", unified.model());
    }
    WorldRewardWeights t2i_w = w;
    t2i_w.acc = t2i_w.format = 0;
    WorldRewardWeights qa_w{0, 0, 1.0, 1.0};
    const UlmPolicy r_t2i = run_stage(corl::make_refined_stage(stage_cfg("refined_t2i"), rows, reward(t2i_w, 0, -1), t2i,
                                                               objective("refined_t2i")),
                                      unified, run, cfg.seed + 1000003);
    const UlmPolicy r_mc = run_stage(corl::make_refined_stage(stage_cfg("refined_mc"), mc_rows, reward(qa_w, -1, 0), qa,
                                                              objective("refined_mc")),
                                     unified, run, cfg.seed + 2 * 1000003);
    const UlmPolicy r_oe = run_stage(corl::make_refined_stage(stage_cfg("refined_oe"), oe_rows, reward(qa_w, -1, 0), qa,
                                                              objective("refined_oe")),
                                     unified, run, cfg.seed + 3 * 1000003);
    const UlmPolicy qa_merged = corl::merge_policies_linear(r_mc, r_oe, cfg.qa_merge_alpha);
    UlmPolicy final_policy = unified.snapshot();
    corl::merge_task_arithmetic<float>(unified.parameters(), {r_t2i.parameters(), qa_merged.parameters()}, {1.0, 1.0},
                                       final_policy.parameters());
    if (evaluate_parts) {
      evaluate_named(run == "corl" ? "refined_t2i" : run + "_refined_t2i", r_t2i.model());
      evaluate_named(run == "corl" ? "qa_merged" : run + "_qa_merged", qa_merged.model());
    }
    return {std::move(unified), std::move(final_policy)};
  }
};

/// One run of the reward ablation: the T2I reward with only R_cycle, only R_TIM, or both. A part the main run
/// switches off gets weight 1 here, so the ablation always compares the three, whatever the default weights are.
struct RewardAblationRun {
  std::string name;  ///< "reward_cycle_only", "reward_tim_only", "reward_both"
  WorldRewardWeights weights;
  bool same_as_main;  ///< the main CoRL run already is this run: its evaluation is reused, nothing is trained
};

std::vector<RewardAblationRun> reward_ablation_runs(const WorldRewardWeights& main) {
  const double cycle = main.cycle > 0 ? main.cycle : 1.0;
  const double tim = main.tim > 0 ? main.tim : 1.0;
  std::vector<RewardAblationRun> runs;
  for (const auto& [name, c, t] : {std::tuple{"reward_cycle_only", cycle, 0.0}, std::tuple{"reward_tim_only", 0.0, tim},
                                   std::tuple{"reward_both", cycle, tim}}) {
    WorldRewardWeights w = main;
    w.cycle = c;
    w.tim = t;
    runs.push_back({name, w, w.cycle == main.cycle && w.tim == main.tim});
  }
  return runs;
}

WorldRewardWeights main_reward_weights(const TrainConfig& c) {
  return {c.reward_cycle, c.reward_tim, c.reward_lambda, c.reward_lambda};
}

int total_rl_steps(const TrainConfig& c) {
  const int refined = c.refined_t2i.steps + c.refined_mc.steps + c.refined_oe.steps;
  int total = (c.unified_ckpt.empty() ? c.unified.steps : 0) + refined;
  if (c.ablation) {
    total += refined;  // refined only
    for (const auto& run : reward_ablation_runs(main_reward_weights(c)))
      if (!run.same_as_main) total += c.unified.steps + refined;
  }
  return total;
}

}  // namespace

TrainResult run_training(const TrainConfig& config, std::ostream* progress) {
  config.validate();
  const auto t_start = Clock::now();
  std::filesystem::create_directories(config.out_dir);
  Runner r(config, progress, total_rl_steps(config));
  const std::string metrics_path = (std::filesystem::path(config.out_dir) / "metrics.jsonl").string();
  r.metrics.open(metrics_path, std::ios::trunc);
  corl::require(static_cast<bool>(r.metrics), "ulm_r1 train: cannot write '", metrics_path, "'");

  // data: the RL rows come from the train split (the evaluation uses the test split)
  GeneratorOptions go;
  go.seed = config.seed + 17;
  go.rows = config.train_rows;
  go.split = Split::train;
  r.rows = generate_rows(r.ctx.world, go);
  for (const auto& row : r.rows) (row.question_type == QuestionType::multiple_choice ? r.mc_rows : r.oe_rows).push_back(row);
  corl::require(!r.mc_rows.empty() && !r.oe_rows.empty(), "ulm_r1 train: data.train_rows = ", config.train_rows,
                " gave no multiple-choice or no open-ended rows; use more rows");

  // 1. SFT
  const auto t_sft = Clock::now();
  Model<float> sft_model = [&] {
    if (!config.sft_ckpt.empty()) {
      r.progress.message("loading SFT checkpoint " + config.sft_ckpt);
      Model<float> m = load_checkpoint<float>(config.sft_ckpt);
      corl::require(m.config().factored_codes() == (config.model_factored_codes == 1), "ulm_r1 train: sft.ckpt = '",
                    config.sft_ckpt, "' has ", m.config().factored_codes() ? "factored" : "plain",
                    " image-code tables but model.factored_codes = ", config.model_factored_codes);
      return m;
    }
    SftOptions so;
    so.steps = config.sft_steps;
    so.batch = config.sft_batch;
    so.seed = config.seed;
    so.lr = config.sft_lr;
    so.factored_codes = config.model_factored_codes == 1;
    so.threads = config.threads;
    so.progress_every = 50;
    SftResult res = run_sft(so, progress);
    r.result.sft_steps = config.sft_steps;
    save_checkpoint(res.model, (std::filesystem::path(config.out_dir) / "sft.safetensors").string(),
                    {{"sft_steps", std::to_string(config.sft_steps)}, {"seed", std::to_string(config.seed)}});
    return std::move(res.model);
  }();
  r.result.sft_seconds = seconds_since(t_sft);
  r.evaluate_named("sft", sft_model);

  PolicySampling ps;
  ps.text_temperature = config.text_temperature;
  ps.image_temperature = config.image_temperature;
  ps.cfg_weight = config.cfg_weight;
  ps.max_new_tokens = config.max_answer_tokens;
  // RL batches run on config.threads threads, cut into a fixed number of shards: the results do not depend on threads
  const UlmPolicy sft_policy(sft_model, ps, PolicyThreads{config.threads, PolicyThreads{}.shards});

  // 2-4. CoRL
  const WorldRewardWeights w = main_reward_weights(config);
  auto corl_run = r.run_corl(sft_policy, w, "corl", true, true);
  r.evaluate_named("corl", corl_run.corl.model());
  save_checkpoint(corl_run.corl.model(), (std::filesystem::path(config.out_dir) / "corl.safetensors").string(),
                  {{"seed", std::to_string(config.seed)}});

  // before / after sheet
  write_before_after_sheet((std::filesystem::path(config.out_dir) / "samples_before_after.png").string(), sft_model,
                           corl_run.corl.model(), r.ctx.world, config);

  if (config.ablation) {
    auto refined_only = r.run_corl(sft_policy, w, "refined_only", false, false);
    r.evaluate_named("refined_only", refined_only.corl.model());
    for (const auto& run : reward_ablation_runs(w)) {
      if (run.same_as_main) {
        const auto corl_eval = std::find_if(r.result.evals.begin(), r.result.evals.end(),
                                            [](const EvalRecord& e) { return e.name == "corl"; });
        EvalRecord same = *corl_eval;  // evaluate_named("corl") ran above
        same.name = run.name;
        r.result.evals.push_back(std::move(same));
        continue;
      }
      auto ablated = r.run_corl(sft_policy, run.weights, run.name, true, false);
      r.evaluate_named(run.name, ablated.corl.model());
    }
  }

  r.result.total_seconds = seconds_since(t_start);
  const std::filesystem::path out(config.out_dir);
  write_report_json((out / "report.json").string(), config, r.result);
  write_report_markdown((out / "report.md").string(), config, r.result);
  plot_reward_curves((out / "reward_curves.png").string(), r.result);
  plot_eval_bars((out / "eval_bars.png").string(), r.result);
  std::ostringstream done;
  done << "done in " << format_duration(r.result.total_seconds) << ": report in " << (out / "report.md").string();
  r.progress.message(done.str());
  return r.result;
}

int cmd_train(const std::vector<std::string>& args) {
  TrainConfig cfg;
  // the config file first, then the overrides in order
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config") {
      corl::require(i + 1 < args.size(), "ulm_r1 train: --config needs a file name");
      read_train_config_file(cfg, args[i + 1]);
    }
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    corl::require(a.rfind("--", 0) == 0, "ulm_r1 train: unexpected argument '", a, "' (options start with --)");
    if (a == "--ablation") {
      cfg.ablation = true;
      continue;
    }
    corl::require(i + 1 < args.size(), "ulm_r1 train: ", a, " needs a value");
    const std::string value = args[++i];
    if (a == "--config") continue;
    std::string key = a.substr(2);
    if (key == "sft-ckpt") key = "sft.ckpt";
    if (key == "out") key = "out_dir";
    set_train_config_value(cfg, key, value, a);
  }
  cfg.validate();
  const TrainResult res = run_training(cfg, &std::cerr);
  const auto& sft = res.eval("sft");
  const auto& corl = res.eval("corl");
  const Improvement d = improvement(sft, corl);
  std::cout << std::fixed << std::setprecision(3) << "world-GenEval overall: SFT " << sft.result.geneval.overall()
            << " -> CoRL " << corl.result.geneval.overall() << " (" << std::showpos << d.geneval << std::noshowpos
            << " +- " << d.geneval_se << ")\nQA accuracy: SFT " << sft.qa_accuracy() << " -> CoRL "
            << corl.qa_accuracy() << " (" << std::showpos << d.qa << std::noshowpos << " +- " << d.qa_se << ")\n";
  return 0;
}

}  // namespace ulm

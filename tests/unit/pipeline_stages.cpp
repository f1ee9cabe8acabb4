#include <doctest/doctest.h>

#include <corl/corl.hpp>
#include <corl/loss/ppo_clip.hpp>
#include <corl/pipeline/adamw_optimizer.hpp>

#include <unistd.h>

#include <filesystem>
#include <limits>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "unit/pipeline_toy_policy.hpp"

static_assert(corl::policy<toy::Policy>);
static_assert(!corl::entropy_policy<toy::Policy>);
static_assert(corl::entropy_policy<toy::EntropyPolicy>);
static_assert(corl::stage_optimizer<toy::MomentumSgd, double>);

namespace {

// Reward on a (task-0 completion, task-1 completion) pair: the fraction of tokens equal to the row's target, summed.
struct PairReward {
  template <class S>
  double operator()(const S& s) const {
    double r = 0;
    for (std::size_t k = 0; k < s.completions.size(); ++k)
      for (int v : s.completion(k)) r += (v == s.row.target ? 1.0 : 0.0) / toy::kLen;
    return r;
  }
};

struct NanReward {  // sample 0 of every group "could not be computed"
  template <class S>
  double operator()(const S& s) const {
    return s.sample_index == 0 ? std::nan("") : PairReward{}(s);
  }
};
struct InfReward {
  template <class S>
  double operator()(const S&) const {
    return std::numeric_limits<double>::infinity();
  }
};

// PairReward with a batch form (corl::batch_reward_function) that counts its calls and can be made to misbehave.
struct BatchPairReward {
  int* batch_calls = nullptr;
  int drop = 0;         ///< values left off the end of the batch
  bool inf_at_3 = false;
  template <class S>
  double operator()(const S& s) const {
    return PairReward{}(s);
  }
  template <class S>
  std::vector<double> score_batch(const toy::Policy&, std::span<const S> samples) const {
    if (batch_calls) ++*batch_calls;
    std::vector<double> out;
    for (std::size_t i = 0; i + static_cast<std::size_t>(drop) < samples.size(); ++i)
      out.push_back(inf_at_3 && i == 3 ? std::numeric_limits<double>::infinity() : PairReward{}(samples[i]));
    return out;
  }
};

std::vector<toy::Row> make_rows() { return {{0}, {0}, {0}, {0}, {0}, {0}}; }

auto t2i = [](const toy::Row& r) { return toy::Prompt{0, r.target}; };
auto mm2t = [](const toy::Row& r) { return toy::Prompt{1, r.target}; };

corl::StageConfig unified_cfg(corl::index_t steps) {
  auto c = corl::unified_stage_defaults();
  c.rows_per_step = 4;
  c.steps = steps;
  c.learning_rate = 0.5;
  c.max_grad_norm = 0;
  c.checkpoint_every = 2;
  return c;
}
corl::StageConfig refined_cfg(corl::index_t steps) {
  auto c = corl::refined_stage_defaults();
  c.group_size = 6;
  c.rows_per_step = 3;
  c.steps = steps;
  c.learning_rate = 0.3;
  c.checkpoint_every = 2;
  return c;
}

auto make_sgd = [](const corl::StageConfig&, corl::index_t) { return toy::MomentumSgd{}; };

// The stages of make_pipeline, with scheduled learning rates (a resumed run must resume the schedule at its step).
corl::StageConfig pipeline_unified_cfg() {
  auto c = unified_cfg(6);
  c.lr_schedule = corl::LrSchedule::cosine;
  c.warmup_steps = 1;
  return c;
}
corl::StageConfig pipeline_refined_cfg() {
  auto c = refined_cfg(4);
  c.lr_schedule = corl::LrSchedule::linear;
  return c;
}

auto make_pipeline() {
  return corl::Pipeline{corl::make_unified_stage(pipeline_unified_cfg(), make_rows(), PairReward{}, t2i, mm2t),
                        corl::make_refined_stage(pipeline_refined_cfg(), make_rows(), PairReward{}, mm2t)};
}

std::filesystem::path fresh_dir(const char* name) {
  auto p = std::filesystem::temp_directory_path() / ("corl_pipeline_" + std::string(name) + "_" +
                                                     std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  return p;
}

}  // namespace

TEST_CASE("unified stage: mean reward rises and the pair reward drives both tasks") {
  auto pipeline = corl::Pipeline{corl::make_unified_stage(unified_cfg(15), make_rows(), PairReward{}, t2i, mm2t)};
  std::vector<corl::StepMetrics> log;
  const toy::Policy start;
  const toy::Policy trained = pipeline.run(start, corl::PipelineOptions{7, "", -1, 0}, make_sgd,
                                           [&](const corl::StepMetrics& m) { log.push_back(m); });
  REQUIRE(log.size() == 15);
  // uniform start: each token matches the target with p = 1/4, so E[R] = 2 * 1/4 = 0.5
  CHECK(log.front().reward_mean == doctest::Approx(0.5).epsilon(0.25));
  CHECK(log.back().reward_mean > log.front().reward_mean + 0.5);
  for (int task = 0; task < 2; ++task)
    for (int t = 0; t < toy::kLen; ++t) CHECK(trained.prob(task, t, 0) > 0.5);
  // on-policy: the trainer's log-probs equal the sampler's, ratio 1; beta = 0 gives no KL
  for (const auto& m : log) {
    CHECK(m.max_abs_logp_diff < 1e-12);
    CHECK(m.ratio_mean == doctest::Approx(1.0));
    CHECK(m.kl == 0.0);
    CHECK(m.task_tokens == std::vector<corl::index_t>{4 * 8 * toy::kLen, 4 * 8 * toy::kLen});
  }
}

TEST_CASE("learning-rate schedules: hand-computed rates, and a stage steps with them") {
  corl::StageConfig c;
  c.learning_rate = 0.1;
  c.steps = 10;
  c.warmup_steps = 0;
  using corl::stage_learning_rate;
  CHECK(stage_learning_rate(c, 0) == 0.1);  // constant
  CHECK(stage_learning_rate(c, 9) == 0.1);
  c.lr_schedule = corl::LrSchedule::linear;  // 0.1 (10 - s) / 10
  CHECK(stage_learning_rate(c, 0) == doctest::Approx(0.1));
  CHECK(stage_learning_rate(c, 4) == doctest::Approx(0.06));
  CHECK(stage_learning_rate(c, 9) == doctest::Approx(0.01));
  c.warmup_steps = 2;  // warm-up 0, 0.05; then 0.1 (10 - s) / 8
  CHECK(stage_learning_rate(c, 0) == 0.0);
  CHECK(stage_learning_rate(c, 1) == doctest::Approx(0.05));
  CHECK(stage_learning_rate(c, 2) == doctest::Approx(0.1));
  CHECK(stage_learning_rate(c, 6) == doctest::Approx(0.05));
  c.lr_schedule = corl::LrSchedule::cosine;  // 0.1 (1 + cos(pi (s - 2) / 8)) / 2
  CHECK(stage_learning_rate(c, 2) == doctest::Approx(0.1));
  CHECK(stage_learning_rate(c, 4) == doctest::Approx(0.05 * (1 + std::sqrt(0.5))));
  CHECK(stage_learning_rate(c, 6) == doctest::Approx(0.05));
  CHECK(stage_learning_rate(c, 9) == doctest::Approx(0.05 * (1 + std::cos(3.14159265358979 * 7 / 8))));
  c.warmup_steps = 11;
  CHECK_THROWS_WITH_AS(corl::validate_stage_config(c, 1), doctest::Contains("warmup_steps = 11, expected 0 <= "),
                       corl::Error);

  // in a stage: the metrics report the rate each step used
  auto cfg = unified_cfg(6);
  cfg.lr_schedule = corl::LrSchedule::linear;
  cfg.warmup_steps = 1;
  auto pipeline = corl::Pipeline{corl::make_unified_stage(cfg, make_rows(), PairReward{}, t2i, mm2t)};
  std::vector<corl::StepMetrics> log;
  pipeline.run(toy::Policy{}, corl::PipelineOptions{7, "", -1, 0}, make_sgd,
               [&](const corl::StepMetrics& m) { log.push_back(m); });
  REQUIRE(log.size() == 6);
  for (std::size_t s = 0; s < log.size(); ++s)
    CHECK(log[s].learning_rate == corl::stage_learning_rate(cfg, static_cast<corl::index_t>(s)));
  CHECK(log[0].learning_rate == 0.0);
  CHECK(log[1].learning_rate == doctest::Approx(0.5));
  CHECK(log[5].learning_rate == doctest::Approx(0.1));
  // and the optimizer gets that rate: a one-step stage that is all warm-up (lr 0) leaves the policy as it was
  auto warm = unified_cfg(1);
  warm.warmup_steps = 1;
  auto still = corl::Pipeline{corl::make_unified_stage(warm, make_rows(), PairReward{}, t2i, mm2t)};
  const toy::Policy start;
  const toy::Policy after = still.run(start, corl::PipelineOptions{7, "", -1, 0}, make_sgd);
  CHECK(std::equal(start.parameters().begin(), start.parameters().end(), after.parameters().begin()));
  auto moving = corl::Pipeline{corl::make_unified_stage(unified_cfg(1), make_rows(), PairReward{}, t2i, mm2t)};
  const toy::Policy moved = moving.run(start, corl::PipelineOptions{7, "", -1, 0}, make_sgd);
  CHECK(!std::equal(start.parameters().begin(), start.parameters().end(), moved.parameters().begin()));
}

TEST_CASE("pipeline resume at any stage and step reproduces the uninterrupted run exactly") {
  const auto dir_a = fresh_dir("a");
  auto pipeline = make_pipeline();
  std::vector<corl::StepMetrics> full;
  const toy::Policy start;
  const toy::Policy final_full = pipeline.run(start, corl::PipelineOptions{11, dir_a.string(), -1, 0}, make_sgd,
                                              [&](const corl::StepMetrics& m) { full.push_back(m); });
  REQUIRE(full.size() == 10);
  CHECK(std::filesystem::exists(corl::checkpoint_path(dir_a.string(), 0, "unified", 6)));
  CHECK(std::filesystem::exists(corl::checkpoint_path(dir_a.string(), 1, "refined", 4)));
  // stage 1 is refined with beta > 0: a KL term appears once the policy moves away from its reference
  CHECK(full[6].kl == doctest::Approx(0.0).epsilon(1e-12));  // first refined step: policy == reference
  CHECK(full[9].kl > 0.0);

  struct Point {
    corl::index_t stage, step;
    std::size_t first_metric;  // index into `full` of the first step the resumed run produces
  };
  for (const Point pt : {Point{0, 2, 2}, Point{0, 4, 4}, Point{1, 0, 6}, Point{1, 2, 8}}) {
    CAPTURE(pt.stage);
    CAPTURE(pt.step);
    std::vector<corl::StepMetrics> resumed;
    auto again = make_pipeline();
    const toy::Policy final_resumed =
        again.run(start, corl::PipelineOptions{11, dir_a.string(), pt.stage, pt.step}, make_sgd,
                  [&](const corl::StepMetrics& m) { resumed.push_back(m); });
    REQUIRE(resumed.size() == full.size() - pt.first_metric);
    for (std::size_t i = 0; i < resumed.size(); ++i) CHECK(resumed[i].same_record(full[pt.first_metric + i]));
    const auto a = final_full.parameters(), b = final_resumed.parameters();
    CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));  // bit-identical
  }
  // a different seed gives a different run (the test above is not vacuous)
  std::vector<corl::StepMetrics> other;
  auto p3 = make_pipeline();
  p3.run(start, corl::PipelineOptions{12, "", -1, 0}, make_sgd, [&](const corl::StepMetrics& m) { other.push_back(m); });
  CHECK_FALSE(other[0].same_record(full[0]));
  std::filesystem::remove_all(dir_a);
}

TEST_CASE("stage hand-off: stage 2 starts from the policy stage 1 ended with") {
  std::vector<std::vector<double>> ends;
  auto pipeline = make_pipeline();
  std::vector<corl::StepMetrics> log;
  const toy::Policy start;
  const toy::Policy final_policy = pipeline.run(
      start, corl::PipelineOptions{3, "", -1, 0}, make_sgd, [&](const corl::StepMetrics& m) { log.push_back(m); },
      [&](corl::index_t, const std::string&, const toy::Policy& p) {
        ends.emplace_back(p.parameters().begin(), p.parameters().end());
      });
  REQUIRE(ends.size() == 2);
  // running the refined stage alone from the unified stage's end gives the same steps as inside the pipeline
  toy::Policy mid;
  std::copy(ends[0].begin(), ends[0].end(), mid.parameters().begin());
  std::vector<corl::StepMetrics> log2;
  // the refined stage is stage 1 in the chain: its rows/draws are keyed by stage index 1, so use a 2-stage chain whose
  // first stage has 0 steps
  auto chain = corl::Pipeline{corl::make_unified_stage(unified_cfg(0), make_rows(), PairReward{}, t2i, mm2t),
                              corl::make_refined_stage(pipeline_refined_cfg(), make_rows(), PairReward{}, mm2t)};
  const toy::Policy alone = chain.run(mid, corl::PipelineOptions{3, "", -1, 0}, make_sgd,
                                      [&](const corl::StepMetrics& m) { log2.push_back(m); });
  REQUIRE(log2.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) CHECK(log2[i].same_record(log[6 + i]));
  CHECK(std::equal(alone.parameters().begin(), alone.parameters().end(), final_policy.parameters().begin()));
  // and the refined stage moved only task 1's table (its only task); task 0 is untouched by stage 2
  for (std::size_t i = 0; i < static_cast<std::size_t>(toy::kLen * toy::kVocab); ++i)
    CHECK(ends[1][i] == ends[0][i]);
}

TEST_CASE("schedule: rows cover the data once per epoch, sample keys are distinct") {
  const auto a = corl::step_rows(5, 5, 9, 0, 0);
  CHECK(std::set<corl::index_t>(a.begin(), a.end()).size() == 5);
  const auto b = corl::step_rows(5, 2, 9, 0, 1);  // positions 2, 3 of epoch 0
  CHECK(b[0] == a[2]);
  CHECK(b[1] == a[3]);
  CHECK(corl::step_rows(5, 3, 9, 0, 4) == corl::step_rows(5, 3, 9, 0, 4));
  std::set<std::uint64_t> offsets;
  for (int stage = 0; stage < 3; ++stage)
    for (int task = 0; task < 2; ++task)
      for (int step = 0; step < 50; ++step) offsets.insert(corl::sample_key(1, stage, step, task).offset);
  CHECK(offsets.size() == 300);
  CHECK_THROWS_WITH_AS(corl::step_rows(0, 2, 1, 0, 0), doctest::Contains("num_rows = 0"), corl::Error);
  CHECK_THROWS_WITH_AS(corl::sample_key(1, 0, 0, 300), doctest::Contains("task = 300"), corl::Error);
}

TEST_CASE("bad stage configs and resume points fail with clear messages") {
  auto c = corl::unified_stage_defaults();
  c.group_size = 1;
  CHECK_THROWS_WITH_AS(corl::make_unified_stage(c, make_rows(), PairReward{}, t2i, mm2t),
                       doctest::Contains("'unified': group_size = 1, expected >= 2"), corl::Error);
  c = corl::unified_stage_defaults();
  c.task_weights = {1.0};
  CHECK_THROWS_WITH_AS(corl::make_unified_stage(c, make_rows(), PairReward{}, t2i, mm2t),
                       doctest::Contains("task_weights has 1 entries, expected 2"), corl::Error);
  auto r = corl::refined_stage_defaults();
  r.beta = -0.1;
  CHECK_THROWS_WITH_AS(corl::make_refined_stage(r, make_rows(), PairReward{}, mm2t),
                       doctest::Contains("'refined': beta = -0.1"), corl::Error);
  r = corl::refined_stage_defaults();
  r.learning_rate = std::nan("");
  CHECK_THROWS_WITH_AS(corl::make_refined_stage(r, make_rows(), PairReward{}, mm2t),
                       doctest::Contains("learning_rate = nan"), corl::Error);
  r = corl::refined_stage_defaults();
  r.rows_per_step = 0;
  CHECK_THROWS_WITH_AS(corl::make_refined_stage(r, make_rows(), PairReward{}, mm2t),
                       doctest::Contains("rows_per_step = 0"), corl::Error);

  auto pipeline = make_pipeline();
  const toy::Policy start;
  const auto dir = fresh_dir("missing");
  CHECK_THROWS_WITH_AS(pipeline.run(start, corl::PipelineOptions{1, dir.string(), 0, 2}, make_sgd),
                       doctest::Contains("cannot open"), corl::Error);
  CHECK_THROWS_WITH_AS(pipeline.run(start, corl::PipelineOptions{1, dir.string(), 5, 0}, make_sgd),
                       doctest::Contains("resume_stage = 5, expected < 2"), corl::Error);
  CHECK_THROWS_WITH_AS(pipeline.run(start, corl::PipelineOptions{1, "", 1, 0}, make_sgd),
                       doctest::Contains("needs a checkpoint_dir"), corl::Error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a stage config changed after construction is validated again by run_stage_step") {
  auto stage = corl::make_unified_stage(unified_cfg(2), make_rows(), PairReward{}, t2i, mm2t);
  toy::Policy policy;
  const toy::Policy before = policy;
  toy::MomentumSgd sgd;
  std::vector<double> grad(policy.parameters().size());
  const toy::Policy* no_reference = nullptr;
  // A valid config steps (the parameters move) ...
  const corl::StepMetrics ok = corl::run_stage_step(stage, 0, 0, 3, policy, no_reference, sgd, grad);
  CHECK(std::isfinite(ok.loss));
  CHECK(policy.parameters()[0] != before.parameters()[0]);
  // ... a config mutated into an invalid one throws before anything is sampled or updated.
  stage.config.group_size = 1;
  const toy::Policy mid = policy;
  CHECK_THROWS_WITH_AS(corl::run_stage_step(stage, 0, 1, 3, policy, no_reference, sgd, grad),
                       doctest::Contains("corl::StageConfig 'unified': group_size = 1, expected >= 2"), corl::Error);
  stage.config.group_size = 8;
  stage.config.task_weights = {1.0, std::numeric_limits<double>::infinity()};
  CHECK_THROWS_WITH_AS(corl::run_stage_step(stage, 0, 1, 3, policy, no_reference, sgd, grad),
                       doctest::Contains("task_weights[1] = inf"), corl::Error);
  stage.config.task_weights = {1.0, 1.0};
  stage.config.beta = 0.02;  // valid, but needs a reference policy
  CHECK_THROWS_WITH_AS(corl::run_stage_step(stage, 0, 1, 3, policy, no_reference, sgd, grad),
                       doctest::Contains("beta = 0.02 needs a reference policy, got none"), corl::Error);
  // An objective with an entropy term and a policy without entropy: rejected, not run without it.
  stage.config.beta = 0.0;
  stage.objective.config.entropy_coef = 0.01;
  CHECK_THROWS_WITH_AS(corl::run_stage_step(stage, 0, 1, 3, policy, no_reference, sgd, grad),
                       doctest::Contains("uses entropy (entropy_coef = 0.01) but the policy type does not satisfy "
                                         "corl::entropy_policy"),
                       corl::Error);
  stage.objective.config.entropy_coef = 0.0;
  stage.objective.config.entropy_threshold = 0.5;
  CHECK_THROWS_WITH_AS(corl::run_stage_step(stage, 0, 1, 3, policy, no_reference, sgd, grad),
                       doctest::Contains("entropy_threshold set"), corl::Error);
  for (std::size_t i = 0; i < policy.parameters().size(); ++i) CHECK(policy.parameters()[i] == mid.parameters()[i]);
}

TEST_CASE("entropy bonus in a stage: its gradient is -coef x the token-mean entropy's (finite differences)") {
  // Same seed and start, so the same samples, rewards and advantages: the two gradients differ only by the bonus,
  // -coef sum_k w_k (1 / N_k) sum_{i,t} dH_it/dtheta; on the toy policy H depends on (task, position) only, so the
  // token mean of task k is (1 / kLen) sum_t H(k, t).
  toy::EntropyPolicy start;
  for (std::size_t i = 0; i < start.parameters().size(); ++i) start.parameters()[i] = 0.3 * std::sin(1.7 * double(i));
  auto cfg = unified_cfg(1);
  cfg.task_weights = {1.0, 0.5};
  const double coef = 0.25;
  auto run = [&](double c, toy::EntropyPolicy& p, corl::StepMetrics* metrics) {
    corl::DefaultStageObjective obj;
    obj.config.entropy_coef = c;
    auto stage = corl::make_unified_stage(cfg, make_rows(), PairReward{}, t2i, mm2t, obj);
    toy::MomentumSgd sgd;
    std::vector<double> grad(p.parameters().size());
    const toy::EntropyPolicy* no_reference = nullptr;
    *metrics = corl::run_stage_step(stage, 0, 0, 5, p, no_reference, sgd, grad);
    return grad;
  };
  toy::EntropyPolicy p0 = start, p1 = start;
  corl::StepMetrics m0, m1;
  const std::vector<double> g0 = run(0.0, p0, &m0), g1 = run(coef, p1, &m1);
  CHECK(m0.reward_mean == m1.reward_mean);  // same samples
  auto bonus_entropy = [&](const toy::EntropyPolicy& p) {
    double h = 0;
    for (int k = 0; k < toy::kTasks; ++k)
      for (int t = 0; t < toy::kLen; ++t) h += cfg.task_weights[static_cast<std::size_t>(k)] * p.entropy_at(k, t) / toy::kLen;
    return h;
  };
  const double step = 1e-6;
  double worst = 0;
  for (std::size_t j = 0; j < g0.size(); ++j) {
    toy::EntropyPolicy plus = start, minus = start;
    plus.parameters()[j] += step;
    minus.parameters()[j] -= step;
    const double fd = -coef * (bonus_entropy(plus) - bonus_entropy(minus)) / (2 * step);
    worst = std::max(worst, std::abs((g1[j] - g0[j]) - fd));
  }
  CHECK(worst < 1e-8);
  // the metric: token-mean entropy over both tasks' tokens, only when the objective uses entropy
  double mean_h = 0;
  for (int k = 0; k < toy::kTasks; ++k)
    for (int t = 0; t < toy::kLen; ++t) mean_h += start.entropy_at(k, t) / (toy::kTasks * toy::kLen);
  CHECK(m1.entropy == doctest::Approx(mean_h).epsilon(1e-12));
  CHECK(m0.entropy == 0.0);
}

TEST_CASE("entropy mask in a stage: a threshold above every token's entropy leaves no loss tokens") {
  toy::EntropyPolicy policy;
  corl::DefaultStageObjective obj;
  obj.config.entropy_threshold = 2.0;  // the uniform toy policy has H = log 4 = 1.386 everywhere
  auto stage = corl::make_unified_stage(unified_cfg(1), make_rows(), PairReward{}, t2i, mm2t, obj);
  toy::MomentumSgd sgd;
  std::vector<double> grad(policy.parameters().size(), 1.0);
  const toy::EntropyPolicy* no_reference = nullptr;
  const corl::StepMetrics masked = corl::run_stage_step(stage, 0, 0, 5, policy, no_reference, sgd, grad);
  CHECK(masked.task_tokens == std::vector<corl::index_t>{0, 0});
  for (double g : grad) CHECK(g == 0.0);
  stage.objective.config.entropy_threshold = 1.0;  // below log 4: every token kept
  const corl::StepMetrics kept = corl::run_stage_step(stage, 0, 0, 5, policy, no_reference, sgd, grad);
  CHECK(kept.task_tokens == std::vector<corl::index_t>{4 * 8 * toy::kLen, 4 * 8 * toy::kLen});
  CHECK(kept.entropy == doctest::Approx(std::log(4.0)));
}

TEST_CASE("entropy bonus keeps the policy spread out where the reward alone sharpens it") {
  auto entropy_after = [](double coef) {
    corl::DefaultStageObjective obj;
    obj.config.entropy_coef = coef;
    auto pipeline = corl::Pipeline{corl::make_unified_stage(unified_cfg(15), make_rows(), PairReward{}, t2i, mm2t, obj)};
    const toy::EntropyPolicy out = pipeline.run(toy::EntropyPolicy{}, corl::PipelineOptions{7, "", -1, 0}, make_sgd);
    double h = 0;
    for (int k = 0; k < toy::kTasks; ++k)
      for (int t = 0; t < toy::kLen; ++t) h += out.entropy_at(k, t);
    return h / (toy::kTasks * toy::kLen);
  };
  const double uniform = std::log(double(toy::kVocab));
  const double plain = entropy_after(0.0), with_bonus = entropy_after(2.0);
  CHECK(plain < 0.8 * uniform);       // the reward makes the target token likely
  CHECK(with_bonus > plain + 0.2);    // the bonus holds entropy up
}

TEST_CASE("non-finite rewards are rejected, NaN rewards get advantage 0") {
  auto cfg = unified_cfg(2);
  auto pipeline = corl::Pipeline{corl::make_unified_stage(cfg, make_rows(), NanReward{}, t2i, mm2t)};
  std::vector<corl::StepMetrics> log;
  pipeline.run(toy::Policy{}, corl::PipelineOptions{1, "", -1, 0}, make_sgd,
               [&](const corl::StepMetrics& m) { log.push_back(m); });
  REQUIRE(log.size() == 2);
  CHECK(std::isfinite(log[0].loss));
  CHECK(std::isfinite(log[0].reward_mean));
  auto bad = corl::Pipeline{corl::make_unified_stage(cfg, make_rows(), InfReward{}, t2i, mm2t)};
  CHECK_THROWS_WITH_AS(bad.run(toy::Policy{}, corl::PipelineOptions{1, "", -1, 0}, make_sgd),
                       doctest::Contains("expected a finite value"), corl::Error);
}

TEST_CASE("a batch reward is called once per step and gives the per-sample run exactly, and its output is checked") {
  using S2 = corl::StageSample<toy::Row, toy::Policy::completion_type, 2>;
  static_assert(corl::batch_reward_function<BatchPairReward, toy::Policy, S2>);
  static_assert(!corl::batch_reward_function<PairReward, toy::Policy, S2>);
  auto run = [&](auto reward) {
    auto pipeline = corl::Pipeline{corl::make_unified_stage(unified_cfg(4), make_rows(), reward, t2i, mm2t)};
    std::vector<corl::StepMetrics> log;
    const toy::Policy out = pipeline.run(toy::Policy{}, corl::PipelineOptions{3, "", -1, 0}, make_sgd,
                                         [&](const corl::StepMetrics& m) { log.push_back(m); });
    return std::pair{log, std::vector<double>(out.parameters().begin(), out.parameters().end())};
  };
  int calls = 0;
  const auto [batch_log, batch_params] = run(BatchPairReward{&calls});
  const auto [single_log, single_params] = run(PairReward{});
  CHECK(calls == 4);
  REQUIRE(batch_log.size() == single_log.size());
  for (std::size_t i = 0; i < batch_log.size(); ++i) CHECK(batch_log[i].same_record(single_log[i]));
  CHECK(batch_params == single_params);
  CHECK(batch_log.back().reward_mean != batch_log.front().reward_mean);  // it trained: not a comparison of constants
  auto short_batch = corl::Pipeline{corl::make_unified_stage(unified_cfg(1), make_rows(), BatchPairReward{nullptr, 1},
                                                             t2i, mm2t)};
  CHECK_THROWS_WITH_AS(short_batch.run(toy::Policy{}, corl::PipelineOptions{1, "", -1, 0}, make_sgd),
                       doctest::Contains("score_batch returned 31 values for 32 samples"), corl::Error);
  auto inf_batch = corl::Pipeline{corl::make_unified_stage(unified_cfg(1), make_rows(),
                                                           BatchPairReward{nullptr, 0, true}, t2i, mm2t)};
  CHECK_THROWS_WITH_AS(inf_batch.run(toy::Policy{}, corl::PipelineOptions{1, "", -1, 0}, make_sgd),
                       doctest::Contains("for sample 3, expected a finite value"), corl::Error);
}

TEST_CASE("a stage takes any corl::Objective: PPO clip + k3, seq-mean-token-mean") {
  auto cfg = refined_cfg(12);
  cfg.learning_rate = 0.5;
  using Obj = corl::Objective<corl::PpoClip, corl::K3, corl::SeqMeanTokenMean>;
  auto pipeline = corl::Pipeline{corl::make_refined_stage(cfg, make_rows(), PairReward{}, mm2t, Obj{})};
  std::vector<corl::StepMetrics> log;
  pipeline.run(toy::Policy{}, corl::PipelineOptions{5, "", -1, 0}, make_sgd,
               [&](const corl::StepMetrics& m) { log.push_back(m); });
  REQUIRE(log.size() == 12);
  CHECK(log.back().reward_mean > log.front().reward_mean + 0.3);
  CHECK(log.back().kl > 0.0);
}

TEST_CASE("AdamW as a stage optimizer: resume through its saved state is bit-identical") {
  static_assert(corl::stage_optimizer<corl::StageAdamW<double>, double>);
  const auto dir = fresh_dir("adamw");
  auto make_adam = [](const corl::StageConfig&, corl::index_t) {
    return corl::StageAdamW<double>(corl::AdamWConfig{0.1, 0.9, 0.999, 1e-8, 0.01});
  };
  std::vector<corl::StepMetrics> full, resumed;
  const toy::Policy start;
  auto p1 = make_pipeline();
  const toy::Policy a = p1.run(start, corl::PipelineOptions{4, dir.string(), -1, 0}, make_adam,
                               [&](const corl::StepMetrics& m) { full.push_back(m); });
  auto p2 = make_pipeline();
  const toy::Policy b = p2.run(start, corl::PipelineOptions{4, dir.string(), 0, 4}, make_adam,
                               [&](const corl::StepMetrics& m) { resumed.push_back(m); });
  REQUIRE(resumed.size() == 6);
  for (std::size_t i = 0; i < resumed.size(); ++i) CHECK(resumed[i].same_record(full[4 + i]));
  CHECK(std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin()));
  CHECK(full.back().reward_mean > full.front().reward_mean);
  corl::StageAdamW<double> fresh(corl::AdamWConfig{});
  CHECK_THROWS_WITH_AS(fresh.load_state("nonsense"), doctest::Contains("not an AdamW state"), corl::Error);
  std::filesystem::remove_all(dir);
}

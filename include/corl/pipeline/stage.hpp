// corl/pipeline/stage.hpp — one CoRL RL stage and its optimizer step, composed at compile time.
//
// A Stage holds its data rows, its tasks (one function per task mapping a row to the policy's prompt), one reward on
// the tuple of completions a row's g-th samples form, a corl::Objective (policy loss, KL estimator, aggregation) and
// its StageConfig:
//   unified stage  make_unified_stage(config, rows, reward, t2i_prompt, mm2t_prompt): two tasks
//   refined stage  make_refined_stage(config, rows, reward, prompt): one task
// One optimizer step (run_stage_step), for the B rows of the step (corl/pipeline/schedule.hpp):
//   1. for each task k: prompts_k = task_k(row_j);  rollouts_k = policy.sample(prompts_k, G, sample_key(seed, stage,
//      step, k)), prompt-major;
//   2. R_{j,g} = reward(policy, StageSample{row_j, (rollout_{0,jG+g}, ..., rollout_{K-1,jG+g})}): ONE reward per
//      (image, answer) pair in the unified stage (all B x G samples in one reward.score_batch call when the reward
//      has one: corl::batch_reward_function);
//   3. A_{j,g} = (R_{j,g} - mean_j) / (std_j + eps), unbiased std, NaN reward -> A = 0 (corl::GroupZScore);
//   4. for each task k, the same A_{j,g} on every token of completion (k, j, g): L_k = the corl::Objective
//      (corl/loss/objective.hpp) of the task's B x G completions, with config.beta = the stage's beta, logp_old = the
//      sampler's log-probs (ratio 1 up to sampler/trainer mismatch) and the task's own global normalisers (default
//      aggregation token-mean over the task's tokens of the step); L = sum_k w_k L_k; w_k dL_k/dlogp goes to
//      policy.backward.
//   5. the gradient's global norm is clipped to max_grad_norm, then optimizer.step(params, grad, lr), lr the
//      schedule's rate for the step (stage_learning_rate: constant, linear or cosine decay, optional warm-up).
// The default objective is Objective<Reinforce, K3, TokenMean> (the CoRL reference trainer is REINFORCE with a group
// baseline; K3 is TRL's beta term); with beta = 0 the reference policy is never scored.
// Any non-finite log-prob, loss or gradient throws corl::Error naming the stage, step, task, row and token.
// Entropy: an objective with entropy_coef != 0 (verl `entropy_coeff`) or an entropy_threshold needs a policy that
// satisfies corl::entropy_policy; the stage then reads policy.entropy(scored) into the batch and, for the bonus, passes
// w_k dL_k/dentropy to policy.backward with dL_k/dlogp. With any other policy such a stage is an error naming it (it
// is not run without its entropy term).
// Source: arXiv 2505.17534 Sec. 3 (CoRL), DESIGN.md section 1.
#pragma once

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "corl/advantage/group_zscore.hpp"
#include "corl/concepts/policy.hpp"
#include "corl/core/error.hpp"
#include "corl/core/batch.hpp"
#include "corl/loss/aggregate.hpp"
#include "corl/loss/kl.hpp"
#include "corl/loss/objective.hpp"
#include "corl/loss/reinforce.hpp"
#include "corl/pipeline/optimizer.hpp"
#include "corl/pipeline/schedule.hpp"
#include "corl/pipeline/stage_config.hpp"
#include "corl/reward/evaluate.hpp"

namespace corl {

/// What a stage's reward sees for sample g of row j: the data row and the g-th completion of every task.
template <class Row, class Completion, std::size_t NumTasks>
struct StageSample {
  const Row& row;
  std::array<const Completion*, NumTasks> completions;
  index_t row_index = 0;     ///< index of the row in the stage's data
  index_t sample_index = 0;  ///< g in [0, G)
  index_t stage = 0;
  index_t step = 0;

  /// The completion of task k (0 = first task; in the unified stage 0 = text-to-image, 1 = understanding).
  const Completion& completion(std::size_t k = 0) const { return *completions[k]; }
};

/// Per-step metrics (reward statistics over all B x G samples; loss as minimised).
struct StepMetrics {
  index_t stage = 0;
  std::string stage_name;
  index_t step = 0;               ///< 0-based step within the stage
  double reward_mean = 0, reward_std = 0, reward_min = 0, reward_max = 0;
  double zero_std_fraction = 0;   ///< groups whose rewards all agree (no learning signal)
  double loss = 0;                ///< sum_k w_k (policy loss_k + beta kl_k)
  double kl = 0;                  ///< token-mean KL estimate (0 when beta = 0)
  double ratio_mean = 0;          ///< token-mean exp(logp - logp_sampler): ~1 when sampler and trainer agree
  double max_abs_logp_diff = 0;   ///< max |logp - logp_sampler|: sampler/trainer parity
  double grad_norm = 0;           ///< before clipping
  double entropy = 0;             ///< token-mean policy entropy (0 unless the objective uses entropy)
  double learning_rate = 0;       ///< the rate the step's update used (the stage's schedule)
  double wall_seconds = 0;        ///< not part of the deterministic record
  std::vector<double> task_loss;  ///< L_k per task
  std::vector<index_t> task_tokens;

  /// Equality of everything except the wall time (what resume must reproduce exactly).
  bool same_record(const StepMetrics& o) const {
    return stage == o.stage && stage_name == o.stage_name && step == o.step && reward_mean == o.reward_mean &&
           reward_std == o.reward_std && reward_min == o.reward_min && reward_max == o.reward_max &&
           zero_std_fraction == o.zero_std_fraction && loss == o.loss && kl == o.kl && ratio_mean == o.ratio_mean &&
           max_abs_logp_diff == o.max_abs_logp_diff && grad_norm == o.grad_norm && entropy == o.entropy &&
           learning_rate == o.learning_rate &&
           task_loss == o.task_loss &&
           task_tokens == o.task_tokens;
  }
};

/// The objective a stage uses unless told otherwise: REINFORCE + k3 KL (used only when beta > 0), token-mean.
using DefaultStageObjective = Objective<Reinforce, K3, TokenMean>;

template <class Row, class Reward, class Obj, class... Tasks>
struct Stage {
  static constexpr std::size_t num_tasks = sizeof...(Tasks);
  static_assert(num_tasks >= 1, "corl::Stage needs at least one task");
  using row_type = Row;

  StageConfig config;
  std::vector<Row> rows;
  Reward reward;
  std::tuple<Tasks...> tasks;
  Obj objective{};  ///< its config.beta is replaced by config.beta at every step
};

/// The unified stage: two tasks (t2i, mm2t) per row, one reward per pair, loss w_0 L_t2i + w_1 L_mm2t.
template <class Row, class Reward, class T2i, class Mm2t, class Obj = DefaultStageObjective>
Stage<Row, Reward, Obj, T2i, Mm2t> make_unified_stage(StageConfig config, std::vector<Row> rows, Reward reward,
                                                       T2i t2i_prompt, Mm2t mm2t_prompt, Obj objective = {}) {
  validate_stage_config(config, 2);
  return {std::move(config), std::move(rows), std::move(reward), {std::move(t2i_prompt), std::move(mm2t_prompt)},
          std::move(objective)};
}

/// A refined stage: one task.
template <class Row, class Reward, class Task, class Obj = DefaultStageObjective>
Stage<Row, Reward, Obj, Task> make_refined_stage(StageConfig config, std::vector<Row> rows, Reward reward, Task prompt,
                                                 Obj objective = {}) {
  validate_stage_config(config, 1);
  return {std::move(config), std::move(rows), std::move(reward), {std::move(prompt)}, std::move(objective)};
}

namespace detail {
template <class Real>
double global_norm(std::span<const Real> g) {
  double s = 0;
  for (const Real x : g) s += static_cast<double>(x) * static_cast<double>(x);
  return std::sqrt(s);
}
}  // namespace detail

/// One optimizer step of `stage` (see the header comment). `reference` may be null when config.beta == 0.
/// `grad` is scratch of parameters().size() entries (overwritten).
template <policy P, class Row, class Reward, class Obj, class... Tasks, stage_optimizer<typename P::real_type> Opt>
StepMetrics run_stage_step(const Stage<Row, Reward, Obj, Tasks...>& stage, index_t stage_index, index_t step,
                           std::uint64_t seed, P& policy, const P* reference, Opt& optimizer,
                           std::vector<typename P::real_type>& grad) {
  using Real = typename P::real_type;
  using Completion = typename P::completion_type;
  using Prompt = typename P::prompt_type;
  constexpr std::size_t K = sizeof...(Tasks);
  const auto t0 = std::chrono::steady_clock::now();
  const StageConfig& cfg = stage.config;
  validate_stage_config(cfg, static_cast<index_t>(K));  // also for a Stage built without make_*_stage
  const std::string where = "corl::run_stage_step (stage '" + cfg.name + "', step " + std::to_string(step) + ")";
  require(cfg.beta == 0.0 || reference != nullptr, where, ": beta = ", cfg.beta, " needs a reference policy, got none");
  const ObjectiveConfig& oc = stage.objective.config;
  const bool use_entropy = oc.entropy_coef != 0.0 || oc.entropy_threshold.has_value();
  if constexpr (!entropy_policy<P>) {
    require(!use_entropy, where, ": the stage's objective uses entropy (entropy_coef = ", oc.entropy_coef,
            oc.entropy_threshold ? ", entropy_threshold set" : "",
            ") but the policy type does not satisfy corl::entropy_policy (no entropy(scored) / backward with "
            "dentropy)");
  }
  const auto G = static_cast<int>(cfg.group_size);
  const std::vector<index_t> row_ids =
      step_rows(static_cast<index_t>(stage.rows.size()), cfg.rows_per_step, seed, stage_index, step);
  const auto B = static_cast<index_t>(row_ids.size());
  const index_t n = B * G;

  // 1. prompts and rollouts per task
  std::array<std::vector<Prompt>, K> prompts;
  std::array<std::vector<Rollout<Completion, Real>>, K> rollouts;
  [&]<std::size_t... k>(std::index_sequence<k...>) {
    ((prompts[k].reserve(static_cast<std::size_t>(B)),
      [&] {
        for (const index_t r : row_ids) prompts[k].push_back(std::get<k>(stage.tasks)(stage.rows[static_cast<std::size_t>(r)]));
      }()),
     ...);
  }(std::make_index_sequence<K>{});
  for (std::size_t k = 0; k < K; ++k) {
    rollouts[k] = policy.sample(prompts[k], G, sample_key(seed, stage_index, step, static_cast<index_t>(k)));
    require(static_cast<index_t>(rollouts[k].size()) == n, where, ": policy.sample returned ", rollouts[k].size(),
            " rollouts for task ", k, ", expected rows x group = ", n);
  }

  // 2. one reward per sample tuple (all of the step's samples in one call: a batch reward may run them together)
  std::vector<StageSample<Row, Completion, K>> samples;
  samples.reserve(static_cast<std::size_t>(n));
  std::vector<index_t> groups(static_cast<std::size_t>(n));
  for (index_t j = 0; j < B; ++j) {
    for (index_t g = 0; g < G; ++g) {
      const index_t i = j * G + g;
      std::array<const Completion*, K> comps{};
      for (std::size_t k = 0; k < K; ++k) comps[k] = &rollouts[k][static_cast<std::size_t>(i)].completion;
      samples.push_back(StageSample<Row, Completion, K>{
          stage.rows[static_cast<std::size_t>(row_ids[static_cast<std::size_t>(j)])], comps,
          row_ids[static_cast<std::size_t>(j)], g, stage_index, step});
      groups[static_cast<std::size_t>(i)] = j;
    }
  }
  const std::vector<double> rewards = evaluate_rewards(
      stage.reward, std::as_const(policy), std::span<const StageSample<Row, Completion, K>>(samples));

  // 3. group advantages
  std::vector<double> adv(static_cast<std::size_t>(n));
  const GroupZScore estimator{cfg.advantage_eps, true, 0.0};
  const AdvantageStats astats = estimator.compute(RewardBatch<double>{rewards, groups, B, {}}, std::span<double>(adv));

  StepMetrics m;
  m.stage = stage_index;
  m.stage_name = cfg.name;
  m.step = step;
  m.reward_mean = astats.reward_mean;
  m.reward_std = astats.reward_std;
  bool any = false;
  for (const double r : rewards) {
    if (std::isnan(r)) continue;
    m.reward_min = any ? std::min(m.reward_min, r) : r;
    m.reward_max = any ? std::max(m.reward_max, r) : r;
    any = true;
  }
  m.zero_std_fraction = astats.zero_std_fraction();

  // 4. per-task losses and dL/dlogp
  std::fill(grad.begin(), grad.end(), Real(0));
  require(grad.size() == policy.parameters().size(), where, ": grad has ", grad.size(), " entries, expected ",
          policy.parameters().size());
  Obj objective = stage.objective;
  objective.config.beta = cfg.beta;
  const bool use_kl = cfg.beta > 0.0;
  double ratio_sum = 0, kl_sum = 0, kl_tokens = 0, entropy_sum = 0, entropy_tokens = 0;
  index_t token_total = 0;
  for (std::size_t k = 0; k < K; ++k) {
    std::vector<Prompt> score_prompts;
    std::vector<Completion> completions;
    score_prompts.reserve(static_cast<std::size_t>(n));
    completions.reserve(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      score_prompts.push_back(prompts[k][static_cast<std::size_t>(i / G)]);
      completions.push_back(rollouts[k][static_cast<std::size_t>(i)].completion);
    }
    const auto scored = policy.score(score_prompts, completions);
    const std::vector<std::vector<Real>>& logp = scored.logp;
    require(static_cast<index_t>(logp.size()) == n, where, ": policy.score returned ", logp.size(),
            " rows for task ", k, ", expected ", n);
    std::vector<std::vector<Real>> logp_ref;
    if (use_kl) logp_ref = reference->score(score_prompts, completions).logp;
    std::vector<std::vector<Real>> entropy;
    if constexpr (entropy_policy<P>) {
      if (use_entropy) {
        entropy = std::as_const(policy).entropy(scored);
        require(static_cast<index_t>(entropy.size()) == n, where, ": policy.entropy returned ", entropy.size(),
                " rows for task ", k, ", expected ", n);
      }
    }
    // the task's batch: B x G sequences padded to the longest completion
    index_t max_len = 0;
    for (index_t i = 0; i < n; ++i) {
      const auto& sampler = rollouts[k][static_cast<std::size_t>(i)].logp;
      require(logp[static_cast<std::size_t>(i)].size() == sampler.size(), where, ": task ", k, " row ", i,
              ": policy.score gave ", logp[static_cast<std::size_t>(i)].size(), " log-probs, the sampler ",
              sampler.size());
      if (use_kl)
        require(logp_ref[static_cast<std::size_t>(i)].size() == sampler.size(), where, ": task ", k, " row ", i,
                ": the reference gave ", logp_ref[static_cast<std::size_t>(i)].size(), " log-probs, expected ",
                sampler.size());
      if (use_entropy)
        require(entropy[static_cast<std::size_t>(i)].size() == sampler.size(), where, ": task ", k, " row ", i,
                ": policy.entropy gave ", entropy[static_cast<std::size_t>(i)].size(), " entries, expected ",
                sampler.size());
      max_len = std::max(max_len, static_cast<index_t>(sampler.size()));
    }
    Batch<Real> batch(n, max_len);
    batch.logp_old.assign(static_cast<std::size_t>(n * max_len), Real(0));
    if (use_kl) batch.logp_ref.assign(static_cast<std::size_t>(n * max_len), Real(0));
    if (use_entropy) batch.entropy.assign(static_cast<std::size_t>(n * max_len), Real(0));
    for (index_t i = 0; i < n; ++i) {
      const auto& lp = logp[static_cast<std::size_t>(i)];
      const auto& sampler = rollouts[k][static_cast<std::size_t>(i)].logp;
      batch.set_length(i, static_cast<index_t>(lp.size()));
      batch.group[static_cast<std::size_t>(i)] = i / G;
      batch.advantages[static_cast<std::size_t>(i)] = static_cast<Real>(adv[static_cast<std::size_t>(i)]);
      for (std::size_t t = 0; t < lp.size(); ++t) {
        require(std::isfinite(lp[t]) && std::isfinite(sampler[t]), where, ": task ", k, " row ", i, " token ", t,
                ": logp = ", lp[t], ", sampler logp = ", sampler[t], ", expected finite log-probs");
        const auto at = static_cast<std::size_t>(i * max_len) + t;
        batch.logp[at] = lp[t];
        batch.logp_old[at] = sampler[t];
        if (use_kl) {
          const Real lr = logp_ref[static_cast<std::size_t>(i)][t];
          require(std::isfinite(lr), where, ": task ", k, " row ", i, " token ", t, ": reference logp = ", lr,
                  ", expected finite");
          batch.logp_ref[at] = lr;
        }
        if (use_entropy) {
          const Real h = entropy[static_cast<std::size_t>(i)][t];
          require(std::isfinite(h) && h >= Real(0), where, ": task ", k, " row ", i, " token ", t, ": entropy = ", h,
                  ", expected finite and >= 0");
          batch.entropy[at] = h;
        }
        m.max_abs_logp_diff = std::max(m.max_abs_logp_diff, std::abs(static_cast<double>(lp[t] - sampler[t])));
      }
    }
    const BatchView<Real> view = batch.view();
    const Normalizers z = objective.count_normalizers(view);
    const index_t tokens = static_cast<index_t>(z.total_tokens);
    m.task_tokens.push_back(tokens);
    token_total += tokens;
    const double w = cfg.task_weights[k];
    double task_loss = 0;
    if (tokens > 0) {
      const ObjectiveResult<Real> res = objective.evaluate(view, z);
      task_loss = res.loss;
      ratio_sum += res.metrics.ratio_sum;
      kl_sum += res.metrics.kl_sum;
      kl_tokens += res.metrics.kl_tokens;
      entropy_sum += res.metrics.entropy_sum;
      entropy_tokens += res.metrics.entropy_tokens;
      if (w != 0.0) {
        // w * the [n, max_len] gradient, cut to each completion's length (what policy.backward takes)
        const auto ragged = [&](const typename ObjectiveResult<Real>::Matrix& g) {
          std::vector<std::vector<Real>> out(static_cast<std::size_t>(n));
          for (index_t i = 0; i < n; ++i) {
            auto& d = out[static_cast<std::size_t>(i)];
            d.resize(logp[static_cast<std::size_t>(i)].size());
            for (std::size_t t = 0; t < d.size(); ++t)
              d[t] = static_cast<Real>(w * static_cast<double>(g(i, static_cast<index_t>(t))));
          }
          return out;
        };
        const std::vector<std::vector<Real>> dlogp = ragged(res.grad_logp);
        if constexpr (entropy_policy<P>) {
          if (oc.entropy_coef != 0.0)
            policy.backward(scored, dlogp, ragged(res.grad_entropy), std::span<Real>(grad));
          else
            policy.backward(scored, dlogp, std::span<Real>(grad));
        } else {
          policy.backward(scored, dlogp, std::span<Real>(grad));
        }
      }
    }
    m.task_loss.push_back(task_loss);
    m.loss += w * task_loss;
  }
  m.ratio_mean = token_total > 0 ? ratio_sum / static_cast<double>(token_total) : 1.0;
  m.kl = kl_tokens > 0 ? kl_sum / kl_tokens : 0.0;
  m.entropy = entropy_tokens > 0 ? entropy_sum / entropy_tokens : 0.0;

  // 5. clip and step
  m.grad_norm = detail::global_norm(std::span<const Real>(grad));
  require(std::isfinite(m.grad_norm), where, ": gradient norm = ", m.grad_norm, ", expected finite");
  if (cfg.max_grad_norm > 0 && m.grad_norm > cfg.max_grad_norm) {
    const Real scale = static_cast<Real>(cfg.max_grad_norm / m.grad_norm);
    for (Real& g : grad) g *= scale;
  }
  m.learning_rate = stage_learning_rate(cfg, step);
  optimizer.step(policy.parameters(), std::span<const Real>(grad), m.learning_rate);
  m.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

}  // namespace corl

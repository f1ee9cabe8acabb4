// UlmPolicy on several threads: sample / score / entropy / backward / greedy captions cut the batch into a fixed
// number of shards, so the bits depend on PolicyThreads::shards and never on PolicyThreads::threads; the shards draw
// from the Philox streams one call would have used. WorldReward's batch form (one captioning batch per step) gives
// the per-sample values. parallel_shards rethrows a shard's error on the caller.
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "corl/core/error.hpp"
#include "corl_policy.hpp"
#include "corl_world_rewards.hpp"
#include "parallel_shards.hpp"
#include "sft.hpp"

namespace {
ulm::ModelConfig tiny_config() {
  ulm::ModelConfig c;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 64;
  c.d_code = 16;
  return c;
}

ulm::UlmPolicy make_policy(int threads, int shards) {
  ulm::PolicySampling s;
  s.max_new_tokens = 8;
  return ulm::UlmPolicy(ulm::Model<float>(tiny_config(), 4321), s, ulm::PolicyThreads{threads, shards});
}

std::vector<ulm::PolicyPrompt> prompts(ulm::Modality m) {
  std::vector<ulm::PolicyPrompt> out;
  for (int p = 0; p < 5; ++p) {  // 5 prompts: the shards are uneven (2 + 1 + 1 + 1 with 4 shards)
    std::vector<int> ids = {1};
    for (int t = 0; t <= p; ++t) ids.push_back(20 + 3 * p + t);
    ids.push_back(3);
    out.push_back({ulm::text_sequence(ids), m});
  }
  return out;
}

struct Run {
  std::vector<corl::Rollout<ulm::PolicyCompletion, float>> rollouts;
  std::vector<std::vector<float>> logp, entropy;
  std::vector<float> grad;
};

/// Samples 5 prompts x 3, scores the samples, takes entropies and the gradient of sum (a_rt logp + b_rt H).
Run run(const ulm::UlmPolicy& p, ulm::Modality m) {
  const auto pr = prompts(m);
  const int group = 3;
  Run r;
  r.rollouts = p.sample(pr, group, corl::SampleKey{11, 3u << 16});
  REQUIRE(r.rollouts.size() == pr.size() * group);
  std::vector<ulm::PolicyPrompt> rows;
  std::vector<ulm::PolicyCompletion> comps;
  for (std::size_t i = 0; i < r.rollouts.size(); ++i) {
    rows.push_back(pr[i / group]);
    comps.push_back(r.rollouts[i].completion);
  }
  const auto scored = p.score(rows, comps);
  r.logp = scored.logp;
  r.entropy = p.entropy(scored);
  std::vector<std::vector<float>> dlogp = r.logp, dent = r.entropy;
  for (std::size_t i = 0; i < dlogp.size(); ++i)
    for (std::size_t t = 0; t < dlogp[i].size(); ++t) {
      dlogp[i][t] = 0.1f * static_cast<float>(i % 4) - 0.15f + 0.01f * static_cast<float>(t);
      dent[i][t] = 0.05f * static_cast<float>(i % 3) - 0.05f;
    }
  r.grad.assign(p.parameters().size(), 0.5f);  // backward adds to what is there
  p.backward(scored, dlogp, dent, r.grad);
  return r;
}

bool same_tokens(const Run& a, const Run& b) {
  if (a.rollouts.size() != b.rollouts.size()) return false;
  for (std::size_t i = 0; i < a.rollouts.size(); ++i)
    if (a.rollouts[i].completion.tokens != b.rollouts[i].completion.tokens) return false;
  return true;
}
}  // namespace

TEST_CASE("UlmPolicy: 1, 2 and 3 threads give the same bits (4 shards), for images under CFG and for text") {
  for (const auto m : {ulm::Modality::image_out, ulm::Modality::text}) {
    CAPTURE(static_cast<int>(m));
    const Run one = run(make_policy(1, 4), m);
    for (const int threads : {2, 3}) {
      CAPTURE(threads);
      const Run many = run(make_policy(threads, 4), m);
      CHECK(same_tokens(one, many));
      for (std::size_t i = 0; i < one.rollouts.size(); ++i) CHECK(one.rollouts[i].logp == many.rollouts[i].logp);
      CHECK(one.logp == many.logp);
      CHECK(one.entropy == many.entropy);
      CHECK(one.grad == many.grad);
    }
  }
}

TEST_CASE("UlmPolicy: the shards draw the streams of one call, and their gradients sum to one call's") {
  for (const auto m : {ulm::Modality::image_out, ulm::Modality::text}) {
    CAPTURE(static_cast<int>(m));
    const Run whole = run(make_policy(1, 1), m);
    const Run sharded = run(make_policy(2, 4), m);
    // the same Philox streams: the same tokens (the log-probs may differ in the last bits: other GEMM batch shapes)
    REQUIRE(same_tokens(whole, sharded));
    double worst_logp = 0, worst_grad = 0, scale = 0;
    for (std::size_t i = 0; i < whole.logp.size(); ++i)
      for (std::size_t t = 0; t < whole.logp[i].size(); ++t)
        worst_logp = std::max(worst_logp, std::abs(static_cast<double>(whole.logp[i][t] - sharded.logp[i][t])));
    for (std::size_t k = 0; k < whole.grad.size(); ++k) {
      worst_grad = std::max(worst_grad, std::abs(static_cast<double>(whole.grad[k] - sharded.grad[k])));
      scale = std::max(scale, std::abs(static_cast<double>(whole.grad[k] - 0.5f)));
    }
    CHECK(worst_logp < 1e-5);
    CHECK(scale > 1e-3);  // the gradient is not trivially zero
    CHECK(worst_grad < 1e-5 * std::max(1.0, scale));
  }
}

TEST_CASE("UlmPolicy: thread settings and scored batches are checked") {
  CHECK_THROWS_WITH_AS(make_policy(0, 4), doctest::Contains("threads = 0"), corl::Error);
  CHECK_THROWS_WITH_AS(make_policy(2, 0), doctest::Contains("shards = 0"), corl::Error);
  auto p = make_policy(2, 4);
  CHECK_THROWS_WITH_AS(p.set_threads(ulm::PolicyThreads{300, 4}), doctest::Contains("threads = 300"), corl::Error);
  const auto pr = prompts(ulm::Modality::text);
  const auto rollouts = p.sample(pr, 1, corl::SampleKey{1, 0});
  std::vector<ulm::PolicyCompletion> comps;
  for (const auto& r : rollouts) comps.push_back(r.completion);
  const auto scored = p.score(pr, comps);
  std::vector<float> grad(p.parameters().size(), 0.0f);
  std::vector<std::vector<float>> short_dlogp(scored.logp.begin(), scored.logp.end() - 1);
  CHECK_THROWS_WITH_AS(p.backward(scored, short_dlogp, grad), doctest::Contains("dlogp has 4 rows, expected 5"),
                       corl::Error);
  std::vector<float> short_grad(3, 0.0f);
  CHECK_THROWS_WITH_AS(p.backward(scored, scored.logp, short_grad), doctest::Contains("grad has 3 entries"),
                       corl::Error);
}

TEST_CASE("parallel_shards runs every shard once and rethrows the lowest failing shard's error") {
  std::vector<int> hits(7, 0);
  ulm::parallel_shards(hits.size(), 3, [&](std::size_t s) { hits[s] += 1; });
  CHECK(hits == std::vector<int>(7, 1));
  CHECK(ulm::shard_bounds(5, 4) == std::vector<std::size_t>{0, 1, 2, 3, 5});
  CHECK(ulm::shard_bounds(2, 4) == std::vector<std::size_t>{0, 1, 2});
  CHECK(ulm::shard_bounds(0, 4) == std::vector<std::size_t>{0, 0});
  for (const int threads : {1, 2, 4}) {
    CAPTURE(threads);
    CHECK_THROWS_WITH_AS(ulm::parallel_shards(6, threads,
                                              [](std::size_t s) {
                                                if (s == 2 || s == 5) throw std::runtime_error("shard " + std::to_string(s));
                                              }),
                         "shard 2", std::runtime_error);
  }
}

TEST_CASE("WorldReward's batch form gives the per-sample values (captions batched on 2 threads)") {
  const ulm::WorldContext ctx{ulm::WorldConfig{}};
  ulm::PolicySampling s;
  s.max_new_tokens = 12;
  const ulm::UlmPolicy policy(ulm::Model<float>(ulm::model_config_for(ctx.world, ctx.tokenizer, tiny_config()), 9), s,
                              ulm::PolicyThreads{2, 4});
  ulm::GeneratorOptions go;
  go.rows = 3;
  const auto rows = ulm::generate_rows(ctx.world, go);
  std::vector<ulm::PolicyPrompt> t2i, qa;
  for (const auto& row : rows) {
    t2i.push_back(ulm::T2iTask{&ctx}(row));
    qa.push_back(ulm::QaTask{&ctx}(row));
  }
  const int group = 2;
  const auto images = policy.sample(t2i, group, corl::SampleKey{5, 0});
  const auto answers = policy.sample(qa, group, corl::SampleKey{5, 1u << 16});
  using Sample = corl::StageSample<ulm::UnifiedRow, ulm::PolicyCompletion, 2>;
  std::vector<Sample> samples;
  for (std::size_t i = 0; i < images.size(); ++i)
    samples.push_back(Sample{rows[i / group], {&images[i].completion, &answers[i].completion},
                             static_cast<corl::index_t>(i / group), static_cast<corl::index_t>(i % group), 0, 0});
  ulm::WorldReward reward;
  reward.ctx = &ctx;
  reward.weights = ulm::WorldRewardWeights{1.0, 0.5, 0.8, 0.8};
  reward.image_task = 0;
  reward.qa_task = 1;
  reward.caption_max_tokens = 10;
  ulm::RewardLog batch_log, single_log;
  reward.log = &batch_log;
  const std::vector<double> batch = corl::evaluate_rewards(reward, policy, std::span<const Sample>(samples));
  reward.log = &single_log;
  REQUIRE(batch.size() == samples.size());
  double spread = 0;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    CHECK(batch[i] == reward(policy, samples[i]));
    spread = std::max(spread, std::abs(batch[i] - batch[0]));
  }
  CHECK(spread > 0);  // different samples, different rewards: the comparison is not of constants
  CHECK(batch_log.sum == single_log.sum);
  CHECK(batch_log.count == single_log.count);
}

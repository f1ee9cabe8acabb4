// The trainer's log-probs must be those of the distribution the sampler drew from: CFG-mixed, temperature-scaled,
// shifted by one position. This checks UlmPolicy::score against UlmPolicy::sample on a random tiny model.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "corl_policy.hpp"

namespace {
ulm::UlmPolicy make_policy(double cfg, double image_t, double text_t) {
  ulm::ModelConfig c;
  ulm::PolicySampling s;
  s.cfg_weight = cfg;
  s.image_temperature = image_t;
  s.text_temperature = text_t;
  s.max_new_tokens = 8;
  return ulm::UlmPolicy(ulm::Model<float>(c, 1234), s);
}
std::vector<ulm::PolicyPrompt> prompts(ulm::Modality m) {
  const std::vector<int> a = {1, 20, 21, 22, 3}, b = {1, 30, 31, 3};
  return {{ulm::text_sequence(a), m}, {ulm::text_sequence(b), m}};
}
double max_diff(const ulm::UlmPolicy& p, ulm::Modality m) {
  const auto pr = prompts(m);
  const int group = 3;
  const auto rollouts = p.sample(pr, group, corl::SampleKey{77, 5u << 16});
  REQUIRE(rollouts.size() == 6);
  std::vector<ulm::PolicyPrompt> rows;
  std::vector<ulm::PolicyCompletion> comps;
  for (std::size_t i = 0; i < rollouts.size(); ++i) {
    rows.push_back(pr[i / group]);
    comps.push_back(rollouts[i].completion);
  }
  const auto scored = p.score(rows, comps);
  double worst = 0;
  for (std::size_t i = 0; i < rollouts.size(); ++i) {
    REQUIRE(scored.logp[i].size() == rollouts[i].logp.size());
    for (std::size_t t = 0; t < rollouts[i].logp.size(); ++t)
      worst = std::max(worst, std::abs(static_cast<double>(scored.logp[i][t] - rollouts[i].logp[t])));
  }
  return worst;
}
}  // namespace

TEST_CASE("image tokens: teacher-forced log-probs under CFG w = 5, T = 0.8 equal the sampler's") {
  const auto p = make_policy(5.0, 0.8, 1.0);
  CHECK(max_diff(p, ulm::Modality::image_out) < 1e-4);
}

TEST_CASE("text tokens: teacher-forced log-probs at T = 0.7 equal the sampler's") {
  const auto p = make_policy(5.0, 1.0, 0.7);
  CHECK(max_diff(p, ulm::Modality::text) < 1e-4);
}

TEST_CASE("scoring without CFG (the reference code's bug) would NOT match the CFG sampler") {
  const auto sampler = make_policy(5.0, 1.0, 1.0);
  const auto scorer_without_cfg = make_policy(1.0, 1.0, 1.0);
  const auto pr = prompts(ulm::Modality::image_out);
  const auto rollouts = sampler.sample(pr, 2, corl::SampleKey{3, 0});
  std::vector<ulm::PolicyPrompt> rows;
  std::vector<ulm::PolicyCompletion> comps;
  for (std::size_t i = 0; i < rollouts.size(); ++i) {
    rows.push_back(pr[i / 2]);
    comps.push_back(rollouts[i].completion);
  }
  const auto wrong = scorer_without_cfg.score(rows, comps);
  double worst = 0;
  for (std::size_t i = 0; i < rollouts.size(); ++i)
    for (std::size_t t = 0; t < rollouts[i].logp.size(); ++t)
      worst = std::max(worst, std::abs(static_cast<double>(wrong.logp[i][t] - rollouts[i].logp[t])));
  CHECK(worst > 1e-2);
}

TEST_CASE("policy settings are validated and sampling is a pure function of the key") {
  ulm::PolicySampling s;
  s.image_temperature = 0.0;
  CHECK_THROWS_WITH_AS(ulm::UlmPolicy(ulm::Model<float>(ulm::ModelConfig{}, 1), s),
                       doctest::Contains("image_temperature = 0"), corl::Error);
  const auto p = make_policy(5.0, 1.0, 1.0);
  const auto a = p.sample(prompts(ulm::Modality::text), 2, corl::SampleKey{9, 1u << 16});
  const auto b = p.sample(prompts(ulm::Modality::text), 2, corl::SampleKey{9, 1u << 16});
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].completion.tokens == b[i].completion.tokens);
    CHECK(a[i].logp == b[i].logp);
  }
  std::vector<ulm::PolicyPrompt> mixed = prompts(ulm::Modality::text);
  mixed[1].modality = ulm::Modality::image_out;
  CHECK_THROWS_WITH_AS(p.sample(mixed, 1, corl::SampleKey{}), doctest::Contains("prompts[1] asks for another modality"),
                       corl::Error);
}

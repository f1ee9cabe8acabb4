// corl_policy.cpp — UlmPolicy (see corl_policy.hpp).
#include "corl_policy.hpp"

#include <cmath>
#include <utility>

#include "corl/core/error.hpp"

namespace ulm {

namespace {
Sequence completion_sequence(const PolicyCompletion& c) {
  return c.modality == Modality::image_out ? image_sequence(c.tokens, Modality::image_out) : text_sequence(c.tokens);
}
}  // namespace

void PolicySampling::validate() const {
  constexpr const char* where = "ulm::PolicySampling";
  corl::require(std::isfinite(text_temperature) && text_temperature > 0, where, ": text_temperature = ",
                text_temperature, ", expected > 0 (RL needs the log-probs of a proper distribution)");
  corl::require(std::isfinite(image_temperature) && image_temperature > 0, where, ": image_temperature = ",
                image_temperature, ", expected > 0");
  corl::require(max_new_tokens >= 1, where, ": max_new_tokens = ", max_new_tokens, ", expected >= 1");
  corl::require(std::isfinite(cfg_weight) && cfg_weight >= 0, where, ": cfg_weight = ", cfg_weight,
                ", expected finite >= 0");
}

UlmPolicy::UlmPolicy(Model<float> model, PolicySampling sampling) : model_(std::move(model)), sampling_(sampling) {
  sampling_.validate();
}

SampleOptions UlmPolicy::options_for(Modality modality) const {
  SampleOptions o;
  if (modality == Modality::image_out) {
    o.temperature = sampling_.image_temperature;
    o.cfg_weight = sampling_.cfg_weight;
  } else {
    o.temperature = sampling_.text_temperature;
    o.max_new_tokens = sampling_.max_new_tokens;
  }
  return o;
}

std::vector<corl::Rollout<PolicyCompletion, float>> UlmPolicy::sample(const std::vector<PolicyPrompt>& prompts,
                                                                      int group, corl::SampleKey key) const {
  corl::require(!prompts.empty(), "ulm::UlmPolicy::sample: prompts is empty");
  const Modality modality = prompts.front().modality;
  std::vector<Sequence> seqs;
  seqs.reserve(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    corl::require(prompts[i].modality == modality, "ulm::UlmPolicy::sample: prompts[", i,
                  "] asks for another modality than prompts[0]; one call samples one modality");
    seqs.push_back(prompts[i].tokens);
  }
  SampleOptions o = options_for(modality);
  o.seed = key.seed;
  o.offset = key.offset;
  auto samples = model_.sample(seqs, modality, group, o);
  std::vector<corl::Rollout<PolicyCompletion, float>> out;
  out.reserve(samples.size());
  for (auto& s : samples)
    out.push_back(corl::Rollout<PolicyCompletion, float>{PolicyCompletion{std::move(s.tokens), modality},
                                                         std::move(s.logps)});
  return out;
}

Scored<float> UlmPolicy::score(const std::vector<PolicyPrompt>& prompts,
                               const std::vector<PolicyCompletion>& completions) const {
  corl::require(prompts.size() == completions.size(), "ulm::UlmPolicy::score: ", prompts.size(), " prompts but ",
                completions.size(), " completions, expected one completion per prompt");
  corl::require(!prompts.empty(), "ulm::UlmPolicy::score: no rows");
  const Modality modality = completions.front().modality;
  std::vector<ScoreRow> rows;
  rows.reserve(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    corl::require(completions[i].modality == modality, "ulm::UlmPolicy::score: completions[", i,
                  "] has another modality than completions[0]; one call scores one modality");
    rows.push_back(ScoreRow{prompts[i].tokens, completion_sequence(completions[i])});
  }
  ScoreOptions so;
  if (modality == Modality::image_out) {
    so.temperature = sampling_.image_temperature;
    so.cfg_weight = sampling_.cfg_weight;
  } else {
    so.temperature = sampling_.text_temperature;
  }
  return model_.score(rows, so);
}

void UlmPolicy::backward(const Scored<float>& scored, const std::vector<std::vector<float>>& dlogp,
                         std::span<float> grad) const {
  model_.backward(scored, dlogp, grad);
}

std::vector<int> UlmPolicy::greedy_text(const Sequence& prompt, int max_new_tokens) const {
  SampleOptions o;
  o.temperature = 0.0;  // greedy
  o.max_new_tokens = max_new_tokens;
  auto s = model_.sample({prompt}, Modality::text, 1, o);
  return std::move(s.front().tokens);
}

}  // namespace ulm

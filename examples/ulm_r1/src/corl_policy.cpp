// corl_policy.cpp — UlmPolicy (see corl_policy.hpp).
#include "corl_policy.hpp"

#include <cmath>
#include <utility>

#include "corl/core/error.hpp"
#include "parallel_shards.hpp"

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

void PolicyThreads::validate() const {
  constexpr const char* where = "ulm::PolicyThreads";
  corl::require(threads >= 1 && threads <= 256, where, ": threads = ", threads, ", expected 1..256");
  corl::require(shards >= 1 && shards <= 256, where, ": shards = ", shards, ", expected 1..256");
}

UlmPolicy::UlmPolicy(Model<float> model, PolicySampling sampling, PolicyThreads threads)
    : model_(std::move(model)), sampling_(sampling), threads_(threads) {
  sampling_.validate();
  threads_.validate();
}

void UlmPolicy::set_threads(PolicyThreads threads) {
  threads.validate();
  threads_ = threads;
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
  auto samples = sample_sharded(seqs, modality, group, o);
  std::vector<corl::Rollout<PolicyCompletion, float>> out;
  out.reserve(samples.size());
  for (auto& smp : samples)
    out.push_back(corl::Rollout<PolicyCompletion, float>{PolicyCompletion{std::move(smp.tokens), modality},
                                                         std::move(smp.logps)});
  return out;
}

std::vector<Sample<float>> UlmPolicy::sample_sharded(const std::vector<Sequence>& seqs, Modality modality, int group,
                                                     const SampleOptions& options) const {
  corl::require(group >= 1, "ulm::UlmPolicy::sample: group = ", group, ", expected >= 1");
  const auto g = static_cast<std::size_t>(group);
  corl::require(seqs.size() * g <= (std::size_t{1} << 32), "ulm::UlmPolicy::sample: ", seqs.size(), " prompts x ",
                group, " samples exceed the 2^32 Philox streams");
  // shards of whole prompts; shard s starts at sample bounds[s] * group and draws from those Philox streams
  const auto bounds = shard_bounds(seqs.size(), static_cast<std::size_t>(threads_.shards));
  std::vector<std::vector<Sample<float>>> pieces(bounds.size() - 1);
  parallel_shards(pieces.size(), threads_.threads, [&](std::size_t s) {
    SampleOptions po = options;
    po.first_stream = static_cast<std::uint32_t>(bounds[s] * g);
    pieces[s] = model_.sample(shard_slice(seqs, bounds, s), modality, group, po);
  });
  std::vector<Sample<float>> out;
  out.reserve(seqs.size() * g);
  for (auto& piece : pieces)
    for (auto& smp : piece) out.push_back(std::move(smp));
  return out;
}

ShardedScored UlmPolicy::score(const std::vector<PolicyPrompt>& prompts,
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
  ShardedScored out;
  out.begin = shard_bounds(rows.size(), static_cast<std::size_t>(threads_.shards));
  const std::size_t n_shards = out.begin.size() - 1;
  out.shards.resize(n_shards);
  parallel_shards(n_shards, threads_.threads,
                  [&](std::size_t s) { out.shards[s] = model_.score(shard_slice(rows, out.begin, s), so); });
  out.logp.reserve(rows.size());
  for (const auto& sh : out.shards) out.logp.insert(out.logp.end(), sh.logp.begin(), sh.logp.end());
  return out;
}

namespace {
void check_sharded(const ShardedScored& scored, std::size_t rows, const char* what, const char* where) {
  corl::require(scored.begin.size() == scored.shards.size() + 1 && !scored.shards.empty() &&
                    scored.begin.back() == scored.logp.size(),
                where, ": the scored batch is not one UlmPolicy::score made");
  corl::require(rows == scored.logp.size(), where, ": ", what, " has ", rows, " rows, expected ", scored.logp.size(),
                " (one per scored row)");
}
}  // namespace

void UlmPolicy::backward_sharded(const ShardedScored& scored, const std::vector<std::vector<float>>& dlogp,
                                 const std::vector<std::vector<float>>* dentropy, std::span<float> grad) const {
  constexpr const char* where = "ulm::UlmPolicy::backward";
  check_sharded(scored, dlogp.size(), "dlogp", where);
  if (dentropy) check_sharded(scored, dentropy->size(), "dentropy", where);
  corl::require(grad.size() == model_.parameters().size(), where, ": grad has ", grad.size(), " entries, expected ",
                model_.parameters().size());
  // every shard adds into its own zeroed buffer; the buffers are added to grad in shard order (thread-count free)
  const std::size_t n_shards = scored.shards.size();
  std::vector<std::vector<float>> part_grad(n_shards, std::vector<float>(grad.size(), 0.0f));
  parallel_shards(n_shards, threads_.threads, [&](std::size_t s) {
    const auto dl = shard_slice(dlogp, scored.begin, s);
    if (dentropy) {
      model_.backward(scored.shards[s], dl, shard_slice(*dentropy, scored.begin, s), part_grad[s]);
    } else {
      model_.backward(scored.shards[s], dl, part_grad[s]);
    }
  });
  for (const auto& pg : part_grad)
    for (std::size_t i = 0; i < grad.size(); ++i) grad[i] += pg[i];
}

void UlmPolicy::backward(const ShardedScored& scored, const std::vector<std::vector<float>>& dlogp,
                         std::span<float> grad) const {
  backward_sharded(scored, dlogp, nullptr, grad);
}

void UlmPolicy::backward(const ShardedScored& scored, const std::vector<std::vector<float>>& dlogp,
                         const std::vector<std::vector<float>>& dentropy, std::span<float> grad) const {
  backward_sharded(scored, dlogp, &dentropy, grad);
}

std::vector<std::vector<float>> UlmPolicy::entropy(const ShardedScored& scored) const {
  check_sharded(scored, scored.logp.size(), "logp", "ulm::UlmPolicy::entropy");
  std::vector<std::vector<std::vector<float>>> parts(scored.shards.size());
  parallel_shards(parts.size(), threads_.threads, [&](std::size_t s) { parts[s] = model_.entropy(scored.shards[s]); });
  std::vector<std::vector<float>> out;
  out.reserve(scored.logp.size());
  for (auto& p : parts)
    for (auto& row : p) out.push_back(std::move(row));
  return out;
}

std::vector<int> UlmPolicy::greedy_text(const Sequence& prompt, int max_new_tokens) const {
  SampleOptions o;
  o.temperature = 0.0;  // greedy
  o.max_new_tokens = max_new_tokens;
  auto s = model_.sample({prompt}, Modality::text, 1, o);
  return std::move(s.front().tokens);
}

std::vector<std::vector<int>> UlmPolicy::greedy_texts(const std::vector<Sequence>& prompts, int max_new_tokens) const {
  std::vector<std::vector<int>> out;
  if (prompts.empty()) return out;
  SampleOptions o;
  o.temperature = 0.0;  // greedy
  o.max_new_tokens = max_new_tokens;
  auto samples = sample_sharded(prompts, Modality::text, 1, o);
  out.reserve(samples.size());
  for (auto& smp : samples) out.push_back(std::move(smp.tokens));
  return out;
}

}  // namespace ulm

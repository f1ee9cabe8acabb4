// corl_policy.hpp — the bundled model as a corl::policy: what the CoRL pipeline (corl/pipeline/) trains.
//
// UlmPolicy wraps ulm::Model<float> with the sampling settings of each modality:
//   prompt      PolicyPrompt{tokens, modality}: the context and the modality of the completion to produce
//               (text answers / captions, or image_out codes);
//   completion  PolicyCompletion{tokens, modality};
//   sample      Model::sample, one call per modality (all prompts of a call share it), key.seed / key.offset as the
//               Philox seed and base offset (the model adds the token position: the pipeline leaves 2^16 per call);
//   score       Model::score under the SAME distribution the sampler used: text at the text temperature; image codes
//               under the CFG mix u + w (c - u) at the image temperature, with the one-position shift (model.hpp) —
//               the reference code scored image tokens without CFG and unshifted (DESIGN.md section 1);
//   backward    Model::backward (adds to the flat gradient);  parameters  the flat parameter vector;
//   snapshot    a copy (the frozen reference; the hand-off between stages).
// Threads: sample, score, entropy and backward cut their batch into PolicyThreads::shards contiguous pieces (by
// prompt for sample, by row otherwise) and run the pieces on up to PolicyThreads::threads threads
// (parallel_shards.hpp). Each piece samples from its own Philox streams (SampleOptions::first_stream), and the
// pieces' gradients are summed in piece order, so results depend on `shards` but never on `threads`.
#pragma once

#include <span>
#include <vector>

#include "corl/concepts/policy.hpp"
#include "model.hpp"

namespace ulm {

struct PolicyPrompt {
  Sequence tokens;
  Modality modality = Modality::text;  ///< of the completion: text or image_out
};

struct PolicyCompletion {
  std::vector<int> tokens;
  Modality modality = Modality::text;
};

/// Sampling (and therefore scoring) settings per modality.
struct PolicySampling {
  double text_temperature = 1.0;  ///< no top-k / top-p: the trainer scores the full distribution (parity)
  int max_new_tokens = 32;
  double image_temperature = 1.0;
  double cfg_weight = 5.0;  ///< Janus-Pro / CoRL use 5

  /// Throws corl::Error naming the field (temperatures > 0: a log-prob needs a proper distribution).
  void validate() const;
};

/// How a policy spreads a batch over threads (see the header comment): the results depend on `shards` only.
struct PolicyThreads {
  int threads = 1;  ///< threads that run the shards (1 = the calling thread only)
  int shards = 4;   ///< pieces a batch is cut into (at most one per prompt / row)

  /// Throws corl::Error naming the field (threads in 1..256, shards in 1..256).
  void validate() const;
};

/// UlmPolicy's scored_type: the log-probs of the whole batch and the model's tape of each shard.
struct ShardedScored {
  std::vector<std::vector<float>> logp;  ///< logp[r][t], all rows in order
  std::vector<Scored<float>> shards;     ///< Model::score of rows [begin[s], begin[s + 1])
  std::vector<std::size_t> begin;        ///< shard boundaries (shards.size() + 1 entries)
};

class UlmPolicy {
 public:
  using real_type = float;
  using prompt_type = PolicyPrompt;
  using completion_type = PolicyCompletion;
  using scored_type = ShardedScored;

  UlmPolicy(Model<float> model, PolicySampling sampling, PolicyThreads threads = {});

  std::vector<corl::Rollout<PolicyCompletion, float>> sample(const std::vector<PolicyPrompt>& prompts, int group,
                                                             corl::SampleKey key) const;
  ShardedScored score(const std::vector<PolicyPrompt>& prompts, const std::vector<PolicyCompletion>& completions) const;
  void backward(const ShardedScored& scored, const std::vector<std::vector<float>>& dlogp,
                std::span<float> grad) const;
  /// corl::entropy_policy: per-token entropy of the sampling distribution (CFG mix and temperature included) and the
  /// backward with dL/dentropy.
  std::vector<std::vector<float>> entropy(const ShardedScored& scored) const;
  void backward(const ShardedScored& scored, const std::vector<std::vector<float>>& dlogp,
                const std::vector<std::vector<float>>& dentropy, std::span<float> grad) const;
  std::span<float> parameters() { return model_.parameters(); }
  std::span<const float> parameters() const { return model_.parameters(); }
  UlmPolicy snapshot() const { return *this; }

  const Model<float>& model() const { return model_; }
  Model<float>& model() { return model_; }
  const PolicySampling& sampling() const { return sampling_; }
  const PolicyThreads& threads() const { return threads_; }
  void set_threads(PolicyThreads threads);

  /// Greedy text completion of one prompt (deterministic): how the policy captions an image for R_cycle.
  std::vector<int> greedy_text(const Sequence& prompt, int max_new_tokens) const;
  /// Greedy completions of many prompts, decoded together in shards on the policy's threads (same shards, same bits,
  /// whatever the thread count).
  std::vector<std::vector<int>> greedy_texts(const std::vector<Sequence>& prompts, int max_new_tokens) const;

 private:
  SampleOptions options_for(Modality modality) const;
  /// Model::sample of all prompts, in shards of whole prompts on the policy's threads (the streams of one call).
  std::vector<Sample<float>> sample_sharded(const std::vector<Sequence>& seqs, Modality modality, int group,
                                            const SampleOptions& options) const;
  void backward_sharded(const ShardedScored& scored, const std::vector<std::vector<float>>& dlogp,
                        const std::vector<std::vector<float>>* dentropy, std::span<float> grad) const;
  Model<float> model_;
  PolicySampling sampling_;
  PolicyThreads threads_;
};

static_assert(corl::policy<UlmPolicy>, "UlmPolicy must satisfy corl::policy");
static_assert(corl::entropy_policy<UlmPolicy>, "UlmPolicy must satisfy corl::entropy_policy");

}  // namespace ulm

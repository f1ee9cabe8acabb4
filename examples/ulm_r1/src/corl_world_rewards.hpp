// corl_world_rewards.hpp — CoRL's tasks and rewards on the shapes world, built from corl's reward library.
//
// Tasks (row -> policy prompt; sequence formats from sft.hpp):
//   T2iTask  <bos> {prompt} <image>                                   -> image_out codes
//   QaTask   <bos> <image> {reference image codes} </image> {question} -> "<think> ... </think> <answer> ... </answer>"
// Rewards, each part in [0, 1] (DESIGN.md section 1; arXiv 2505.17534 Sec. 3.2):
//   R_cycle = image side + text side
//     image side  1 - grid_distance(reference image, generated image)           (image_features.hpp, LPIPS stand-in)
//     text side   the POLICY captions its generated image (greedy, "describe the image ."), and the caption is
//                 compared with the prompt by a SPICE-like scene-tuple F2 (objects, colours, counts, relations;
//                 scene_tuples.hpp). The paper uses SPICE; a bag-of-words F1 (corl/reward/text_similarity.hpp) scored
//                 "two red circles , a blue circle" against "three circles" near 0 and penalised every extra word.
//   R_TIM   = (1 + TIM) / 2 on the policy's hidden states of "<bos> <image> {generated codes} </image> {prompt}":
//             image rows = the code positions, text rows = the prompt-word positions (corl/reward/tim_reward.hpp)
//   R_acc   = corl::AccuracyReward (multiple choice by option letter with the option texts, open-ended normalised)
//   R_format= corl::FormatReward on the decoded answer
// WorldReward sums them with weights: the unified stage uses R_cycle + R_TIM + 0.8 (R_acc + R_format); the refined
// T2I stage R_cycle + R_TIM; the refined QA stages R_acc + R_format. Parts with weight 0 are not computed (the
// caption is the expensive part). A RewardLog, when attached, accumulates the mean of every part for the metrics.
// WorldReward is a corl::batch_reward_function: score_batch captions all of a step's images in one sharded greedy
// decode on the policy's threads (UlmPolicy::greedy_texts), then scores sample by sample; the per-sample form is a
// batch of one (tests/policy_threads.cpp checks that both give the same values).
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "corl/pipeline/stage.hpp"
#include "corl/reward/tim_reward.hpp"
#include "corl_policy.hpp"
#include "tokenizer.hpp"
#include "world.hpp"

namespace ulm {

/// The world and tokenizer the rewards read (owned by the caller, outlives the stages).
struct WorldContext {
  WorldConfig world;
  Tokenizer tokenizer;
  explicit WorldContext(const WorldConfig& w) : world(w), tokenizer(w) {}
};

struct T2iTask {
  const WorldContext* ctx = nullptr;
  PolicyPrompt operator()(const UnifiedRow& row) const;
};
struct QaTask {
  const WorldContext* ctx = nullptr;
  PolicyPrompt operator()(const UnifiedRow& row) const;
};

/// The generated grid of an image completion (validated: H*W codes in the codebook).
Grid completion_grid(const PolicyCompletion& completion, const WorldConfig& world);
/// The decoded text of a text completion, without <eos>/<pad>/<bos>.
std::string completion_text(const PolicyCompletion& completion, const Tokenizer& tok);

/// The prompt the policy captions an image from: "<bos> <image> {codes} </image> describe the image .".
Sequence caption_prompt(const WorldContext& ctx, const Grid& image);
/// The policy's greedy caption of an image.
std::string policy_caption(const UlmPolicy& policy, const WorldContext& ctx, const Grid& image, int max_tokens);

struct CycleParts {
  double image_side = 0, text_side = 0;
  std::string caption;
};
/// R_cycle of one generated image for `row` (see the header comment); `parts` (optional) receives the two sides.
double cycle_reward(const UlmPolicy& policy, const WorldContext& ctx, const UnifiedRow& row, const Grid& generated,
                    int caption_max_tokens, CycleParts* parts = nullptr);
/// R_cycle with the policy's caption of `generated` already made.
double cycle_reward_from_caption(const WorldContext& ctx, const UnifiedRow& row, const Grid& generated,
                                 std::string caption, CycleParts* parts = nullptr);
/// The hidden states and the image / text row indices R_TIM reads (no hard-coded positions).
corl::TimInputs tim_inputs(const UlmPolicy& policy, const WorldContext& ctx, const std::string& prompt,
                           const Grid& generated);
/// R_TIM in [0, 1].
double tim_reward(const UlmPolicy& policy, const WorldContext& ctx, const std::string& prompt, const Grid& generated);
/// R_acc and R_format of an answer completion for `row`.
double accuracy_reward(const WorldContext& ctx, const UnifiedRow& row, const std::string& answer_text);
double format_reward(const std::string& answer_text);

/// Per-part sums over the samples scored since the last reset (for the metrics log).
struct RewardLog {
  std::array<double, 5> sum{};  ///< cycle_image, cycle_text, tim, acc, format
  std::array<double, 5> count{};
  void reset() { sum.fill(0), count.fill(0); }
  double mean(std::size_t k) const { return count[k] > 0 ? sum[k] / count[k] : 0.0; }
  static constexpr std::array<const char*, 5> kNames = {"cycle_image", "cycle_text", "tim", "acc", "format"};
};

struct WorldRewardWeights {
  double cycle = 1.0;
  double tim = 1.0;
  double acc = 0.8;
  double format = 0.8;
};

/// The CoRL reward on a stage sample: image parts read completion(image_task), QA parts completion(qa_task).
struct WorldReward {
  const WorldContext* ctx = nullptr;
  WorldRewardWeights weights;
  int image_task = -1;  ///< index of the image completion in the stage's tasks (-1: none)
  int qa_task = -1;     ///< index of the answer completion (-1: none)
  int caption_max_tokens = 24;
  RewardLog* log = nullptr;  ///< optional side channel for metrics (not part of the reward's value)

  template <std::size_t K>
  double operator()(const UlmPolicy& policy, const corl::StageSample<UnifiedRow, PolicyCompletion, K>& s) const {
    return score_batch(policy, std::span<const corl::StageSample<UnifiedRow, PolicyCompletion, K>>(&s, 1)).front();
  }
  /// corl::batch_reward_function: the captions of all images made in one UlmPolicy::greedy_texts call.
  template <std::size_t K>
  std::vector<double> score_batch(const UlmPolicy& policy,
                                  std::span<const corl::StageSample<UnifiedRow, PolicyCompletion, K>> samples) const {
    std::vector<const PolicyCompletion*> images(samples.size(), nullptr), answers(samples.size(), nullptr);
    std::vector<const UnifiedRow*> rows(samples.size());
    for (std::size_t i = 0; i < samples.size(); ++i) {
      rows[i] = &samples[i].row;
      if (image_task >= 0) images[i] = &samples[i].completion(static_cast<std::size_t>(image_task));
      if (qa_task >= 0) answers[i] = &samples[i].completion(static_cast<std::size_t>(qa_task));
    }
    return score_all(policy, rows, images, answers);
  }
  /// The reward of every (row, image, answer) triple (image / answer may be null: that part is not scored).
  std::vector<double> score_all(const UlmPolicy& policy, const std::vector<const UnifiedRow*>& rows,
                                const std::vector<const PolicyCompletion*>& images,
                                const std::vector<const PolicyCompletion*>& answers) const;

 private:
  /// One sample's reward; `generated` is its image's grid (null without an image), `caption` the policy's caption
  /// of it (read only when R_cycle is weighted).
  double score_one(const UlmPolicy& policy, const UnifiedRow& row, const Grid* generated, const std::string& caption,
                   const PolicyCompletion* answer) const;
};

template <std::size_t K>
using WorldStageSample = corl::StageSample<UnifiedRow, PolicyCompletion, K>;
static_assert(corl::batch_reward_function<WorldReward, UlmPolicy, WorldStageSample<2>> &&
                  corl::batch_reward_function<WorldReward, UlmPolicy, WorldStageSample<1>>,
              "the stages must see WorldReward's batch form (one captioning batch per step)");

}  // namespace ulm

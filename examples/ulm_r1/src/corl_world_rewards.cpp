// corl_world_rewards.cpp — see corl_world_rewards.hpp.
#include "corl_world_rewards.hpp"

#include "corl/core/error.hpp"
#include "corl/reward/accuracy.hpp"
#include "corl/reward/format.hpp"
#include "corl/reward/text_similarity.hpp"
#include "image_features.hpp"
#include "scene_tuples.hpp"
#include "sft.hpp"

namespace ulm {

PolicyPrompt T2iTask::operator()(const UnifiedRow& row) const {
  return PolicyPrompt{t2i_prompt(ctx->tokenizer, row.prompt), Modality::image_out};
}

PolicyPrompt QaTask::operator()(const UnifiedRow& row) const {
  return PolicyPrompt{understanding_prompt(ctx->tokenizer, row.image, row.question), Modality::text};
}

Grid completion_grid(const PolicyCompletion& completion, const WorldConfig& world) {
  corl::require(completion.modality == Modality::image_out,
                "ulm::completion_grid: the completion is text, expected image_out codes");
  Grid g(completion.tokens.begin(), completion.tokens.end());
  validate_grid(g, world, "ulm::completion_grid");
  return g;
}

std::string completion_text(const PolicyCompletion& completion, const Tokenizer& tok) {
  corl::require(completion.modality == Modality::text, "ulm::completion_text: the completion is an image, expected text");
  return tok.decode(completion.tokens, /*skip_special=*/true);
}

Sequence caption_prompt(const WorldContext& ctx, const Grid& image) {
  return understanding_prompt(ctx.tokenizer, image, kCaptionInstruction);
}

std::string policy_caption(const UlmPolicy& policy, const WorldContext& ctx, const Grid& image, int max_tokens) {
  const std::vector<int> ids = policy.greedy_text(caption_prompt(ctx, image), max_tokens);
  return ctx.tokenizer.decode(ids, /*skip_special=*/true);
}

double cycle_reward_from_caption(const WorldContext& ctx, const UnifiedRow& row, const Grid& generated,
                                 std::string caption, CycleParts* parts) {
  const double image_side = grid_similarity(row.image, generated, ctx.world);
  const double text_side = caption_prompt_similarity(caption, row.prompt, ctx.world);
  if (parts) *parts = CycleParts{image_side, text_side, std::move(caption)};
  return image_side + text_side;
}

double cycle_reward(const UlmPolicy& policy, const WorldContext& ctx, const UnifiedRow& row, const Grid& generated,
                    int caption_max_tokens, CycleParts* parts) {
  return cycle_reward_from_caption(ctx, row, generated, policy_caption(policy, ctx, generated, caption_max_tokens),
                                   parts);
}

corl::TimInputs tim_inputs(const UlmPolicy& policy, const WorldContext& ctx, const std::string& prompt,
                           const Grid& generated) {
  // "<bos> <image> {codes as image_in} </image> {prompt words}": the understanding path reads the generated image
  // with the prompt; rows 2 .. 2 + H*W - 1 are image positions, the prompt words follow "</image>".
  const Sequence seq = understanding_prompt(ctx.tokenizer, generated, prompt);
  const auto hidden = policy.model().hidden_states(seq);  // d_model x T, one column per position
  corl::TimInputs in;
  in.dim = hidden.rows();
  const corl::index_t T = hidden.cols();
  in.hidden.resize(static_cast<std::size_t>(T * in.dim));
  for (corl::index_t t = 0; t < T; ++t)
    for (corl::index_t d = 0; d < in.dim; ++d) in.hidden[static_cast<std::size_t>(t * in.dim + d)] = hidden(d, t);
  for (corl::index_t t = 0; t < T; ++t) {
    const Token& tok = seq[static_cast<std::size_t>(t)];
    if (tok.modality == Modality::image_in) {
      in.image_rows.push_back(t);
    } else if (tok.id >= Tokenizer::kNumSpecial) {  // words, not <bos> / <image> / </image>
      in.text_rows.push_back(t);
    }
  }
  return in;
}

double tim_reward(const UlmPolicy& policy, const WorldContext& ctx, const std::string& prompt, const Grid& generated) {
  return corl::tim_reward(tim_inputs(policy, ctx, prompt, generated));
}

double accuracy_reward(const WorldContext& ctx, const UnifiedRow& row, const std::string& answer_text) {
  (void)ctx;
  const corl::AccuracyReward acc{row.question_type == QuestionType::multiple_choice ? corl::AnswerKind::multiple_choice
                                                                                    : corl::AnswerKind::open_ended,
                                 4};
  return acc.score(answer_text, row.answer, row.options);
}

double format_reward(const std::string& answer_text) { return corl::FormatReward{}(answer_text); }

double WorldReward::score_one(const UlmPolicy& policy, const UnifiedRow& row, const Grid* generated,
                              const std::string& caption, const PolicyCompletion* answer) const {
  double total = 0;
  auto note = [&](std::size_t k, double v) {
    if (log) log->sum[k] += v, log->count[k] += 1;
  };
  if (generated && weights.cycle != 0) {
    CycleParts parts;
    total += weights.cycle * cycle_reward_from_caption(*ctx, row, *generated, caption, &parts);
    note(0, parts.image_side);
    note(1, parts.text_side);
  }
  if (generated && weights.tim != 0) {
    const double t = tim_reward(policy, *ctx, row.prompt, *generated);
    total += weights.tim * t;
    note(2, t);
  }
  if (answer && (weights.acc != 0 || weights.format != 0)) {
    const std::string text = completion_text(*answer, ctx->tokenizer);
    if (weights.acc != 0) {
      const double a = accuracy_reward(*ctx, row, text);
      total += weights.acc * a;
      note(3, a);
    }
    if (weights.format != 0) {
      const double f = format_reward(text);
      total += weights.format * f;
      note(4, f);
    }
  }
  return total;
}

std::vector<double> WorldReward::score_all(const UlmPolicy& policy, const std::vector<const UnifiedRow*>& rows,
                                           const std::vector<const PolicyCompletion*>& images,
                                           const std::vector<const PolicyCompletion*>& answers) const {
  corl::require(ctx != nullptr, "ulm::WorldReward: no world context");
  corl::require(images.size() == rows.size() && answers.size() == rows.size(), "ulm::WorldReward::score_all: ",
                rows.size(), " rows, ", images.size(), " images and ", answers.size(),
                " answers, expected one of each per sample");
  // 1. the generated grids the image parts read (parts with weight 0 are not computed)
  const bool image_parts = weights.cycle != 0 || weights.tim != 0;
  std::vector<Grid> grids(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (images[i] && image_parts) grids[i] = completion_grid(*images[i], ctx->world);
  // 2. every caption R_cycle needs, in one batch (sample order)
  std::vector<std::string> captions(rows.size());
  if (weights.cycle != 0) {
    std::vector<Sequence> prompts;
    std::vector<std::size_t> who;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (!images[i]) continue;
      prompts.push_back(caption_prompt(*ctx, grids[i]));
      who.push_back(i);
    }
    const auto ids = policy.greedy_texts(prompts, caption_max_tokens);
    for (std::size_t c = 0; c < who.size(); ++c)
      captions[who[c]] = ctx->tokenizer.decode(ids[c], /*skip_special=*/true);
  }
  // 3. the rewards, sample by sample (the RewardLog is filled in sample order)
  std::vector<double> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i)
    out[i] = score_one(policy, *rows[i], images[i] && image_parts ? &grids[i] : nullptr, captions[i], answers[i]);
  return out;
}

}  // namespace ulm

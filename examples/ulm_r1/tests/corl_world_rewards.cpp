// The world rewards on hand-made cases: cycle image side, TIM positions, accuracy (incl. multiple choice by letter and
// by option text), format.
#include <doctest/doctest.h>

#include "corl_world_rewards.hpp"
#include "scene_tuples.hpp"
#include "sft.hpp"

namespace {
ulm::UnifiedRow mc_row() {
  ulm::UnifiedRow r;
  r.question_type = ulm::QuestionType::multiple_choice;
  r.options = {"red", "blue", "green", "yellow"};
  r.answer.assign(1, 'B');  // (assigning the literal trips a GCC 12 -Wrestrict false positive)
  return r;
}
}  // namespace

TEST_CASE("accuracy and format rewards on decoded answers") {
  const ulm::WorldContext ctx{ulm::WorldConfig{}};
  const auto mc = mc_row();
  CHECK(ulm::accuracy_reward(ctx, mc, "<think> it is blue </think> <answer> B </answer>") == 1.0);
  CHECK(ulm::accuracy_reward(ctx, mc, "<think> . </think> <answer> B . blue </answer>") == 1.0);
  CHECK(ulm::accuracy_reward(ctx, mc, "<think> . </think> <answer> blue </answer>") == 1.0);  // option text
  CHECK(ulm::accuracy_reward(ctx, mc, "<think> . </think> <answer> C </answer>") == 0.0);
  ulm::UnifiedRow oe;
  oe.question_type = ulm::QuestionType::open_ended;
  oe.answer = "2";
  CHECK(ulm::accuracy_reward(ctx, oe, "<think> . </think> <answer> two </answer>") == 1.0);
  CHECK(ulm::accuracy_reward(ctx, oe, "<think> . </think> <answer> 3 </answer>") == 0.0);
  CHECK(ulm::format_reward("<think> a </think> <answer> b </answer>") == 1.0);
  CHECK(ulm::format_reward("<answer> b </answer>") == 0.0);
}

TEST_CASE("R_cycle image side is 1 for the reference image itself, R_TIM reads the right positions") {
  const ulm::WorldContext ctx{ulm::WorldConfig{}};
  ulm::ModelConfig base;
  base.d_model = 32;
  base.n_layers = 1;
  base.n_heads = 2;
  base.d_ff = 64;
  base.d_code = 16;
  const ulm::UlmPolicy policy(ulm::Model<float>(ulm::model_config_for(ctx.world, ctx.tokenizer, base), 9),
                              ulm::PolicySampling{});
  ulm::GeneratorOptions go;
  go.rows = 6;
  const auto rows = ulm::generate_rows(ctx.world, go);
  const auto& row = rows[1];
  ulm::CycleParts parts;
  const double r = ulm::cycle_reward(policy, ctx, row, row.image, 8, &parts);
  CHECK(parts.image_side == doctest::Approx(1.0));
  CHECK(parts.text_side >= 0.0);
  CHECK(parts.text_side <= 1.0);
  CHECK(parts.text_side == ulm::caption_prompt_similarity(parts.caption, row.prompt, ctx.world));
  CHECK(r == doctest::Approx(parts.image_side + parts.text_side));
  const auto in = ulm::tim_inputs(policy, ctx, row.prompt, row.image);
  CHECK(static_cast<int>(in.image_rows.size()) == ctx.world.num_cells());
  CHECK(in.text_rows.size() == ctx.tokenizer.encode(row.prompt).size());
  CHECK(in.image_rows.front() == 2);  // after <bos> <image>
  CHECK(in.text_rows.front() == 2 + ctx.world.num_cells() + 1);  // after </image>
  const double tim = ulm::tim_reward(policy, ctx, row.prompt, row.image);
  CHECK(tim >= 0.0);
  CHECK(tim <= 1.0);
}

TEST_CASE("completion helpers reject the wrong modality and bad codes") {
  const ulm::WorldContext ctx{ulm::WorldConfig{}};
  ulm::PolicyCompletion text{{10, 11}, ulm::Modality::text};
  CHECK_THROWS_WITH_AS(ulm::completion_grid(text, ctx.world), doctest::Contains("the completion is text"), corl::Error);
  ulm::PolicyCompletion bad{std::vector<int>(static_cast<std::size_t>(ctx.world.num_cells()), 999),
                            ulm::Modality::image_out};
  CHECK_THROWS_AS(ulm::completion_grid(bad, ctx.world), corl::Error);
}

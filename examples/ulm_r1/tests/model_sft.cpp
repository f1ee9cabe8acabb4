// SFT smoke test (loss decreases, thread-count invariance, checkpoint reload gives the same losses), the sequence
// formats, the evaluation JSON shape, and the command-line argument parser.
#include <doctest/doctest.h>

#include <algorithm>

#include <cstdio>
#include <cstring>
#include <utility>

#include "checkpoint.hpp"
#include "cli.hpp"
#include "corl/core/error.hpp"
#include "evaluate.hpp"
#include "sft.hpp"

using namespace ulm;

namespace {
SftOptions tiny_sft() {
  SftOptions o;
  o.steps = 12;
  o.batch = 8;
  o.train_rows = 64;
  o.warmup_steps = 2;
  o.lr = 1e-2;
  o.progress_every = 0;
  o.model.d_model = 32;
  o.model.n_layers = 1;
  o.model.n_heads = 2;
  o.model.d_ff = 48;
  o.model.d_code = 8;
  return o;
}
}  // namespace

TEST_CASE("sequence formats: t2i and understanding prompts, completions") {
  const WorldConfig world;
  const Tokenizer tok(world);
  const Sequence p = t2i_prompt(tok, "a red circle");
  REQUIRE(p.size() == 5);
  CHECK(p.front() == Token{Tokenizer::kBos, Modality::text});
  CHECK(p[1] == Token{tok.id("a"), Modality::text});
  CHECK(p.back() == Token{Tokenizer::kImageBegin, Modality::text});
  const Grid g = empty_grid(world);
  const Sequence u = understanding_prompt(tok, g, "describe the image .");
  REQUIRE(u.size() == 2 + g.size() + 1 + 4);
  CHECK(u[1] == Token{Tokenizer::kImageBegin, Modality::text});
  CHECK(u[2].modality == Modality::image_in);
  CHECK(u[2 + g.size()] == Token{Tokenizer::kImageEnd, Modality::text});
  const Sequence a = answer_completion(tok, "<answer> 2 </answer>");
  CHECK(a.back() == Token{Tokenizer::kEos, Modality::text});
  CHECK(a.size() == 4);
  // the unconditional prompt keeps <bos> and <image> only
  const ModelConfig mc = model_config_for(world, tok);
  const Sequence unc = unconditional_prompt(p, mc);
  CHECK(unc[0].id == Tokenizer::kBos);
  CHECK(unc[1].id == Tokenizer::kPad);
  CHECK(unc[3].id == Tokenizer::kPad);
  CHECK(unc[4].id == Tokenizer::kImageBegin);
  CHECK(mc.image_tokens == world.num_cells());
  CHECK(mc.image_vocab == world.codebook_size());
}

TEST_CASE("image_text_hidden: the image and prompt columns of the understanding sequence") {
  const WorldConfig world;
  const Tokenizer tok(world);
  const Model<double> m(model_config_for(world, tok), 3);
  Grid g = empty_grid(world);
  g[5] = world.code(1, 2);
  const auto h = image_text_hidden(m, tok, g, "a green triangle");
  CHECK(h.image.cols() == world.num_cells());
  CHECK(h.text.cols() == 3);
  const auto full = m.hidden_states(understanding_prompt(tok, g, "a green triangle"));
  CHECK((h.image.col(5) - full.col(2 + 5)).norm() == 0.0);
  CHECK((h.text.col(2) - full.col(full.cols() - 1)).norm() == 0.0);
}

TEST_CASE("SFT smoke: the loss decreases, any thread count gives the same bits, a reload scores identically") {
  SftOptions o = tiny_sft();
  o.threads = 1;
  const SftResult a = run_sft(o, nullptr);
  REQUIRE(a.losses.size() == 12);
  const double first = a.losses.front();
  const double last3 = (a.losses[9] + a.losses[10] + a.losses[11]) / 3;
  MESSAGE("loss " << first << " -> " << last3);
  CHECK(last3 < 0.8 * first);
  o.threads = 2;
  const SftResult b = run_sft(o, nullptr);
  CHECK(a.losses == b.losses);
  CHECK(std::memcmp(a.model.parameters().data(), b.model.parameters().data(), a.model.parameters().size_bytes()) ==
        0);
  // a checkpoint reload gives the same losses on the same batch
  const std::string path = "/tmp/ulm_model_sft_smoke.safetensors";
  save_checkpoint(a.model, path);
  const Model<float> back = load_checkpoint<float>(path);
  const Tokenizer tok(o.world);
  GeneratorOptions gen;
  gen.rows = 6;
  std::vector<ScoreRow> rows;
  for (const UnifiedRow& r : generate_rows(o.world, gen)) {
    rows.push_back(t2i_example(tok, r));
    rows.push_back(qa_example(tok, r));
  }
  std::vector<float> g1(a.model.parameters().size()), g2(g1.size());
  CHECK(a.model.cross_entropy(rows, g1) == back.cross_entropy(rows, g2));
  CHECK(g1 == g2);
  std::remove(path.c_str());
}

TEST_CASE("evaluation: a model that does not fit the world is an error naming both (vocabularies, factored codes)") {
  const WorldConfig world;
  const Tokenizer tok(world);
  ModelConfig small = tiny_sft().model;
  ModelConfig mc = model_config_for(world, tok, small);
  mc.image_vocab += 1;
  EvalOptions e;
  e.rows = 6;
  CHECK_THROWS_WITH_AS(evaluate(Model<float>(mc, 1), e), doctest::Contains("does not match the world"), corl::Error);
  mc = model_config_for(world, tok, small, true);
  std::swap(mc.code_colours, mc.code_shapes);  // 4 x 6 instead of 6 x 4: same image_vocab, factors mixed up
  CHECK_THROWS_WITH_AS(evaluate(Model<float>(mc, 1), e),
                       doctest::Contains("factored codes (4 colours x 6 shapes) do not match the world (6 x 4)"),
                       corl::Error);
  CHECK(evaluate(Model<float>(model_config_for(world, tok, small, true), 1), e).geneval.total() == 6);
}

TEST_CASE("evaluation: JSON has exactly geneval{overall, 6 categories} and qa{mc, oe}, values in [0, 1]") {
  SftOptions o = tiny_sft();
  o.steps = 2;
  const SftResult r = run_sft(o, nullptr);
  EvalOptions e;
  e.rows = 12;
  e.batch = 5;
  const EvalResult res = evaluate(r.model, e);
  CHECK(res.geneval.total() == 12);
  CHECK(res.mc_total + res.oe_total == 12);
  const Json j = res.to_json();
  REQUIRE(j.as_object().size() == 2);
  const Json& g = j.at("geneval");
  REQUIRE(g.as_object().size() == 7);
  CHECK(g.as_object()[0].first == "overall");
  for (const auto& [k, v] : g.as_object()) CHECK((v.as_number() >= 0 && v.as_number() <= 1));
  CHECK(g.find("single_object") != nullptr);
  CHECK(g.find("color_attr") != nullptr);
  const Json& qa = j.at("qa");
  REQUIRE(qa.as_object().size() == 2);
  CHECK(qa.at("mc").as_number() == doctest::Approx(res.mc()));
  CHECK(qa.at("oe").as_number() == doctest::Approx(res.oe()));
  CHECK(res.table().find("overall") != std::string::npos);
  // The in-distribution view: the same number of prompts from the training specs, GenEval only.
  EvalOptions train_prompts = e;
  train_prompts.split = Split::train;
  train_prompts.qa = false;
  const EvalResult tr = evaluate(r.model, train_prompts);
  CHECK(tr.geneval.total() == 12);
  CHECK(tr.mc_total + tr.oe_total == 0);
  const SpecSplit specs = split_specs(e.world);
  GeneratorOptions gen;
  gen.rows = 12;
  gen.seed = e.seed;
  gen.split = Split::train;
  for (const UnifiedRow& row : generate_rows(e.world, gen))
    CHECK(std::any_of(specs.train.begin(), specs.train.end(),
                      [&](const PromptSpec& s) { return s.key() == row.spec.key(); }));
}

TEST_CASE("command-line arguments: values, flags and errors name the option") {
  const Args a("sft", {"--steps", "12", "--quiet", "--lr", "0.5"}, {"--steps", "--lr", "--quiet!"});
  CHECK(a.get_int("--steps", 0) == 12);
  CHECK(a.get_double("--lr", 0) == 0.5);
  CHECK(a.has("--quiet"));
  CHECK(a.get_int("--missing", 7) == 7);
  CHECK_THROWS_WITH_AS(Args("sft", {"--stepz", "1"}, {"--steps"}), doctest::Contains("unknown option '--stepz'"),
                       corl::Error);
  CHECK_THROWS_WITH_AS(Args("sft", {"--steps"}, {"--steps"}), doctest::Contains("option --steps needs a value"),
                       corl::Error);
  const Args bad("sft", {"--steps", "12x"}, {"--steps"});
  CHECK_THROWS_WITH_AS(bad.get_int("--steps", 0), doctest::Contains("--steps = '12x', expected an integer"),
                       corl::Error);
}

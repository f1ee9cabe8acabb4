// The shapes world: config validation, codes, prompt texts <-> specs, hand-checked captions and questions, the
// generator's determinism, train/test disjointness, and the consistency of generated rows (each reference image
// satisfies its prompt; each gold answer is right for its image).
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>

#include "corl/core/error.hpp"
#include "geneval.hpp"
#include "world.hpp"
#include "world_answers.hpp"

using namespace ulm;

namespace {

// Default world: colours red 0, green 1, blue 2, yellow 3, purple 4, orange 5; shapes circle 0, square 1,
// triangle 2, star 3; code = 1 + colour * 4 + shape.
constexpr int kRedCircle = 1, kBlueSquare = 10, kGreenStar = 8;

// row 0: red circle, ., ., blue square / row 1 empty / row 2: ., green star, ., . / row 3: ., ., ., green star
Grid hand_grid() {
  return {kRedCircle, 0, 0, kBlueSquare, 0, 0, 0, 0, 0, kGreenStar, 0, 0, 0, 0, 0, kGreenStar};
}

std::string all_text(const std::vector<UnifiedRow>& rows, const WorldConfig& config) {
  std::string s;
  for (const UnifiedRow& r : rows) s += dump_json(row_to_json(r, config)) + "\n";
  return s;
}

}  // namespace

TEST_CASE("config: defaults are valid - codes are 1 + colour * S + shape - bad fields are named") {
  const WorldConfig config;
  CHECK_NOTHROW(config.validate());
  CHECK(config.codebook_size() == 25);
  CHECK(config.code(0, 0) == 1);
  CHECK(config.code(2, 1) == 10);
  CHECK(config.code(5, 3) == 24);
  const Cell c = decode_code(10, config);
  CHECK(c.colour == 2);
  CHECK(c.shape == 1);
  CHECK(decode_code(0, config).empty());
  CHECK_THROWS_WITH_AS(decode_code(25, config), doctest::Contains("code = 25"), corl::Error);
  CHECK(config.plural(3) == "stars");
  CHECK(config.shape_index("stars") == 3);
  CHECK(config.colour_index("purple") == 4);

  WorldConfig bad = config;
  bad.colours.push_back("red");
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("colours[6] = 'red'"), corl::Error);
  bad = config;
  bad.shapes[0] = "Circle";
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("shapes[0] = 'Circle'"), corl::Error);
  bad = config;
  bad.colours[1] = "top";  // a function word: would make prompts ambiguous
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("colours[1] = 'top'"), corl::Error);
  bad = config;
  bad.height = 0;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("height = 0"), corl::Error);
  bad = config;
  bad.max_count = 17;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("max_count = 17"), corl::Error);
  bad = config;
  bad.max_distractors = 13;  // 16 cells - 4
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("max_distractors = 13"), corl::Error);
  Grid g = hand_grid();
  g[5] = 30;
  CHECK_THROWS_WITH_AS(validate_grid(g, config, "test"), doctest::Contains("grid[5] = 30"), corl::Error);
  g.pop_back();
  CHECK_THROWS_WITH_AS(validate_grid(g, config, "test"), doctest::Contains("15 cells"), corl::Error);
}

TEST_CASE("prompts: hand-written texts, parse round trip over every spec and phrasing, canonical keys") {
  const WorldConfig config;
  CHECK(prompt_text({Category::single_object, {{2, -1, 1}}, Relation::left_of}, config) == "a triangle");
  CHECK(prompt_text({Category::counting, {{3, -1, 3}}, Relation::left_of}, config) == "three stars");
  CHECK(prompt_text({Category::counting, {{3, -1, 1}}, Relation::left_of}, config) == "one star");
  CHECK(prompt_text({Category::colours, {{1, 2, 1}}, Relation::left_of}, config) == "a blue square");
  CHECK(prompt_text({Category::colours, {{3, 5, 1}}, Relation::left_of}, config) == "an orange star");
  CHECK(prompt_text({Category::two_objects, {{0, -1, 1}, {1, -1, 1}}, Relation::left_of}, config) ==
        "a circle and a square");
  CHECK(prompt_text({Category::position, {{0, -1, 1}, {1, -1, 1}}, Relation::below}, config) ==
        "a circle below a square");
  CHECK(prompt_text({Category::colour_attribution, {{0, 0, 1}, {3, 2, 1}}, Relation::left_of}, config) ==
        "a red circle and a blue star");

  // Counts of canonical specs: S, S(S-1)/2, S * max_count, C S, S(S-1) * 2 relations, pairs of (colour, shape)
  // with different shapes = (C S)(C S - C) / 2.
  CHECK(enumerate_specs(Category::single_object, config).size() == 4);
  CHECK(enumerate_specs(Category::two_objects, config).size() == 6);
  CHECK(enumerate_specs(Category::counting, config).size() == 16);
  CHECK(enumerate_specs(Category::colours, config).size() == 24);
  CHECK(enumerate_specs(Category::position, config).size() == 24);
  CHECK(enumerate_specs(Category::colour_attribution, config).size() == 216);

  std::set<std::string> keys;
  for (const Category c : kAllCategories) {
    for (const PromptSpec& spec : enumerate_specs(c, config)) {
      CHECK(keys.insert(spec.key()).second);
      const std::string text = prompt_text(spec, config);
      CHECK(parse_prompt(text, config) == spec);
      CHECK(spec_from_json(spec_to_json(spec, config), config) == spec);
      if (spec.objects.size() == 2) {  // the mirrored phrasing has the same key
        PromptSpec mirrored = spec;
        std::swap(mirrored.objects[0], mirrored.objects[1]);
        if (c == Category::position)
          mirrored.relation = spec.relation == Relation::left_of ? Relation::right_of : Relation::below;
        CHECK(mirrored.key() == spec.key());
        CHECK(parse_prompt(prompt_text(mirrored, config), config) == mirrored);
      }
    }
  }
  CHECK(parse_prompt("  an  orange star ", config) == PromptSpec{Category::colours, {{3, 5, 1}}, Relation::left_of});
  CHECK_THROWS_WITH_AS(parse_prompt("a red hexagon", config), doctest::Contains("'hexagon'"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_prompt("a red circle and a square", config), doctest::Contains("both"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_prompt("a circle near a square", config), doctest::Contains("'near'"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_prompt("two star", config), doctest::Contains("expected 'stars'"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_prompt("a circle and a circle", config), doctest::Contains("different shapes"),
                       corl::Error);
}

TEST_CASE("caption: groups in order of first appearance, counted") {
  const WorldConfig config;
  CHECK(caption(hand_grid(), config) == "a red circle , a blue square and two green stars");
  CHECK(caption(empty_grid(config), config) == "nothing");
  Grid g = empty_grid(config);
  g[7] = kBlueSquare;
  g[2] = kBlueSquare;
  CHECK(caption(g, config) == "two blue squares");
  g[0] = kRedCircle;
  CHECK(caption(g, config) == "a red circle and two blue squares");
}

TEST_CASE("questions on a hand grid: gold answers and reasoning are right") {
  const WorldConfig config;
  const Grid g = hand_grid();
  std::set<std::string> seen_kinds;
  for (std::uint32_t stream = 0; stream < 400; ++stream) {
    corl::CounterRng rng(7, stream);
    const QuestionType type = stream % 2 ? QuestionType::multiple_choice : QuestionType::open_ended;
    const Question q = make_question(g, config, type, rng);
    seen_kinds.insert(std::string(question_type_name(type)) + ":" + std::string(question_kind_name(q.kind)));
    CHECK(q.reasoning.rfind("i see a red circle , a blue square and two green stars .", 0) == 0);
    // The gold answer as plain text (the option text for mc).
    std::string answer = q.answer;
    if (type == QuestionType::multiple_choice) {
      REQUIRE(q.options.size() == 4);
      CHECK(std::set<std::string>(q.options.begin(), q.options.end()).size() == 4);
      REQUIRE(q.answer.size() == 1);
      answer = q.options[static_cast<std::size_t>(q.answer[0] - 'A')];
      CHECK(q.text.find(" A . ") != std::string::npos);
    } else {
      CHECK(q.options.empty());
    }
    if (q.text == "how many stars are there ?") CHECK(answer == "2");
    if (q.text.rfind("how many circles", 0) == 0) CHECK(answer == "1");
    if (q.text.rfind("how many triangles", 0) == 0) CHECK(answer == "0");
    if (q.text.rfind("what colour is the square ?", 0) == 0) CHECK(answer == "blue");
    if (q.text.rfind("what colour is the circle ?", 0) == 0) CHECK(answer == "red");
    if (q.text.rfind("where is the circle ?", 0) == 0) CHECK(answer == "top left");
    if (q.text.rfind("where is the square ?", 0) == 0) CHECK(answer == "top right");
    if (q.text.rfind("where is the circle relative to the square ?", 0) == 0) CHECK(answer == "left of");
    if (q.text.rfind("where is the square relative to the circle ?", 0) == 0) CHECK(answer == "right of");
    if (q.text == "is there a green star ?" || q.text == "is there a star ?") CHECK(answer == "yes");
    if (q.text == "is there a red star ?" || q.text == "is there a triangle ?") CHECK(answer == "no");
    if (q.text == "is there a red star ?") CHECK(q.reasoning.find(" so there is no red star .") != std::string::npos);
    // The star occurs twice: never asked about as "the star".
    CHECK(q.text.find("the star") == std::string::npos);
    CHECK(solution_text(q) == "<think> " + q.reasoning + " </think> <answer> " + q.answer + " </answer>");
  }
  // Every kind that is well-posed here was drawn (mc has no is_there: yes/no cannot fill four options).
  for (const char* k : {"oe:count", "oe:colour_of", "oe:where_is", "oe:is_there", "oe:relation", "mc:count",
                        "mc:colour_of", "mc:where_is", "mc:relation"})
    CHECK_MESSAGE(seen_kinds.count(k) == 1, k);
  CHECK(seen_kinds.count("mc:is_there") == 0);
}

TEST_CASE("split: disjoint by canonical key, covers every spec, each category in both, deterministic") {
  const WorldConfig config;
  const SpecSplit split = split_specs(config);
  std::set<std::string> train, test;
  for (const PromptSpec& s : split.train) train.insert(s.key());
  for (const PromptSpec& s : split.test) test.insert(s.key());
  for (const std::string& k : test) CHECK(train.count(k) == 0);
  CHECK(train.size() + test.size() == 4 + 6 + 16 + 24 + 24 + 216);
  for (const Category c : kAllCategories) {
    const auto in = [c](const PromptSpec& s) { return s.category == c; };
    CHECK(std::count_if(split.test.begin(), split.test.end(), in) >= 1);
    CHECK(std::count_if(split.train.begin(), split.train.end(), in) >= 1);
  }
  // round(0.2 * n) per category: 1 + 1 + 3 + 5 + 5 + 43.
  CHECK(split.test.size() == 58);
  const SpecSplit again = split_specs(config);
  CHECK(again.test == split.test);
  SplitOptions other;
  other.seed = 99;
  CHECK(split_specs(config, other).test != split.test);
}

TEST_CASE("generator: deterministic from its seed, prefix-stable, rows drawn from their split only") {
  const WorldConfig config;
  GeneratorOptions options;
  options.seed = 5;
  options.rows = 60;
  const std::vector<UnifiedRow> a = generate_rows(config, options);
  const std::vector<UnifiedRow> b = generate_rows(config, options);
  CHECK(all_text(a, config) == all_text(b, config));
  options.rows = 30;
  const std::vector<UnifiedRow> prefix = generate_rows(config, options);
  CHECK(all_text(prefix, config) == all_text({a.begin(), a.begin() + 30}, config));
  options.rows = 60;
  options.seed = 6;
  CHECK(all_text(generate_rows(config, options), config) != all_text(a, config));

  const SpecSplit split = split_specs(config);
  std::set<std::string> train, test;
  for (const PromptSpec& s : split.train) train.insert(s.key());
  for (const PromptSpec& s : split.test) test.insert(s.key());
  options.rows = 240;
  options.split = Split::test;
  const std::vector<UnifiedRow> test_rows = generate_rows(config, options);
  options.split = Split::train;
  const std::vector<UnifiedRow> train_rows = generate_rows(config, options);
  for (const UnifiedRow& r : test_rows) CHECK(test.count(r.spec.key()) == 1);
  for (const UnifiedRow& r : train_rows) CHECK(train.count(r.spec.key()) == 1);
  // Categories cycle, so each gets rows / 6.
  for (const Category c : kAllCategories)
    CHECK(std::count_if(train_rows.begin(), train_rows.end(), [c](const UnifiedRow& r) { return r.category == c; }) ==
          40);
}

TEST_CASE("generator: every reference satisfies its prompt - gold solutions score as correct - mc/oe mix") {
  WorldConfig config;
  config.max_distractors = 2;
  GeneratorOptions options;
  options.seed = 11;
  options.rows = 600;
  const std::vector<UnifiedRow> rows = generate_rows(config, options);
  int mc = 0;
  for (const UnifiedRow& r : rows) {
    CHECK_MESSAGE(satisfies(r.image, r.spec, config), r.prompt);
    CHECK(parse_prompt(r.prompt, config) == r.spec);
    CHECK(r.caption == caption(r.image, config));
    CHECK(completion_correct(r.solution, r));
    if (r.question_type == QuestionType::multiple_choice) {
      ++mc;
      CHECK(r.options.size() == 4);
    }
    // Distractors never share a shape with the prompt, so counting references have exactly the count.
    if (r.category == Category::counting) {
      int n = 0;
      for (const Placed& p : objects_in(r.image, config)) n += p.shape == r.spec.objects[0].shape;
      CHECK(n == r.spec.objects[0].count);
    }
  }
  CHECK(mc > 240);
  CHECK(mc < 360);
}

TEST_CASE("generator: a non-default world (3x5, three colours, five shapes with irregular plurals)") {
  WorldConfig config;
  config.height = 3;
  config.width = 5;
  config.colours = {"red", "teal", "gold"};
  config.shapes = {"circle", "cross", "star", "heart", "diamond"};
  config.shape_plurals = {"circles", "crosses", "stars", "hearts", "diamonds"};
  config.max_count = 3;
  CHECK(config.codebook_size() == 16);
  GeneratorOptions options;
  options.rows = 120;
  for (const UnifiedRow& r : generate_rows(config, options)) {
    CHECK(satisfies(r.image, r.spec, config));
    CHECK(completion_correct(r.solution, r));
    if (r.question_type == QuestionType::multiple_choice) CHECK(r.question_kind != QuestionKind::colour_of);  // C < 4
  }
  CHECK(parse_prompt("two crosses", config).objects[0].count == 2);
  // The middle row of an odd grid is "middle": cell (1, 2) is the centre.
  Grid g = empty_grid(config);
  g[1 * 5 + 2] = config.code(0, 1);
  corl::CounterRng rng(3, 0);
  bool asked = false;
  for (int k = 0; k < 50 && !asked; ++k) {
    const Question q = make_question(g, config, QuestionType::open_ended, rng);
    if (q.kind == QuestionKind::where_is) {
      CHECK(q.answer == "centre");
      asked = true;
    }
  }
  CHECK(asked);
}

TEST_CASE("questions on an empty grid (a policy that drew nothing) are still well-posed") {
  const WorldConfig config;
  const Grid g = empty_grid(config);
  for (std::uint32_t stream = 0; stream < 40; ++stream) {
    corl::CounterRng rng(9, stream);
    const QuestionType type = stream % 2 ? QuestionType::multiple_choice : QuestionType::open_ended;
    const Question q = make_question(g, config, type, rng);
    CHECK((q.kind == QuestionKind::count || q.kind == QuestionKind::is_there));
    CHECK(q.reasoning.rfind("i see nothing .", 0) == 0);
    if (type == QuestionType::open_ended) CHECK((q.answer == "0" || q.answer == "no"));
    if (type == QuestionType::multiple_choice)
      CHECK(q.options[static_cast<std::size_t>(q.answer[0] - 'A')] == "0");
  }
}

TEST_CASE("a one-row world has no above/below prompts and still generates consistent rows") {
  WorldConfig config;
  config.height = 1;
  config.width = 5;
  config.max_count = 3;
  for (const PromptSpec& s : enumerate_specs(Category::position, config)) CHECK(s.relation == Relation::left_of);
  CHECK(enumerate_specs(Category::position, config).size() == 12);
  GeneratorOptions options;
  options.rows = 60;
  for (const UnifiedRow& r : generate_rows(config, options)) {
    CHECK(satisfies(r.image, r.spec, config));
    CHECK(completion_correct(r.solution, r));
    if (r.question_kind == QuestionKind::where_is && r.question_type == QuestionType::open_ended)
      CHECK((r.answer == "middle left" || r.answer == "middle right" || r.answer == "centre"));  // centre: column 2
  }
}

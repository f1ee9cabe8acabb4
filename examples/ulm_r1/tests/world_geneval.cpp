// World GenEval: every category's rule on hand-made grids, satisfied and violated; tallies (overall = mean of the
// category accuracies); and the QA answer helpers (normalisation, extraction, option letters).
#include <doctest/doctest.h>

#include <cmath>

#include "corl/core/error.hpp"
#include "geneval.hpp"
#include "world.hpp"
#include "world_answers.hpp"

using namespace ulm;

namespace {
// Default world, code = 1 + colour * 4 + shape; colours red 0 green 1 blue 2; shapes circle 0 square 1 triangle 2
// star 3.
// row 0: red circle, ., ., blue square / row 1 empty / row 2: ., green star, ., . / row 3: ., ., ., green star
Grid hand_grid() { return {1, 0, 0, 10, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 8}; }

bool ok(const std::string& prompt) {
  const WorldConfig config;
  return satisfies(hand_grid(), parse_prompt(prompt, config), config);
}
}  // namespace

TEST_CASE("geneval: single object and two objects") {
  CHECK(ok("a circle"));
  CHECK(ok("a star"));
  CHECK_FALSE(ok("a triangle"));
  CHECK(ok("a circle and a square"));
  CHECK(ok("a star and a circle"));
  CHECK_FALSE(ok("a circle and a triangle"));
  CHECK_FALSE(ok("a triangle and a square"));
}

TEST_CASE("geneval: counting is exact") {
  CHECK(ok("two stars"));
  CHECK_FALSE(ok("one star"));
  CHECK_FALSE(ok("three stars"));
  CHECK(ok("one circle"));
  CHECK_FALSE(ok("two circles"));
  CHECK_FALSE(ok("one triangle"));
  const WorldConfig config;
  const PromptCheck check = check_prompt(hand_grid(), parse_prompt("three stars", config), config);
  CHECK(check.reason == "found 2 stars, expected exactly 3");
}

TEST_CASE("geneval: colours and colour attribution bind colour to shape") {
  CHECK(ok("a blue square"));
  CHECK(ok("a green star"));
  CHECK_FALSE(ok("a red square"));   // the red object is the circle
  CHECK_FALSE(ok("a blue circle"));  // the blue object is the square
  CHECK(ok("a red circle and a green star"));
  CHECK(ok("a blue square and a red circle"));
  CHECK_FALSE(ok("a red circle and a blue star"));   // colours swapped between the objects
  CHECK_FALSE(ok("a green circle and a blue square"));
  const WorldConfig config;
  CHECK(check_prompt(hand_grid(), parse_prompt("a green circle and a blue star", config), config).reason ==
        "no green circle; no blue star");
}

TEST_CASE("geneval: position must hold for every instance pair, as in GenEval") {
  CHECK(ok("a circle left of a square"));
  CHECK_FALSE(ok("a circle right of a square"));
  CHECK_FALSE(ok("a circle above a square"));  // same row: neither above nor below
  CHECK_FALSE(ok("a circle below a square"));
  CHECK(ok("a star below a circle"));
  CHECK_FALSE(ok("a star above a circle"));
  CHECK_FALSE(ok("a square right of a star"));  // right of the star at column 1, not of the one at column 3
  CHECK_FALSE(ok("a square left of a star"));   // no star right of column 3
  CHECK_FALSE(ok("a star left of a square"));   // the star at (3, 3) shares the square's column
  CHECK(ok("a circle above a star"));           // row 0 above rows 2 and 3
  CHECK(ok("a star right of a circle"));        // columns 1 and 3 right of column 0
  CHECK(check_prompt(hand_grid(), parse_prompt("a star left of a square", WorldConfig{}), WorldConfig{}).reason ==
        "the star at (3, 3) is not left of the square at (0, 3)");
  CHECK(check_prompt(hand_grid(), parse_prompt("a star below a circle", WorldConfig{}), WorldConfig{}).reason ==
        "every star is below every circle");
  CHECK_FALSE(ok("a triangle left of a square"));  // absent object
  const WorldConfig config;
  CHECK(check_prompt(hand_grid(), parse_prompt("a triangle left of a square", config), config).reason ==
        "no triangle");
  CHECK_THROWS_WITH_AS(check_prompt(Grid(15, 0), parse_prompt("a star", config), config),
                       doctest::Contains("grid has 15 cells"), corl::Error);
}

TEST_CASE("geneval: tally per category, overall is the mean over categories present") {
  const WorldConfig config;
  const std::vector<std::string> prompts = {"a circle", "a triangle", "two stars", "one star", "three stars",
                                            "a circle left of a square"};
  std::vector<PromptSpec> specs;
  for (const std::string& p : prompts) specs.push_back(parse_prompt(p, config));
  const GenEvalTally tally = evaluate_geneval(specs, std::vector<Grid>(prompts.size(), hand_grid()), config);
  CHECK(tally.total() == 6);
  CHECK(tally.correct(Category::single_object) == 1);
  CHECK(tally.accuracy(Category::single_object) == doctest::Approx(0.5));
  CHECK(tally.accuracy(Category::counting) == doctest::Approx(1.0 / 3.0));
  CHECK(tally.accuracy(Category::position) == doctest::Approx(1.0));
  CHECK(tally.accuracy(Category::colours) == 0.0);  // no prompts: 0 and left out of the mean
  CHECK(tally.overall() == doctest::Approx((0.5 + 1.0 / 3.0 + 1.0) / 3.0));
  const Json j = tally.to_json();
  CHECK(j.at("overall").as_number() == doctest::Approx(0.611111111));
  CHECK(j.at("categories").at("counting").at("total").as_int() == 3);
  CHECK(tally.table().find("overall") != std::string::npos);
  CHECK(GenEvalTally{}.overall() == 0.0);
  // standard error by hand: single_object 1/2 of 2, counting 1/3 of 3, position 1/1 (contributes 0), K = 3
  CHECK(tally.overall_standard_error() ==
        doctest::Approx(std::sqrt(0.5 * 0.5 / 2 + (1.0 / 3.0) * (2.0 / 3.0) / 3) / 3.0));
  CHECK(GenEvalTally{}.overall_standard_error() == 0.0);
  CHECK_THROWS_WITH_AS(evaluate_geneval(specs, {hand_grid()}, config), doctest::Contains("6 specs but 1 grids"),
                       corl::Error);
}

TEST_CASE("answers: normalisation, extraction, option letters, matching") {
  CHECK(normalise_answer("  The Top  Left. ") == "top left");
  CHECK(normalise_answer("Two.") == "2");
  CHECK(normalise_answer("2") == "2");
  CHECK(normalise_answer("YES!") == "yes");
  CHECK(normalise_answer("a") == "a");  // a lone article is kept
  CHECK(normalise_answer("") == "");
  CHECK(extract_answer("<think> x </think> <answer>  red </answer>") == std::optional<std::string>("red"));
  CHECK(extract_answer("<answer> a </answer> <answer> b </answer>") == std::optional<std::string>("b"));
  CHECK_FALSE(extract_answer("<answer> open").has_value());
  CHECK_FALSE(extract_answer("red").has_value());
  const std::vector<std::string> options = {"red", "blue", "green", "yellow"};
  CHECK(extract_option_letter("B") == std::optional<char>('B'));
  CHECK(extract_option_letter("b") == std::optional<char>('B'));
  CHECK(extract_option_letter("(C)") == std::optional<char>('C'));
  CHECK(extract_option_letter("option D") == std::optional<char>('D'));
  CHECK(extract_option_letter("A . red") == std::optional<char>('A'));
  CHECK(extract_option_letter("Green", options) == std::optional<char>('C'));
  CHECK_FALSE(extract_option_letter("a blue").has_value());  // the article is not option A ...
  CHECK(extract_option_letter("a blue", options) == std::optional<char>('B'));  // ... but "blue" is option B
  CHECK_FALSE(extract_option_letter("E").has_value());
  CHECK_FALSE(extract_option_letter("Blue", {"blue", "blue", "x", "y"}).has_value());  // ambiguous
  CHECK(answer_matches("two", "2", QuestionType::open_ended));
  CHECK(answer_matches("Top left.", "top left", QuestionType::open_ended));
  CHECK_FALSE(answer_matches("", "", QuestionType::open_ended));
  CHECK_FALSE(answer_matches("3", "2", QuestionType::open_ended));
  CHECK(answer_matches("blue", "B", QuestionType::multiple_choice, options));
  CHECK_FALSE(answer_matches("A", "B", QuestionType::multiple_choice, options));
  UnifiedRow row;
  row.question_type = QuestionType::multiple_choice;
  row.options = options;
  row.answer = std::string(1, 'D');  // not = "D": GCC 12 -Wrestrict false positive (PR 105329) at -O2
  CHECK(completion_correct("<think> it is yellow . </think> <answer> D </answer>", row));
  CHECK_FALSE(completion_correct("<think> it is yellow . </think> D", row));
}

#include <doctest/doctest.h>

#include <corl/reward/accuracy.hpp>
#include <corl/reward/format.hpp>

#include <string>
#include <vector>

TEST_CASE("format reward: exactly think then answer, whitespace between, nothing else") {
  const corl::FormatReward f;
  CHECK(f("<think>two red squares</think><answer>B</answer>") == 1.0);
  CHECK(f("<think>x</think>\n  <answer>B</answer>\n") == 1.0);
  CHECK(f("  <think></think> <answer></answer>") == 1.0);
  CHECK(f("<think>x</think> so <answer>B</answer>") == 0.0);       // text between the blocks
  CHECK(f("Sure! <think>x</think><answer>B</answer>") == 0.0);     // text before
  CHECK(f("<think>x</think><answer>B</answer> done") == 0.0);      // text after
  CHECK(f("<answer>B</answer><think>x</think>") == 0.0);           // wrong order
  CHECK(f("<think>x</think><answer>B</answer><answer>C</answer>") == 0.0);  // two answers
  CHECK(f("<think>a <think>b</think><answer>B</answer>") == 0.0);  // nested tag
  CHECK(f("<think>x</think><answer>B") == 0.0);                    // unterminated
  CHECK(f("") == 0.0);
  CHECK(f(corl::TextSample{"<think>t</think><answer>a</answer>", "ignored"}) == 1.0);
}

TEST_CASE("extract_answer takes the last complete answer block, trimmed") {
  CHECK(corl::extract_answer("<think>t</think><answer>  B. red \n</answer>").value() == "B. red");
  CHECK(corl::extract_answer("<answer>A</answer> then <answer>C</answer>").value() == "C");
  CHECK_FALSE(corl::extract_answer("no tags at all").has_value());
  CHECK_FALSE(corl::extract_answer("<answer>open only").has_value());
}

TEST_CASE("option letters: the forms the reference code never matched") {
  using corl::extract_option_letter;
  CHECK(extract_option_letter("B", 4).value() == 'B');
  CHECK(extract_option_letter("b", 4).value() == 'B');
  CHECK(extract_option_letter("(B)", 4).value() == 'B');
  CHECK(extract_option_letter("B.", 4).value() == 'B');
  CHECK(extract_option_letter("B. red", 4).value() == 'B');
  CHECK(extract_option_letter("B) red", 4).value() == 'B');
  CHECK(extract_option_letter("(C) two circles", 4).value() == 'C');
  CHECK(extract_option_letter("the answer is B", 4).value() == 'B');
  CHECK(extract_option_letter("The answer is (D).", 4).value() == 'D');
  CHECK(extract_option_letter("Answer: C", 4).value() == 'C');
  CHECK(extract_option_letter("option A", 4).value() == 'A');
  CHECK(extract_option_letter("I think it is C.", 4).value() == 'C');
  CHECK(extract_option_letter("A is correct", 4).value() == 'A');
  CHECK_FALSE(extract_option_letter("a red circle", 4).has_value());
  CHECK_FALSE(extract_option_letter("A red circle", 4).has_value());
  CHECK_FALSE(extract_option_letter("E", 4).has_value());             // out of range for 4 options
  CHECK_FALSE(extract_option_letter("B or C", 4).has_value());        // ambiguous
  CHECK_FALSE(extract_option_letter("", 4).has_value());
  const std::vector<std::string> options = {"blue", "red", "green", "three"};
  CHECK(extract_option_letter("red", 4, options).value() == 'B');
  CHECK(extract_option_letter("Red.", 4, options).value() == 'B');
  CHECK(extract_option_letter("3", 4, options).value() == 'D');      // number word <-> digit
}

TEST_CASE("open-ended normalisation: case, trailing punctuation, number words, articles") {
  CHECK(corl::normalize_open_answer("  Three.  ") == "3");
  CHECK(corl::normalize_open_answer("The Red Circle!") == "red circle");
  CHECK(corl::normalize_open_answer("\"blue\"") == "blue");
  CHECK(corl::normalize_open_answer("3.0") == "3");
  CHECK(corl::open_ended_correct("three", "3"));
  CHECK(corl::open_ended_correct("Two red squares.", "2 red squares"));
  CHECK_FALSE(corl::open_ended_correct("four", "3"));
  CHECK_FALSE(corl::open_ended_correct("", "3"));
}

TEST_CASE("accuracy reward: multiple choice and open-ended, binary, needs an answer block") {
  const corl::AccuracyReward mc{corl::AnswerKind::multiple_choice, 4};
  CHECK(mc(corl::TextSample{"<think>..</think><answer>B. red</answer>", "B"}) == 1.0);
  CHECK(mc(corl::TextSample{"<think>..</think><answer>the answer is (B)</answer>", "(B)"}) == 1.0);
  CHECK(mc(corl::TextSample{"<think>..</think><answer>C</answer>", "B"}) == 0.0);
  CHECK(mc(corl::TextSample{"B", "B"}) == 0.0);  // no <answer> block: 0, format is scored separately
  struct McSample {
    std::string completion, reference;
    std::vector<std::string> options;
  };
  CHECK(mc(McSample{"<answer>green</answer>", "C", {"blue", "red", "green", "yellow"}}) == 1.0);
  CHECK_THROWS_WITH_AS(mc(corl::TextSample{"<answer>B</answer>", "no letter here"}),
                       doctest::Contains("ground truth 'no letter here' names no option letter"), corl::Error);
  const corl::AccuracyReward oe{corl::AnswerKind::open_ended};
  CHECK(oe(corl::TextSample{"<answer>Four.</answer>", "4"}) == 1.0);
  CHECK(oe(corl::TextSample{"<answer>five</answer>", "4"}) == 0.0);
  const corl::AccuracyReward bad{corl::AnswerKind::multiple_choice, 0};
  CHECK_THROWS_WITH_AS(bad(corl::TextSample{"<answer>B</answer>", "B"}), doctest::Contains("num_options = 0"),
                       corl::Error);
}

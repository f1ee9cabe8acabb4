// Tokenizer: fixed special ids, round trip, punctuation split, unknown-word errors, and that every text the
// generator emits (prompts, questions, solutions, captions) is in the vocabulary.
#include <doctest/doctest.h>

#include <set>

#include "corl/core/error.hpp"
#include "tokenizer.hpp"
#include "world.hpp"

using namespace ulm;

TEST_CASE("tokenizer: special tokens have fixed ids - image codes are separate") {
  const WorldConfig config;
  const Tokenizer tok(config);
  CHECK(tok.id("<pad>") == Tokenizer::kPad);
  CHECK(tok.id("<bos>") == 1);
  CHECK(tok.id("<eos>") == 2);
  CHECK(tok.id("<image>") == 3);
  CHECK(tok.id("</image>") == 4);
  CHECK(tok.id("<think>") == Tokenizer::kThinkBegin);
  CHECK(tok.id("</think>") == 6);
  CHECK(tok.id("<answer>") == 7);
  CHECK(tok.id("</answer>") == Tokenizer::kAnswerEnd);
  CHECK(tok.image_codebook_size() == 25);
  // 9 specials + ";" "!" + 4 punctuation + 4 letters + 32 function words + 21 number words + 21 digits
  // + 6 colours + 4 shapes + 4 plurals.
  CHECK(tok.vocab_size() == 9 + 2 + 4 + 4 + 32 + 21 + 21 + 6 + 4 + 4);
  const std::set<std::string> unique(tok.vocabulary().begin(), tok.vocabulary().end());
  CHECK(static_cast<int>(unique.size()) == tok.vocab_size());
  for (int i = 0; i < tok.vocab_size(); ++i) CHECK(tok.id(tok.word(i)) == i);
}

TEST_CASE("tokenizer: encode/decode round trip - punctuation and tags split off words") {
  const Tokenizer tok{WorldConfig{}};
  const std::string text = "<think> i see a red circle . </think> <answer> A </answer>";
  const std::vector<int> ids = tok.encode(text);
  CHECK(ids.size() == 11);
  CHECK(ids.front() == Tokenizer::kThinkBegin);
  CHECK(ids.back() == Tokenizer::kAnswerEnd);
  CHECK(tok.decode(ids) == text);
  // Glued punctuation and tags give the same ids as the spaced form.
  CHECK(tok.encode("<think>i see a red circle.</think><answer>A</answer>") == ids);
  CHECK(tok.encode("how many stars are there?") == tok.encode("how many stars are there ?"));
  CHECK(Tokenizer::split_words("is there a star?") == std::vector<std::string>{"is", "there", "a", "star", "?"});
  std::vector<int> padded = {Tokenizer::kBos};
  padded.insert(padded.end(), ids.begin(), ids.end());
  padded.push_back(Tokenizer::kEos);
  padded.push_back(Tokenizer::kPad);
  CHECK(tok.decode(padded, /*skip_special=*/true) == text);
  CHECK(tok.decode(padded).rfind("<bos> <think>", 0) == 0);
  CHECK(tok.encode("").empty());
}

TEST_CASE("tokenizer: unknown words and ids are errors that name them") {
  const Tokenizer tok{WorldConfig{}};
  CHECK_THROWS_WITH_AS(tok.encode("a red hexagon"), doctest::Contains("unknown word 'hexagon' (word 2"), corl::Error);
  CHECK_THROWS_WITH_AS(tok.encode("A RED circle"), doctest::Contains("'RED'"), corl::Error);  // case-sensitive
  CHECK_THROWS_WITH_AS(tok.encode("<img>"), doctest::Contains("'<img>'"), corl::Error);
  CHECK_THROWS_WITH_AS(tok.id("zebra"), doctest::Contains("'zebra'"), corl::Error);
  const std::vector<int> bad = {1, 5, tok.vocab_size()};
  CHECK_THROWS_WITH_AS(tok.decode(bad), doctest::Contains("ids[2] = "), corl::Error);
  CHECK_THROWS_AS(tok.word(-1), corl::Error);
}

TEST_CASE("tokenizer: covers every text the generator emits, default and custom worlds") {
  WorldConfig custom;
  custom.height = 6;
  custom.width = 5;  // 30 cells: digits up to 30
  custom.colours = {"red", "teal", "gold", "blue"};
  custom.shapes = {"cross", "ring", "star"};
  custom.shape_plurals = {"crosses", "rings", "stars"};
  custom.max_distractors = 3;
  for (const WorldConfig& config : {WorldConfig{}, custom}) {
    const Tokenizer tok(config);
    CHECK(tok.contains(std::to_string(config.num_cells())));
    GeneratorOptions options;
    options.rows = 300;
    for (const UnifiedRow& r : generate_rows(config, options)) {
      for (const std::string* s : {&r.prompt, &r.question, &r.solution, &r.caption, &r.answer}) {
        CHECK_NOTHROW(tok.encode(*s));
        CHECK(tok.decode(tok.encode(*s)) == *s);  // generator texts are in canonical spaced form
      }
    }
    CHECK_NOTHROW(tok.encode(kCaptionInstruction));
  }
}

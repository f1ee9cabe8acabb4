// The SPICE-like text side of R_cycle: tuples parsed from prompts and captions, and the F_beta match, on hand-made
// cases whose values are computed by hand in the comments.
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "corl/core/error.hpp"
#include "scene_tuples.hpp"
#include "world.hpp"

using namespace ulm;

namespace {
std::set<std::string> tuples(const std::string& text, bool complete) {
  return scene_tuples(text, WorldConfig{}, complete).tuples;
}
}  // namespace

TEST_CASE("scene tuples: objects, attributes, counts and relations of the world's texts") {
  CHECK(tuples("three stars", false) == std::set<std::string>{"object star", "count star 3"});
  CHECK(tuples("a circle", false) == std::set<std::string>{"object circle"});  // "a" = at least one: no count
  CHECK(tuples("one circle", false) == std::set<std::string>{"object circle", "count circle 1"});
  CHECK(tuples("a red circle and a blue star", false) ==
        std::set<std::string>{"object circle", "attribute circle red", "object star", "attribute star blue"});
  CHECK(tuples("a circle left of a square", false) ==
        std::set<std::string>{"object circle", "object square", "relation circle left of square"});
  CHECK(tuples("a star below a triangle", false).count("relation star below triangle") == 1);
  // A caption is complete: every shape gets its total count, summed over its phrases.
  CHECK(tuples("two red stars , an orange star and a blue square", true) ==
        std::set<std::string>{"object star", "attribute star red", "attribute star orange", "count star 3",
                              "object square", "attribute square blue", "count square 1"});
  // "and" / "," separate phrases: no relation between listed objects.
  CHECK(tuples("a circle and a square", true).count("relation circle left of square") == 0);
  // Words outside the grammar are skipped; "nothing" has no tuples.
  CHECK(tuples("a red circle . </think> <answer> yes", true) ==
        std::set<std::string>{"object circle", "attribute circle red", "count circle 1"});
  CHECK(tuples("nothing", true).empty());
}

TEST_CASE("scene tuples: F_beta of a caption against a prompt") {
  const WorldConfig w;
  // caption {star, star red, star blue, count 3} vs prompt {star, count 3}: P = 2/4, R = 1;
  // F2 = 5 P R / (4 P + R) = 2.5 / 3; F1 = 2 P R / (P + R) = 2/3.
  CHECK(caption_prompt_similarity("two red stars and a blue star", "three stars", w) == doctest::Approx(2.5 / 3.0));
  CHECK(caption_prompt_similarity("two red stars and a blue star", "three stars", w, 1.0) == doctest::Approx(2.0 / 3.0));
  // Wrong count: caption {star, star red, count 1}: P = 1/3, R = 1/2, F2 = (5/6) / (11/6) = 5/11.
  CHECK(caption_prompt_similarity("a red star", "three stars", w) == doctest::Approx(5.0 / 11.0));
  // Colour binding: the swapped caption matches the objects only.
  const double right = caption_prompt_similarity("a red circle and a blue star", "a red circle and a blue star", w);
  const double swapped = caption_prompt_similarity("a blue circle and a red star", "a red circle and a blue star", w);
  CHECK(right == doctest::Approx(5.0 * (4.0 / 6.0) / (4.0 * 4.0 / 6.0 + 1.0)));  // P = 4/6 (counts), R = 1
  CHECK(swapped < right);
  CHECK(swapped > 0.0);
  // Missing object, empty caption.
  CHECK(caption_prompt_similarity("a red circle", "a circle and a square", w) <
        caption_prompt_similarity("a red circle and a blue square", "a circle and a square", w));
  CHECK(caption_prompt_similarity("nothing", "a circle", w) == 0.0);
  // match_tuples edge cases.
  const TupleMatch empty = match_tuples(SceneTuples{}, SceneTuples{}, 2.0);
  CHECK(empty.f == 1.0);
  CHECK_THROWS_WITH_AS(match_tuples(SceneTuples{}, SceneTuples{}, 0.0), doctest::Contains("beta = 0"), corl::Error);
}

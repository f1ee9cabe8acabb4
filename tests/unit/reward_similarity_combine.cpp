#include <doctest/doctest.h>

#include <corl/reward/accuracy.hpp>
#include <corl/reward/combine.hpp>
#include <corl/reward/format.hpp>
#include <corl/reward/text_similarity.hpp>

#include <cmath>
#include <limits>

TEST_CASE("token F1 by hand") {
  // prediction words {2, red, squares}; reference {2, red, circles, and, blue, square} -> common 2
  // P = 2/3, R = 2/6, F1 = 2 (2/9) / (1) = 4/9
  CHECK(corl::token_f1("two red squares", "2 red circles and a blue square") == doctest::Approx(4.0 / 9.0));
  CHECK(corl::token_f1("a red circle", "The red circle.") == 1.0);
  CHECK(corl::token_f1("", "") == 1.0);
  CHECK(corl::token_f1("red", "") == 0.0);
  CHECK(corl::token_f1("blue", "red") == 0.0);
  // multiset: "red red" vs "red": common 1, P = 1/2, R = 1 -> 2/3
  CHECK(corl::token_f1("red red", "red") == doctest::Approx(2.0 / 3.0));
}

TEST_CASE("soft Jaccard by hand") {
  // bigrams of ^circle$: ^c ci ir rc cl le e$ (7); of ^circles$: ^c ci ir rc cl le es s$ (8); common 6 -> 12/15
  CHECK(corl::word_bigram_dice("circle", "circles") == doctest::Approx(0.8));
  CHECK(corl::word_bigram_dice("red", "red") == 1.0);
  // {red, circle} vs {red, circles}: I = 0.5 ((1 + 0.8) + (1 + 0.8)) = 1.8, J = 1.8 / (4 - 1.8) = 9/11
  CHECK(corl::soft_jaccard("a red circle", "red circles") == doctest::Approx(1.8 / 2.2));
  CHECK(corl::soft_jaccard("three blue squares", "3 blue squares") == 1.0);
  CHECK(corl::soft_jaccard("", "") == 1.0);
  CHECK(corl::soft_jaccard("x", "") == 0.0);
  const double j = corl::soft_jaccard("green triangle left", "blue square right of a circle");
  CHECK(j >= 0.0);
  CHECK(j < 0.3);
}

TEST_CASE("weighted sum of rewards, clipping and normalisation") {
  const corl::WeightedSum unified{{0.8, 0.8}, corl::AccuracyReward{corl::AnswerKind::open_ended}, corl::FormatReward{}};
  CHECK(unified(corl::TextSample{"<think>t</think><answer>3</answer>", "three"}) == doctest::Approx(1.6));
  CHECK(unified(corl::TextSample{"<answer>3</answer>", "three"}) == doctest::Approx(0.8));
  CHECK(unified(corl::TextSample{"<think>t</think><answer>4</answer>", "three"}) == doctest::Approx(0.8));
  const auto parts = unified.parts_values(corl::NoPolicy{}, corl::TextSample{"<answer>3</answer>", "three"});
  CHECK(parts[0] == 1.0);
  CHECK(parts[1] == 0.0);

  const corl::Normalized norm{unified, 0.0, 1.6};
  CHECK(norm(corl::TextSample{"<answer>3</answer>", "three"}) == doctest::Approx(0.5));
  const corl::Clipped clip{corl::WeightedSum{{2.0}, corl::TokenF1Reward{}}, 0.0, 1.0};
  CHECK(clip(corl::TextSample{"red circle", "red circle"}) == 1.0);  // 2 clipped to 1
  CHECK(clip(corl::TextSample{"red", "red circle"}) == 1.0);         // 2 * 2/3 -> 1
  CHECK(clip(corl::TextSample{"blue", "red circle"}) == 0.0);

  CHECK_THROWS_WITH_AS((corl::Normalized{corl::TokenF1Reward{}, 1.0, 1.0}), doctest::Contains("expected finite lo < hi"),
                       corl::Error);
  CHECK_THROWS_WITH_AS((corl::WeightedSum{{std::nan("")}, corl::TokenF1Reward{}}), doctest::Contains("weights[0]"),
                       corl::Error);
}

namespace {
// A policy and a reward that reads the policy: the policy "captions" a number by printing it times its scale.
struct ScalePolicy {
  double scale;
};
struct Sample {
  double x;
};
struct CaptionReward {  // needs the policy
  double operator()(const ScalePolicy& p, const Sample& s) const { return p.scale * s.x; }
};
struct ConstantReward {  // does not
  double value;
  double operator()(const Sample&) const { return value; }
};
struct InfiniteReward {
  double operator()(const Sample&) const { return std::numeric_limits<double>::infinity(); }
};
}  // namespace

TEST_CASE("rewards that call the policy compose with rewards that do not") {
  static_assert(corl::policy_reward_function<CaptionReward, ScalePolicy, Sample>);
  static_assert(!corl::reward_function<CaptionReward, Sample>);
  static_assert(corl::reward_function<ConstantReward, Sample>);
  const corl::WeightedSum both{{1.0, 0.5}, CaptionReward{}, ConstantReward{2.0}};
  static_assert(!corl::reward_function<decltype(both), Sample>);  // needs the policy: no plain form
  static_assert(corl::policy_reward_function<decltype(both), ScalePolicy, Sample>);
  CHECK(corl::evaluate_reward(both, ScalePolicy{3.0}, Sample{2.0}) == doctest::Approx(7.0));
  CHECK(corl::evaluate_reward(ConstantReward{0.25}, ScalePolicy{3.0}, Sample{2.0}) == 0.25);
  CHECK_THROWS_WITH_AS(corl::evaluate_reward(InfiniteReward{}, corl::NoPolicy{}, Sample{1.0}),
                       doctest::Contains("expected a finite value"), corl::Error);
  // NaN passes through the sum: "could not be computed" stays visible.
  CHECK(std::isnan(corl::evaluate_reward(corl::WeightedSum{{1.0, 1.0}, ConstantReward{std::nan("")},
                                                           ConstantReward{1.0}},
                                         corl::NoPolicy{}, Sample{0.0})));
}

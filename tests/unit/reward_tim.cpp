#include <doctest/doctest.h>

#include <corl/reward/evaluate.hpp>
#include <corl/reward/tim_reward.hpp>

#include <vector>

TEST_CASE("R_TIM on selected rows, mapped to [0, 1], by hand") {
  // rows: 0 = (1, 0) text, 1 = (0, 1) image, 2 = (1, 1) image, 3 = (-1, 0) ignored
  const std::vector<double> h = {1, 0, 0, 1, 1, 1, -1, 0};
  const std::vector<corl::index_t> img = {1, 2}, txt = {0};
  // cos(img1, txt) = 0, cos(img2, txt) = 1/sqrt2; mean_i max_k = (0 + 0.7071) / 2; mean_k max_i = 0.7071
  const double tim = 0.5 * (0.5 / std::sqrt(2.0) + 1.0 / std::sqrt(2.0));
  CHECK(corl::tim_reward<double>(h, 2, img, txt) == doctest::Approx(0.5 * (1.0 + tim)));
  // the positions matter: picking row 3 as text flips the picture
  const std::vector<corl::index_t> txt3 = {3};
  // cos(img1, (-1,0)) = 0, cos(img2, (-1,0)) = -0.7071 -> means: (0 - 0.7071)/2 rows, max_i = 0 cols
  CHECK(corl::tim_reward<double>(h, 2, img, txt3) == doctest::Approx(0.5 * (1.0 + 0.5 * (-0.5 / std::sqrt(2.0)))));
  // identical image and text states: TIM = 1 -> reward 1
  const std::vector<corl::index_t> same = {2};
  CHECK(corl::tim_reward<double>(h, 2, same, same) == doctest::Approx(1.0));
}

TEST_CASE("R_TIM input errors name the argument and index") {
  const std::vector<double> h = {1, 0, 0, 1};
  const std::vector<corl::index_t> ok = {0}, bad = {0, 5}, none = {};
  CHECK_THROWS_WITH_AS(corl::tim_reward<double>(h, 2, bad, ok), doctest::Contains("image_rows[1] = 5"), corl::Error);
  CHECK_THROWS_WITH_AS(corl::tim_reward<double>(h, 2, ok, none), doctest::Contains("text_rows is empty"), corl::Error);
  CHECK_THROWS_WITH_AS(corl::tim_reward<double>(h, 3, ok, ok), doctest::Contains("multiple of dim = 3"), corl::Error);
}

namespace {
struct Pol {
  double angle;
};
struct Smp {};
}  // namespace

TEST_CASE("TimReward runs the policy through its extractor") {
  const corl::TimReward r{[](const Pol& p, const Smp&) {
    return corl::TimInputs{{1.0, 0.0, std::cos(p.angle), std::sin(p.angle)}, 2, {1}, {0}};
  }};
  CHECK(corl::evaluate_reward(r, Pol{0.0}, Smp{}) == doctest::Approx(1.0));
  CHECK(corl::evaluate_reward(r, Pol{3.14159265358979 / 2}, Smp{}) == doctest::Approx(0.5));
}

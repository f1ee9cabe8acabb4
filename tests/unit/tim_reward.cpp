// R_TIM CPU reference: hand-computed cases, invariances (scale, row order), batching by offsets, and errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <corl/core/rng.hpp>
#include <corl/reward/text_image_matching.hpp>

TEST_CASE("hand-computed: two image rows, two text rows") {
  // image (1,0), (0,1); text (1,0), (1,1): cos = [[1, 1/sqrt2], [0, 1/sqrt2]]
  // row max 1, 1/sqrt2; column max 1, 1/sqrt2 -> R = 0.5 (0.85355... + 0.85355...) = (1 + 1/sqrt2) / 2
  const std::vector<double> img{1, 0, 0, 1}, txt{1, 0, 1, 1};
  CHECK(corl::text_image_matching<double>(img, txt, 2) == doctest::Approx((1 + 1 / std::sqrt(2.0)) / 2).epsilon(1e-14));
  // asymmetric: image (1,0), (-1,0); text (3,0): row max 1 and -1 (mean 0), column max 1 -> R = 0.5
  const std::vector<double> img2{1, 0, -1, 0}, txt2{3, 0};
  CHECK(corl::text_image_matching<double>(img2, txt2, 2) == doctest::Approx(0.5).epsilon(1e-14));
  // a zero vector has cos 0 with everything: image (0,0,0); text (1,2,3) -> R = 0
  const std::vector<double> zero{0, 0, 0}, t3{1, 2, 3};
  CHECK(corl::text_image_matching<double>(zero, t3, 3) == 0.0);
  // identical sets -> 1; opposite single vectors -> -1
  CHECK(corl::text_image_matching<double>(t3, t3, 3) == doctest::Approx(1.0).epsilon(1e-14));
  const std::vector<double> neg{-1, -2, -3};
  CHECK(corl::text_image_matching<double>(t3, neg, 3) == doctest::Approx(-1.0).epsilon(1e-14));
}

TEST_CASE("scale and row-order invariance, batch by offsets equals per-sample calls, float close to double") {
  corl::CounterRng rng(2024, 0);
  const corl::index_t dim = 16;
  const std::vector<corl::index_t> io{0, 5, 6, 19}, to{0, 3, 10, 12};
  std::vector<double> img(static_cast<std::size_t>(io.back() * dim)), txt(static_cast<std::size_t>(to.back() * dim));
  for (double& x : img) x = rng.normal();
  for (double& x : txt) x = rng.normal();
  std::vector<double> rewards(3);
  corl::text_image_matching<double>({img, io, txt, to, dim}, std::span<double>(rewards));
  for (std::size_t b = 0; b < 3; ++b) {
    const std::span<const double> ib(img.data() + io[b] * dim, static_cast<std::size_t>((io[b + 1] - io[b]) * dim));
    const std::span<const double> tb(txt.data() + to[b] * dim, static_cast<std::size_t>((to[b + 1] - to[b]) * dim));
    CHECK(rewards[b] == corl::text_image_matching<double>(ib, tb, dim));
    CHECK(rewards[b] >= -1.0);
    CHECK(rewards[b] <= 1.0);
  }
  // scale every row of sample 2 by a different positive factor and reverse its image rows: same reward
  std::vector<double> img2 = img;
  for (corl::index_t r = io[2]; r < io[3]; ++r) {
    const corl::index_t src = io[3] - 1 - (r - io[2]);
    for (corl::index_t d = 0; d < dim; ++d) img2[r * dim + d] = img[src * dim + d] * (0.5 + static_cast<double>(r));
  }
  std::vector<double> rewards2(3);
  corl::text_image_matching<double>({img2, io, txt, to, dim}, std::span<double>(rewards2));
  CHECK(rewards2[2] == doctest::Approx(rewards[2]).epsilon(1e-13));
  std::vector<float> imgf(img.begin(), img.end()), txtf(txt.begin(), txt.end()), rf(3);
  corl::text_image_matching<float>({imgf, io, txtf, to, dim}, std::span<float>(rf));
  for (std::size_t b = 0; b < 3; ++b) CHECK(rf[b] == doctest::Approx(rewards[b]).epsilon(1e-6));
}

TEST_CASE("bad input") {
  const std::vector<double> img{1, 0, 0, 1}, txt{1, 0};
  std::vector<double> out(1);
  const std::vector<corl::index_t> io{0, 2}, to{0, 1}, empty_to{0, 0}, bad_io{1, 2}, to3{0, 1, 1};
  CHECK_THROWS_WITH_AS(corl::text_image_matching<double>({img, io, txt, empty_to, 2}, std::span<double>(out)),
                       "text_image_matching: text_offsets[1] = 0, expected > text_offsets[0] = 0 (every sample needs "
                       "at least one row)",
                       corl::Error);
  CHECK_THROWS_WITH_AS(corl::text_image_matching<double>({img, bad_io, txt, to, 2}, std::span<double>(out)),
                       "text_image_matching: image_offsets[0] = 1, expected 0", corl::Error);
  CHECK_THROWS_WITH_AS(corl::text_image_matching<double>({img, io, txt, to3, 2}, std::span<double>(out)),
                       "text_image_matching: text_offsets has 3 entries, expected num_samples + 1 = 2", corl::Error);
  CHECK_THROWS_WITH_AS(corl::text_image_matching<double>({img, io, txt, to, 3}, std::span<double>(out)),
                       "text_image_matching: the hidden states for image_offsets have 4 values, expected "
                       "image_offsets.back() * dim = 6",
                       corl::Error);
  std::vector<double> out2(2);
  CHECK_THROWS_WITH_AS(corl::text_image_matching<double>({img, io, txt, to, 2}, std::span<double>(out2)),
                       "text_image_matching: rewards has 2 entries, expected num_samples = 1", corl::Error);
  const std::vector<double> nan_txt{1, std::numeric_limits<double>::quiet_NaN()};
  CHECK_THROWS_WITH_AS(corl::text_image_matching<double>({img, io, nan_txt, to, 2}, std::span<double>(out)),
                       "text_image_matching: text[1] = nan, expected a finite value with |x| <= 1e+150", corl::Error);
  // finite but so large that the double sum of squares would overflow to inf (and the cosine silently to 0)
  const std::vector<double> huge_img{1e200, 0, 0, 1};
  CHECK_THROWS_WITH_AS(corl::text_image_matching<double>({huge_img, io, txt, to, 2}, std::span<double>(out)),
                       "text_image_matching: image[0] = 1e+200, expected a finite value with |x| <= 1e+150",
                       corl::Error);
}

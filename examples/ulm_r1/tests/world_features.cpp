// Grid distance for R_cycle: hand-computed values, identity, symmetry, range [0, 1] on random grids, and the
// ordering near miss < far move < wrong colour.
#include <doctest/doctest.h>

#include "corl/core/error.hpp"
#include "corl/core/rng.hpp"
#include "image_features.hpp"
#include "world.hpp"

using namespace ulm;

namespace {
Grid one_object(int cell, int code) {
  Grid g(16, 0);
  g[static_cast<std::size_t>(cell)] = code;
  return g;
}
constexpr int kRedCircle = 1, kBlueCircle = 9;
}  // namespace

TEST_CASE("features: histograms and blurred maps of a hand grid") {
  const WorldConfig config;
  Grid g(16, 0);
  g[0] = kRedCircle;
  g[5] = kRedCircle;
  g[15] = 10;  // blue square
  const GridFeatures f = grid_features(g, config);
  CHECK(f.count == 3.0);
  CHECK(f.joint[0 * 4 + 0] == 2.0);
  CHECK(f.joint[2 * 4 + 1] == 1.0);
  CHECK(f.colour == std::vector<double>{2, 0, 1, 0, 0, 0});
  CHECK(f.shape == std::vector<double>{2, 1, 0, 0});
  // Blur of the corner cell alone: 0.5 * 0.5 at the corner, 0.5 * 0.25 beside it; (0,0) also gets 0.25 * 0.25 from
  // the circle at (1,1).
  const GridFeatures corner = grid_features(one_object(0, kRedCircle), config);
  CHECK(corner.occupancy_map[0] == doctest::Approx(0.25));
  CHECK(corner.occupancy_map[1] == doctest::Approx(0.125));
  CHECK(corner.occupancy_map[5] == doctest::Approx(0.0625));
  CHECK(corner.occupancy_map[2] == 0.0);
  CHECK(f.occupancy_map[0] == doctest::Approx(0.25 + 0.0625));
}

TEST_CASE("distance: hand-computed values") {
  const WorldConfig config;
  const Grid empty(16, 0);
  const Grid corner = one_object(0, kRedCircle);
  // Nothing vs something: every component is 1 except layout (no pair of shapes in either grid: 0).
  CHECK(grid_distance(empty, corner, config) == doctest::Approx(1.0 - 0.25));
  CHECK(grid_distance(empty, empty, config) == 0.0);
  // Shift by one column: only the spatial term differs. Separable maps wr x wc with wr = wc = (.5, .25, 0, 0) and
  // wc' = (.25, .5, .25, 0): sum|a - b| = .75 * .75, mass = .5625 + .75, TV = 3/7 for each of the three groups.
  CHECK(grid_distance(corner, one_object(1, kRedCircle), config) == doctest::Approx(0.1 * 3.0 / 7.0));
  // Opposite corners: blurred maps do not overlap, TV = 1 on every map.
  CHECK(grid_distance(corner, one_object(15, kRedCircle), config) == doctest::Approx(0.1));
  // Same cell, other colour: joint 1, colour 1, shape 0, count 0, layout 0, spatial (0 + 1 + 0) / 3.
  CHECK(grid_distance(corner, one_object(0, kBlueCircle), config) == doctest::Approx(0.25 + 0.05 + 0.1 / 3.0));
  // Weights can be changed; they must sum to 1.
  DistanceWeights only_count{0, 0, 0, 1, 0, 0};
  Grid two = corner;
  two[3] = kBlueCircle;
  CHECK(grid_distance(corner, two, config, only_count) == doctest::Approx(0.5));
  CHECK_THROWS_WITH_AS(grid_distance(corner, two, config, DistanceWeights{0.5, 0, 0, 0, 0, 0}),
                       doctest::Contains("sum to 0.5"), corl::Error);
  CHECK_THROWS_WITH_AS(grid_distance(corner, Grid(3, 0), config), doctest::Contains("grid has 3 cells"), corl::Error);
}

TEST_CASE("layout: shares of the four relations per ordered shape pair, and what they cost") {
  const WorldConfig config;
  // red circle (0, 0), blue square (0, 3), blue square (2, 1)
  Grid g(16, 0);
  g[0] = kRedCircle;
  g[3] = 10;
  g[9] = 10;
  const GridFeatures f = grid_features(g, config);
  auto rel = [&](int s1, int s2, int r) { return f.layout[static_cast<std::size_t>((s1 * 4 + s2) * 4 + r)]; };
  CHECK(rel(0, 1, 0) == 1.0);  // the circle is left of both squares
  CHECK(rel(0, 1, 1) == 0.0);
  CHECK(rel(0, 1, 2) == 0.5);  // above one of the two
  CHECK(rel(0, 1, 3) == 0.0);
  CHECK(rel(1, 0, 1) == 1.0);  // the squares are right of the circle
  CHECK(rel(1, 0, 3) == 0.5);
  CHECK(rel(0, 2, 0) == 0.0);  // no triangle
  CHECK(rel(1, 1, 0) == 0.0);  // same shape: not a relation
  // "a circle left of a square" vs the mirror image: the histograms agree, the layout does not.
  Grid left(16, 0), right(16, 0);
  left[4] = kRedCircle, left[7] = 2;    // row 1: circle at column 0, red square at column 3
  right[7] = kRedCircle, right[4] = 2;  // row 1: red square at column 0, circle at column 3
  const DistanceWeights only_layout{0, 0, 0, 0, 1, 0};
  CHECK(grid_distance(left, right, config, only_layout) == 1.0);
  CHECK(grid_distance(left, left, config, only_layout) == 0.0);
  const DistanceWeights no_layout{0.25, 0.05, 0.2, 0.15, 0, 0.35};
  CHECK(grid_distance(left, right, config) > grid_distance(left, right, config, no_layout));
}

TEST_CASE("distance: identity, symmetry, range on random grids - near miss < far move < wrong colour") {
  const WorldConfig config;
  corl::CounterRng rng(2025, 0);
  auto random_grid = [&] {
    Grid g(16, 0);
    for (int& c : g) c = rng.uniform() < 0.3 ? static_cast<int>(1 + rng.below(24)) : 0;
    return g;
  };
  for (int k = 0; k < 300; ++k) {
    const Grid a = random_grid(), b = random_grid();
    const double dab = grid_distance(a, b, config);
    CHECK(grid_distance(a, a, config) == 0.0);
    CHECK(dab == grid_distance(b, a, config));
    CHECK(dab >= 0.0);
    CHECK(dab <= 1.0);
    CHECK(grid_similarity(a, b, config) == doctest::Approx(1.0 - dab));
  }
  const Grid ref = one_object(5, kRedCircle);
  const double near = grid_distance(ref, one_object(6, kRedCircle), config);
  const double far = grid_distance(ref, one_object(15, kRedCircle), config);
  const double colour = grid_distance(ref, one_object(5, kBlueCircle), config);
  const double shape = grid_distance(ref, one_object(5, 2), config);  // red square
  CHECK(near < far);
  CHECK(far < colour);
  CHECK(near < shape);
}

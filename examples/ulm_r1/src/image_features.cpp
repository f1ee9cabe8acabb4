// image_features.cpp — cell-feature distance between grids (image_features.hpp).
#include "image_features.hpp"

#include <algorithm>
#include <cmath>

#include "corl/core/error.hpp"

namespace ulm {

void DistanceWeights::validate() const {
  const double w[] = {joint, colour, shape, count, layout, spatial};
  const char* names[] = {"joint", "colour", "shape", "count", "layout", "spatial"};
  double sum = 0.0;
  for (int i = 0; i < 6; ++i) {
    corl::require(std::isfinite(w[i]) && w[i] >= 0.0, "DistanceWeights::validate: ", names[i], " = ", w[i],
                  ", expected a finite value >= 0");
    sum += w[i];
  }
  corl::require(std::fabs(sum - 1.0) <= 1e-9, "DistanceWeights::validate: weights sum to ", sum, ", expected 1");
}

namespace {

/// In-place separable [1/4, 1/2, 1/4] blur of one H x W map, zero padding.
void blur(double* map, int height, int width) {
  std::vector<double> tmp(static_cast<std::size_t>(height * width), 0.0);
  auto at = [&](const double* m, int r, int c) {
    return (r < 0 || r >= height || c < 0 || c >= width) ? 0.0 : m[r * width + c];
  };
  for (int r = 0; r < height; ++r)
    for (int c = 0; c < width; ++c)
      tmp[static_cast<std::size_t>(r * width + c)] =
          0.25 * at(map, r, c - 1) + 0.5 * at(map, r, c) + 0.25 * at(map, r, c + 1);
  for (int r = 0; r < height; ++r)
    for (int c = 0; c < width; ++c)
      map[r * width + c] =
          0.25 * at(tmp.data(), r - 1, c) + 0.5 * at(tmp.data(), r, c) + 0.25 * at(tmp.data(), r + 1, c);
}

}  // namespace

GridFeatures grid_features(const Grid& grid, const WorldConfig& config) {
  // Not the full config.validate() (string checks, ~50 us): this is on the reward path; sizes are what matter here.
  corl::require(config.num_colours() >= 1 && config.num_shapes() >= 1 && config.height >= 1 && config.width >= 1,
                "grid_features: config has ", config.num_colours(), " colours, ", config.num_shapes(), " shapes, ",
                config.height, "x", config.width, " cells, expected at least one of each");
  validate_grid(grid, config, "grid_features: grid");
  const int C = config.num_colours(), S = config.num_shapes(), H = config.height, W = config.width, N = H * W;
  GridFeatures f;
  f.joint.assign(static_cast<std::size_t>(C * S), 0.0);
  f.colour.assign(static_cast<std::size_t>(C), 0.0);
  f.shape.assign(static_cast<std::size_t>(S), 0.0);
  f.occupancy_map.assign(static_cast<std::size_t>(N), 0.0);
  f.colour_maps.assign(static_cast<std::size_t>(C * N), 0.0);
  f.shape_maps.assign(static_cast<std::size_t>(S * N), 0.0);
  const std::vector<Placed> objects = objects_in(grid, config);
  for (const Placed& p : objects) {
    const int cell = p.row * W + p.col;
    f.joint[static_cast<std::size_t>(p.colour * S + p.shape)] += 1.0;
    f.colour[static_cast<std::size_t>(p.colour)] += 1.0;
    f.shape[static_cast<std::size_t>(p.shape)] += 1.0;
    f.count += 1.0;
    f.occupancy_map[static_cast<std::size_t>(cell)] = 1.0;
    f.colour_maps[static_cast<std::size_t>(p.colour * N + cell)] = 1.0;
    f.shape_maps[static_cast<std::size_t>(p.shape * N + cell)] = 1.0;
  }
  // layout: for each ordered pair of different shapes, the share of its instance pairs in each relation, in the order
  // left_of, right_of, above, below (relation_holds: the same rule geneval.hpp checks)
  constexpr Relation kRelations[] = {Relation::left_of, Relation::right_of, Relation::above, Relation::below};
  f.layout.assign(static_cast<std::size_t>(S * S * 4), 0.0);
  for (const Placed& a : objects)
    for (const Placed& b : objects) {
      if (a.shape == b.shape) continue;
      const double pairs = f.shape[static_cast<std::size_t>(a.shape)] * f.shape[static_cast<std::size_t>(b.shape)];
      for (int r = 0; r < 4; ++r)
        if (relation_holds(kRelations[r], a.row, a.col, b.row, b.col))
          f.layout[static_cast<std::size_t>((a.shape * S + b.shape) * 4 + r)] += 1.0 / pairs;
    }
  blur(f.occupancy_map.data(), H, W);
  for (int c = 0; c < C; ++c) blur(f.colour_maps.data() + c * N, H, W);
  for (int s = 0; s < S; ++s) blur(f.shape_maps.data() + s * N, H, W);
  return f;
}

double normalised_l1(const std::vector<double>& x, const std::vector<double>& y) {
  corl::require(x.size() == y.size(), "normalised_l1: sizes ", x.size(), " and ", y.size(), ", expected equal");
  double diff = 0.0, mass = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    corl::require(x[i] >= 0.0 && y[i] >= 0.0, "normalised_l1: x[", i, "] = ", x[i], ", y[", i, "] = ", y[i],
                  ", expected both >= 0");
    diff += std::fabs(x[i] - y[i]);
    mass += x[i] + y[i];
  }
  return mass > 0.0 ? std::min(1.0, diff / mass) : 0.0;
}

double feature_distance(const GridFeatures& a, const GridFeatures& b, const DistanceWeights& weights) {
  weights.validate();
  const double max_count = std::max({a.count, b.count, 1.0});
  const double spatial = (normalised_l1(a.occupancy_map, b.occupancy_map) +
                          normalised_l1(a.colour_maps, b.colour_maps) + normalised_l1(a.shape_maps, b.shape_maps)) /
                         3.0;
  const double d = weights.joint * normalised_l1(a.joint, b.joint) +
                   weights.colour * normalised_l1(a.colour, b.colour) +
                   weights.shape * normalised_l1(a.shape, b.shape) +
                   weights.count * std::fabs(a.count - b.count) / max_count +
                   weights.layout * normalised_l1(a.layout, b.layout) + weights.spatial * spatial;
  return std::clamp(d, 0.0, 1.0);
}

double grid_distance(const Grid& a, const Grid& b, const WorldConfig& config, const DistanceWeights& weights) {
  return feature_distance(grid_features(a, config), grid_features(b, config), weights);
}

}  // namespace ulm

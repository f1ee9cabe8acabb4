// geneval.hpp — "world GenEval": a rule-based check of whether a generated grid satisfies its prompt spec.
//
// Mirrors GenEval's per-category rules (Ghosh et al. 2023, arXiv 2310.11513, evaluation/evaluate_images.py) on the
// discrete grid, where detection is exact:
//   single_object       >= 1 object of the shape (any colour)
//   two_objects         >= 1 of each of the two shapes
//   counting            exactly `count` objects of the shape (GenEval also excludes count + 1)
//   colours             >= 1 object of the shape in the colour
//   position            EVERY instance a of shape 0 is <relation> EVERY instance b of shape 1 (GenEval breaks on the
//                       first violating pair); on the grid left_of is a strictly smaller column, above a strictly
//                       smaller row (GenEval compares box centres)
//   colour_attribution  >= 1 object of shape 0 in colour 0 and >= 1 of shape 1 in colour 1
// Extra objects are allowed except where the count is the point (counting), as in GenEval. The score of a run is the
// accuracy per category and, overall, the mean of the category accuracies (GenEval's "overall score").
// Held-out metric only: never a training reward.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "json.hpp"
#include "world.hpp"

namespace ulm {

struct PromptCheck {
  bool satisfied = false;
  std::string reason;  ///< why not (or what matched), e.g. "found 2 stars, expected exactly 3"
};

/// Checks one grid against one spec (both validated; bad input -> corl::Error).
PromptCheck check_prompt(const Grid& grid, const PromptSpec& spec, const WorldConfig& config);
inline bool satisfies(const Grid& grid, const PromptSpec& spec, const WorldConfig& config) {
  return check_prompt(grid, spec, config).satisfied;
}

/// Per-category counts of a GenEval run.
class GenEvalTally {
 public:
  void add(Category category, bool satisfied);
  int total(Category category) const { return totals_[index(category)]; }
  int correct(Category category) const { return corrects_[index(category)]; }
  /// correct / total; NaN-free: 0 when the category has no prompts (and then it is left out of overall()).
  double accuracy(Category category) const;
  /// Mean of the accuracies of the categories that have at least one prompt; 0 when none has.
  double overall() const;
  /// One standard error of overall() from the finite sample of prompts (each a Bernoulli draw, categories
  /// independent): sqrt(sum_c a_c (1 - a_c) / n_c) / K over the K categories present, with the observed accuracies
  /// a_c (plug-in; a category at 0 or 1 contributes 0). Covers evaluation noise only, not training-seed variation.
  double overall_standard_error() const;
  int total() const;
  /// {"overall": x, "categories": {"single_object": {"correct": c, "total": n, "accuracy": a}, ...}}
  Json to_json() const;
  /// A small fixed-width table, one line per category plus "overall".
  std::string table() const;

 private:
  static std::size_t index(Category category) { return static_cast<std::size_t>(category); }
  std::array<int, 6> totals_{};
  std::array<int, 6> corrects_{};
};

/// Checks grids[i] against specs[i] for all i (sizes must match) and tallies the results.
GenEvalTally evaluate_geneval(const std::vector<PromptSpec>& specs, const std::vector<Grid>& grids,
                              const WorldConfig& config);

}  // namespace ulm

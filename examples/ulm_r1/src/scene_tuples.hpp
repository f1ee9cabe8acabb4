// scene_tuples.hpp — a SPICE-like semantic comparison of a caption with a prompt, for the text side of R_cycle.
//
// CoRL scores the policy's re-caption of its generated image against the prompt with SPICE (arXiv 2505.17534,
// Sec. 3.2; SPICE: Anderson et al., ECCV 2016, arXiv 1607.08822), which parses both texts into scene-graph tuples and
// takes the F-score of the matched tuples. On the shapes world the grammar is the world's own, so the parse is exact:
//   object      (shape)                      every shape mentioned
//   attribute   (shape, colour)              "a red circle"
//   count       (shape, n)                   n = total number of that shape; see `complete` below
//   relation    (shape, relation, shape)     "a circle left of a square"
// Words outside the grammar are skipped, so a malformed caption parses to what it does say.
// A caption is a complete description of its image (the world's captions list every object), so it always states
// the count of each shape it mentions; a prompt states a count only where it names a number ("three stars"), since
// "a star" means "at least one" in GenEval. The score is the F_beta of tuple matching,
//   P = |c ∩ p| / |c|,  R = |c ∩ p| / |p|,  F_beta = (1 + beta^2) P R / (beta^2 P + R)   (0 when c ∩ p is empty),
// with beta > 1 weighting recall: the prompt's tuples must be in the caption; extra objects cost a little (GenEval
// allows them except where the count is the point, which the count tuple covers).
#pragma once

#include <set>
#include <string>
#include <string_view>

#include "world.hpp"

namespace ulm {

struct SceneTuples {
  /// e.g. "object circle", "attribute circle red", "count circle 3", "relation circle left of square"
  std::set<std::string> tuples;
};

/// Parses `text` (the world's words separated by spaces). `complete`: the text describes everything in its image,
/// so every mentioned shape gets a count tuple (captions); otherwise only explicitly numbered shapes do (prompts).
SceneTuples scene_tuples(std::string_view text, const WorldConfig& config, bool complete);

struct TupleMatch {
  double precision = 0, recall = 0, f = 0;
};
/// F_beta of `candidate` against `reference` (see the header comment); both empty -> all 1; beta > 0.
TupleMatch match_tuples(const SceneTuples& candidate, const SceneTuples& reference, double beta);

/// The text side of R_cycle: F_beta of the caption's tuples (complete) against the prompt's (partial), in [0, 1].
double caption_prompt_similarity(std::string_view caption, std::string_view prompt, const WorldConfig& config,
                                 double beta = 2.0);

}  // namespace ulm

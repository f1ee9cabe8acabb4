// evaluate.hpp — held-out evaluation of the bundled model on the shapes world's test split:
//   world-GenEval  one image per test prompt, sampled with CFG (Janus-Pro: weight 5, T = 1), checked by geneval.hpp;
//                  per-category accuracy and overall = mean over categories (GenEval's overall score);
//   QA accuracy    one greedy answer per test question (<think> ... </think> <answer> ... </answer>), scored by
//                  world_answers.hpp's completion_correct, reported separately for multiple choice (mc) and
//                  open-ended (oe).
// JSON: {"geneval": {"overall": x, "<category>": x, ...}, "qa": {"mc": x, "oe": x}}.
// Size: 960 rows by default (GenEval samples 4 images per prompt for the same reason). With 240 rows the standard error
// of the overall score was about 0.03 and of QA accuracy about 0.03: the same SFT checkpoint scored QA 0.542 on 240
// rows and 0.466 on 1920, which is as large as the +0.05 effect the trainer is judged by.
// The test split holds out whole prompt specs (world.hpp: split_specs), so world-GenEval on it measures generalisation
// to unseen compositions. `split = train` evaluates fresh rows of the TRAINING prompt specs instead (new reference
// images, questions and sampling draws, same prompt texts as training): the in-distribution view, reported next to the
// held-out one because a policy can improve on the prompts it was trained on while losing held-out compositions.
#pragma once

#include <cstdint>
#include <string>

#include "geneval.hpp"
#include "json.hpp"
#include "model.hpp"
#include "world.hpp"

namespace ulm {

struct EvalOptions {
  int rows = 960;                ///< test rows (categories cycle, so 160 per category: see below)
  std::uint64_t seed = 7;        ///< test data and sampling
  double cfg_weight = 5.0;
  double image_temperature = 1.0;
  double text_temperature = 0.0; ///< 0 = greedy
  int max_answer_tokens = 64;
  int batch = 64;                ///< prompts per sampling call
  Split split = Split::test;     ///< test: held-out prompt specs (the metric); train: the training specs
  bool qa = true;                ///< also score the QA questions (false: world-GenEval only)
  WorldConfig world = {};
};

struct EvalResult {
  GenEvalTally geneval;
  int mc_total = 0, mc_correct = 0, oe_total = 0, oe_correct = 0;
  double mc() const { return mc_total ? static_cast<double>(mc_correct) / mc_total : 0.0; }
  double oe() const { return oe_total ? static_cast<double>(oe_correct) / oe_total : 0.0; }
  /// {"geneval": {"overall": x, "single_object": x, ...}, "qa": {"mc": x, "oe": x}}
  Json to_json() const;
  /// A terminal table: one line per GenEval category, overall, then QA mc / oe with counts.
  std::string table() const;
};

EvalResult evaluate(const Model<float>& model, const EvalOptions& options);

/// {"overall": x, "single_object": x, ...}: a tally's accuracies, the "geneval" part of EvalResult::to_json.
Json geneval_accuracies_json(const GenEvalTally& tally);

}  // namespace ulm

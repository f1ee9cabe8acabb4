// plot_charts.hpp — the PNG figures of `ulm_r1 train`, drawn on png.hpp's Canvas:
//   plot_reward_curves        one panel per stage of the CoRL run: mean reward per step (line) with min..max band
//                             ticks, axes labelled with the stage name and the value range;
//   plot_eval_bars            grouped bars: world-GenEval overall and per category, QA mc / oe, one bar per model
//                             (SFT, unified, CoRL, and the ablation runs when present);
//   write_before_after_sheet  the same test prompts drawn by the SFT model (top row) and the CoRL model (bottom row),
//                             same sampling key, frames green when the prompt is satisfied (world-GenEval), red when not.
#pragma once

#include <string>

#include "model.hpp"
#include "train_config.hpp"
#include "world.hpp"

namespace ulm {

struct TrainResult;

void plot_reward_curves(const std::string& path, const TrainResult& result);
void plot_eval_bars(const std::string& path, const TrainResult& result);
void write_before_after_sheet(const std::string& path, const Model<float>& before, const Model<float>& after,
                              const WorldConfig& world, const TrainConfig& config);

}  // namespace ulm

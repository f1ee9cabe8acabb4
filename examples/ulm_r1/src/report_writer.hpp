// report_writer.hpp — report.json and report.md of `ulm_r1 train`.
//
// report.json:
//   {"seed": s, "config": {key: value, ...}, "total_seconds": t, "sft": {"steps": n, "seconds": t},
//    "evaluations": {"<name>": {<exactly the fields of `ulm_r1 eval --json`: "geneval": {...}, "qa": {...}>,
//                               "qa_all": x, "seconds": t}, ...},
//    "stages": [{"run": r, "name": n, "steps": k, "seconds": t, "reward_first": x, "reward_last": y,
//                "reward_parts_last": {...}}, ...],
//    "improvement": {"geneval_overall": CoRL - SFT, "qa_all": CoRL - SFT},
//    "paradigm_table": [...] (with --ablation)}
// report.md: the same as tables (evaluations; stages with time and reward; the paper-style paradigm and reward
// ablation tables with --ablation) and links to the PNG figures.
#pragma once

#include <string>

#include "train_config.hpp"

namespace ulm {

struct TrainResult;

void write_report_json(const std::string& path, const TrainConfig& config, const TrainResult& result);
void write_report_markdown(const std::string& path, const TrainConfig& config, const TrainResult& result);

}  // namespace ulm

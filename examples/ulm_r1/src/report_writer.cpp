// report_writer.cpp — see report_writer.hpp.
#include "report_writer.hpp"

#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "corl/core/error.hpp"
#include "corl_world_rewards.hpp"
#include "json.hpp"
#include "train_run.hpp"

namespace ulm {

namespace {

const EvalRecord* find_eval(const TrainResult& r, const std::string& name) {
  for (const auto& e : r.evals)
    if (e.name == name) return &e;
  return nullptr;
}

std::string f3(double v) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(3) << v;
  return os.str();
}

/// Rows of the paper's paradigm table present in this run: (label, evaluation name).
std::vector<std::pair<std::string, std::string>> paradigm_rows(const TrainResult& r) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (auto [label, name] : {std::pair{"SFT baseline", "sft"}, std::pair{"unified only", "unified"},
                             std::pair{"refined only", "refined_only"}, std::pair{"CoRL", "corl"}})
    if (find_eval(r, name)) rows.emplace_back(label, name);
  return rows;
}

/// The header of a per-category world-GenEval table: "| first | GenEval overall | <categories> | <extra> |" and the
/// separator line.
void geneval_table_header(std::ostringstream& md, const std::string& first, const std::vector<std::string>& extra) {
  md << "| " << first << (first.empty() ? "" : " ") << "| GenEval overall |";
  for (Category c : kAllCategories) md << " " << category_name(c) << " |";
  for (const std::string& x : extra) md << " " << x << " |";
  md << "\n|---|---|";
  for (std::size_t i = 0; i < kAllCategories.size() + extra.size(); ++i) md << "---|";
  md << "\n";
}

/// "| label | overall | <category accuracies> |" of one tally; callers append their extra cells and the newline.
void geneval_cells(std::ostringstream& md, const std::string& label, const GenEvalTally& tally) {
  md << "| " << label << " | " << f3(tally.overall()) << " |";
  for (Category c : kAllCategories) md << " " << f3(tally.accuracy(c)) << " |";
}

}  // namespace

void write_report_json(const std::string& path, const TrainConfig& config, const TrainResult& result) {
  Json j = Json::object();
  j.set("seed", static_cast<std::int64_t>(config.seed));
  Json cfg = Json::object();
  for (const auto& [k, v] : train_config_values(config)) cfg.set(k, v);
  j.set("config", cfg);
  j.set("total_seconds", result.total_seconds);
  Json sft = Json::object();
  sft.set("steps", result.sft_steps);
  sft.set("seconds", result.sft_seconds);
  sft.set("loaded_from", config.sft_ckpt);
  j.set("sft", sft);
  Json evals = Json::object();
  for (const auto& e : result.evals) {
    Json x = e.result.to_json();
    x.set("geneval_train_prompts", geneval_accuracies_json(e.train_prompts));
    x.set("qa_all", e.qa_accuracy());
    x.set("seconds", e.wall_seconds);
    evals.set(e.name, x);
  }
  j.set("evaluations", evals);
  Json stages = Json::array();
  for (const auto& s : result.stages) {
    Json x = Json::object();
    x.set("run", s.run);
    x.set("name", s.name);
    x.set("steps", s.steps);
    x.set("seconds", s.wall_seconds);
    if (!s.steps_log.empty()) {
      x.set("reward_first", s.steps_log.front().metrics.reward_mean);
      x.set("reward_last", s.steps_log.back().metrics.reward_mean);
      Json parts = Json::object();
      for (std::size_t k = 0; k < RewardLog::kNames.size(); ++k)
        parts.set(RewardLog::kNames[k], s.steps_log.back().parts[k]);
      x.set("reward_parts_last", parts);
    }
    stages.push_back(x);
  }
  j.set("stages", stages);
  if (const auto* a = find_eval(result, "sft"); a != nullptr) {
    if (const auto* b = find_eval(result, "corl"); b != nullptr) {
      const Improvement d = improvement(*a, *b);
      Json imp = Json::object();
      imp.set("geneval_overall", d.geneval);
      imp.set("geneval_train_prompts_overall", b->train_prompts.overall() - a->train_prompts.overall());
      imp.set("qa_all", d.qa);
      imp.set("qa_mc", b->result.mc() - a->result.mc());
      imp.set("qa_oe", b->result.oe() - a->result.oe());
      imp.set("geneval_overall_stderr", d.geneval_se);
      imp.set("qa_all_stderr", d.qa_se);
      j.set("improvement", imp);
    }
  }
  if (config.ablation) {
    Json table = Json::array();
    for (const auto& [label, name] : paradigm_rows(result)) {
      Json row = find_eval(result, name)->result.to_json();
      row.set("row", label);
      table.push_back(row);
    }
    j.set("paradigm_table", table);
  }
  std::ofstream out(path, std::ios::trunc);
  corl::require(static_cast<bool>(out), "ulm_r1 train: cannot write '", path, "'");
  out << dump_json(j) << "\n";
}

void write_report_markdown(const std::string& path, const TrainConfig& config, const TrainResult& result) {
  std::ostringstream md;
  md << "# ulm_r1 train report\n\nseed " << config.seed << ", total wall time " << f3(result.total_seconds) << " s ("
     << (config.sft_ckpt.empty() ? "SFT " + std::to_string(result.sft_steps) + " steps, " + f3(result.sft_seconds) + " s"
                                 : "SFT loaded from " + config.sft_ckpt)
     << ").\n\n## Held-out evaluation (test split)\n\n";
  geneval_table_header(md, "model", {"QA mc", "QA oe", "QA all", "eval s"});
  for (const auto& e : result.evals) {
    geneval_cells(md, e.name, e.result.geneval);
    md << " " << f3(e.result.mc()) << " | " << f3(e.result.oe()) << " | " << f3(e.qa_accuracy()) << " | "
       << f3(e.wall_seconds) << " |\n";
  }
  if (const auto* a = find_eval(result, "sft"); a != nullptr) {
    if (const auto* b = find_eval(result, "corl"); b != nullptr) {
      const Improvement d = improvement(*a, *b);
      md << "\nCoRL - SFT: GenEval overall " << f3(d.geneval) << " (+- " << f3(d.geneval_se) << "), QA all "
         << f3(d.qa) << " (+- " << f3(d.qa_se)
         << ") (target: >= 0.050 on both). +- is one standard error from the evaluations' finite samples of prompts "
            "and questions, treating the two as independent (they share the prompts, so it is conservative); runs "
            "with another seed, or with rounding-level changes, vary more (examples/ulm_r1/configs/README.md).\n";
    }
  }
  md << "\n## In-distribution view: world-GenEval on the training prompt specs\n\nFresh rows and sampling draws of the "
        "prompt specs RL trained on (the table above holds those specs out). Not the target metric: it shows how much "
        "of a change is specific to the trained prompts.\n\n";
  geneval_table_header(md, "model", {});
  for (const auto& e : result.evals) {
    geneval_cells(md, e.name, e.train_prompts);
    md << "\n";
  }
  md << "\n## Stages\n\n| run | stage | steps | seconds | reward first | reward last | last parts (cycle img / cycle txt / "
        "TIM / acc / format) |\n|---|---|---|---|---|---|---|\n";
  for (const auto& s : result.stages) {
    md << "| " << s.run << " | " << s.name << " | " << s.steps << " | " << f3(s.wall_seconds) << " | ";
    if (s.steps_log.empty()) {
      md << "- | - | - |\n";
      continue;
    }
    md << f3(s.steps_log.front().metrics.reward_mean) << " | " << f3(s.steps_log.back().metrics.reward_mean) << " | ";
    for (std::size_t k = 0; k < s.steps_log.back().parts.size(); ++k)
      md << (k ? " / " : "") << f3(s.steps_log.back().parts[k]);
    md << " |\n";
  }
  if (config.ablation) {
    md << "\n## Paradigm table (paper Table: baseline / unified only / refined only / CoRL)\n\n";
    geneval_table_header(md, "", {"QA mc", "QA oe"});
    for (const auto& [label, name] : paradigm_rows(result)) {
      const auto& e = *find_eval(result, name);
      geneval_cells(md, label, e.result.geneval);
      md << " " << f3(e.result.mc()) << " | " << f3(e.result.oe()) << " |\n";
    }
    md << "\n## Reward ablation (GenEval overall)\n\nThe T2I reward of the unified and refined T2I stages; the CoRL "
          "run above uses reward.cycle = " << config.reward_cycle << ", reward.tim = " << config.reward_tim
       << " (its row is reused, not retrained).\n\n| T2I reward | GenEval overall |\n|---|---|\n";
    for (auto [label, name] : {std::pair{"none (SFT)", "sft"}, std::pair{"R_cycle only", "reward_cycle_only"},
                               std::pair{"R_TIM only", "reward_tim_only"}, std::pair{"R_cycle + R_TIM", "reward_both"}})
      if (const auto* e = find_eval(result, name)) md << "| " << label << " | " << f3(e->result.geneval.overall()) << " |\n";
  }
  md << "\n## Figures\n\n![reward curves](reward_curves.png)\n\n![evaluation](eval_bars.png)\n\n"
        "![before and after](samples_before_after.png)\n\nPer-step metrics: metrics.jsonl.\n";
  std::ofstream out(path, std::ios::trunc);
  corl::require(static_cast<bool>(out), "ulm_r1 train: cannot write '", path, "'");
  out << md.str();
}

}  // namespace ulm

// `ulm_r1 train --ablation` end to end on a few steps: the paradigm rows and the reward ablation (R_cycle only, R_TIM
// only, both) are all present whatever the main run's reward weights are, the ablation row that equals the main run is
// its evaluation (not retrained), the others were trained, and the reports name them.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <set>
#include <sstream>
#include <string>

#include "json.hpp"
#include "tiny_train_config.hpp"
#include "train_run.hpp"

namespace {

ulm::TrainConfig tiny_ablation_config(const std::string& out_dir, double cycle, double tim) {
  ulm::TrainConfig c = ulm_test::tiny_train_config(out_dir, 1);
  c.reward_cycle = cycle;
  c.reward_tim = tim;
  c.ablation = true;
  return c;
}

std::set<std::string> trained_runs(const ulm::TrainResult& r) {
  std::set<std::string> runs;
  for (const auto& s : r.stages) runs.insert(s.run);
  return runs;
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace

TEST_CASE("--ablation with R_TIM switched off in the main run: R_cycle + R_TIM is trained as its own row") {
  const auto dir = std::filesystem::temp_directory_path() / "corl_test_train_ablation_tim0";
  std::filesystem::remove_all(dir);
  const ulm::TrainResult r = ulm::run_training(tiny_ablation_config(dir.string(), 1.0, 0.0), nullptr);

  for (const char* name : {"sft", "unified", "corl", "refined_only", "reward_cycle_only", "reward_tim_only",
                           "reward_both"})
    CHECK_NOTHROW((void)r.eval(name));
  const std::set<std::string> runs = trained_runs(r);
  CHECK(runs.count("corl") == 1);
  CHECK(runs.count("refined_only") == 1);
  CHECK(runs.count("reward_tim_only") == 1);
  CHECK(runs.count("reward_both") == 1);
  CHECK(runs.count("reward_cycle_only") == 0);  // the main run is R_cycle only: reused, not retrained
  const auto& same = r.eval("reward_cycle_only");
  const auto& corl = r.eval("corl");
  CHECK(same.result.geneval.overall() == corl.result.geneval.overall());
  CHECK(same.qa_accuracy() == corl.qa_accuracy());

  const std::string md = read_text(dir / "report.md");
  CHECK(md.find("| R_cycle + R_TIM |") != std::string::npos);
  CHECK(md.find("| R_TIM only |") != std::string::npos);
  CHECK(md.find("reward.tim = 0") != std::string::npos);
  CHECK(md.find("## Paradigm table") != std::string::npos);
  // the CoRL - SFT line carries one standard error of each difference (evaluation noise, added in quadrature)
  const auto& sft = r.eval("sft");
  std::ostringstream qa_line;
  qa_line << std::fixed << std::setprecision(3) << "QA all " << corl.qa_accuracy() - sft.qa_accuracy() << " (+- "
          << std::hypot(sft.qa_standard_error(), corl.qa_standard_error()) << ")";
  CHECK(md.find(qa_line.str()) != std::string::npos);
  const ulm::Json report = ulm::parse_json(read_text(dir / "report.json"), "report.json");
  CHECK(report.at("improvement").at("qa_all_stderr").as_number() ==
        doctest::Approx(std::hypot(sft.qa_standard_error(), corl.qa_standard_error())));
  CHECK(report.at("improvement").at("geneval_overall_stderr").as_number() ==
        doctest::Approx(std::hypot(sft.result.geneval.overall_standard_error(),
                                   corl.result.geneval.overall_standard_error())));
  std::filesystem::remove_all(dir);
}

TEST_CASE("qa_standard_error: sqrt(p (1 - p) / n) over all questions, by hand") {
  ulm::EvalRecord rec;
  CHECK(rec.qa_standard_error() == 0.0);  // no questions
  rec.result.mc_total = 3;
  rec.result.mc_correct = 1;
  rec.result.oe_total = 1;
  rec.result.oe_correct = 1;
  CHECK(rec.qa_accuracy() == doctest::Approx(0.5));
  CHECK(rec.qa_standard_error() == doctest::Approx(0.25));  // sqrt(0.25 / 4)
}

TEST_CASE("--ablation with the paper's R_cycle + R_TIM in the main run: the two single-part rows are trained") {
  const auto dir = std::filesystem::temp_directory_path() / "corl_test_train_ablation_both";
  std::filesystem::remove_all(dir);
  const ulm::TrainResult r = ulm::run_training(tiny_ablation_config(dir.string(), 1.0, 1.0), nullptr);
  const std::set<std::string> runs = trained_runs(r);
  CHECK(runs.count("reward_cycle_only") == 1);
  CHECK(runs.count("reward_tim_only") == 1);
  CHECK(runs.count("reward_both") == 0);
  CHECK(r.eval("reward_both").result.geneval.overall() == r.eval("corl").result.geneval.overall());
  std::filesystem::remove_all(dir);
}

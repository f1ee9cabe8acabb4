// `unified.ckpt`: the refined stages rerun from a checkpoint the unified stage wrote give exactly the results of the
// run that wrote it (same unified policy, same refined seeds), without running the unified stage again; a checkpoint
// of another stage, or a missing file, is a clear error.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "checkpoint.hpp"
#include "corl/core/error.hpp"
#include "tiny_train_config.hpp"
#include "train_run.hpp"

namespace {

ulm::TrainConfig tiny_config(const std::string& out_dir) {
  ulm::TrainConfig c = ulm_test::tiny_train_config(out_dir, 2);
  c.unified.beta = 0.02;  // the checkpoint then also holds a reference policy, which the loader must skip
  return c;
}

std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

bool same_eval(const ulm::EvalRecord& a, const ulm::EvalRecord& b) {
  return a.result.geneval.overall() == b.result.geneval.overall() && a.result.mc_correct == b.result.mc_correct &&
         a.result.oe_correct == b.result.oe_correct && a.train_prompts.overall() == b.train_prompts.overall();
}

}  // namespace

TEST_CASE("unified.ckpt: refined stages from the unified checkpoint reproduce the full run exactly") {
  const auto dir = std::filesystem::temp_directory_path() / "corl_test_unified_ckpt";
  std::filesystem::remove_all(dir);
  const ulm::TrainConfig full_cfg = tiny_config((dir / "full").string());
  const ulm::TrainResult full = ulm::run_training(full_cfg, nullptr);

  ulm::TrainConfig again = tiny_config((dir / "again").string());
  again.sft_ckpt = (dir / "full" / "sft.safetensors").string();
  again.unified_ckpt = (dir / "full" / "checkpoints" / "corl" / "stage0-unified-step2.ckpt").string();
  const ulm::TrainResult rerun = ulm::run_training(again, nullptr);

  for (const auto& s : rerun.stages) CHECK(s.name != "unified");  // not run again
  for (const char* name : {"sft", "unified", "refined_t2i", "qa_merged", "corl"}) {
    INFO("evaluation " << name);
    CHECK(same_eval(full.eval(name), rerun.eval(name)));
  }
  // The final CoRL policy is bit for bit the same (it is built on the unified policy: loading nothing would change it).
  const std::string final_full = file_bytes(dir / "full" / "corl.safetensors");
  REQUIRE(final_full.size() > 1000);
  CHECK(final_full == file_bytes(dir / "again" / "corl.safetensors"));
  // A different refined-stage setting changes the refined results but not the loaded unified policy's.
  ulm::TrainConfig other = again;
  other.out_dir = (dir / "other").string();
  other.refined_t2i.learning_rate = 0.1;  // T2I: a continuous reward, so groups have a spread
  const ulm::TrainResult changed = ulm::run_training(other, nullptr);
  CHECK(same_eval(full.eval("unified"), changed.eval("unified")));
  CHECK(final_full != file_bytes(dir / "other" / "corl.safetensors"));

  // Errors: a checkpoint of another stage; a missing file.
  ulm::TrainConfig wrong = again;
  wrong.out_dir = (dir / "wrong").string();
  wrong.unified_ckpt = (dir / "full" / "checkpoints" / "corl" / "stage0-refined_mc-step2.ckpt").string();
  CHECK_THROWS_WITH_AS(ulm::run_training(wrong, nullptr),
                       doctest::Contains("is a checkpoint of stage 'refined_mc', expected one of stage 'unified'"),
                       corl::Error);
  wrong.unified_ckpt = (dir / "no_such.ckpt").string();
  CHECK_THROWS_WITH_AS(ulm::run_training(wrong, nullptr), doctest::Contains("no_such.ckpt': file not found"),
                       corl::Error);
  // an SFT checkpoint whose model does not have the requested image-code tables
  wrong.unified_ckpt.clear();
  wrong.model_factored_codes = 1;
  CHECK_THROWS_WITH_AS(ulm::run_training(wrong, nullptr),
                       doctest::Contains("has plain image-code tables but model.factored_codes = 1"), corl::Error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("unified.checkpoint_every: an intermediate unified checkpoint is the policy a shorter run ends with") {
  const auto dir = std::filesystem::temp_directory_path() / "corl_test_checkpoint_every";
  std::filesystem::remove_all(dir);
  ulm::TrainConfig two = tiny_config((dir / "two").string());
  two.unified.checkpoint_every = 1;
  ulm::run_training(two, nullptr);
  const auto ckpts = dir / "two" / "checkpoints" / "corl";
  CHECK(std::filesystem::exists(ckpts / "stage0-unified-step1.ckpt"));
  CHECK(std::filesystem::exists(ckpts / "stage0-unified-step2.ckpt"));
  CHECK(!std::filesystem::exists(ckpts / "stage0-refined_t2i-step1.ckpt"));  // only where asked
  // the refined stages from the step-1 checkpoint == a run whose unified stage has 1 step (same SFT, same seeds)
  ulm::TrainConfig one = tiny_config((dir / "one").string());
  one.sft_ckpt = (dir / "two" / "sft.safetensors").string();
  one.unified.steps = 1;
  ulm::run_training(one, nullptr);
  ulm::TrainConfig from = tiny_config((dir / "from").string());
  from.sft_ckpt = one.sft_ckpt;
  from.unified_ckpt = (ckpts / "stage0-unified-step1.ckpt").string();
  ulm::run_training(from, nullptr);
  const std::string a = file_bytes(dir / "one" / "corl.safetensors");
  REQUIRE(a.size() > 1000);
  CHECK(a == file_bytes(dir / "from" / "corl.safetensors"));
  CHECK(a != file_bytes(dir / "two" / "corl.safetensors"));
  ulm::TrainConfig bad = tiny_config((dir / "bad").string());
  bad.refined_mc.checkpoint_every = -1;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("refined_mc.checkpoint_every = -1, expected >= 0"),
                       corl::Error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("model.factored_codes = 1: the trainer builds a factored model, its checkpoints reload as factored") {
  const auto dir = std::filesystem::temp_directory_path() / "corl_test_factored_codes";
  std::filesystem::remove_all(dir);
  ulm::TrainConfig c = tiny_config((dir / "run").string());
  c.model_factored_codes = 1;
  const ulm::TrainResult r = ulm::run_training(c, nullptr);
  CHECK(r.eval("corl").result.geneval.total() == 6);
  for (const char* file : {"sft.safetensors", "corl.safetensors"}) {
    const ulm::Model<float> m = ulm::load_checkpoint<float>((dir / "run" / file).string());
    CHECK(m.config().factored_codes());
    CHECK(m.config().code_colours == 6);
    CHECK(m.config().code_shapes == 4);
  }
  // and a plain run cannot start from that SFT checkpoint
  ulm::TrainConfig plain = tiny_config((dir / "plain").string());
  plain.sft_ckpt = (dir / "run" / "sft.safetensors").string();
  CHECK_THROWS_WITH_AS(ulm::run_training(plain, nullptr),
                       doctest::Contains("has factored image-code tables but model.factored_codes = 0"), corl::Error);
  std::filesystem::remove_all(dir);
}

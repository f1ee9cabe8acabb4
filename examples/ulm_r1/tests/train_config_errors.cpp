// `ulm_r1 train` configuration: file + overrides, and clear errors for bad values and missing files.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "train_config.hpp"
#include "train_run.hpp"

namespace {
std::string write_file(const std::string& name, const std::string& text) {
  const auto p = std::filesystem::temp_directory_path() / (name + std::to_string(::getpid()));
  std::ofstream(p) << text;
  return p.string();
}
}  // namespace

TEST_CASE("config file and overrides set the documented keys") {
  ulm::TrainConfig c;
  const auto path = write_file("corl_cfg_ok", "# comment\nseed = 5\nunified.steps = 7  # trailing comment\n"
                                              "refined_mc.beta = 0.05\nreward.lambda=0.5\n\nablation = true\n");
  ulm::read_train_config_file(c, path);
  CHECK(c.seed == 5);
  CHECK(c.unified.steps == 7);
  CHECK(c.refined_mc.beta == doctest::Approx(0.05));
  CHECK(c.reward_lambda == doctest::Approx(0.5));
  CHECK(c.ablation);
  ulm::set_train_config_value(c, "unified.group_size", "16", "--unified.group_size");
  CHECK(c.unified.group_size == 16);
  const auto sc = c.stage_config("unified");
  CHECK(sc.group_size == 16);
  CHECK(sc.task_weights == std::vector<double>{1.0, 1.0});
  CHECK(c.stage_config("refined_mc").task_weights.size() == 1);
  CHECK(ulm::train_config_values(c).at("unified.steps") == "7");
  ulm::set_train_config_value(c, "unified.lr_schedule", "cosine", "--unified.lr_schedule");
  ulm::set_train_config_value(c, "unified.warmup_steps", "2", "--unified.warmup_steps");
  CHECK(c.stage_config("unified").lr_schedule == corl::LrSchedule::cosine);
  CHECK(c.stage_config("unified").warmup_steps == 2);
  CHECK(c.stage_config("refined_t2i").lr_schedule == corl::LrSchedule::constant);
  CHECK(ulm::train_config_values(c).at("unified.lr_schedule") == "cosine");
  std::filesystem::remove(path);
}

TEST_CASE("bad config values and files fail with messages naming the source, key and condition") {
  ulm::TrainConfig c;
  CHECK_THROWS_WITH_AS(ulm::set_train_config_value(c, "unified.stepz", "3", "--unified.stepz"),
                       doctest::Contains("--unified.stepz: unknown key 'unified.stepz'"), corl::Error);
  CHECK_THROWS_WITH_AS(ulm::set_train_config_value(c, "unified.steps", "ten", "--unified.steps"),
                       doctest::Contains("unified.steps = 'ten' is not an integer"), corl::Error);
  CHECK_THROWS_WITH_AS(ulm::set_train_config_value(c, "reward.lambda", "nan", "x"),
                       doctest::Contains("is not a finite number"), corl::Error);
  const auto path = write_file("corl_cfg_bad", "seed = 1\nthis line has no equals sign\n");
  CHECK_THROWS_WITH_AS(ulm::read_train_config_file(c, path), doctest::Contains(":2: expected 'key = value'"),
                       corl::Error);
  std::filesystem::remove(path);
  CHECK_THROWS_WITH_AS(ulm::read_train_config_file(c, "/no/such/config.conf"),
                       doctest::Contains("cannot open config file '/no/such/config.conf'"), corl::Error);

  ulm::TrainConfig g;
  g.unified.group_size = 1;
  CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("unified.group_size = 1, expected 2..256"), corl::Error);
  g = ulm::TrainConfig{};
  g.refined_oe.beta = -1;
  CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("refined_oe.beta = -1"), corl::Error);
  g = ulm::TrainConfig{};
  g.sft_ckpt = "/no/such/sft.safetensors";
  CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("sft.ckpt = '/no/such/sft.safetensors': file not found"),
                       corl::Error);
  g = ulm::TrainConfig{};
  g.text_temperature = 0;
  CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("temperatures must be > 0"), corl::Error);
  CHECK_THROWS_WITH_AS(ulm::set_train_config_value(g, "refined_mc.lr_schedule", "step", "--refined_mc.lr_schedule"),
                       doctest::Contains("refined_mc.lr_schedule = 'step' is not a learning-rate schedule"),
                       corl::Error);
  g = ulm::TrainConfig{};
  g.unified.warmup_steps = g.unified.steps + 1;
  CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("unified.warmup_steps = 601, expected 0..steps = 600"),
                       corl::Error);
  g = ulm::TrainConfig{};
  g.model_factored_codes = 2;
  CHECK_THROWS_WITH_AS(g.validate(),
                       doctest::Contains("model.factored_codes = 2, expected 0 (plain image-code tables) or 1"),
                       corl::Error);
  g = ulm::TrainConfig{};
  g.qa_merge_alpha = 2;
  CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("merge.qa_alpha = 2"), corl::Error);
}

TEST_CASE("the train command rejects bad arguments before doing any work") {
  CHECK_THROWS_WITH_AS(ulm::cmd_train({"--unified.steps"}), doctest::Contains("--unified.steps needs a value"),
                       corl::Error);
  CHECK_THROWS_WITH_AS(ulm::cmd_train({"stray"}), doctest::Contains("unexpected argument 'stray'"), corl::Error);
  CHECK_THROWS_WITH_AS(ulm::cmd_train({"--sft-ckpt", "/missing.safetensors"}), doctest::Contains("file not found"),
                       corl::Error);
  CHECK_THROWS_WITH_AS(ulm::cmd_train({"--config", "/missing.conf"}), doctest::Contains("cannot open config file"),
                       corl::Error);
  CHECK_THROWS_WITH_AS(ulm::cmd_train({"--unified.lr", "-1"}), doctest::Contains("unified.lr = -1"), corl::Error);
}


TEST_CASE("configs/default.conf states exactly the compiled-in defaults") {
  const std::string path = std::string(__FILE__).substr(0, std::string(__FILE__).rfind("/tests/")) +
                           "/configs/default.conf";
  ulm::TrainConfig from_file;
  ulm::read_train_config_file(from_file, path);
  const auto a = ulm::train_config_values(from_file), b = ulm::train_config_values(ulm::TrainConfig{});
  for (const auto& [k, v] : b) {
    CAPTURE(k);
    CHECK(a.at(k) == v);
  }
}

#include <doctest/doctest.h>

#include <corl/pipeline/checkpoint.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace {
std::string temp_file(const char* name) {
  return (std::filesystem::temp_directory_path() / ("corl_ckpt_" + std::string(name) + std::to_string(::getpid())))
      .string();
}
}  // namespace

TEST_CASE("checkpoint round trip keeps every field bit for bit") {
  corl::PipelineCheckpoint<float> c;
  c.stage = 2;
  c.stage_name = "refined-mc";
  c.step = 17;
  c.parameters = {1.5f, -0.0f, 3.25e-7f};
  c.reference = {0.1f, 0.2f, 0.3f};
  c.optimizer_state = std::string("adam\0state", 10);
  const auto path = temp_file("rt");
  corl::write_checkpoint(path, c);
  const auto d = corl::read_checkpoint<float>(path);
  CHECK(d.stage == 2);
  CHECK(d.stage_name == "refined-mc");
  CHECK(d.step == 17);
  CHECK(d.parameters == c.parameters);
  CHECK(std::signbit(d.parameters[1]));
  CHECK(d.reference == c.reference);
  CHECK(d.optimizer_state == c.optimizer_state);
  // precision mismatch is an error, not a silent reinterpretation
  CHECK_THROWS_WITH_AS(corl::read_checkpoint<double>(path), doctest::Contains("stores 4-byte reals, expected 8"),
                       corl::Error);
  // truncation is detected
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
  CHECK_THROWS_WITH_AS(corl::read_checkpoint<float>(path), doctest::Contains("truncated"), corl::Error);
  std::filesystem::remove(path);
}

TEST_CASE("checkpoint reader rejects missing and foreign files") {
  CHECK_THROWS_WITH_AS(corl::read_checkpoint<double>("/nonexistent/dir/x.ckpt"),
                       doctest::Contains("cannot open '/nonexistent/dir/x.ckpt'"), corl::Error);
  const auto path = temp_file("foreign");
  std::ofstream(path) << "not a checkpoint at all";
  CHECK_THROWS_WITH_AS(corl::read_checkpoint<double>(path), doctest::Contains("bad magic"), corl::Error);
  std::filesystem::remove(path);
}

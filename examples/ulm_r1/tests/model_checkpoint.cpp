// Checkpoints: bitwise save/load round trip with the config in __metadata__, Hugging Face names, and every way a
// checkpoint can be bad (missing file, truncated file, bad JSON, missing / unexpected tensor, wrong shape or dtype).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "checkpoint.hpp"
#include "corl/core/error.hpp"
#include "corl/io/safetensors.hpp"

using namespace ulm;

namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.text_vocab = 20;
  c.image_vocab = 9;
  c.image_tokens = 4;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 24;
  c.d_code = 8;
  c.max_seq = 32;
  return c;
}

std::string temp_path(const std::string& name) { return std::string("/tmp/ulm_model_ckpt_") + name; }

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& path, const std::vector<char>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

/// A checkpoint of `model` where `edit` may drop, reshape or add tensors.
template <class Edit>
void write_edited(const Model<float>& model, const std::string& path, Edit edit) {
  corl::io::SafetensorsWriter w;
  for (const auto& [k, v] : model.config().to_metadata()) w.set_metadata(k, v);
  const auto params = model.parameters();
  for (const ParamInfo& p : model.layout()) {
    auto values = params.subspan(static_cast<std::size_t>(p.offset), static_cast<std::size_t>(p.size));
    edit(w, p, values);
  }
  w.write(path);
}

}  // namespace

TEST_CASE("checkpoint round trip is bitwise and keeps the config and extra metadata") {
  Model<float> m(small_config(), 123);
  const std::string path = temp_path("roundtrip.safetensors");
  save_checkpoint(m, path, {{"sft_steps", "17"}});
  const Model<float> back = load_checkpoint<float>(path);
  CHECK(back.config() == m.config());
  REQUIRE(back.num_parameters() == m.num_parameters());
  CHECK(std::memcmp(back.parameters().data(), m.parameters().data(), m.parameters().size_bytes()) == 0);
  const auto meta = checkpoint_metadata(path);
  CHECK(meta.at("sft_steps") == "17");
  CHECK(meta.at("d_model") == "16");
  // names and shapes as Hugging Face writes them
  const auto file = corl::io::SafetensorsFile::read(path);
  CHECK(file.info("model.embed_tokens.weight").shape == corl::io::Shape{20, 16});
  CHECK(file.info("model.layers.1.self_attn.q_proj.weight").shape == corl::io::Shape{16, 16});
  CHECK(file.info("model.layers.0.mlp.down_proj.weight").shape == corl::io::Shape{16, 24});
  CHECK(file.info("gen_head.0.weight").shape == corl::io::Shape{16, 16});
  CHECK(file.info("gen_head.2.weight").shape == corl::io::Shape{9, 16});
  CHECK(file.info("lm_head.weight").dtype == corl::io::Dtype::kF32);
  // saving the loaded model again gives the same bytes
  const std::string path2 = temp_path("roundtrip2.safetensors");
  save_checkpoint(back, path2, {{"sft_steps", "17"}});
  CHECK(read_bytes(path) == read_bytes(path2));
  std::remove(path.c_str());
  std::remove(path2.c_str());
}

TEST_CASE("missing file") {
  CHECK_THROWS_WITH_AS(load_checkpoint<float>("/tmp/ulm_model_ckpt_does_not_exist.safetensors"),
                       doctest::Contains("cannot open '/tmp/ulm_model_ckpt_does_not_exist.safetensors'"),
                       corl::Error);
}

TEST_CASE("truncated file: inside the data, inside the header, and shorter than the length prefix") {
  Model<float> m(small_config(), 1);
  const std::string path = temp_path("trunc.safetensors");
  save_checkpoint(m, path);
  const auto bytes = read_bytes(path);
  write_bytes(path, std::vector<char>(bytes.begin(), bytes.end() - 10));
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("truncated file"), corl::Error);
  write_bytes(path, std::vector<char>(bytes.begin(), bytes.begin() + 40));
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("truncated file: header length"), corl::Error);
  write_bytes(path, std::vector<char>(bytes.begin(), bytes.begin() + 5));
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("expected at least 8"), corl::Error);
  std::remove(path.c_str());
}

TEST_CASE("bad header JSON") {
  Model<float> m(small_config(), 1);
  const std::string path = temp_path("json.safetensors");
  save_checkpoint(m, path);
  auto bytes = read_bytes(path);
  bytes[8] = '[';  // the header must be an object
  write_bytes(path, bytes);
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("bad safetensors header JSON at byte 0"),
                       corl::Error);
  std::remove(path.c_str());
}

TEST_CASE("missing tensor, wrong shape, unexpected tensor, wrong dtype") {
  Model<float> m(small_config(), 1);
  const std::string path = temp_path("edit.safetensors");
  write_edited(m, path, [](corl::io::SafetensorsWriter& w, const ParamInfo& p, std::span<const float> v) {
    if (p.name != "model.layers.1.mlp.up_proj.weight") w.add<float>(p.name, p.shape, v);
  });
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("missing tensor 'model.layers.1.mlp.up_proj.weight'"),
                       corl::Error);
  write_edited(m, path, [](corl::io::SafetensorsWriter& w, const ParamInfo& p, std::span<const float> v) {
    corl::io::Shape shape = p.shape;
    if (p.name == "lm_head.weight") shape = {16, 20};  // transposed
    w.add<float>(p.name, shape, v);
  });
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path),
                       doctest::Contains("tensor 'lm_head.weight' has shape [16, 20], expected [20, 16]"), corl::Error);
  write_edited(m, path, [](corl::io::SafetensorsWriter& w, const ParamInfo& p, std::span<const float> v) {
    w.add<float>(p.name, p.shape, v);
    if (p.name == "lm_head.weight") w.add<float>("lm_head.bias", {1}, v.first(1));
  });
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("unexpected tensor 'lm_head.bias'"),
                       corl::Error);
  Model<double> md(small_config(), 1);
  save_checkpoint(md, path);
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("has dtype F64, expected F32"), corl::Error);
  std::remove(path.c_str());
}

TEST_CASE("metadata: missing or malformed config entries") {
  Model<float> m(small_config(), 1);
  const std::string path = temp_path("meta.safetensors");
  corl::io::SafetensorsWriter w;
  auto meta = m.config().to_metadata();
  meta["n_heads"] = "two";
  for (const auto& [k, v] : meta) w.set_metadata(k, v);
  w.write(path);
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("__metadata__[\"n_heads\"] = \"two\""),
                       corl::Error);
  corl::io::SafetensorsWriter empty;
  empty.write(path);
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("lacks \"format\""), corl::Error);
  std::remove(path.c_str());
}

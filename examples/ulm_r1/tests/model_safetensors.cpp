// corl/io/safetensors.hpp on its own: a file written by hand byte for byte (as the Python library writes it) is read
// back, the writer's output is parsed, and malformed headers fail with messages naming the tensor.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/io/safetensors.hpp"

using namespace corl::io;

namespace {
std::vector<char> file_image(const std::string& header, const std::vector<char>& data) {
  std::string out;
  const std::uint64_t n = header.size();
  for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>((n >> (8 * b)) & 0xFF));  // little-endian length
  out += header;
  out.append(data.data(), data.size());
  return std::vector<char>(out.begin(), out.end());
}
std::vector<char> floats(std::initializer_list<float> v) {
  std::vector<char> out(v.size() * 4);
  std::memcpy(out.data(), std::data(v), out.size());
  return out;
}
}  // namespace

TEST_CASE("reads a hand-written file: two tensors, metadata, escapes") {
  const std::string header =
      R"({"__metadata__":{"format":"pt","note":"a \"quoted\" \u00e9"},)"
      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},)"
      R"("a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  const auto img = file_image(header, floats({1, 2, 3, 4, 5}));
  const auto f = SafetensorsFile::parse(img, "hand");
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("note") == "a \"quoted\" \xc3\xa9");
  CHECK(f.get<float>("a.weight", {2, 2}) == std::vector<float>{1, 2, 3, 4});
  CHECK(f.get<float>("b", {1}) == std::vector<float>{5});
  CHECK_THROWS_WITH_AS(f.get<float>("a.weight", {4}), doctest::Contains("has shape [2, 2], expected [4]"),
                       corl::Error);
  CHECK_THROWS_WITH_AS(f.get<double>("b", {1}), doctest::Contains("has dtype F32, expected F64"), corl::Error);
  CHECK_THROWS_WITH_AS(f.info("c"), doctest::Contains("missing tensor 'c'"), corl::Error);
}

TEST_CASE("writer output: 8-byte aligned header, parses back, integer dtypes") {
  SafetensorsWriter w;
  w.set_metadata("k", "v");
  const std::vector<std::int64_t> ids = {5, -7, 9};
  const std::vector<double> x = {0.25, -1.5};
  w.add<std::int64_t>("ids", {3}, ids);
  w.add<double>("x", {2, 1}, x);
  const auto img = w.serialize();
  std::uint64_t n = 0;
  std::memcpy(&n, img.data(), 8);
  CHECK(n % 8 == 0);
  CHECK(img.size() == 8 + n + 3 * 8 + 2 * 8);
  const auto f = SafetensorsFile::parse(img, "mem");
  CHECK(f.get<std::int64_t>("ids", {3}) == ids);
  CHECK(f.get<double>("x", {2, 1}) == x);
  CHECK(f.info("x").begin == 24);
  CHECK_THROWS_WITH_AS(w.add<double>("x", {2}, x), doctest::Contains("tensor 'x' added twice"), corl::Error);
  CHECK_THROWS_WITH_AS(w.add<double>("y", {3}, x), doctest::Contains("has 16 bytes, expected 24"), corl::Error);
}

TEST_CASE("malformed headers name the problem") {
  auto parse = [](const std::string& header, std::vector<char> data) {
    return SafetensorsFile::parse(file_image(header, data), "bad");
  };
  CHECK_THROWS_WITH_AS(parse(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", floats({1})),
                       doctest::Contains("tensor 'a': unknown dtype \"F33\""), corl::Error);
  CHECK_THROWS_WITH_AS(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", floats({1})),
                       doctest::Contains("data_offsets span 4 bytes, expected 8"), corl::Error);
  CHECK_THROWS_WITH_AS(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", floats({1})),
                       doctest::Contains("truncated file: tensor 'a' ends at byte 8"), corl::Error);
  CHECK_THROWS_WITH_AS(parse(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                             floats({1})),
                       doctest::Contains("overlap"), corl::Error);
  CHECK_THROWS_WITH_AS(parse(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", floats({1})),
                       doctest::Contains("negative dimension -1"), corl::Error);
  CHECK_THROWS_WITH_AS(parse(R"({"a":{"dtype":"F32","shape":[1]}})", floats({1})),
                       doctest::Contains("lacks one of"), corl::Error);
  CHECK_THROWS_WITH_AS(parse(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", floats({1})),
                       doctest::Contains("JSON at byte 53: expected ','"), corl::Error);
  CHECK_THROWS_WITH_AS(parse(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x)", floats({1})),
                       doctest::Contains("trailing characters"), corl::Error);
}

// JSON / JSONL: values, escapes, canonical output, malformed input reported with file:line and column, and unified
// rows written and read back unchanged, with bad fields named.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "corl/core/error.hpp"
#include "corl/core/rng.hpp"
#include "json.hpp"
#include "world.hpp"

using namespace ulm;

namespace {
std::string data_path(const std::string& name) {
  std::filesystem::create_directories(ULM_R1_TEST_DATA_DIR);
  return std::string(ULM_R1_TEST_DATA_DIR) + "/" + name;
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}
}  // namespace

TEST_CASE("json: parse and dump values, escapes, integers without fractions") {
  const Json v = parse_json(R"( {"a": [1, -2.5, 3e2, true, false, null], "s": "q\"\\\/\n\tAé\u00e9\ud83d\ude00", "o": {}} )");
  REQUIRE(v.is_object());
  const Json::Array& a = v.at("a").as_array();
  REQUIRE(a.size() == 6);
  CHECK(a[0].as_int() == 1);
  CHECK(a[1].as_number() == -2.5);
  CHECK(a[2].as_int() == 300);
  CHECK(a[3].as_bool());
  CHECK_FALSE(a[4].as_bool());
  CHECK(a[5].is_null());
  CHECK(v.at("s").as_string() == "q\"\\/\n\tA\xc3\xa9\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(v.at("o").as_object().empty());
  CHECK(dump_json(v) == "{\"a\":[1,-2.5,300,true,false,null],\"s\":\"q\\\"\\\\/\\n\\tA\xc3\xa9\xc3\xa9\xf0\x9f\x98\x80\",\"o\":{}}");
  CHECK(parse_json(dump_json(v)) == v);
  CHECK(dump_json(Json(0.1)) == "0.1");
  CHECK(dump_json(Json(std::string("\x01"))) == "\"\\u0001\"");
  CHECK_THROWS_WITH_AS(v.at("missing"), doctest::Contains("missing key 'missing'"), corl::Error);
  CHECK_THROWS_WITH_AS(v.at("s").as_number(), doctest::Contains("is a string, expected number"), corl::Error);
  CHECK_THROWS_WITH_AS(Json(1.5).as_int(), doctest::Contains("expected an integer"), corl::Error);
  CHECK_THROWS_AS(dump_json(Json(std::nan(""))), corl::Error);
}

TEST_CASE("json: malformed documents name the source and the column") {
  CHECK_THROWS_WITH_AS(parse_json("[1, 2", "x.json"), doctest::Contains("x.json: column 6: unterminated array"),
                       corl::Error);
  CHECK_THROWS_WITH_AS(parse_json("{\"a\" 1}", "s"), doctest::Contains("s: column 6: expected ':'"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_json("[01]"), doctest::Contains("column 3: unexpected '1' in array"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_json("{\"a\":1,\"a\":2}"), doctest::Contains("duplicate key 'a'"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_json("\"abc"), doctest::Contains("unterminated string"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_json("[1] x"), doctest::Contains("after the value"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_json("tru"), doctest::Contains("expected 'true'"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_json("\"\\x\""), doctest::Contains("invalid escape"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_json("1e999"), doctest::Contains("out of range"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_json(""), doctest::Contains("unexpected end of input"), corl::Error);
  CHECK_THROWS_WITH_AS(parse_json("\"\\ud800\""), doctest::Contains("surrogate"), corl::Error);
}

TEST_CASE("jsonl: blank lines skipped - a malformed line is reported as file:line - missing file named") {
  const std::string path = data_path("world_json_bad.jsonl");
  write_text(path, "{\"a\": 1}\n\n{\"b\": 2}\r\n{\"c\": }\n");
  try {
    read_jsonl(path);
    FAIL("expected corl::Error");
  } catch (const corl::Error& e) {
    CHECK(std::string(e.what()).find(path + ":4: column 7:") != std::string::npos);
  }
  write_text(path, "{\"a\": 1}\n\n{\"b\": 2}\r\n");
  const std::vector<Json> rows = read_jsonl(path);
  REQUIRE(rows.size() == 2);
  CHECK(rows[1].at("b").as_int() == 2);
  CHECK_THROWS_WITH_AS(read_jsonl(data_path("does_not_exist.jsonl")), doctest::Contains("cannot open"), corl::Error);
}

TEST_CASE("unified rows: JSONL round trip is exact - bad fields are named with file:line") {
  const WorldConfig config;
  GeneratorOptions options;
  options.rows = 40;
  const std::vector<UnifiedRow> rows = generate_rows(config, options);
  const std::string path = data_path("world_rows.jsonl");
  write_rows_jsonl(path, rows, config);
  const std::vector<UnifiedRow> back = read_rows_jsonl(path, config);
  REQUIRE(back.size() == rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i)
    CHECK(dump_json(row_to_json(back[i], config)) == dump_json(row_to_json(rows[i], config)));
  // The documented field names are present.
  const Json j = row_to_json(rows[0], config);
  for (const char* field : {"id", "split", "category", "prompt", "spec", "image", "caption", "question", "options",
                            "solution", "answer", "question_type", "question_kind"})
    CHECK_MESSAGE(j.find(field) != nullptr, field);
  CHECK(j.at("image").as_array().size() == 16);

  auto expect_error = [&](Json row, const std::string& needle) {
    write_jsonl(path, {row_to_json(rows[1], config), std::move(row)});
    try {
      read_rows_jsonl(path, config);
      FAIL("expected corl::Error for " << needle);
    } catch (const corl::Error& e) {
      const std::string what = e.what();
      CHECK_MESSAGE(what.find(path + ":2: ") != std::string::npos, what);
      CHECK_MESSAGE(what.find(needle) != std::string::npos, what);
    }
  };
  Json bad = j;
  bad.as_object().erase(bad.as_object().begin() + 3);  // drop "prompt"
  expect_error(bad, "missing field 'prompt'");
  bad = j;
  bad.set("image", Json::array());
  expect_error(bad, "grid has 0 cells");
  bad = j;
  bad.set("image", Json(Json::Array(16, Json(99))));
  expect_error(bad, "grid[0] = 99");
  bad = j;
  bad.set("question_type", "yesno");
  expect_error(bad, "'yesno', expected mc or oe");
  bad = j;
  bad.set("prompt", "a hexagon");
  expect_error(bad, "'hexagon'");
  bad = j;
  bad.set("width", 5);
  expect_error(bad, "field 'width' = 5, expected 4");
  bad = j;
  bad.set("answer", 3);
  expect_error(bad, "field 'answer' is a number, expected a string");
}

TEST_CASE("world config: JSON round trip, defaults for missing keys, errors name the key") {
  WorldConfig config;
  config.height = 3;
  config.width = 5;
  config.colours = {"red", "teal", "gold"};
  config.shapes = {"cross", "ring"};
  config.shape_plurals = {"crosses", "rings"};
  config.max_count = 3;
  config.max_distractors = 2;
  const Json j = world_config_to_json(config);
  CHECK(dump_json(j) ==
        "{\"height\":3,\"width\":5,\"colours\":[\"red\",\"teal\",\"gold\"],\"shapes\":[\"cross\",\"ring\"],"
        "\"shape_plurals\":[\"crosses\",\"rings\"],\"max_count\":3,\"max_distractors\":2}");
  const WorldConfig back = world_config_from_json(parse_json(dump_json(j)));
  CHECK(back.colours == config.colours);
  CHECK(back.shape_plurals == config.shape_plurals);
  CHECK(back.height == 3);
  CHECK(back.max_distractors == 2);
  const WorldConfig defaults = world_config_from_json(parse_json("{\"height\": 5}"));
  CHECK(defaults.height == 5);
  CHECK(defaults.width == 4);
  CHECK(defaults.colours.size() == 6);
  CHECK_THROWS_WITH_AS(world_config_from_json(parse_json("{\"hieght\": 5}")), doctest::Contains("unknown key 'hieght'"),
                       corl::Error);
  CHECK_THROWS_WITH_AS(world_config_from_json(parse_json("{\"width\": 2.5}")),
                       doctest::Contains("'width' is not an integer"), corl::Error);
  CHECK_THROWS_WITH_AS(world_config_from_json(parse_json("{\"shapes\": [\"circle\", 3]}")),
                       doctest::Contains("shapes[1] is a number"), corl::Error);
  CHECK_THROWS_WITH_AS(world_config_from_json(parse_json("{\"width\": 40}")), doctest::Contains("width = 40"),
                       corl::Error);
}

TEST_CASE("json: random and mutated inputs either parse or throw corl::Error, and what parses round-trips") {
  const std::string alphabet = "{}[]:,\"\\ 0123456789-+.eEtrufalsn\n\tu";
  const std::string seed_doc = R"({"a":[1,-2.5e3,"x\"y",true,null,{"b":false}],"c":"\u00e9"})";
  corl::CounterRng rng(77, 0);
  int parsed = 0, rejected = 0;
  for (int k = 0; k < 3000; ++k) {
    std::string text;
    if (k % 2 == 0) {  // random text over JSON's characters
      const std::uint64_t n = rng.below(24);
      for (std::uint64_t i = 0; i < n; ++i) text += alphabet[rng.below(alphabet.size())];
    } else {  // one character of a valid document replaced, inserted or deleted
      text = seed_doc;
      const std::size_t at = rng.below(text.size());
      const std::uint64_t op = rng.below(3);
      if (op == 0) text[at] = alphabet[rng.below(alphabet.size())];
      else if (op == 1) text.insert(at, 1, alphabet[rng.below(alphabet.size())]);
      else text.erase(at, 1);
    }
    try {
      const Json v = parse_json(text, "fuzz");
      CHECK(parse_json(dump_json(v)) == v);
      ++parsed;
    } catch (const corl::Error& e) {
      CHECK(std::string(e.what()).rfind("fuzz: column ", 0) == 0);
      ++rejected;
    }
  }
  CHECK(parsed > 50);
  CHECK(rejected > 1000);
}

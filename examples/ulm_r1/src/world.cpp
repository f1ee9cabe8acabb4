// world.cpp — config validation, prompt specs and texts, reference renderings, captions and questions (world.hpp).
#include "world.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>

#include "corl/core/error.hpp"

namespace ulm {

namespace {

const char* const kNumberWords[] = {"zero",    "one",     "two",       "three",    "four",    "five",    "six",
                                    "seven",   "eight",   "nine",      "ten",      "eleven",  "twelve",  "thirteen",
                                    "fourteen", "fifteen", "sixteen",  "seventeen", "eighteen", "nineteen", "twenty"};
constexpr int kMaxNumberWord = 20;

bool is_lower_word(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= 'a' && c <= 'z'; });
}

std::vector<std::string> split_spaces(std::string_view text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n')) ++i;
    const std::size_t s = i;
    while (i < text.size() && !(text[i] == ' ' || text[i] == '\t' || text[i] == '\n')) ++i;
    if (i > s) out.emplace_back(text.substr(s, i - s));
  }
  return out;
}

std::string join(const std::vector<std::string>& words, std::string_view sep = " ") {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i) out += sep;
    out += words[i];
  }
  return out;
}

/// Uniform pick from a non-empty vector.
template <class T>
const T& pick(const std::vector<T>& v, corl::CounterRng& rng) {
  return v[rng.below(v.size())];
}

template <class T>
void shuffle(std::vector<T>& v, corl::CounterRng& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

int object_count(const PromptSpec& spec) {
  switch (spec.category) {
    case Category::single_object:
    case Category::counting:
    case Category::colours: return 1;
    default: return 2;
  }
}

bool colours_given(Category c) { return c == Category::colours || c == Category::colour_attribution; }

/// "a red circle" / "a circle" (colour < 0).
/// "red circle" / "circle" (colour < 0): the phrase without its article.
std::string bare_phrase(int colour, int shape, const WorldConfig& config) {
  std::string s;
  if (colour >= 0) s += config.colours[static_cast<std::size_t>(colour)] + " ";
  return s + config.shapes[static_cast<std::size_t>(shape)];
}

/// "a red circle", "an orange star", "a circle": "an" before a vowel.
std::string object_phrase(int colour, int shape, const WorldConfig& config) {
  const std::string bare = bare_phrase(colour, shape, config);
  return (std::string_view("aeiou").find(bare[0]) != std::string_view::npos ? "an " : "a ") + bare;
}

/// "a red circle" for one, "two red circles" otherwise.
std::string counted_phrase(int count, int colour, int shape, const WorldConfig& config) {
  if (count == 1) return object_phrase(colour, shape, config);
  std::string s = number_word(count) + " ";
  if (colour >= 0) s += config.colours[static_cast<std::size_t>(colour)] + " ";
  return s + config.plural(shape);
}

/// "x", "x and y", "x , y and z".
std::string list_phrase(const std::vector<std::string>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += (i + 1 == items.size()) ? " and " : " , ";
    out += items[i];
  }
  return out;
}

}  // namespace

// ---- config ----------------------------------------------------------------------------------------------------

const std::vector<std::string>& world_fixed_words() {
  static const std::vector<std::string> words = [] {
    std::vector<std::string> w = {"?", ".", ",", ":", "A", "B", "C", "D"};
    for (const char* word : {"a",     "an",    "and",   "left",   "right",   "of",       "above",  "below",
                             "how",   "many",  "are",   "there",  "is",      "what",     "colour", "the",
                             "where", "relative", "to", "top",    "bottom",  "middle",   "centre", "yes",
                             "no",    "describe", "image", "nothing", "i",   "see",      "so",     "at"})
      w.emplace_back(word);
    for (int n = 0; n <= kMaxNumberWord; ++n) w.emplace_back(kNumberWords[n]);
    for (int n = 0; n <= kMaxNumberWord; ++n) w.push_back(std::to_string(n));
    return w;
  }();
  return words;
}

std::string number_word(int n) {
  return (n >= 0 && n <= kMaxNumberWord) ? std::string(kNumberWords[n]) : std::to_string(n);
}

int parse_number_word(std::string_view word) {
  for (int n = 0; n <= kMaxNumberWord; ++n)
    if (word == kNumberWords[n]) return n;
  if (word.empty() || word.size() > 6) return -1;
  int n = 0;
  for (const char c : word) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  if (word.size() > 1 && word[0] == '0') return -1;
  return n;
}

void WorldConfig::validate() const {
  corl::require(height >= 1 && height <= 16, "WorldConfig::validate: height = ", height, ", expected 1..16");
  corl::require(width >= 1 && width <= 16, "WorldConfig::validate: width = ", width, ", expected 1..16");
  corl::require(num_cells() >= 2, "WorldConfig::validate: height * width = ", num_cells(),
                ", expected >= 2 (two-object prompts)");
  corl::require(colours.size() >= 2 && colours.size() <= 16, "WorldConfig::validate: colours has ", colours.size(),
                " names, expected 2..16");
  corl::require(shapes.size() >= 2 && shapes.size() <= 16, "WorldConfig::validate: shapes has ", shapes.size(),
                " names, expected 2..16");
  corl::require(shape_plurals.empty() || shape_plurals.size() == shapes.size(),
                "WorldConfig::validate: shape_plurals has ", shape_plurals.size(),
                " names, expected 0 or one per shape (", shapes.size(), ")");
  std::set<std::string> seen(world_fixed_words().begin(), world_fixed_words().end());
  auto check = [&](const std::string& field, std::size_t i, const std::string& name) {
    corl::require(is_lower_word(name), "WorldConfig::validate: ", field, "[", i, "] = '", name,
                  "', expected a lower-case word [a-z]+");
    corl::require(seen.insert(name).second, "WorldConfig::validate: ", field, "[", i, "] = '", name,
                  "', expected a word not used elsewhere in the world (colours, shapes, plurals, function words)");
  };
  for (std::size_t i = 0; i < colours.size(); ++i) check("colours", i, colours[i]);
  for (std::size_t i = 0; i < shapes.size(); ++i) check("shapes", i, shapes[i]);
  const std::string plural_field = shape_plurals.empty() ? "plural of shapes" : "shape_plurals";
  for (std::size_t i = 0; i < shapes.size(); ++i) check(plural_field, i, plural(static_cast<int>(i)));
  corl::require(max_count >= 1 && max_count <= std::min(16, num_cells()), "WorldConfig::validate: max_count = ",
                max_count, ", expected 1..", std::min(16, num_cells()));
  const int room = num_cells() - std::max(max_count, 2);
  corl::require(max_distractors >= 0 && max_distractors <= room, "WorldConfig::validate: max_distractors = ",
                max_distractors, ", expected 0..", room, " (cells left after the largest prompt)");
}

int WorldConfig::code(int colour, int shape) const {
  corl::require(colour >= 0 && colour < num_colours(), "WorldConfig::code: colour = ", colour, ", expected 0..",
                num_colours() - 1);
  corl::require(shape >= 0 && shape < num_shapes(), "WorldConfig::code: shape = ", shape, ", expected 0..",
                num_shapes() - 1);
  return 1 + colour * num_shapes() + shape;
}

std::string WorldConfig::plural(int shape) const {
  corl::require(shape >= 0 && shape < num_shapes(), "WorldConfig::plural: shape = ", shape, ", expected 0..",
                num_shapes() - 1);
  if (!shape_plurals.empty()) return shape_plurals[static_cast<std::size_t>(shape)];
  return shapes[static_cast<std::size_t>(shape)] + "s";
}

int WorldConfig::colour_index(std::string_view name) const {
  for (int i = 0; i < num_colours(); ++i)
    if (colours[static_cast<std::size_t>(i)] == name) return i;
  return -1;
}

int WorldConfig::shape_index(std::string_view word) const {
  for (int i = 0; i < num_shapes(); ++i)
    if (shapes[static_cast<std::size_t>(i)] == word || plural(i) == word) return i;
  return -1;
}

Json world_config_to_json(const WorldConfig& config) {
  config.validate();
  auto names = [](const std::vector<std::string>& v) {
    Json a = Json::array();
    for (const std::string& n : v) a.push_back(n);
    return a;
  };
  std::vector<std::string> plurals;
  for (int s = 0; s < config.num_shapes(); ++s) plurals.push_back(config.plural(s));
  Json out = Json::object();
  out.set("height", config.height);
  out.set("width", config.width);
  out.set("colours", names(config.colours));
  out.set("shapes", names(config.shapes));
  out.set("shape_plurals", names(plurals));
  out.set("max_count", config.max_count);
  out.set("max_distractors", config.max_distractors);
  return out;
}

WorldConfig world_config_from_json(const Json& json) {
  corl::require(json.is_object(), "world_config_from_json: config is a ", json.type_name(), ", expected an object");
  WorldConfig config;
  auto integer = [](const std::string& key, const Json& v) {
    corl::require(v.is_number() && std::floor(v.as_number()) == v.as_number() && std::fabs(v.as_number()) < 1e6,
                  "world_config_from_json: '", key, "' is ", v.is_number() ? "not an integer" : v.type_name(),
                  ", expected an integer");
    return static_cast<int>(v.as_number());
  };
  auto names = [](const std::string& key, const Json& v) {
    corl::require(v.is_array(), "world_config_from_json: '", key, "' is a ", v.type_name(),
                  ", expected a list of names");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < v.as_array().size(); ++i) {
      const Json& e = v.as_array()[i];
      corl::require(e.is_string(), "world_config_from_json: ", key, "[", i, "] is a ", e.type_name(),
                    ", expected a string");
      out.push_back(e.as_string());
    }
    return out;
  };
  for (const auto& [key, value] : json.as_object()) {
    if (key == "height") config.height = integer(key, value);
    else if (key == "width") config.width = integer(key, value);
    else if (key == "colours") config.colours = names(key, value);
    else if (key == "shapes") config.shapes = names(key, value);
    else if (key == "shape_plurals") config.shape_plurals = names(key, value);
    else if (key == "max_count") config.max_count = integer(key, value);
    else if (key == "max_distractors") config.max_distractors = integer(key, value);
    else
      corl::fail("world_config_from_json: unknown key '", key,
                 "', expected height, width, colours, shapes, shape_plurals, max_count or max_distractors");
  }
  config.validate();
  return config;
}

Cell decode_code(int code, const WorldConfig& config) {
  corl::require(code >= 0 && code < config.codebook_size(), "decode_code: code = ", code, ", expected 0..",
                config.codebook_size() - 1);
  if (code == 0) return {};
  return Cell{(code - 1) / config.num_shapes(), (code - 1) % config.num_shapes()};
}

void validate_grid(const Grid& grid, const WorldConfig& config, std::string_view where) {
  corl::require(static_cast<int>(grid.size()) == config.num_cells(), where, ": grid has ", grid.size(),
                " cells, expected height * width = ", config.num_cells());
  for (std::size_t i = 0; i < grid.size(); ++i)
    corl::require(grid[i] >= 0 && grid[i] < config.codebook_size(), where, ": grid[", i, "] = ", grid[i],
                  ", expected a code in [0, ", config.codebook_size(), ")");
}

Grid empty_grid(const WorldConfig& config) { return Grid(static_cast<std::size_t>(config.num_cells()), 0); }

std::vector<Placed> objects_in(const Grid& grid, const WorldConfig& config) {
  validate_grid(grid, config, "objects_in");
  std::vector<Placed> out;
  for (int i = 0; i < config.num_cells(); ++i) {
    const int code = grid[static_cast<std::size_t>(i)];
    if (code == 0) continue;
    const Cell cell = decode_code(code, config);
    out.push_back({i / config.width, i % config.width, cell.colour, cell.shape});
  }
  return out;
}

// ---- names -----------------------------------------------------------------------------------------------------

std::string_view category_name(Category category) {
  switch (category) {
    case Category::single_object: return "single_object";
    case Category::two_objects: return "two_object";
    case Category::counting: return "counting";
    case Category::colours: return "colors";
    case Category::position: return "position";
    case Category::colour_attribution: return "color_attr";
  }
  return "?";
}

Category category_from_name(std::string_view name) {
  for (const Category c : kAllCategories)
    if (category_name(c) == name) return c;
  corl::fail("category_from_name: '", name,
             "', expected one of single_object, two_object, counting, colors, position, color_attr");
}

std::string_view relation_name(Relation relation) {
  switch (relation) {
    case Relation::left_of: return "left of";
    case Relation::right_of: return "right of";
    case Relation::above: return "above";
    case Relation::below: return "below";
  }
  return "?";
}

Relation relation_from_name(std::string_view name) {
  for (const Relation r : {Relation::left_of, Relation::right_of, Relation::above, Relation::below}) {
    std::string underscored(relation_name(r));
    std::replace(underscored.begin(), underscored.end(), ' ', '_');
    if (relation_name(r) == name || underscored == name) return r;
  }
  corl::fail("relation_from_name: '", name, "', expected left of, right of, above or below");
}

bool relation_holds(Relation relation, int r1, int c1, int r2, int c2) {
  switch (relation) {
    case Relation::left_of: return c1 < c2;
    case Relation::right_of: return c1 > c2;
    case Relation::above: return r1 < r2;
    case Relation::below: return r1 > r2;
  }
  return false;
}

std::string_view question_type_name(QuestionType type) {
  return type == QuestionType::multiple_choice ? "mc" : "oe";
}
QuestionType question_type_from_name(std::string_view name) {
  if (name == "mc") return QuestionType::multiple_choice;
  if (name == "oe") return QuestionType::open_ended;
  corl::fail("question_type_from_name: '", name, "', expected mc or oe");
}

std::string_view question_kind_name(QuestionKind kind) {
  switch (kind) {
    case QuestionKind::count: return "count";
    case QuestionKind::colour_of: return "colour_of";
    case QuestionKind::where_is: return "where_is";
    case QuestionKind::is_there: return "is_there";
    case QuestionKind::relation: return "relation";
  }
  return "?";
}
QuestionKind question_kind_from_name(std::string_view name) {
  for (const QuestionKind k : {QuestionKind::count, QuestionKind::colour_of, QuestionKind::where_is,
                               QuestionKind::is_there, QuestionKind::relation})
    if (question_kind_name(k) == name) return k;
  corl::fail("question_kind_from_name: '", name, "', expected count, colour_of, where_is, is_there or relation");
}

std::string_view split_name(Split split) { return split == Split::train ? "train" : "test"; }

Split split_from_name(std::string_view name) {
  for (const Split s : {Split::train, Split::test})
    if (split_name(s) == name) return s;
  corl::fail("split_from_name: '", name, "', expected train or test");
}

// ---- prompt specs ----------------------------------------------------------------------------------------------

void PromptSpec::validate(const WorldConfig& config) const {
  const std::string where = "PromptSpec::validate (" + std::string(category_name(category)) + ")";
  corl::require(static_cast<int>(objects.size()) == object_count(*this), where, ": objects has ", objects.size(),
                " entries, expected ", object_count(*this));
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const ObjectSpec& o = objects[i];
    corl::require(o.shape >= 0 && o.shape < config.num_shapes(), where, ": objects[", i, "].shape = ", o.shape,
                  ", expected 0..", config.num_shapes() - 1);
    if (colours_given(category)) {
      corl::require(o.colour >= 0 && o.colour < config.num_colours(), where, ": objects[", i, "].colour = ", o.colour,
                    ", expected 0..", config.num_colours() - 1);
    } else {
      corl::require(o.colour == -1, where, ": objects[", i, "].colour = ", o.colour,
                    ", expected -1 (this category names no colour)");
    }
    if (category == Category::counting) {
      corl::require(o.count >= 1 && o.count <= config.max_count, where, ": objects[", i, "].count = ", o.count,
                    ", expected 1..", config.max_count);
    } else {
      corl::require(o.count == 1, where, ": objects[", i, "].count = ", o.count, ", expected 1");
    }
  }
  if (objects.size() == 2)
    corl::require(objects[0].shape != objects[1].shape, where, ": objects[0].shape == objects[1].shape = ",
                  objects[0].shape, ", expected two different shapes");
}

std::string PromptSpec::key() const {
  auto obj = [](const ObjectSpec& o) {
    return "c" + std::to_string(o.colour) + "s" + std::to_string(o.shape) + "n" + std::to_string(o.count);
  };
  std::string out(category_name(category));
  out += ":";
  if (category == Category::position && objects.size() == 2) {
    const bool swap = relation == Relation::right_of || relation == Relation::below;
    const Relation canonical =
        (relation == Relation::left_of || relation == Relation::right_of) ? Relation::left_of : Relation::above;
    const ObjectSpec& a = swap ? objects[1] : objects[0];
    const ObjectSpec& b = swap ? objects[0] : objects[1];
    return out + obj(a) + " " + std::string(relation_name(canonical)) + " " + obj(b);
  }
  std::vector<std::string> parts;
  for (const ObjectSpec& o : objects) parts.push_back(obj(o));
  std::sort(parts.begin(), parts.end());
  return out + join(parts, "+");
}

std::string prompt_text(const PromptSpec& spec, const WorldConfig& config) {
  spec.validate(config);
  const auto& o = spec.objects;
  switch (spec.category) {
    case Category::single_object:
    case Category::colours: return object_phrase(o[0].colour, o[0].shape, config);
    case Category::counting:
      return number_word(o[0].count) + " " +
             (o[0].count == 1 ? config.shapes[static_cast<std::size_t>(o[0].shape)] : config.plural(o[0].shape));
    case Category::two_objects:
    case Category::colour_attribution:
      return object_phrase(o[0].colour, o[0].shape, config) + " and " + object_phrase(o[1].colour, o[1].shape, config);
    case Category::position:
      return object_phrase(-1, o[0].shape, config) + " " + std::string(relation_name(spec.relation)) + " " +
             object_phrase(-1, o[1].shape, config);
  }
  return {};
}

PromptSpec parse_prompt(std::string_view text, const WorldConfig& config) {
  const std::vector<std::string> w = split_spaces(text);
  std::size_t i = 0;
  auto where = [&] { return "parse_prompt(\"" + std::string(text) + "\")"; };
  auto expect_end = [&] {
    corl::require(i == w.size(), where(), ": unexpected word '", i < w.size() ? w[i] : "", "' at word ", i,
                  ", expected the end of the prompt");
  };
  auto parse_object = [&](ObjectSpec& o) {
    corl::require(i < w.size() && (w[i] == "a" || w[i] == "an"), where(), ": word ", i, " = '",
                  i < w.size() ? w[i] : "<end>", "', expected 'a' or 'an'");
    ++i;
    corl::require(i < w.size(), where(), ": prompt ends after an article, expected a colour or a shape");
    const int colour = config.colour_index(w[i]);
    if (colour >= 0) {
      o.colour = colour;
      ++i;
    }
    corl::require(i < w.size(), where(), ": prompt ends after a colour, expected a shape");
    const int shape = config.shape_index(w[i]);
    corl::require(shape >= 0 && config.shapes[static_cast<std::size_t>(shape)] == w[i], where(), ": word ", i,
                  " = '", w[i], "', expected a singular shape name");
    o.shape = shape;
    ++i;
  };

  PromptSpec spec;
  corl::require(!w.empty(), where(), ": empty prompt");
  const int n = parse_number_word(w[0]);
  if (n >= 0) {
    spec.category = Category::counting;
    corl::require(w.size() == 2, where(), ": counting prompt has ", w.size(), " words, expected 2 (number, shape)");
    const int shape = config.shape_index(w[1]);
    corl::require(shape >= 0, where(), ": word 1 = '", w[1], "', expected a shape name");
    const std::string expected = n == 1 ? config.shapes[static_cast<std::size_t>(shape)] : config.plural(shape);
    corl::require(w[1] == expected, where(), ": word 1 = '", w[1], "', expected '", expected, "' after ", w[0]);
    spec.objects = {ObjectSpec{shape, -1, n}};
    spec.validate(config);
    return spec;
  }
  ObjectSpec first;
  parse_object(first);
  if (i == w.size()) {
    spec.category = first.colour >= 0 ? Category::colours : Category::single_object;
    spec.objects = {first};
    spec.validate(config);
    return spec;
  }
  ObjectSpec second;
  if (w[i] == "and") {
    ++i;
    parse_object(second);
    expect_end();
    corl::require((first.colour >= 0) == (second.colour >= 0), where(),
                  ": one object has a colour and the other not, expected both (colour attribution) or neither");
    spec.category = first.colour >= 0 ? Category::colour_attribution : Category::two_objects;
  } else {
    std::string relation = w[i++];
    if ((relation == "left" || relation == "right") && i < w.size() && w[i] == "of") relation += " " + w[i++];
    spec.relation = relation_from_name(relation);
    parse_object(second);
    expect_end();
    corl::require(first.colour < 0 && second.colour < 0, where(), ": position prompts name no colours");
    spec.category = Category::position;
  }
  spec.objects = {first, second};
  spec.validate(config);
  return spec;
}

std::vector<PromptSpec> enumerate_specs(Category category, const WorldConfig& config) {
  config.validate();
  const int C = config.num_colours(), S = config.num_shapes();
  std::vector<PromptSpec> out;
  switch (category) {
    case Category::single_object:
      for (int s = 0; s < S; ++s) out.push_back({category, {{s, -1, 1}}, Relation::left_of});
      break;
    case Category::two_objects:
      for (int a = 0; a < S; ++a)
        for (int b = a + 1; b < S; ++b) out.push_back({category, {{a, -1, 1}, {b, -1, 1}}, Relation::left_of});
      break;
    case Category::counting:
      for (int s = 0; s < S; ++s)
        for (int n = 1; n <= config.max_count; ++n) out.push_back({category, {{s, -1, n}}, Relation::left_of});
      break;
    case Category::colours:
      for (int s = 0; s < S; ++s)
        for (int c = 0; c < C; ++c) out.push_back({category, {{s, c, 1}}, Relation::left_of});
      break;
    case Category::position:
      for (int a = 0; a < S; ++a)
        for (int b = 0; b < S; ++b) {
          if (a == b) continue;
          if (config.width >= 2) out.push_back({category, {{a, -1, 1}, {b, -1, 1}}, Relation::left_of});
          if (config.height >= 2) out.push_back({category, {{a, -1, 1}, {b, -1, 1}}, Relation::above});
        }
      break;
    case Category::colour_attribution:
      for (int a = 0; a < S * C; ++a)
        for (int b = a + 1; b < S * C; ++b) {
          const int sa = a / C, ca = a % C, sb = b / C, cb = b % C;
          if (sa == sb) continue;
          out.push_back({category, {{sa, ca, 1}, {sb, cb, 1}}, Relation::left_of});
        }
      break;
  }
  return out;
}

Json spec_to_json(const PromptSpec& spec, const WorldConfig& config) {
  spec.validate(config);
  Json objects = Json::array();
  for (const ObjectSpec& o : spec.objects) {
    Json j = Json::object();
    j.set("shape", config.shapes[static_cast<std::size_t>(o.shape)]);
    j.set("colour", o.colour >= 0 ? Json(config.colours[static_cast<std::size_t>(o.colour)]) : Json());
    j.set("count", o.count);
    objects.push_back(std::move(j));
  }
  Json out = Json::object();
  out.set("category", category_name(spec.category));
  out.set("objects", std::move(objects));
  if (spec.category == Category::position) out.set("relation", relation_name(spec.relation));
  return out;
}

PromptSpec spec_from_json(const Json& json, const WorldConfig& config) {
  corl::require(json.is_object(), "spec_from_json: spec is a ", json.type_name(), ", expected an object");
  PromptSpec spec;
  spec.category = category_from_name(json.at("category").as_string());
  const Json::Array& objects = json.at("objects").as_array();
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const Json& j = objects[i];
    corl::require(j.is_object(), "spec_from_json: objects[", i, "] is a ", j.type_name(), ", expected an object");
    ObjectSpec o;
    const std::string& shape = j.at("shape").as_string();
    o.shape = config.shape_index(shape);
    corl::require(o.shape >= 0 && config.shapes[static_cast<std::size_t>(o.shape)] == shape, "spec_from_json: objects[",
                  i, "].shape = '", shape, "', expected a shape of the world");
    const Json* colour = j.find("colour");
    if (colour != nullptr && !colour->is_null()) {
      o.colour = config.colour_index(colour->as_string());
      corl::require(o.colour >= 0, "spec_from_json: objects[", i, "].colour = '", colour->as_string(),
                    "', expected a colour of the world");
    }
    const Json* count = j.find("count");
    o.count = count != nullptr ? static_cast<int>(count->as_int()) : 1;
    spec.objects.push_back(o);
  }
  if (spec.category == Category::position) spec.relation = relation_from_name(json.at("relation").as_string());
  spec.validate(config);
  return spec;
}

// ---- renderings and captions -----------------------------------------------------------------------------------

Grid render_reference(const PromptSpec& spec, const WorldConfig& config, corl::CounterRng& rng) {
  config.validate();
  spec.validate(config);
  Grid grid = empty_grid(config);
  const int C = config.num_colours();
  auto colour_of = [&](const ObjectSpec& o) { return o.colour >= 0 ? o.colour : static_cast<int>(rng.below(C)); };
  auto free_cells = [&] {
    std::vector<int> cells;
    for (int i = 0; i < config.num_cells(); ++i)
      if (grid[static_cast<std::size_t>(i)] == 0) cells.push_back(i);
    return cells;
  };
  auto place = [&](int cell, int colour, int shape) {
    grid[static_cast<std::size_t>(cell)] = config.code(colour, shape);
  };

  if (spec.category == Category::position) {
    std::vector<std::pair<int, int>> pairs;
    for (int a = 0; a < config.num_cells(); ++a)
      for (int b = 0; b < config.num_cells(); ++b)
        if (a != b && relation_holds(spec.relation, a / config.width, a % config.width, b / config.width,
                                     b % config.width))
          pairs.emplace_back(a, b);
    corl::require(!pairs.empty(), "render_reference: no cell pair satisfies '", relation_name(spec.relation),
                  "' on a ", config.height, "x", config.width, " grid");
    const auto [a, b] = pick(pairs, rng);
    place(a, colour_of(spec.objects[0]), spec.objects[0].shape);
    place(b, colour_of(spec.objects[1]), spec.objects[1].shape);
  } else {
    for (const ObjectSpec& o : spec.objects)
      for (int k = 0; k < o.count; ++k) place(pick(free_cells(), rng), colour_of(o), o.shape);
  }

  std::vector<int> other_shapes;
  for (int s = 0; s < config.num_shapes(); ++s)
    if (std::none_of(spec.objects.begin(), spec.objects.end(), [&](const ObjectSpec& o) { return o.shape == s; }))
      other_shapes.push_back(s);
  const int distractors = static_cast<int>(rng.below(static_cast<std::uint64_t>(config.max_distractors) + 1));
  for (int k = 0; k < distractors && !other_shapes.empty(); ++k) {
    const std::vector<int> cells = free_cells();
    if (cells.empty()) break;
    place(pick(cells, rng), static_cast<int>(rng.below(C)), pick(other_shapes, rng));
  }
  return grid;
}

std::string caption(const Grid& grid, const WorldConfig& config) {
  const std::vector<Placed> objects = objects_in(grid, config);
  if (objects.empty()) return "nothing";
  std::vector<std::pair<int, int>> groups;  // (code, count) in order of first appearance
  for (const Placed& p : objects) {
    const int code = config.code(p.colour, p.shape);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == code; });
    if (it == groups.end()) groups.emplace_back(code, 1);
    else ++it->second;
  }
  std::vector<std::string> phrases;
  for (const auto& [code, count] : groups) {
    const Cell c = decode_code(code, config);
    phrases.push_back(counted_phrase(count, c.colour, c.shape, config));
  }
  return list_phrase(phrases);
}

// ---- questions -------------------------------------------------------------------------------------------------

std::string solution_text(const Question& question) {
  return "<think> " + question.reasoning + " </think> <answer> " + question.answer + " </answer>";
}

namespace {

std::string region_name(int row, int col, const WorldConfig& config) {
  // Compare cell centres with the grid centre: 2 r + 1 vs H.
  const int v = 2 * row + 1 - config.height, h = 2 * col + 1 - config.width;
  const std::string vertical = v < 0 ? "top" : (v > 0 ? "bottom" : "middle");
  const std::string horizontal = h < 0 ? "left" : (h > 0 ? "right" : "middle");
  if (v == 0 && h == 0) return "centre";
  if (v == 0) return "middle " + horizontal;
  if (h == 0) return vertical + " middle";
  return vertical + " " + horizontal;
}

const char* const kLetters[] = {"A", "B", "C", "D"};

/// Puts `right` and three of `wrong` (distinct, shuffled) into A-D; returns the letter of `right`.
std::string fill_options(Question& q, const std::string& right, std::vector<std::string> wrong, corl::CounterRng& rng) {
  shuffle(wrong, rng);
  corl::require(wrong.size() >= 3, "make_question: only ", wrong.size(), " wrong options for '", right,
                "', expected >= 3");
  q.options = {right, wrong[0], wrong[1], wrong[2]};
  shuffle(q.options, rng);
  const auto at = std::find(q.options.begin(), q.options.end(), right) - q.options.begin();
  q.text += " ";
  for (std::size_t k = 0; k < 4; ++k) q.text += std::string(k ? " " : "") + kLetters[k] + " . " + q.options[k];
  return kLetters[at];
}

}  // namespace

Question make_question(const Grid& grid, const WorldConfig& config, QuestionType type, corl::CounterRng& rng) {
  config.validate();
  const std::vector<Placed> objects = objects_in(grid, config);
  const int S = config.num_shapes(), C = config.num_colours();
  std::vector<int> shape_count(static_cast<std::size_t>(S), 0);
  for (const Placed& p : objects) ++shape_count[static_cast<std::size_t>(p.shape)];
  std::vector<int> unique_shapes;  // shapes that occur exactly once: "the circle" is well defined
  for (int s = 0; s < S; ++s)
    if (shape_count[static_cast<std::size_t>(s)] == 1) unique_shapes.push_back(s);
  auto placed_of = [&](int shape) {
    return *std::find_if(objects.begin(), objects.end(), [&](const Placed& p) { return p.shape == shape; });
  };
  std::vector<std::pair<int, int>> aligned_pairs;  // unique shapes sharing a row or a column: one relation holds
  for (const int a : unique_shapes)
    for (const int b : unique_shapes) {
      if (a == b) continue;
      const Placed pa = placed_of(a), pb = placed_of(b);
      if (pa.row == pb.row || pa.col == pb.col) aligned_pairs.emplace_back(a, b);
    }

  std::vector<QuestionKind> kinds = {QuestionKind::count};
  if (!unique_shapes.empty() && (type == QuestionType::open_ended || C >= 4)) kinds.push_back(QuestionKind::colour_of);
  if (!unique_shapes.empty()) kinds.push_back(QuestionKind::where_is);
  if (type == QuestionType::open_ended) kinds.push_back(QuestionKind::is_there);
  if (!aligned_pairs.empty()) kinds.push_back(QuestionKind::relation);

  Question q;
  q.type = type;
  q.kind = pick(kinds, rng);
  const std::string seen = "i see " + caption(grid, config) + " .";
  const bool mc = type == QuestionType::multiple_choice;
  auto shape_name = [&](int s) { return config.shapes[static_cast<std::size_t>(s)]; };

  switch (q.kind) {
    case QuestionKind::count: {
      // Mostly shapes that are present; sometimes an absent one (answer 0).
      std::vector<int> present;
      for (int s = 0; s < S; ++s)
        if (shape_count[static_cast<std::size_t>(s)] > 0) present.push_back(s);
      const int s = (!present.empty() && rng.uniform() < 0.8) ? pick(present, rng) : static_cast<int>(rng.below(S));
      const int n = shape_count[static_cast<std::size_t>(s)];
      q.text = "how many " + config.plural(s) + " are there ?";
      q.reasoning = seen + (n == 1 ? " so there is one " + shape_name(s) + " ."
                                   : " so there are " + number_word(n) + " " + config.plural(s) + " .");
      if (mc) {
        std::vector<std::string> wrong;
        for (int k = 0; k <= std::max(n + 3, 5); ++k)
          if (k != n) wrong.push_back(std::to_string(k));
        q.answer = fill_options(q, std::to_string(n), wrong, rng);
      } else {
        q.answer = std::to_string(n);
      }
      break;
    }
    case QuestionKind::colour_of: {
      const Placed p = placed_of(pick(unique_shapes, rng));
      const std::string& colour = config.colours[static_cast<std::size_t>(p.colour)];
      q.text = "what colour is the " + shape_name(p.shape) + " ?";
      q.reasoning = seen + " the " + shape_name(p.shape) + " is " + colour + " .";
      if (mc) {
        std::vector<std::string> wrong;
        for (int c = 0; c < C; ++c)
          if (c != p.colour) wrong.push_back(config.colours[static_cast<std::size_t>(c)]);
        q.answer = fill_options(q, colour, wrong, rng);
      } else {
        q.answer = colour;
      }
      break;
    }
    case QuestionKind::where_is: {
      const Placed p = placed_of(pick(unique_shapes, rng));
      const std::string region = region_name(p.row, p.col, config);
      q.text = "where is the " + shape_name(p.shape) + " ?";
      q.reasoning = seen + " the " + shape_name(p.shape) + " is at the " + region + " .";
      if (mc) {
        std::vector<std::string> wrong;
        for (const char* r : {"top left", "top right", "bottom left", "bottom right", "centre", "middle left",
                              "middle right", "top middle", "bottom middle"})
          if (region != r) wrong.emplace_back(r);
        // The four corners are plausible on every grid; "centre" and the middles only on odd sizes.
        wrong.resize(std::min<std::size_t>(wrong.size(), region.find("middle") == std::string::npos &&
                                                                  region != "centre" ? 3 : 4));
        q.answer = fill_options(q, region, wrong, rng);
      } else {
        q.answer = region;
      }
      break;
    }
    case QuestionKind::is_there: {
      const bool ask_present = !objects.empty() && rng.uniform() < 0.5;
      int colour = -1, shape = 0;
      if (ask_present) {
        const Placed p = pick(objects, rng);
        shape = p.shape;
        colour = rng.uniform() < 0.5 ? p.colour : -1;
      } else {
        shape = static_cast<int>(rng.below(S));
        colour = rng.uniform() < 0.5 ? static_cast<int>(rng.below(C)) : -1;
      }
      const bool present = std::any_of(objects.begin(), objects.end(), [&](const Placed& p) {
        return p.shape == shape && (colour < 0 || p.colour == colour);
      });
      const std::string phrase = object_phrase(colour, shape, config);
      q.text = "is there " + phrase + " ?";
      q.reasoning = seen + (present ? " so there is " + phrase + " ."
                                    : " so there is no " + bare_phrase(colour, shape, config) + " .");
      q.answer = present ? "yes" : "no";
      break;
    }
    case QuestionKind::relation: {
      const auto [a, b] = pick(aligned_pairs, rng);
      const Placed pa = placed_of(a), pb = placed_of(b);
      Relation holds = Relation::left_of;
      for (const Relation r : {Relation::left_of, Relation::right_of, Relation::above, Relation::below})
        if (relation_holds(r, pa.row, pa.col, pb.row, pb.col)) holds = r;
      const std::string rel(relation_name(holds));
      q.text = "where is the " + shape_name(a) + " relative to the " + shape_name(b) + " ?";
      q.reasoning = seen + " the " + shape_name(a) + " is " + rel + " the " + shape_name(b) + " .";
      if (mc) {
        std::vector<std::string> wrong;
        for (const Relation r : {Relation::left_of, Relation::right_of, Relation::above, Relation::below})
          if (r != holds) wrong.emplace_back(relation_name(r));
        q.answer = fill_options(q, rel, wrong, rng);
      } else {
        q.answer = rel;
      }
      break;
    }
  }
  return q;
}

// ---- splits and unified rows -----------------------------------------------------------------------------------

SpecSplit split_specs(const WorldConfig& config, const SplitOptions& options) {
  config.validate();
  corl::require(options.test_fraction >= 0.0 && options.test_fraction < 1.0, "split_specs: test_fraction = ",
                options.test_fraction, ", expected in [0, 1)");
  SpecSplit out;
  for (std::size_t ci = 0; ci < kAllCategories.size(); ++ci) {
    std::vector<PromptSpec> specs = enumerate_specs(kAllCategories[ci], config);
    corl::CounterRng rng(options.seed, static_cast<std::uint32_t>(ci));
    shuffle(specs, rng);
    const int n = static_cast<int>(specs.size());
    int n_test = static_cast<int>(std::lround(options.test_fraction * n));
    if (options.test_fraction > 0.0 && n >= 2) n_test = std::clamp(n_test, 1, n - 1);
    if (n < 2) n_test = 0;
    out.test.insert(out.test.end(), specs.begin(), specs.begin() + n_test);
    out.train.insert(out.train.end(), specs.begin() + n_test, specs.end());
  }
  return out;
}

namespace {

/// A random equivalent phrasing of a canonical spec: swapped object order, or the mirrored relation.
PromptSpec random_variant(PromptSpec spec, corl::CounterRng& rng) {
  if (spec.objects.size() == 2 && rng.uniform() < 0.5) {
    std::swap(spec.objects[0], spec.objects[1]);
    if (spec.category == Category::position) {
      switch (spec.relation) {
        case Relation::left_of: spec.relation = Relation::right_of; break;
        case Relation::right_of: spec.relation = Relation::left_of; break;
        case Relation::above: spec.relation = Relation::below; break;
        case Relation::below: spec.relation = Relation::above; break;
      }
    }
  }
  return spec;
}

}  // namespace

std::vector<UnifiedRow> generate_rows(const WorldConfig& config, const GeneratorOptions& options) {
  config.validate();
  corl::require(options.rows >= 0, "generate_rows: rows = ", options.rows, ", expected >= 0");
  corl::require(options.mc_fraction >= 0.0 && options.mc_fraction <= 1.0, "generate_rows: mc_fraction = ",
                options.mc_fraction, ", expected in [0, 1]");
  const SpecSplit split = split_specs(config, options.split_options);
  const std::vector<PromptSpec>& pool = options.split == Split::train ? split.train : split.test;
  std::vector<std::vector<PromptSpec>> by_category;
  for (const Category c : kAllCategories) {
    std::vector<PromptSpec> specs;
    for (const PromptSpec& s : pool)
      if (s.category == c) specs.push_back(s);
    if (!specs.empty()) by_category.push_back(std::move(specs));
  }
  corl::require(options.rows == 0 || !by_category.empty(), "generate_rows: the ", split_name(options.split),
                " split has no prompt specs");
  const std::uint64_t seed = options.seed ^ (options.split == Split::test ? 0x9E3779B97F4A7C15ull : 0ull);
  std::vector<UnifiedRow> rows;
  rows.reserve(static_cast<std::size_t>(options.rows));
  for (int i = 0; i < options.rows; ++i) {
    corl::CounterRng rng(seed, static_cast<std::uint32_t>(i));
    UnifiedRow row;
    row.id = std::string(split_name(options.split)) + "-" + std::to_string(i);
    row.split = options.split;
    row.spec = random_variant(pick(by_category[static_cast<std::size_t>(i) % by_category.size()], rng), rng);
    row.category = row.spec.category;
    row.prompt = prompt_text(row.spec, config);
    row.image = render_reference(row.spec, config, rng);
    row.caption = caption(row.image, config);
    const QuestionType type = rng.uniform() < options.mc_fraction ? QuestionType::multiple_choice
                                                                  : QuestionType::open_ended;
    const Question q = make_question(row.image, config, type, rng);
    row.question = q.text;
    row.options = q.options;
    row.solution = solution_text(q);
    row.answer = q.answer;
    row.question_type = q.type;
    row.question_kind = q.kind;
    rows.push_back(std::move(row));
  }
  return rows;
}

Json row_to_json(const UnifiedRow& row, const WorldConfig& config) {
  validate_grid(row.image, config, "row_to_json: image");
  Json image = Json::array();
  for (const int code : row.image) image.push_back(code);
  Json options = Json::array();
  for (const std::string& o : row.options) options.push_back(o);
  Json out = Json::object();
  out.set("id", row.id);
  out.set("split", split_name(row.split));
  out.set("category", category_name(row.category));
  out.set("prompt", row.prompt);
  out.set("spec", spec_to_json(row.spec, config));
  out.set("image", std::move(image));
  out.set("height", config.height);
  out.set("width", config.width);
  out.set("caption", row.caption);
  out.set("question", row.question);
  out.set("options", std::move(options));
  out.set("solution", row.solution);
  out.set("answer", row.answer);
  out.set("question_type", question_type_name(row.question_type));
  out.set("question_kind", question_kind_name(row.question_kind));
  return out;
}

UnifiedRow row_from_json(const Json& json, const WorldConfig& config) {
  corl::require(json.is_object(), "row_from_json: row is a ", json.type_name(), ", expected an object");
  auto field = [&](std::string_view name) -> const Json& {
    const Json* v = json.find(name);
    corl::require(v != nullptr, "row_from_json: missing field '", name, "'");
    return *v;
  };
  auto text = [&](std::string_view name) -> const std::string& {
    const Json& v = field(name);
    corl::require(v.is_string(), "row_from_json: field '", name, "' is a ", v.type_name(), ", expected a string");
    return v.as_string();
  };
  UnifiedRow row;
  row.id = text("id");
  row.split = split_from_name(text("split"));
  row.category = category_from_name(text("category"));
  row.prompt = text("prompt");
  row.spec = spec_from_json(field("spec"), config);
  corl::require(row.spec.category == row.category, "row_from_json: spec.category = '", category_name(row.spec.category),
                "', expected the row's category '", category_name(row.category), "'");
  corl::require(parse_prompt(row.prompt, config) == row.spec, "row_from_json: prompt '", row.prompt,
                "' does not match its spec");
  const Json& image = field("image");
  corl::require(image.is_array(), "row_from_json: field 'image' is a ", image.type_name(), ", expected a list of ints");
  for (std::size_t i = 0; i < image.as_array().size(); ++i) {
    const Json& v = image.as_array()[i];
    corl::require(v.is_number() && std::floor(v.as_number()) == v.as_number() && std::fabs(v.as_number()) < 1e9,
                  "row_from_json: image[", i, "] is not an integer");
    row.image.push_back(static_cast<int>(v.as_number()));
  }
  validate_grid(row.image, config, "row_from_json: image");
  for (const auto& [name, expected] : {std::pair<const char*, int>{"height", config.height}, {"width", config.width}}) {
    const Json* v = json.find(name);
    corl::require(v == nullptr || (v->is_number() && v->as_number() == expected), "row_from_json: field '", name,
                  "' = ", v != nullptr ? dump_json(*v) : "", ", expected ", expected, " (the world's grid)");
  }
  row.caption = text("caption");
  row.question = text("question");
  const Json& options = field("options");
  corl::require(options.is_array(), "row_from_json: field 'options' is a ", options.type_name(), ", expected a list");
  for (std::size_t i = 0; i < options.as_array().size(); ++i) {
    const Json& v = options.as_array()[i];
    corl::require(v.is_string(), "row_from_json: options[", i, "] is a ", v.type_name(), ", expected a string");
    row.options.push_back(v.as_string());
  }
  row.solution = text("solution");
  row.answer = text("answer");
  row.question_type = question_type_from_name(text("question_type"));
  row.question_kind = question_kind_from_name(text("question_kind"));
  if (row.question_type == QuestionType::multiple_choice) {
    corl::require(row.options.size() == 4, "row_from_json: multiple-choice row has ", row.options.size(),
                  " options, expected 4");
    corl::require(row.answer.size() == 1 && row.answer[0] >= 'A' && row.answer[0] <= 'D', "row_from_json: answer = '",
                  row.answer, "', expected an option letter A-D for a multiple-choice row");
  } else {
    corl::require(row.options.empty(), "row_from_json: open-ended row has ", row.options.size(),
                  " options, expected none");
  }
  return row;
}

void write_rows_jsonl(const std::string& path, const std::vector<UnifiedRow>& rows, const WorldConfig& config) {
  std::vector<Json> out;
  out.reserve(rows.size());
  for (const UnifiedRow& r : rows) out.push_back(row_to_json(r, config));
  write_jsonl(path, out);
}

std::vector<UnifiedRow> read_rows_jsonl(const std::string& path, const WorldConfig& config) {
  std::ifstream probe(path);
  corl::require(static_cast<bool>(probe), "read_rows_jsonl: cannot open '", path, "'");
  std::vector<UnifiedRow> rows;
  std::string line;
  long line_no = 0;
  while (std::getline(probe, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    const Json json = parse_json(line, where);
    try {
      rows.push_back(row_from_json(json, config));
    } catch (const corl::Error& e) {
      corl::fail(where, ": ", e.what());
    }
  }
  return rows;
}

}  // namespace ulm

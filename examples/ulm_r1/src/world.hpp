// world.hpp — the procedurally generated "shapes world" the bundled ULM-R1 model lives in.
//
// An image is an H x W grid of discrete codes (the toy "VQ codebook"): code 0 = empty cell, otherwise
//   code = 1 + colour * S + shape          (C colours, S shapes; codebook size 1 + C S)
// Text-to-image prompts follow GenEval's six categories (Ghosh et al., NeurIPS 2023 D&B, arXiv 2310.11513):
//   single_object       "a circle"                       >= 1 circle
//   two_objects         "a circle and a square"          >= 1 of each
//   counting            "three stars"                    exactly 3 stars (GenEval: exact count)
//   colours             "a blue square"                  >= 1 blue square
//   position            "a circle left of a square"      every circle left of every square (as GenEval)
//   colour_attribution  "a red circle and a blue star"   >= 1 red circle and >= 1 blue star
// Every prompt has a machine-readable PromptSpec (checked by geneval.hpp), a reference grid rendering it, and a
// question about that reference image. Unified rows are the paper's unified data (CoRL, arXiv 2505.17534, Sec. 3):
// (prompt, reference image, question, solution). All randomness goes through corl::CounterRng, so a data set is a
// pure function of (WorldConfig, seed). Train and test splits are disjoint by canonical prompt spec.
// Data format and categories: docs/ulm_r1_world.md.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "corl/core/rng.hpp"
#include "json.hpp"

namespace ulm {

// ---- configuration -------------------------------------------------------------------------------------------------

struct WorldConfig {
  int height = 4;
  int width = 4;
  std::vector<std::string> colours = {"red", "green", "blue", "yellow", "purple", "orange"};
  std::vector<std::string> shapes = {"circle", "square", "triangle", "star"};
  /// Plural of each shape; empty -> shape + "s".
  std::vector<std::string> shape_plurals = {};
  /// Counting prompts ask for 1..max_count objects (GenEval counts 2-4; we also use 1).
  int max_count = 4;
  /// Extra objects added to reference images, 0..max_distractors, never of a shape the prompt names.
  int max_distractors = 0;

  /// Throws corl::Error naming the field and the condition: height/width in [1, 16], 2..16 colours and shapes,
  /// names unique, non-empty, lower-case words [a-z]+ that do not collide with the world's other words,
  /// max_count in [1, min(16, cells)], max_distractors in [0, cells - 2 max_count].
  void validate() const;

  int num_colours() const { return static_cast<int>(colours.size()); }
  int num_shapes() const { return static_cast<int>(shapes.size()); }
  int num_cells() const { return height * width; }
  /// 1 + C S: the number of image codes (the image vocabulary), code 0 included.
  int codebook_size() const { return 1 + num_colours() * num_shapes(); }
  /// 1 + colour * S + shape (validated).
  int code(int colour, int shape) const;
  std::string plural(int shape) const;
  int colour_index(std::string_view name) const;  ///< -1 when not a colour
  int shape_index(std::string_view word) const;   ///< singular or plural; -1 when not a shape
};

/// Every word the world's texts use besides the config's colour and shape names: function words, number words
/// "zero".."twenty", digits "0".."20", option letters "A".."D", punctuation. Config names may not collide with them.
const std::vector<std::string>& world_fixed_words();
/// "zero".."twenty" for 0..20, the digits otherwise.
std::string number_word(int n);
/// Inverse of number_word, also accepting digits; -1 when `word` is not a number.
int parse_number_word(std::string_view word);

/// {"height": 4, "width": 4, "colours": [...], "shapes": [...], "shape_plurals": [...], "max_count": 4,
/// "max_distractors": 0}: for config files and for storing the world next to data and checkpoints.
Json world_config_to_json(const WorldConfig& config);
/// Missing keys keep their defaults; unknown keys, wrong types and invalid values throw corl::Error naming the key.
WorldConfig world_config_from_json(const Json& json);

/// Row-major H x W codes.
using Grid = std::vector<int>;

struct Cell {
  int colour = -1;  ///< -1 for an empty cell
  int shape = -1;
  bool empty() const { return shape < 0; }
};

/// The (colour, shape) of a code; throws corl::Error unless 0 <= code < codebook_size.
Cell decode_code(int code, const WorldConfig& config);
/// Throws corl::Error "<where>: grid[<i>] = <v>, expected a code in [0, K)" or a size mismatch.
void validate_grid(const Grid& grid, const WorldConfig& config, std::string_view where);
/// An empty grid of the configured size.
Grid empty_grid(const WorldConfig& config);

/// One occupied cell, as the evaluator and the question generator see it.
struct Placed {
  int row = 0, col = 0, colour = 0, shape = 0;
};
/// Occupied cells in reading order (row-major).
std::vector<Placed> objects_in(const Grid& grid, const WorldConfig& config);

// ---- prompts -------------------------------------------------------------------------------------------------------

enum class Category { single_object, two_objects, counting, colours, position, colour_attribution };
inline constexpr std::array<Category, 6> kAllCategories = {Category::single_object, Category::two_objects,
                                                           Category::counting,      Category::colours,
                                                           Category::position,      Category::colour_attribution};
/// GenEval's tag names: "single_object", "two_object", "counting", "colors", "position", "color_attr".
std::string_view category_name(Category category);
Category category_from_name(std::string_view name);  ///< throws naming the name

/// objects[0] <relation> objects[1]; on the grid: left_of = strictly smaller column, above = strictly smaller row.
enum class Relation { left_of, right_of, above, below };
std::string_view relation_name(Relation relation);  ///< "left of", "right of", "above", "below"
Relation relation_from_name(std::string_view name);  ///< accepts "left of" and "left_of"; throws otherwise
/// Whether a cell at (r1, c1) is <relation> a cell at (r2, c2).
bool relation_holds(Relation relation, int r1, int c1, int r2, int c2);

struct ObjectSpec {
  int shape = 0;
  int colour = -1;  ///< -1: any colour
  int count = 1;    ///< counting: the exact count; otherwise 1 ("at least one")
  friend bool operator==(const ObjectSpec&, const ObjectSpec&) = default;
};

/// What a prompt asks for. Object counts per category: single_object, counting, colours: 1; the others: 2 with
/// different shapes. Colours are given exactly for colours and colour_attribution, and only there.
struct PromptSpec {
  Category category = Category::single_object;
  std::vector<ObjectSpec> objects;
  Relation relation = Relation::left_of;  ///< position only

  /// Throws corl::Error naming the field and the condition.
  void validate(const WorldConfig& config) const;
  /// Canonical key, identical for prompts that mean the same thing ("a circle and a square" == "a square and a
  /// circle", "x right of y" == "y left of x"): the unit of train/test disjointness.
  std::string key() const;
  friend bool operator==(const PromptSpec&, const PromptSpec&) = default;
};

/// The prompt text, words and punctuation separated by single spaces (the tokenizer's canonical form), e.g.
/// "a red circle and a blue star", "three stars", "a circle left of a square", "an orange star" ("an" before a vowel).
std::string prompt_text(const PromptSpec& spec, const WorldConfig& config);
/// Inverse of prompt_text (also accepts "an" for "a" and extra spaces); throws corl::Error naming the word.
PromptSpec parse_prompt(std::string_view text, const WorldConfig& config);
/// Every distinct spec of a category, one per canonical key, in a fixed order.
std::vector<PromptSpec> enumerate_specs(Category category, const WorldConfig& config);

Json spec_to_json(const PromptSpec& spec, const WorldConfig& config);
PromptSpec spec_from_json(const Json& json, const WorldConfig& config);  ///< throws naming the field

/// A canonical rendering of `spec`: its objects (colour drawn where the spec leaves it open) on random distinct
/// cells, position pairs placed so that the relation holds, plus 0..max_distractors distractors of other shapes.
Grid render_reference(const PromptSpec& spec, const WorldConfig& config, corl::CounterRng& rng);

/// Caption: a prompt-like description of everything in the grid, groups of equal (colour, shape) in order of first
/// appearance, e.g. "a red circle and two blue squares"; "nothing" for an empty grid.
std::string caption(const Grid& grid, const WorldConfig& config);
/// The instruction of the caption task (image -> caption).
inline constexpr std::string_view kCaptionInstruction = "describe the image .";

// ---- questions about images --------------------------------------------------------------------------------------

enum class QuestionType { multiple_choice, open_ended };
std::string_view question_type_name(QuestionType type);  ///< "mc", "oe"
QuestionType question_type_from_name(std::string_view name);

/// count: "how many circles are there ?"   colour_of: "what colour is the circle ?"
/// where_is: "where is the circle ?" (quadrant: "top left", ...)   is_there: "is there a red star ?" (yes / no)
/// relation: "where is the circle relative to the square ?" (left of / right of / above / below; asked only when the
/// two shapes occur once each and share a row or a column, so exactly one relation holds)
enum class QuestionKind { count, colour_of, where_is, is_there, relation };
std::string_view question_kind_name(QuestionKind kind);  ///< "count", "colour_of", "where_is", "is_there", "relation"
QuestionKind question_kind_from_name(std::string_view name);

struct Question {
  QuestionType type = QuestionType::open_ended;
  QuestionKind kind = QuestionKind::count;
  /// The question as shown to the model; for mc it ends with the options: "... ? A . red B . blue C . green D . star"
  std::string text;
  std::vector<std::string> options;  ///< mc: the four option texts (exactly one right); oe: empty
  /// mc: the option letter "A".."D"; oe: the answer text ("2", "red", "top left", "yes").
  std::string answer;
  /// Short reasoning for the gold completion, e.g. "i see a red circle and two blue squares . there are two squares ."
  std::string reasoning;
};
/// "<think> {reasoning} </think> <answer> {answer} </answer>"
std::string solution_text(const Question& question);

/// A question about `grid` of the given type, kind drawn uniformly among those that are well-posed for the grid.
Question make_question(const Grid& grid, const WorldConfig& config, QuestionType type, corl::CounterRng& rng);

// ---- unified data --------------------------------------------------------------------------------------------------

enum class Split { train, test };
std::string_view split_name(Split split);  ///< "train", "test"
Split split_from_name(std::string_view name);  ///< inverse of split_name; throws naming the name

struct SplitOptions {
  std::uint64_t seed = 20250523;
  /// Share of each category's canonical specs held out for test: at least one, and at least one left for train.
  double test_fraction = 0.2;
};
struct SpecSplit {
  std::vector<PromptSpec> train;
  std::vector<PromptSpec> test;
};
/// Disjoint by key(); a pure function of (config, options).
SpecSplit split_specs(const WorldConfig& config, const SplitOptions& options = {});

/// One row of the paper's unified data: (prompt, reference image, question about the reference image, solution).
struct UnifiedRow {
  std::string id;  ///< "<split>-<index>"
  Split split = Split::train;
  Category category = Category::single_object;
  PromptSpec spec;
  std::string prompt;
  Grid image;            ///< the reference image
  std::string caption;   ///< caption(image): the target of the caption task
  std::string question;  ///< Question::text
  std::vector<std::string> options;
  std::string solution;  ///< gold completion "<think> ... </think> <answer> X </answer>"
  std::string answer;    ///< gold answer (option letter for mc)
  QuestionType question_type = QuestionType::open_ended;
  QuestionKind question_kind = QuestionKind::count;
};

struct GeneratorOptions {
  std::uint64_t seed = 1;
  int rows = 256;
  Split split = Split::train;
  SplitOptions split_options = {};
  /// Share of multiple-choice questions (the rest open-ended).
  double mc_fraction = 0.5;
};
/// Row i uses CounterRng(seed, i) only, so any prefix of a longer run is the same; categories cycle in
/// kAllCategories order; specs are drawn from the requested split only.
std::vector<UnifiedRow> generate_rows(const WorldConfig& config, const GeneratorOptions& options);

/// Field names: id, split, category, prompt, spec, image (list of ints), caption, question, options, solution, answer,
/// question_type ("mc"/"oe"), question_kind.
Json row_to_json(const UnifiedRow& row, const WorldConfig& config);
/// Validates every field (type, range, consistency of image with the config); throws naming the field.
UnifiedRow row_from_json(const Json& json, const WorldConfig& config);
void write_rows_jsonl(const std::string& path, const std::vector<UnifiedRow>& rows, const WorldConfig& config);
/// Errors read "<path>:<line>: ...".
std::vector<UnifiedRow> read_rows_jsonl(const std::string& path, const WorldConfig& config);

}  // namespace ulm

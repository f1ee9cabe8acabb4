// world_answers.hpp — answer extraction and normalisation used to score the world's QA held-out evaluation.
//
// The CoRL accuracy reward (arXiv 2505.17534, Sec. 3.2) extracts the text inside <answer> ... </answer>; multiple
// choice compares option letters, open-ended compares normalised text: lower case, surrounding whitespace and
// trailing punctuation removed, inner whitespace collapsed, a leading article (a / an / the) dropped, and number
// words mapped to digits ("two" -> "2"), so "Two." matches "2". These are the example's small evaluation helpers;
// the library's reward functions live in corl/reward/.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "world.hpp"

namespace ulm {

/// The normal form described above, e.g. normalise_answer("  The Top  Left. ") == "top left".
std::string normalise_answer(std::string_view answer);

/// Text between the last "<answer>" and the "</answer>" after it, trimmed; nullopt when there is none.
std::optional<std::string> extract_answer(std::string_view completion);

/// The option letter A-D an answer names: "B", "b", "B.", "(B)", "option B", "B . red"; or the letter of the option
/// whose text equals the normalised answer. nullopt when none or ambiguous.
std::optional<char> extract_option_letter(std::string_view answer, const std::vector<std::string>& options = {});

/// Whether `predicted` (an extracted answer) is right: mc compares letters, oe normalised text.
bool answer_matches(std::string_view predicted, std::string_view gold, QuestionType type,
                    const std::vector<std::string>& options = {});

/// Scores a full completion: extract_answer, then answer_matches; false when no answer tag is found.
bool completion_correct(std::string_view completion, const UnifiedRow& row);

}  // namespace ulm

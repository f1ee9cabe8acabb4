// corl/reward/accuracy.hpp — R_acc: 1 when the answer in <answer>...</answer> is right, else 0.
//
//   multiple choice: the option letters of answer and ground truth are compared (extract_option_letter on both; the
//                    ground truth may be "B", "(B)", "B. red"; with the options' texts an answer "red" counts for B);
//   open-ended:      normalize_open_answer(answer) == normalize_open_answer(ground truth), or both parse as numbers
//                    that are equal to 1e-9 relative.
// A completion without an <answer> block scores 0 (the reference code fell back to the whole text; we do not, so the
// format and accuracy rewards do not pay twice for the same thing). Binary, as in the paper.
// Source: arXiv 2505.17534 Sec. 3 (R_acc); DESIGN.md section 1 (the reference's MC branch never ran).
#pragma once

#include <cmath>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/reward/answer_extraction.hpp"
#include "corl/reward/text_sample.hpp"

namespace corl {

enum class AnswerKind { multiple_choice, open_ended };

/// True when the multiple-choice answer names the same option letter as the ground truth.
inline bool multiple_choice_correct(std::string_view answer, std::string_view ground_truth, int num_options = 26,
                                    std::span<const std::string> option_texts = {}) {
  const auto truth = extract_option_letter(ground_truth, num_options, option_texts);
  require(truth.has_value(), "corl::multiple_choice_correct: ground truth '", ground_truth,
          "' names no option letter among A..", static_cast<char>('A' + num_options - 1));
  const auto given = extract_option_letter(answer, num_options, option_texts);
  return given.has_value() && *given == *truth;
}

namespace detail {
inline bool parse_whole_double(const std::string& s, double* value) {
  if (s.empty()) return false;
  char* end = nullptr;
  *value = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*value);
}
}  // namespace detail

/// True when the open-ended answer matches the ground truth after normalisation (see the header comment).
inline bool open_ended_correct(std::string_view answer, std::string_view ground_truth) {
  const std::string a = normalize_open_answer(answer), t = normalize_open_answer(ground_truth);
  if (a.empty()) return false;
  if (a == t) return true;
  double x = 0, y = 0;
  if (detail::parse_whole_double(a, &x) && detail::parse_whole_double(t, &y))
    return std::abs(x - y) <= 1e-9 * std::max(1.0, std::max(std::abs(x), std::abs(y)));
  return false;
}

/// R_acc on a sample with `completion` (model output, answer inside <answer> tags) and `reference` (ground truth).
/// If the sample has a member `options` (the option texts, A first), multiple-choice answers may name the text.
struct AccuracyReward {
  AnswerKind kind = AnswerKind::multiple_choice;
  int num_options = 26;  ///< letters considered: A .. A + num_options - 1

  double score(std::string_view completion, std::string_view ground_truth,
               std::span<const std::string> option_texts = {}) const {
    require(num_options >= 1 && num_options <= 26, "corl::AccuracyReward: num_options = ", num_options,
            ", expected 1..26");
    const auto answer = extract_answer(completion);
    if (!answer) return 0.0;
    if (kind == AnswerKind::multiple_choice)
      return multiple_choice_correct(*answer, ground_truth, num_options, option_texts) ? 1.0 : 0.0;
    return open_ended_correct(*answer, ground_truth) ? 1.0 : 0.0;
  }

  template <has_reference_text S>
  double operator()(const S& sample) const {
    if constexpr (requires { std::span<const std::string>(sample.options); }) {
      return score(sample.completion, sample.reference, std::span<const std::string>(sample.options));
    } else {
      return score(sample.completion, sample.reference);
    }
  }
};

}  // namespace corl

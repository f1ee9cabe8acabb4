// world_answers.cpp — answer extraction and normalisation (world_answers.hpp).
#include "world_answers.hpp"

#include <algorithm>
#include <cctype>

namespace ulm {

namespace {

bool is_trailing_punct(char c) { return c == '.' || c == '!' || c == '?' || c == ',' || c == ';' || c == ':'; }

std::string trim(std::string_view s) {
  std::size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

}  // namespace

std::string normalise_answer(std::string_view answer) {
  std::string s;
  for (const char c : answer) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  s = trim(s);
  while (!s.empty() && (is_trailing_punct(s.back()) || std::isspace(static_cast<unsigned char>(s.back()))))
    s.pop_back();
  std::vector<std::string> words;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    const std::size_t start = i;
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i > start) words.push_back(s.substr(start, i - start));
  }
  if (words.size() > 1 && (words[0] == "a" || words[0] == "an" || words[0] == "the")) words.erase(words.begin());
  std::string out;
  for (std::string& w : words) {
    const int n = parse_number_word(w);
    if (n >= 0) w = std::to_string(n);
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

std::optional<std::string> extract_answer(std::string_view completion) {
  constexpr std::string_view open = "<answer>", close = "</answer>";
  const std::size_t begin = completion.rfind(open);
  if (begin == std::string_view::npos) return std::nullopt;
  const std::size_t content = begin + open.size();
  const std::size_t end = completion.find(close, content);
  if (end == std::string_view::npos) return std::nullopt;
  return trim(completion.substr(content, end - content));
}

std::optional<char> extract_option_letter(std::string_view answer, const std::vector<std::string>& options) {
  std::string s = trim(answer);
  // Strip "option" / "answer" prefixes and brackets.
  std::string lower;
  for (const char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const std::string_view prefix : {"option", "answer"}) {
    if (lower.rfind(prefix, 0) == 0) {
      s = trim(std::string_view(s).substr(prefix.size()));
      lower = trim(std::string_view(lower).substr(prefix.size()));
      if (!s.empty() && s[0] == ':') s = trim(std::string_view(s).substr(1));
    }
  }
  if (!s.empty() && (s[0] == '(' || s[0] == '[')) s.erase(0, 1);
  if (!s.empty()) {
    // Upper case: "B", "B.", "B . red"; lower case only alone or before ".):]" (so the article in "a red" is no
    // option letter).
    const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
    const bool letter = c >= 'A' && c <= 'D';
    const bool upper = s[0] == c;
    const bool alone = s.size() == 1 || (upper ? !std::isalnum(static_cast<unsigned char>(s[1]))
                                                : std::string_view(".):]").find(s[1]) != std::string_view::npos);
    if (letter && alone) return c;
  }
  if (!options.empty()) {
    const std::string norm = normalise_answer(answer);
    std::optional<char> found;
    for (std::size_t k = 0; k < options.size() && k < 4; ++k) {
      if (normalise_answer(options[k]) == norm) {
        if (found) return std::nullopt;  // ambiguous
        found = static_cast<char>('A' + k);
      }
    }
    return found;
  }
  return std::nullopt;
}

bool answer_matches(std::string_view predicted, std::string_view gold, QuestionType type,
                    const std::vector<std::string>& options) {
  if (type == QuestionType::multiple_choice) {
    const std::optional<char> p = extract_option_letter(predicted, options);
    const std::optional<char> g = extract_option_letter(gold, options);
    return p && g && *p == *g;
  }
  const std::string p = normalise_answer(predicted);
  return !p.empty() && p == normalise_answer(gold);
}

bool completion_correct(std::string_view completion, const UnifiedRow& row) {
  const std::optional<std::string> answer = extract_answer(completion);
  return answer && answer_matches(*answer, row.answer, row.question_type, row.options);
}

}  // namespace ulm

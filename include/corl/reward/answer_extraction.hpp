// corl/reward/answer_extraction.hpp — getting the answer out of a completion, and putting answers in comparable form.
//
//   extract_answer(text)          the (trimmed) inside of the last <answer>...</answer> block; nullopt if none.
//   extract_option_letter(a, n)   the multiple-choice letter in an answer, among the first n letters A, B, ...:
//                                 "B", "b", "(B)", "B.", "B. red", "B) red", "B: red", "the answer is B",
//                                 "Answer: (B)", "option B", "I think it is C." all work; "a red circle" gives nullopt
//                                 (a lower-case article is not an option). With the option texts, an answer that equals
//                                 one option's text ("red") gives that option's letter.
//   normalize_open_answer(a)      lower case, whitespace collapsed, surrounding quotes and trailing . , ! ? ; : removed,
//                                 leading article (a / an / the) dropped, number words zero..twenty written as digits,
//                                 numbers printed canonically ("3.0" -> "3").
// Why: the ULM-R1 reference code compared a list of extracted letters with a string, so its multiple-choice branch never
// matched; open-ended answers were compared raw. Source: arXiv 2505.17534 Sec. 3 (R_acc), DESIGN.md section 1.
#pragma once

#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace corl {

namespace detail {
inline bool is_space_char(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
inline bool is_alnum_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
inline char lower_char(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space_char(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space_char(s.back())) s.remove_suffix(1);
  return s;
}

inline std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower_char(c);
  return out;
}

/// Splits on anything that is not a letter, digit, '.', '-' or '\'' kept inside a word; used for answer text.
inline std::vector<std::string> split_words(std::string_view s) {
  std::vector<std::string> words;
  std::string cur;
  for (char c : s) {
    if (is_space_char(c)) {
      if (!cur.empty()) words.push_back(std::move(cur)), cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}
}  // namespace detail

/// The trimmed text inside the last <answer>...</answer> of `completion`, or nullopt if there is no complete block.
inline std::optional<std::string> extract_answer(std::string_view completion) {
  constexpr std::string_view open = "<answer>", close = "</answer>";
  const std::size_t end = completion.rfind(close);
  if (end == std::string_view::npos) return std::nullopt;
  const std::size_t start = completion.rfind(open, end);
  if (start == std::string_view::npos) return std::nullopt;
  return std::string(detail::trim(completion.substr(start + open.size(), end - start - open.size())));
}

/// Number words zero..twenty as digits, nullopt for anything else.
inline std::optional<int> number_word_value(std::string_view lower_word) {
  static constexpr std::array<std::string_view, 21> kWords = {
      "zero", "one",    "two",    "three",    "four",     "five",    "six",     "seven",     "eight",    "nine",
      "ten",  "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
      "twenty"};
  for (std::size_t i = 0; i < kWords.size(); ++i)
    if (kWords[i] == lower_word) return static_cast<int>(i);
  return std::nullopt;
}

/// Normalised open-ended answer (see the header comment). Two answers are equal iff their normalised forms are.
inline std::string normalize_open_answer(std::string_view answer) {
  std::string s = detail::to_lower(detail::trim(answer));
  auto strip = [&](void) {
    bool changed = true;
    while (changed && !s.empty()) {
      changed = false;
      const char b = s.back();
      if (b == '.' || b == ',' || b == '!' || b == '?' || b == ';' || b == ':' || b == '"' || b == '\'' ||
          detail::is_space_char(b)) {
        s.pop_back();
        changed = true;
      }
      if (!s.empty() && (s.front() == '"' || s.front() == '\'' || detail::is_space_char(s.front()))) {
        s.erase(0, 1);
        changed = true;
      }
    }
  };
  strip();
  std::vector<std::string> words = detail::split_words(s);
  if (words.size() > 1 && (words[0] == "a" || words[0] == "an" || words[0] == "the")) words.erase(words.begin());
  std::string out;
  for (std::string& w : words) {
    // trailing punctuation inside the phrase ("three, red") does not change the meaning
    while (!w.empty() && (w.back() == ',' || w.back() == ';')) w.pop_back();
    if (w.empty()) continue;
    if (const auto n = number_word_value(w)) {
      w = std::to_string(*n);
    } else {
      double value = 0;
      const auto [ptr, ec] = std::from_chars(w.data(), w.data() + w.size(), value);
      if (ec == std::errc{} && ptr == w.data() + w.size()) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.12g", value);
        w = buf;
      }
    }
    if (!out.empty()) out.push_back(' ');
    out += w;
  }
  return out;
}

namespace detail {
inline bool letter_in_range(char c, int num_options) { return c >= 'A' && c < 'A' + num_options; }

/// Letter X when `s` is exactly X, (X), X., X), X: (any case) possibly followed by punctuation.
inline std::optional<char> bare_letter(std::string_view s, int num_options) {
  s = trim(s);
  while (!s.empty() && (s.back() == '.' || s.back() == '!' || s.back() == ',' || s.back() == ';')) s.remove_suffix(1);
  if (s.size() >= 2 && ((s.front() == '(' && s.back() == ')') || (s.front() == '[' && s.back() == ']')))
    s = trim(s.substr(1, s.size() - 2));
  if (s.size() == 2 && (s[1] == ')' || s[1] == ':' || s[1] == '.')) s.remove_suffix(1);
  if (s.size() != 1) return std::nullopt;
  const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return letter_in_range(c, num_options) ? std::optional<char>(c) : std::nullopt;
}

/// Reads an option letter at position i of `s`: "X" or "(X)" with a non-alphanumeric character (or the end) after it.
/// Upper case only unless inside parentheses.
inline std::optional<char> letter_at(std::string_view s, std::size_t i, int num_options) {
  if (i >= s.size()) return std::nullopt;
  if (s[i] == '(' && i + 2 < s.size() && s[i + 2] == ')') {
    const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(s[i + 1])));
    return letter_in_range(c, num_options) ? std::optional<char>(c) : std::nullopt;
  }
  const char c = s[i];
  if (!letter_in_range(c, num_options)) return std::nullopt;
  if (i + 1 < s.size() && is_alnum_char(s[i + 1])) return std::nullopt;
  return c;
}
}  // namespace detail

/// The option letter an answer names, among 'A' .. 'A' + num_options - 1 (see the header comment).
/// `option_texts`, if given, are the options' texts in order A, B, ...: an answer equal to one (normalised) maps to it.
inline std::optional<char> extract_option_letter(std::string_view answer, int num_options = 26,
                                                 std::span<const std::string> option_texts = {}) {
  if (num_options < 1 || num_options > 26) return std::nullopt;
  const std::string_view a = detail::trim(answer);
  if (a.empty()) return std::nullopt;
  // 1. the whole answer is a letter: "B", "b", "(B)", "B."
  if (auto c = detail::bare_letter(a, num_options)) return c;
  // 2. the answer starts with a labelled letter: "B. red", "B) red", "(B) red", "B: red"
  if (a.size() >= 3 && a[0] == '(' && a[2] == ')') {
    if (auto c = detail::letter_at(a, 0, num_options)) return c;
  }
  if (a.size() >= 2 && (a[1] == '.' || a[1] == ')' || a[1] == ':') &&
      detail::letter_in_range(static_cast<char>(std::toupper(static_cast<unsigned char>(a[0]))), num_options) &&
      (a.size() == 2 || detail::is_space_char(a[2])))
    return static_cast<char>(std::toupper(static_cast<unsigned char>(a[0])));
  // 3. a cue phrase followed by a letter: "the answer is B", "answer: (C)", "option D", "choice A"
  const std::string lower = detail::to_lower(a);
  for (std::string_view cue : {"answer is", "answer:", "option", "choice", "it is", "it's"}) {
    std::size_t pos = lower.rfind(cue);
    while (pos != std::string::npos) {
      std::size_t i = pos + cue.size();
      while (i < a.size() && (detail::is_space_char(a[i]) || a[i] == ':')) ++i;
      if (auto c = detail::letter_at(a, i, num_options)) return c;
      if (pos == 0) break;
      pos = lower.rfind(cue, pos - 1);
    }
  }
  // 4. the answer equals one option's text: "red" when option B is "red"
  if (!option_texts.empty()) {
    const std::string norm = normalize_open_answer(a);
    for (std::size_t k = 0; k < option_texts.size() && static_cast<int>(k) < num_options; ++k)
      if (normalize_open_answer(option_texts[k]) == norm) return static_cast<char>('A' + k);
  }
  // 5. exactly one standalone upper-case letter (or "(X)") in the answer, not the words "I" or an "A" that starts a
  //    sentence before a lower-case word ("A red circle").
  std::optional<char> found;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (i > 0 && detail::is_alnum_char(a[i - 1])) continue;
    auto c = detail::letter_at(a, i, num_options);
    if (!c) continue;
    const bool parenthesised = a[i] == '(';
    if (!parenthesised && *c == 'I') continue;
    if (!parenthesised && *c == 'A' && i + 2 < a.size() && detail::is_space_char(a[i + 1]) &&
        std::islower(static_cast<unsigned char>(a[i + 2]))) {
      // "A is correct" names option A; "A red circle" is an article.
      const std::string_view rest = a.substr(i + 2);
      bool verb = false;
      for (std::string_view v : {"is ", "is.", "was ", "seems", "should", "would", "because"})
        verb = verb || rest.substr(0, v.size()) == v || rest == detail::trim(v);
      if (!verb) continue;
    }
    if (found && *found != *c) return std::nullopt;  // ambiguous: two different letters
    found = c;
  }
  return found;
}

}  // namespace corl

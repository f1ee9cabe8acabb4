// corl/reward/format.hpp — R_format: 1 when a completion is exactly "<think>...</think>" followed by
// "<answer>...</answer>", else 0.
//
// Accepted:  ws* "<think>" T "</think>" ws* "<answer>" A "</answer>" ws*
// where ws is ASCII whitespace and neither T nor A contains any of the four tags (so a second think or answer block,
// a nested tag, or any text before, between or after the blocks gives 0). T and A may be empty.
// Source: DeepSeek-R1 / R1-V "format reward" as used by ULM-R1 (arXiv 2505.17534, Sec. 3, R_format).
#pragma once

#include <string_view>

#include "corl/reward/text_sample.hpp"

namespace corl {

namespace detail {
inline bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

inline std::string_view skip_space(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && is_ascii_space(s[i])) ++i;
  return s.substr(i);
}

inline bool contains_reasoning_tag(std::string_view s) {
  for (std::string_view tag : {"<think>", "</think>", "<answer>", "</answer>"})
    if (s.find(tag) != std::string_view::npos) return true;
  return false;
}

/// If `s` starts with open...close (no tags inside), stores the inside, advances `s` past close and returns true.
inline bool take_block(std::string_view& s, std::string_view open, std::string_view close, std::string_view* inside) {
  if (s.substr(0, open.size()) != open) return false;
  const std::size_t end = s.find(close, open.size());
  if (end == std::string_view::npos) return false;
  const std::string_view body = s.substr(open.size(), end - open.size());
  if (contains_reasoning_tag(body)) return false;
  if (inside) *inside = body;
  s.remove_prefix(end + close.size());
  return true;
}
}  // namespace detail

/// True when `completion` has exactly the think-then-answer shape described above.
inline bool has_think_answer_format(std::string_view completion) {
  std::string_view s = detail::skip_space(completion);
  if (!detail::take_block(s, "<think>", "</think>", nullptr)) return false;
  s = detail::skip_space(s);
  if (!detail::take_block(s, "<answer>", "</answer>", nullptr)) return false;
  return detail::skip_space(s).empty();
}

/// R_format as a reward function on any sample with a `completion`.
struct FormatReward {
  double operator()(std::string_view completion) const { return has_think_answer_format(completion) ? 1.0 : 0.0; }
  template <has_completion_text S>
  double operator()(const S& sample) const {
    return (*this)(std::string_view(sample.completion));
  }
};

}  // namespace corl

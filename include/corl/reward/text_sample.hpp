// corl/reward/text_sample.hpp — the sample shape the text rewards read: a completion and a reference.
//
// Any type with members `completion` (the generated text) and, for rewards that compare, `reference` (the ground-truth
// answer or the prompt to compare a caption with), both convertible to std::string_view, works with corl's text
// rewards; corl::TextSample is the plain struct for callers that have nothing better.
#pragma once

#include <concepts>
#include <string>
#include <string_view>

namespace corl {

/// T has a `completion` readable as text.
template <class T>
concept has_completion_text = requires(const T& s) {
  { std::string_view(s.completion) } -> std::same_as<std::string_view>;
};

/// T has a `completion` and a `reference` readable as text.
template <class T>
concept has_reference_text = has_completion_text<T> && requires(const T& s) {
  { std::string_view(s.reference) } -> std::same_as<std::string_view>;
};

struct TextSample {
  std::string completion;
  std::string reference;
};

}  // namespace corl

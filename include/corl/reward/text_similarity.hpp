// corl/reward/text_similarity.hpp — token-level F1 and soft Jaccard similarity of two texts, both in [0, 1].
//
// Words: lower case, split on every character that is not a letter or digit, the articles a / an / the dropped, number
// words zero..twenty written as digits ("three" == "3").
//   token_f1(p, r)      = 2 P R / (P + R),  P = |p ∩ r| / |p|,  R = |p ∩ r| / |r|   (multiset intersection; SQuAD F1)
//   soft_jaccard(a, b)  = I / (|A| + |B| - I)  on the word sets A, B, where the soft intersection
//                         I = 1/2 (sum_{x in A} max_{y in B} s(x, y) + sum_{y in B} max_{x in A} s(x, y))
//                         and s is the Dice coefficient of the words' character bigrams (with ^ and $ padding), so
//                         "circles" ~ "circle" counts 0.83 instead of 0. I <= min(|A|, |B|), hence 0 <= J <= 1.
// Both are 1 for two empty texts and 0 when exactly one is empty.
// Used by the text side of CoRL's cycle reward (the paper uses SPICE; DESIGN.md section 1 asks for F1 / soft Jaccard).
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "corl/reward/answer_extraction.hpp"
#include "corl/reward/text_sample.hpp"

namespace corl {

/// The words of `text` as the similarity measures see them (see the header comment).
inline std::vector<std::string> similarity_words(std::string_view text) {
  std::vector<std::string> words;
  std::string cur;
  auto flush = [&] {
    if (cur.empty()) return;
    if (cur != "a" && cur != "an" && cur != "the") {
      if (const auto n = number_word_value(cur)) cur = std::to_string(*n);
      words.push_back(cur);
    }
    cur.clear();
  };
  for (char c : text) {
    if (detail::is_alnum_char(c)) {
      cur.push_back(detail::lower_char(c));
    } else {
      flush();
    }
  }
  flush();
  return words;
}

/// SQuAD-style token F1 between a prediction and a reference text.
inline double token_f1(std::string_view prediction, std::string_view reference) {
  const auto p = similarity_words(prediction), r = similarity_words(reference);
  if (p.empty() && r.empty()) return 1.0;
  if (p.empty() || r.empty()) return 0.0;
  std::map<std::string, int> counts;
  for (const auto& w : r) ++counts[w];
  double common = 0;
  for (const auto& w : p) {
    auto it = counts.find(w);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      common += 1;
    }
  }
  if (common == 0) return 0.0;
  const double precision = common / static_cast<double>(p.size()), recall = common / static_cast<double>(r.size());
  return 2 * precision * recall / (precision + recall);
}

/// Dice coefficient of the character bigrams of two words padded as ^word$ (1 for equal words).
inline double word_bigram_dice(std::string_view x, std::string_view y) {
  if (x == y) return 1.0;
  auto bigrams = [](std::string_view w) {
    std::multiset<std::string> out;
    std::string padded;
    padded.reserve(w.size() + 2);
    padded.push_back('^');
    padded.append(w.data(), w.size());
    padded.push_back('$');
    for (std::size_t i = 0; i + 1 < padded.size(); ++i) out.insert(padded.substr(i, 2));
    return out;
  };
  const auto bx = bigrams(x), by = bigrams(y);
  std::vector<std::string> common;
  std::set_intersection(bx.begin(), bx.end(), by.begin(), by.end(), std::back_inserter(common));
  return 2.0 * static_cast<double>(common.size()) / static_cast<double>(bx.size() + by.size());
}

/// Soft Jaccard similarity of the word sets of two texts (see the header comment).
inline double soft_jaccard(std::string_view a, std::string_view b) {
  const auto wa = similarity_words(a), wb = similarity_words(b);
  const std::set<std::string> sa(wa.begin(), wa.end()), sb(wb.begin(), wb.end());
  if (sa.empty() && sb.empty()) return 1.0;
  if (sa.empty() || sb.empty()) return 0.0;
  auto best_sum = [](const std::set<std::string>& from, const std::set<std::string>& to) {
    double sum = 0;
    for (const auto& x : from) {
      double best = 0;
      for (const auto& y : to) best = std::max(best, word_bigram_dice(x, y));
      sum += best;
    }
    return sum;
  };
  const double inter = 0.5 * (best_sum(sa, sb) + best_sum(sb, sa));
  const double uni = static_cast<double>(sa.size() + sb.size()) - inter;
  return std::clamp(inter / uni, 0.0, 1.0);
}

/// Token F1 of a sample's completion against its reference, as a reward.
struct TokenF1Reward {
  template <has_reference_text S>
  double operator()(const S& s) const {
    return token_f1(s.completion, s.reference);
  }
};

/// Soft Jaccard of a sample's completion against its reference, as a reward.
struct SoftJaccardReward {
  template <has_reference_text S>
  double operator()(const S& s) const {
    return soft_jaccard(s.completion, s.reference);
  }
};

}  // namespace corl

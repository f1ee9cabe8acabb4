// tokenizer.hpp — word-level tokenizer over the shapes world's closed vocabulary.
//
// Ids are fixed: the nine special tokens first (<pad> 0, <bos> 1, <eos> 2, <image> 3, </image> 4, <think> 5,
// </think> 6, <answer> 7, </answer> 8), then punctuation, option letters A-D, digits "0".."16", number words
// "zero".."sixteen", the world's function words, colour names, shape names and plurals (from the WorldConfig).
// Text is split on whitespace; punctuation characters ( ? . , : ; ! ) and special tokens <...> are split off the
// words around them, so "circle?" encodes as "circle" "?". Case-sensitive (option letters are upper case, all other
// words lower case). An unknown word is a corl::Error naming it. Image codes are NOT text tokens: the model embeds
// them separately; image_codebook_size() is WorldConfig::codebook_size().
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "world.hpp"

namespace ulm {

class Tokenizer {
 public:
  static constexpr int kPad = 0, kBos = 1, kEos = 2, kImageBegin = 3, kImageEnd = 4, kThinkBegin = 5, kThinkEnd = 6,
                       kAnswerBegin = 7, kAnswerEnd = 8;
  static constexpr int kNumSpecial = 9;

  /// Validates the config; the vocabulary holds every word generate_rows / caption / make_question can emit.
  explicit Tokenizer(const WorldConfig& config);

  int vocab_size() const { return static_cast<int>(words_.size()); }
  int image_codebook_size() const { return codebook_size_; }

  /// Token ids of `text` (no <bos>/<eos> added). Unknown word -> corl::Error
  /// "Tokenizer::encode: unknown word '<w>' (word <k> of \"<text>\")".
  std::vector<int> encode(std::string_view text) const;
  /// Words joined by single spaces; skip_special drops <pad>/<bos>/<eos> (the tags <think> etc. are kept).
  /// Out-of-range id -> corl::Error naming the position and the id.
  std::string decode(std::span<const int> ids, bool skip_special = false) const;

  /// Id of one word; throws corl::Error naming the word when it is not in the vocabulary.
  int id(std::string_view word) const;
  bool contains(std::string_view word) const;
  const std::string& word(int id) const;  ///< throws when id is out of range
  const std::vector<std::string>& vocabulary() const { return words_; }

  /// The tokenizer's word split (what encode looks up), exposed for reward code that compares token sets.
  static std::vector<std::string> split_words(std::string_view text);

 private:
  void add(std::string word);
  std::vector<std::string> words_;
  std::unordered_map<std::string, int> ids_;
  int codebook_size_ = 0;
};

}  // namespace ulm

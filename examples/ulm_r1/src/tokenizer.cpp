// tokenizer.cpp — the shapes world's word-level tokenizer (tokenizer.hpp).
#include "tokenizer.hpp"

#include <algorithm>

#include "corl/core/error.hpp"

namespace ulm {

namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_punct(char c) { return c == '?' || c == '.' || c == ',' || c == ':' || c == ';' || c == '!'; }
}  // namespace

Tokenizer::Tokenizer(const WorldConfig& config) : codebook_size_(config.codebook_size()) {
  config.validate();
  for (const char* special :
       {"<pad>", "<bos>", "<eos>", "<image>", "</image>", "<think>", "</think>", "<answer>", "</answer>"})
    add(special);
  add(";");
  add("!");
  for (const std::string& w : world_fixed_words()) add(w);
  for (int n = 21; n <= config.num_cells(); ++n) add(std::to_string(n));  // counts on large grids
  for (const std::string& c : config.colours) add(c);
  for (int s = 0; s < config.num_shapes(); ++s) {
    add(config.shapes[static_cast<std::size_t>(s)]);
    add(config.plural(s));
  }
}

void Tokenizer::add(std::string word) {
  if (ids_.count(word) != 0) return;
  ids_.emplace(word, static_cast<int>(words_.size()));
  words_.push_back(std::move(word));
}

std::vector<std::string> Tokenizer::split_words(std::string_view text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (is_space(c)) {
      ++i;
    } else if (is_punct(c)) {
      out.emplace_back(1, c);
      ++i;
    } else if (c == '<' && text.find('>', i) != std::string_view::npos) {
      const std::size_t end = text.find('>', i);
      out.emplace_back(text.substr(i, end + 1 - i));
      i = end + 1;
    } else {
      const std::size_t s = i;
      while (i < text.size() && !is_space(text[i]) && !is_punct(text[i]) && text[i] != '<') ++i;
      if (i == s) ++i;  // a lone '<' without '>' is its own (unknown) word
      out.emplace_back(text.substr(s, i - s));
    }
  }
  return out;
}

std::vector<int> Tokenizer::encode(std::string_view text) const {
  const std::vector<std::string> words = split_words(text);
  std::vector<int> ids;
  ids.reserve(words.size());
  for (std::size_t k = 0; k < words.size(); ++k) {
    const auto it = ids_.find(words[k]);
    if (it == ids_.end())
      corl::fail("Tokenizer::encode: unknown word '", words[k], "' (word ", k, " of \"", text,
                 "\"), expected a word of the shapes world's vocabulary");
    ids.push_back(it->second);
  }
  return ids;
}

std::string Tokenizer::decode(std::span<const int> ids, bool skip_special) const {
  std::string out;
  for (std::size_t k = 0; k < ids.size(); ++k) {
    const int id = ids[k];
    corl::require(id >= 0 && id < vocab_size(), "Tokenizer::decode: ids[", k, "] = ", id, ", expected 0..",
                  vocab_size() - 1);
    if (skip_special && (id == kPad || id == kBos || id == kEos)) continue;
    if (!out.empty()) out += ' ';
    out += words_[static_cast<std::size_t>(id)];
  }
  return out;
}

int Tokenizer::id(std::string_view word) const {
  const auto it = ids_.find(std::string(word));
  corl::require(it != ids_.end(), "Tokenizer::id: unknown word '", word, "'");
  return it->second;
}

bool Tokenizer::contains(std::string_view word) const { return ids_.count(std::string(word)) != 0; }

const std::string& Tokenizer::word(int id) const {
  corl::require(id >= 0 && id < vocab_size(), "Tokenizer::word: id = ", id, ", expected 0..", vocab_size() - 1);
  return words_[static_cast<std::size_t>(id)];
}

}  // namespace ulm

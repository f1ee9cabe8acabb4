// scene_tuples.cpp — see scene_tuples.hpp.
#include "scene_tuples.hpp"

#include <cmath>
#include <map>
#include <sstream>
#include <vector>

#include "corl/core/error.hpp"

namespace ulm {

SceneTuples scene_tuples(std::string_view text, const WorldConfig& config, bool complete) {
  std::vector<std::string> words;
  {
    std::istringstream is{std::string(text)};
    for (std::string w; is >> w;) words.push_back(w);
  }
  SceneTuples out;
  std::map<int, int> counted;     // shape -> total of its phrases
  std::map<int, bool> numbered;   // shape -> some phrase named a number
  int count = -1;                 // -1: no determiner seen; else the phrase's number (articles: 1)
  bool explicit_number = false;
  int colour = -1;
  int last_shape = -1;            // the shape of the previous phrase (for relations)
  std::string pending_relation;   // a relation word seen after last_shape
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "a" || w == "an") {
      count = 1, explicit_number = false;
    } else if (const int n = parse_number_word(w); n >= 0) {
      count = n, explicit_number = true;
    } else if (const int c = config.colour_index(w); c >= 0) {
      colour = c;
    } else if (const int s = config.shape_index(w); s >= 0) {
      const std::string& name = config.shapes[static_cast<std::size_t>(s)];
      out.tuples.insert("object " + name);
      if (colour >= 0) out.tuples.insert("attribute " + name + " " + config.colours[static_cast<std::size_t>(colour)]);
      counted[s] += count >= 0 ? count : 1;
      numbered[s] = numbered[s] || explicit_number;
      if (!pending_relation.empty() && last_shape >= 0 && last_shape != s)
        out.tuples.insert("relation " + config.shapes[static_cast<std::size_t>(last_shape)] + " " + pending_relation +
                          " " + name);
      pending_relation.clear();
      last_shape = s;
      count = -1, explicit_number = false, colour = -1;
    } else if ((w == "left" || w == "right") && i + 1 < words.size() && words[i + 1] == "of") {
      pending_relation = w + " of";
      ++i;
    } else if (w == "above" || w == "below") {
      pending_relation = w;
    } else if (w == "," || w == "and") {
      pending_relation.clear();  // a new phrase, not a relation
    }
  }
  for (const auto& [s, n] : counted)
    if (complete || numbered[s])
      out.tuples.insert("count " + config.shapes[static_cast<std::size_t>(s)] + " " + std::to_string(n));
  return out;
}

TupleMatch match_tuples(const SceneTuples& candidate, const SceneTuples& reference, double beta) {
  corl::require(beta > 0 && std::isfinite(beta), "ulm::match_tuples: beta = ", beta, ", expected a finite value > 0");
  if (candidate.tuples.empty() && reference.tuples.empty()) return {1, 1, 1};
  double common = 0;
  for (const auto& t : candidate.tuples) common += reference.tuples.count(t) ? 1 : 0;
  TupleMatch m;
  if (common == 0) return m;
  m.precision = common / static_cast<double>(candidate.tuples.size());
  m.recall = common / static_cast<double>(reference.tuples.size());
  const double b2 = beta * beta;
  m.f = (1 + b2) * m.precision * m.recall / (b2 * m.precision + m.recall);
  return m;
}

double caption_prompt_similarity(std::string_view caption, std::string_view prompt, const WorldConfig& config,
                                 double beta) {
  return match_tuples(scene_tuples(caption, config, true), scene_tuples(prompt, config, false), beta).f;
}

}  // namespace ulm

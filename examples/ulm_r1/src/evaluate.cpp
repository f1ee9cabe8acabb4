// evaluate.cpp — see evaluate.hpp.
#include "evaluate.hpp"

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "sft.hpp"
#include "tokenizer.hpp"
#include "world_answers.hpp"

namespace ulm {

Json geneval_accuracies_json(const GenEvalTally& tally) {
  Json g = Json::object();
  g.set("overall", tally.overall());
  for (Category c : kAllCategories) g.set(category_name(c), tally.accuracy(c));
  return g;
}

Json EvalResult::to_json() const {
  const Json g = geneval_accuracies_json(geneval);
  Json qa = Json::object();
  qa.set("mc", mc());
  qa.set("oe", oe());
  Json out = Json::object();
  out.set("geneval", g);
  out.set("qa", qa);
  return out;
}

std::string EvalResult::table() const {
  std::ostringstream os;
  os << std::fixed << std::setprecision(3);
  os << "world-GenEval            accuracy   correct/total\n";
  for (Category c : kAllCategories) {
    os << "  " << std::left << std::setw(22) << category_name(c) << std::right << std::setw(8) << geneval.accuracy(c)
       << "   " << geneval.correct(c) << "/" << geneval.total(c) << "\n";
  }
  os << "  " << std::left << std::setw(22) << "overall" << std::right << std::setw(8) << geneval.overall() << "\n";
  os << "QA\n";
  os << "  " << std::left << std::setw(22) << "mc" << std::right << std::setw(8) << mc() << "   " << mc_correct << "/"
     << mc_total << "\n";
  os << "  " << std::left << std::setw(22) << "oe" << std::right << std::setw(8) << oe() << "   " << oe_correct << "/"
     << oe_total << "\n";
  return os.str();
}

EvalResult evaluate(const Model<float>& model, const EvalOptions& o) {
  corl::require(o.rows >= 1, "ulm::evaluate: rows = ", o.rows, ", expected >= 1");
  corl::require(o.batch >= 1, "ulm::evaluate: batch = ", o.batch, ", expected >= 1");
  const Tokenizer tok(o.world);
  corl::require(model.config().text_vocab == tok.vocab_size() && model.config().image_vocab == o.world.codebook_size() &&
                    model.config().image_tokens == o.world.num_cells(),
                "ulm::evaluate: the model (text_vocab ", model.config().text_vocab, ", image_vocab ",
                model.config().image_vocab, ", image_tokens ", model.config().image_tokens,
                ") does not match the world (", tok.vocab_size(), ", ", o.world.codebook_size(), ", ",
                o.world.num_cells(), ")");
  corl::require(!model.config().factored_codes() || (model.config().code_colours == o.world.num_colours() &&
                                                     model.config().code_shapes == o.world.num_shapes()),
                "ulm::evaluate: the model's factored codes (", model.config().code_colours, " colours x ",
                model.config().code_shapes, " shapes) do not match the world (", o.world.num_colours(), " x ",
                o.world.num_shapes(), ")");
  GeneratorOptions gen;
  gen.seed = o.seed;
  gen.rows = o.rows;
  gen.split = o.split;
  const std::vector<UnifiedRow> rows = generate_rows(o.world, gen);
  EvalResult result;
  for (std::size_t begin = 0; begin < rows.size(); begin += static_cast<std::size_t>(o.batch)) {
    const std::size_t end = std::min(rows.size(), begin + static_cast<std::size_t>(o.batch));
    std::vector<Sequence> t2i, qa;
    for (std::size_t i = begin; i < end; ++i) {
      t2i.push_back(t2i_prompt(tok, rows[i].prompt));
      if (o.qa) qa.push_back(understanding_prompt(tok, rows[i].image, rows[i].question));
    }
    SampleOptions img;
    img.temperature = o.image_temperature;
    img.cfg_weight = o.cfg_weight;
    img.seed = o.seed;
    img.offset = static_cast<std::uint64_t>(begin) * 1024;
    const auto images = model.sample(t2i, Modality::image_out, 1, img);
    SampleOptions txt;
    txt.temperature = o.text_temperature;
    txt.max_new_tokens = o.max_answer_tokens;
    txt.seed = o.seed + 1;
    txt.offset = static_cast<std::uint64_t>(begin) * 1024;
    const auto answers = o.qa ? model.sample(qa, Modality::text, 1, txt) : std::vector<Sample<float>>{};
    for (std::size_t i = begin; i < end; ++i) {
      const UnifiedRow& row = rows[i];
      const Grid grid(images[i - begin].tokens.begin(), images[i - begin].tokens.end());
      result.geneval.add(row.category, satisfies(grid, row.spec, o.world));
      if (!o.qa) continue;
      const std::string text = tok.decode(answers[i - begin].tokens, true);
      const bool ok = completion_correct(text, row);
      if (row.question_type == QuestionType::multiple_choice) {
        ++result.mc_total;
        result.mc_correct += ok;
      } else {
        ++result.oe_total;
        result.oe_correct += ok;
      }
    }
  }
  return result;
}

}  // namespace ulm

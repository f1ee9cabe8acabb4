// sft.hpp — the supervised warm-up of the bundled model on the shapes world (the "SFT" step before CoRL), and the
// sequence formats shared by training, evaluation and RL.
//
// Sequence formats (Janus-Pro style; ids from tokenizer.hpp):
//   text-to-image   prompt  <bos> {prompt words} <image>                       completion: H*W image_out codes
//   understanding   prompt  <bos> <image> {H*W image_in codes} </image> {question or instruction words}
//                   completion: {answer words} <eos>
//     QA:         the full "<think> ... </think> <answer> ... </answer>" solution (world.hpp solution_text)
//     captioning: "describe the image ." -> caption(image)
// Training: mean token cross-entropy over a batch mixing the three tasks (t2i_share / qa_share / caption_share),
// with the text-to-image prompt replaced by its unconditional form (<pad> words) with probability uncond_prob, so that
// classifier-free guidance has an unconditional model to subtract (Janus-Pro trains with 10% dropped prompts).
// AdamW (corl/optim/adamw.hpp) with linear warm-up then cosine decay, global-norm gradient clipping.
// Determinism: the batch is split into a fixed number of shards whose gradients are summed in shard order, so the
// result is the same for any thread count; examples are drawn with corl::CounterRng(seed, step).
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "model.hpp"
#include "tokenizer.hpp"
#include "world.hpp"

namespace ulm {

// ---- sequence formats ----------------------------------------------------------------------------------------------

Sequence t2i_prompt(const Tokenizer& tok, std::string_view prompt);
Sequence understanding_prompt(const Tokenizer& tok, const Grid& image, std::string_view instruction);
/// {words} <eos> as text tokens.
Sequence answer_completion(const Tokenizer& tok, std::string_view answer);
Sequence image_completion(const Grid& image);

/// The model configuration for a world: vocabularies and image size from the world, widths from `base`.
ModelConfig model_config_for(const WorldConfig& world, const Tokenizer& tok, ModelConfig base = {},
                             bool factored_codes = false);

/// The three supervised examples of one unified row.
ScoreRow t2i_example(const Tokenizer& tok, const UnifiedRow& row);
ScoreRow qa_example(const Tokenizer& tok, const UnifiedRow& row);
ScoreRow caption_example(const Tokenizer& tok, const UnifiedRow& row);

/// The trunk's final hidden states for the understanding-format sequence of (image, prompt): columns of the H*W
/// image codes and of the prompt words (without <bos>, <image>, </image>). What R_TIM compares (CoRL Sec. 3.2):
/// 0.5 (mean_i max_k cos(image_i, text_k) + mean_k max_i cos(image_i, text_k)).
template <class Real>
struct ImageTextHidden {
  layers::Mat<Real> image;  ///< d_model x (H*W)
  layers::Mat<Real> text;   ///< d_model x (number of prompt words)
};
template <class Real>
ImageTextHidden<Real> image_text_hidden(const Model<Real>& model, const Tokenizer& tok, const Grid& image,
                                        std::string_view prompt) {
  const Sequence seq = understanding_prompt(tok, image, prompt);
  const layers::Mat<Real> h = model.hidden_states(seq);
  const corl::index_t cells = static_cast<corl::index_t>(image.size());
  const corl::index_t words = static_cast<corl::index_t>(seq.size()) - cells - 3;
  return ImageTextHidden<Real>{h.middleCols(2, cells), h.rightCols(words)};
}

// ---- training ------------------------------------------------------------------------------------------------------

struct SftOptions {
  int steps = 800;
  int batch = 48;                 ///< examples per step
  std::uint64_t seed = 1;         ///< model init, data and batch draws
  int train_rows = 3000;          ///< unified rows generated from the train split
  double t2i_share = 0.4, qa_share = 0.4, caption_share = 0.2;
  double uncond_prob = 0.1;
  double lr = 3e-3, final_lr_fraction = 0.1, weight_decay = 0.01;
  int warmup_steps = 20;
  double clip_norm = 1.0;
  int threads = 2;                ///< worker threads (results do not depend on it)
  int shards = 2;                 ///< fixed gradient shards per batch
  int progress_every = 25;        ///< steps between progress lines (0 = silent)
  ModelConfig model = {};         ///< widths; vocabularies are overwritten from the world
  /// Image-code tables as per-code + per-colour + per-shape rows (ModelConfig::code_colours / code_shapes, set from
  /// the world); false: plain per-code tables.
  bool factored_codes = false;
  WorldConfig world = {};
};

struct SftResult {
  Model<float> model;
  std::vector<double> losses;     ///< per step
  double seconds = 0;
};

/// Trains from scratch; writes progress lines "sft step s/S loss L lr x  elapsed e s  eta t s" to `progress`.
SftResult run_sft(const SftOptions& options, std::ostream* progress);

}  // namespace ulm

// model.hpp — the bundled unified multimodal model (a tiny Janus-Pro): a decoder-only Llama-style transformer in Eigen
// with hand-written forward and backward, a KV cache for batched sampling, and the policy API that CoRL trains.
//
// Architecture (Janus-Pro, Chen et al. 2025, arXiv 2501.17811; Llama, Touvron et al. 2023):
//   trunk      L x [x += W_o attn(rope(W_q n1), rope(W_k n1), W_v n1);  x += W_down(silu(W_gate n2) * W_up n2)],
//              n1 = RMSNorm(x), n2 = RMSNorm(x) (pre-norm), causal multi-head attention, final RMSNorm. Shared.
//   inputs     each position is a Token with a Modality:
//              text       -> model.embed_tokens                           (text embedding)
//              image_in   -> und_aligner(und_embed[code])                  (understanding path; stands in for SigLIP +
//                                                                            the aligner: a Linear over a code table)
//              image_out  -> gen_embed[code]                               (generation path: codes the model produced)
//              optional factored codes (ModelConfig::code_colours / code_shapes): und_embed, gen_embed and the gen
//              head's output rows read table[code] + colour_table[colour] + shape_table[shape], so codes that share a
//              colour or a shape share features (as a VQ codebook's vectors share visual features)
//   outputs    the hidden state at position t predicts token t+1 with the head of token t+1's modality:
//              text       -> lm_head                                       (text vocabulary)
//              image_out  -> gen_head = Linear - GELU - Linear             (image codebook)
//              image_in tokens are never predicted.
// Classifier-free guidance for image tokens (Janus-Pro, CoRL): logits = u + w (c - u), u from the unconditional prompt
// (every prompt text token replaced by <pad> except <bos> and <image>), then divided by the temperature. The same
// mix and temperature are used when sampling and when computing log-probs by teacher forcing, and the log-prob of
// completion token t is read from the logits at position (prompt length + t - 1): the one-position shift the reference
// code forgot (DESIGN.md section 1).
//
// Everything numeric is templated on Real (float for training, double for the finite-difference tests). Parameters
// live in one flat vector (layout(): Hugging Face names, shapes, offsets), so the optimizer, gradient clipping,
// checkpoints and the frozen reference copy (a plain copy of the Model) are trivial.
// Determinism: the forward/backward are single-threaded per call and use a fixed summation order, so a result is a
// pure function of (parameters, inputs, seed).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"
#include "layers.hpp"

namespace ulm {

// ---- configuration -------------------------------------------------------------------------------------------------

struct ModelConfig {
  int text_vocab = 128;    ///< text vocabulary (Tokenizer::vocab_size())
  int image_vocab = 25;    ///< image codebook (WorldConfig::codebook_size())
  int image_tokens = 16;   ///< codes per generated image (H x W)
  int d_model = 64;
  int n_layers = 3;
  int n_heads = 4;
  int d_ff = 176;          ///< SwiGLU hidden size
  int d_code = 32;         ///< understanding code-embedding width (before the aligner)
  int max_seq = 96;        ///< longest sequence (prompt + completion) the KV cache holds
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  int pad_id = 0, bos_id = 1, eos_id = 2, image_begin_id = 3;  ///< the tokenizer's special ids
  /// Factored image codes: when both are > 0, image_vocab must be 1 + code_colours * code_shapes (code k >= 1 is
  /// colour (k-1) / code_shapes, shape (k-1) % code_shapes) and each image-code table the model reads (und_embed,
  /// gen_embed, gen_head.2.weight) is table[k] + colour_table[colour(k)] + shape_table[shape(k)]: codes that share a
  /// colour or a shape share features, as a VQ codebook's vectors share visual features. 0, 0: plain tables. The
  /// factor tables are initialised like the tables they add to (normal, std 1 for the embeddings, 1/sqrt(d_model)
  /// for the head), so a factored model does not start as the plain one.
  int code_colours = 0, code_shapes = 0;
  bool factored_codes() const { return code_colours > 0 && code_shapes > 0; }

  /// Throws corl::Error naming the field and the condition (sizes positive, d_model divisible by n_heads, even head
  /// size, special ids inside the text vocabulary, code_colours / code_shapes both 0 or both > 0 with image_vocab =
  /// 1 + code_colours * code_shapes).
  void validate() const;
  int head_dim() const { return d_model / n_heads; }
  /// key -> value strings (stored as the checkpoint's __metadata__) and back.
  std::map<std::string, std::string> to_metadata() const;
  static ModelConfig from_metadata(const std::map<std::string, std::string>& meta, const std::string& where);
  friend bool operator==(const ModelConfig&, const ModelConfig&) = default;
};

// ---- tokens --------------------------------------------------------------------------------------------------------

enum class Modality : std::uint8_t { text = 0, image_in = 1, image_out = 2 };

struct Token {
  std::int32_t id = 0;
  Modality modality = Modality::text;
  friend bool operator==(const Token&, const Token&) = default;
};
using Sequence = std::vector<Token>;

Sequence text_sequence(std::span<const int> ids);
Sequence image_sequence(std::span<const int> codes, Modality modality);
/// The unconditional prompt for CFG: text tokens other than <bos> and <image> replaced by <pad>.
Sequence unconditional_prompt(const Sequence& prompt, const ModelConfig& config);

// ---- parameters ----------------------------------------------------------------------------------------------------

struct ParamInfo {
  std::string name;                   ///< Hugging Face style, e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<corl::index_t> shape;   ///< PyTorch order: Linear [out, in], embedding [vocab, dim], norm [dim]
  corl::index_t offset = 0;           ///< first element in the flat parameter vector
  corl::index_t size = 0;
};
/// The fixed order and shapes of every parameter for `config`.
std::vector<ParamInfo> param_layout(const ModelConfig& config);

// ---- requests and results ------------------------------------------------------------------------------------------

/// One row of a teacher-forced batch: the context and the tokens whose log-probs are wanted. All completion tokens
/// share one modality, text or image_out.
struct ScoreRow {
  Sequence prompt;
  Sequence completion;
};

/// How logits become the distribution the log-probs are taken under. Must match the sampler's options. Truncation
/// (top-k / top-p / min-p) is not applied here: sample with those off (the CoRL setting, T = 1) when the sampler's
/// and the trainer's log-probs must agree, or correct for the mismatch (corl/loss/importance_correction.hpp).
struct ScoreOptions {
  double temperature = 1.0;
  double cfg_weight = 1.0;  ///< image_out completions: u + w (c - u); 1 = conditional only (no second pass)
};

struct SampleOptions {
  double temperature = 1.0;
  int top_k = 0;            ///< 0 = off (text only)
  double top_p = 1.0;       ///< 1 = off (text only)
  double min_p = 0.0;       ///< 0 = off (text only)
  double cfg_weight = 1.0;  ///< images only (see ScoreOptions)
  int max_new_tokens = 32;  ///< text; images always produce config.image_tokens codes
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;  ///< Philox offset of step 0; decoding step k uses offset + k (advance by >= max_new)
  /// Philox stream of the call's first sample: sample s (prompt-major, prompt * group + g) draws from stream
  /// first_stream + s, so a batch sampled in pieces (first_stream = the piece's first sample) draws what it would
  /// have drawn in one call.
  std::uint32_t first_stream = 0;
};

template <class Real>
struct Sample {
  std::vector<int> tokens;   ///< the completion (text: up to and including <eos> when it was produced)
  std::vector<Real> logps;   ///< log-prob of each token under the distribution actually sampled from
  bool finished = false;     ///< text: produced <eos>; images: always true
};

template <class Real>
struct Tape;  // activations of a teacher-forced forward, consumed by backward (defined in model.cpp)

template <class Real>
struct TapeDeleter {
  void operator()(Tape<Real>* t) const;
};

/// The result of Model::score: per-row log-probs, and the activations for the backward.
template <class Real>
struct Scored {
  std::vector<std::vector<Real>> logp;       ///< logp[r][t]: completion token t of row r
  std::vector<layers::Mat<Real>> logits;     ///< logits[r]: (vocab x n_r) final logits (after CFG mix and 1/T)
  std::unique_ptr<Tape<Real>, TapeDeleter<Real>> tape;
};

// ---- the model -----------------------------------------------------------------------------------------------------

template <class Real>
class Model {
 public:
  /// Random initialisation from `seed` (normal(0, 1/sqrt(fan_in)) for linears, normal(0, 1) for embeddings, ones
  /// for norms, zeros for biases); deterministic.
  Model(const ModelConfig& config, std::uint64_t seed);

  const ModelConfig& config() const { return config_; }
  const std::vector<ParamInfo>& layout() const { return layout_; }
  /// All parameters as one flat vector (order: layout()). The optimizer updates it in place.
  std::span<Real> parameters() { return params_; }
  std::span<const Real> parameters() const { return params_; }
  corl::index_t num_parameters() const { return static_cast<corl::index_t>(params_.size()); }
  /// A parameter by name, as a flat span (throws corl::Error for an unknown name).
  std::span<Real> parameter(const std::string& name);
  /// A copy with the same parameters: the frozen reference policy. (Model is also copyable.)
  Model copy() const { return *this; }
  Model snapshot() const { return *this; }  ///< same as copy() (the name corl::policy uses)

  /// Teacher forcing: log-probs of every completion token of every row, keeping the activations for backward.
  Scored<Real> score(const std::vector<ScoreRow>& rows, const ScoreOptions& options) const;
  /// Accumulates into `grad` (same layout as parameters()) the gradient of sum_{r,t} dlogp[r][t] * logp[r][t].
  /// The backward passes take `scored` from this model's score() with its parameters unchanged since (factored
  /// codes: they reuse the code tables the score built, kept on its tape).
  void backward(const Scored<Real>& scored, const std::vector<std::vector<Real>>& dlogp, std::span<Real> grad) const;
  /// Per-token entropy H[r][t] = -sum_v p_v log p_v of the distribution logp[r][t] is read from (softmax of
  /// Scored::logits[r] column t: after the CFG mix and the temperature), in nats.
  std::vector<std::vector<Real>> entropy(const Scored<Real>& scored) const;
  /// Adds the gradient of sum dlogp[r][t] logp[r][t] + dentropy[r][t] H[r][t] to `grad`
  /// (dH/dz_v = -p_v (log p_v + H) on the final logits z).
  void backward(const Scored<Real>& scored, const std::vector<std::vector<Real>>& dlogp,
                const std::vector<std::vector<Real>>& dentropy, std::span<Real> grad) const;
  /// Same from dL/dlogits (logits as in Scored::logits: after the CFG mix and the temperature).
  void backward_logits(const Scored<Real>& scored, const std::vector<layers::Mat<Real>>& dlogits,
                       std::span<Real> grad) const;

  /// Mean token cross-entropy of the completions (T = 1, no CFG) and its gradient added to `grad` (scaled by
  /// `grad_scale`): the supervised loss. Returns the mean loss.
  Real cross_entropy(const std::vector<ScoreRow>& rows, std::span<Real> grad, Real grad_scale = Real(1)) const;

  /// The trunk's final hidden states (after the final RMSNorm), d_model x T, for a sequence (used by R_TIM).
  layers::Mat<Real> hidden_states(const Sequence& sequence) const;

  /// Samples `group` completions per prompt, all rows batched through the KV cache. Output order: prompt-major
  /// (index p * group + g); row p * group + g draws from Philox stream p * group + g. modality = text or image_out.
  std::vector<Sample<Real>> sample(const std::vector<Sequence>& prompts, Modality modality, int group,
                                   const SampleOptions& options) const;

 private:
  void backward_impl(const Scored<Real>& scored, const std::vector<std::vector<Real>>& dlogp,
                     const std::vector<std::vector<Real>>* dentropy, std::span<Real> grad) const;
  friend struct Tape<Real>;
  ModelConfig config_;
  std::vector<ParamInfo> layout_;
  std::vector<Real> params_;
  layers::RopeTable<Real> rope_;  ///< rotary cos/sin for positions 0..max_seq-1 (after layout_: config validated)
};

/// Global L2 norm of a gradient; scales it so the norm is at most max_norm (no-op for max_norm <= 0). Returns the
/// norm before clipping. Throws corl::Error when the gradient contains NaN/inf.
template <class Real>
double clip_grad_norm(std::span<Real> grad, double max_norm);

extern template class Model<float>;
extern template class Model<double>;

}  // namespace ulm

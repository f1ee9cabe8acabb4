// checkpoint.hpp — save and load the bundled model as safetensors (corl/io/safetensors.hpp).
//
// Tensor names and shapes follow Hugging Face / Janus conventions (model.hpp, param_layout): e.g.
// "model.embed_tokens.weight" [text_vocab, d], "model.layers.0.self_attn.q_proj.weight" [d, d], "gen_head.0.weight".
// The dtype is the model's scalar (F32 for Model<float>, F64 for Model<double>). "__metadata__" records the
// ModelConfig (ModelConfig::to_metadata) plus any caller-supplied entries (e.g. SFT steps, seed, final loss).
// Loading rebuilds the config from the metadata and then requires every parameter to be present with the exact shape
// and dtype, and no unexpected tensor: a mismatch is a corl::Error naming the file and the tensor.
#pragma once

#include <map>
#include <string>

#include "model.hpp"

namespace ulm {

template <class Real>
void save_checkpoint(const Model<Real>& model, const std::string& path,
                     const std::map<std::string, std::string>& extra_metadata = {});

/// Reads a checkpoint written by save_checkpoint (or by any tool using the same names); throws corl::Error for a
/// missing file, truncated file, bad header JSON, missing or unexpected tensor, wrong shape or dtype, bad metadata.
template <class Real>
Model<Real> load_checkpoint(const std::string& path);

/// The checkpoint's __metadata__ (config entries and extras) without loading the tensors' values into a model.
std::map<std::string, std::string> checkpoint_metadata(const std::string& path);

}  // namespace ulm

// train_config.hpp — the configuration of `ulm_r1 train`: a "key = value" file plus "--key value" overrides.
//
// File format: one "key = value" per line; '#' starts a comment; blank lines are ignored. Keys are the names listed
// by train_config_keys() (e.g. "seed", "sft.steps", "unified.steps", "refined_mc.group_size", "reward.lambda").
// Command-line overrides use the same names: `ulm_r1 train --config configs/default.conf --unified.steps 40`.
// Every value is checked: an unknown key, a malformed number or an out-of-range value is a corl::Error naming the
// source ("<file>:<line>" or "--<key>"), the key, the value and the expected range.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "corl/pipeline/stage_config.hpp"

namespace ulm {

struct TrainStageSettings {
  int steps = 0;
  int rows_per_step = 4;
  int group_size = 8;
  double learning_rate = 1e-3;
  double beta = 0.0;
  double max_grad_norm = 1.0;
  double weight_t2i = 1.0;   ///< unified stage only
  double weight_mm2t = 1.0;  ///< unified stage only
  /// Entropy bonus (verl `entropy_coeff`): the stage's loss gets -entropy_coef x the token-mean entropy of the
  /// sampling distribution (CFG mix and temperature included); 0 = off.
  double entropy_coef = 0.0;
  /// Learning-rate schedule over the stage's steps (corl::stage_learning_rate; transformers' schedulers): constant,
  /// linear (decay to 0) or cosine, after a linear warm-up of warmup_steps steps.
  corl::LrSchedule lr_schedule = corl::LrSchedule::constant;
  int warmup_steps = 0;
  /// Also write a pipeline checkpoint every N steps (0: only at the end of the stage); a unified one can be given
  /// as unified.ckpt to run the refined stages from an intermediate unified policy (with a constant schedule that
  /// is the policy a k-step unified stage ends with).
  int checkpoint_every = 0;
};

struct TrainConfig {
  std::uint64_t seed = 1;
  std::string out_dir = "ulm_r1_train";
  // SFT warm-up (or a checkpoint)
  std::string sft_ckpt;      ///< when set, the SFT model is loaded instead of trained
  int sft_steps = 600;
  int sft_batch = 48;
  double sft_lr = 3e-3;
  /// 1: image-code tables factored into per-code + per-colour + per-shape rows (ModelConfig::code_colours /
  /// code_shapes); 0: plain per-code tables. Must match sft.ckpt's model when one is loaded.
  int model_factored_codes = 0;
  int threads = 2;           ///< SFT and RL stages (fixed shards: the results do not depend on it)
  /// When set, the unified stage is not run: its policy is read from this pipeline checkpoint (one the unified stage
  /// wrote, out_dir/checkpoints/corl/stage0-unified-stepN.ckpt), so that the refined stages can be rerun alone.
  std::string unified_ckpt;
  // data
  int train_rows = 3000;     ///< unified rows generated from the train split for RL
  // stages
  // defaults = configs/default.conf (kept in sync by the test train_config_errors)
  TrainStageSettings unified{600, 16, 8, 4e-4, 0.02, 1.0, 1.0, 1.0};
  TrainStageSettings refined_t2i{20, 4, 16, 7.5e-5, 0.02, 1.0, 1.0, 1.0};
  TrainStageSettings refined_mc{20, 4, 16, 3e-5, 0.02, 1.0, 1.0, 1.0};
  TrainStageSettings refined_oe{20, 4, 16, 3e-5, 0.02, 1.0, 1.0, 1.0};
  double qa_merge_alpha = 0.5;  ///< QA policy = (1 - a) MC + a OE
  // rewards
  double reward_cycle = 1.0;
  double reward_tim = 0.0;      ///< the paper has 1; 0 measured better on this model (configs/README.md)
  double reward_lambda = 0.8;   ///< weight of R_acc + R_format in the unified reward
  int caption_max_tokens = 24;
  // sampling (training rollouts; evaluation uses its own greedy / CFG settings)
  double image_temperature = 1.0;
  double text_temperature = 1.0;
  double cfg_weight = 5.0;
  int max_answer_tokens = 48;
  // evaluation
  int eval_rows = 960;
  std::uint64_t eval_seed = 7;
  int sheet_prompts = 12;       ///< prompts in the before/after image sheet
  bool ablation = false;

  /// Throws corl::Error naming the key and the condition.
  void validate() const;
  /// The corl::StageConfig of a stage (name, G, rows, steps, lr, beta, task weights, clip).
  corl::StageConfig stage_config(const std::string& name) const;
  /// The settings of stage `name` ("unified", "refined_t2i", "refined_mc", "refined_oe"); throws for another name.
  const TrainStageSettings& stage_settings(const std::string& name) const;
};

/// Every key the file and the overrides accept, in a stable order.
std::vector<std::string> train_config_keys();
/// Sets one key from its text value; `source` names where it came from in errors.
void set_train_config_value(TrainConfig& config, const std::string& key, const std::string& value,
                            const std::string& source);
/// Reads a config file into `config` (keys not in the file keep their values).
void read_train_config_file(TrainConfig& config, const std::string& path);
/// key -> value text of every setting (written into report.json).
std::map<std::string, std::string> train_config_values(const TrainConfig& config);

}  // namespace ulm

// The smallest `ulm_r1 train` configuration that runs every stage and evaluation (seconds): 2 SFT steps, 24 rows,
// `steps` steps of one row with groups of 2 per RL stage, 6-row evaluations. Shared by the end-to-end trainer tests.
#pragma once

#include <string>

#include "train_config.hpp"

namespace ulm_test {

inline ulm::TrainConfig tiny_train_config(const std::string& out_dir, int steps_per_stage) {
  ulm::TrainConfig c;
  c.out_dir = out_dir;
  c.sft_steps = 2;
  c.sft_batch = 4;
  c.threads = 1;
  c.train_rows = 24;
  for (ulm::TrainStageSettings* s : {&c.unified, &c.refined_t2i, &c.refined_mc, &c.refined_oe}) {
    s->steps = steps_per_stage;
    s->rows_per_step = 1;
    s->group_size = 2;
  }
  c.caption_max_tokens = 4;
  c.max_answer_tokens = 8;
  c.eval_rows = 6;
  c.sheet_prompts = 1;
  return c;
}

}  // namespace ulm_test

// corl/corl.hpp — everything: the GRPO core (corl/grpo.hpp), the reward functions and the CoRL stage pipelines.
// Include what you use for faster builds; this umbrella is for convenience and for the docs' examples.
#pragma once

#include "corl/grpo.hpp"

#include "corl/concepts/policy.hpp"
#include "corl/concepts/reward_function.hpp"
#include "corl/pipeline/adamw_optimizer.hpp"
#include "corl/pipeline/checkpoint.hpp"
#include "corl/pipeline/merge.hpp"
#include "corl/pipeline/optimizer.hpp"
#include "corl/pipeline/pipeline.hpp"
#include "corl/pipeline/schedule.hpp"
#include "corl/pipeline/stage.hpp"
#include "corl/pipeline/stage_config.hpp"
#include "corl/reward/accuracy.hpp"
#include "corl/reward/answer_extraction.hpp"
#include "corl/reward/combine.hpp"
#include "corl/reward/evaluate.hpp"
#include "corl/reward/format.hpp"
#include "corl/reward/text_sample.hpp"
#include "corl/reward/text_image_matching.hpp"
#include "corl/reward/text_similarity.hpp"
#include "corl/reward/tim_reward.hpp"

// corl/grpo.hpp — the GRPO core in one include: errors, the counter RNG, the batch layout and its global normalisers
// (core/), every concept (concepts.hpp), the advantage estimators (advantage/), the per-token policy losses, KL
// estimators, aggregation modes and the objective (loss/), log-probs from logits and their backward (logprob/), the
// sampler (sampling/) and AdamW (optim/). Rewards and the CoRL pipeline are in corl/corl.hpp; the CUDA kernels in
// <corl/cuda/*.cuh> (target corl::cuda). One GRPO step with these pieces: examples/quickstart/main.cpp.
#pragma once

#include "corl/core/batch.hpp"
#include "corl/core/error.hpp"
#include "corl/core/half_types.hpp"
#include "corl/core/hd.hpp"
#include "corl/core/rng.hpp"

#include "corl/concepts.hpp"

#include "corl/advantage/advantage.hpp"

#include "corl/loss/aggregate.hpp"
#include "corl/loss/cispo.hpp"
#include "corl/loss/delta_clip.hpp"
#include "corl/loss/dual_clip.hpp"
#include "corl/loss/entropy_mask.hpp"
#include "corl/loss/gmpo.hpp"
#include "corl/loss/gspo.hpp"
#include "corl/loss/importance_correction.hpp"
#include "corl/loss/kl.hpp"
#include "corl/loss/kl_controller.hpp"
#include "corl/loss/objective.hpp"
#include "corl/loss/ppo_clip.hpp"
#include "corl/loss/reinforce.hpp"
#include "corl/loss/sapo.hpp"
#include "corl/loss/token_term.hpp"

#include "corl/logprob/from_logits.hpp"
#include "corl/logprob/grpo_from_logits.hpp"

#include "corl/sampling/sampler.hpp"
#include "corl/sampling/sampling_math.hpp"
#include "corl/sampling/streaming_race.hpp"

#include "corl/optim/adamw.hpp"

// corl/concepts.hpp — every concept corl defines, in one include: what a policy loss, a KL estimator, an aggregation
// mode, an advantage estimator, a reward function and a policy must provide. Each concept is documented in its own
// header under corl/concepts/ ("T satisfies X if: 1. ... 2. ..."); see docs/design.md, section 3.
#pragma once

#include "corl/concepts/advantage_estimator.hpp"
#include "corl/concepts/aggregation.hpp"
#include "corl/concepts/kl_estimator.hpp"
#include "corl/concepts/policy.hpp"
#include "corl/concepts/policy_loss.hpp"
#include "corl/concepts/reward_function.hpp"

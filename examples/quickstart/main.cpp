// corl quickstart: GRPO end to end on the CPU, in about a second.
//
// The task: for each of 4 prompts, write that prompt's 6-token answer over an 8-token vocabulary. The policy is a table
// of logits with one row per (prompt, position): token t of a completion for prompt p is drawn from
// softmax(theta[p, t]). Each step
//   1. samples a group of G = 8 completions per prompt with the counter-based RNG (corl::uniform01) and records their
//      log-probs (corl::logprobs_from_logits): these are the "old" log-probs of the PPO ratio;
//   2. scores each completion: reward = fraction of positions that match the answer;
//   3. turns the rewards into group z-score advantages (corl::GroupZScore: GRPO);
//   4. takes two optimizer steps on that batch: recompute the log-probs, evaluate the clipped GRPO objective and its
//      gradient dL/dlogp (corl::Objective), back-propagate through the softmax to the logits
//      (corl::logprobs_backward_from_logits), sum over the group into the table, and update it (corl::AdamW).
// The mean reward starts near 1/8 (uniform policy) and climbs towards 1. The program exits with status 1 unless the
// mean reward of the last step beats that of the first by 0.5, so the build runs it as a test.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <vector>

#include <corl/grpo.hpp>

namespace {

constexpr corl::index_t kPrompts = 4;    // P
constexpr corl::index_t kGroupSize = 8;  // G completions per prompt
constexpr corl::index_t kLength = 6;     // T tokens per completion
constexpr corl::index_t kVocab = 8;      // V
constexpr corl::index_t kBatch = kPrompts * kGroupSize;
constexpr corl::index_t kRows = kBatch * kLength;  // one row of logits per sampled token

// The answer the reward checks: token t of prompt p.
std::int32_t answer(corl::index_t p, corl::index_t t) {
  return static_cast<std::int32_t>((3 * p + 5 * t + 1) % kVocab);
}

std::size_t at(corl::index_t i) { return static_cast<std::size_t>(i); }

// Copies the policy's logits for every token of every completion: row (b, t) is theta[p(b), t].
void gather_logits(const std::vector<double>& theta, std::vector<double>& logits) {
  for (corl::index_t b = 0; b < kBatch; ++b)
    for (corl::index_t t = 0; t < kLength; ++t) {
      const corl::index_t p = b / kGroupSize;
      std::copy_n(theta.begin() + (p * kLength + t) * kVocab, kVocab, logits.begin() + (b * kLength + t) * kVocab);
    }
}

// Draws a token from softmax(row) by inverting the CDF at u in (0, 1).
std::int32_t sample_token(std::span<const double> row, double u) {
  const double max = *std::max_element(row.begin(), row.end());
  double total = 0.0;
  for (double x : row) total += std::exp(x - max);
  double cdf = 0.0;
  for (std::size_t v = 0; v < row.size(); ++v) {
    cdf += std::exp(row[v] - max) / total;
    if (u < cdf) return static_cast<std::int32_t>(v);
  }
  return static_cast<std::int32_t>(row.size() - 1);
}

}  // namespace

int main() {
  const std::uint64_t seed = 2025;
  const int steps = 40;
  const int updates_per_batch = 2;

  std::vector<double> theta(at(kPrompts * kLength * kVocab), 0.0);  // the policy: logits[prompt, t, v]
  std::vector<double> theta_grad(theta.size());
  corl::AdamW<double> optimizer(corl::AdamWConfig{.lr = 0.1, .weight_decay = 0.0});
  optimizer.add_parameter(theta);

  // GRPO: PPO clip (eps 0.2), no KL term (beta = 0, as in CoRL's stage 1), each sequence's token mean, then the mean
  // over sequences.
  const corl::Objective<corl::PpoClip, corl::NoKl, corl::SeqMeanTokenMean> objective;

  std::vector<double> logits(at(kRows * kVocab)), dlogits(logits.size()), lse(at(kRows));
  std::vector<std::int32_t> tokens(at(kRows));
  std::vector<double> rewards(at(kBatch)), advantages(at(kBatch));
  corl::Batch<double> batch(kBatch, kLength);
  for (corl::index_t b = 0; b < kBatch; ++b) {
    batch.group[at(b)] = b / kGroupSize;  // sequence b answers prompt b / G
    batch.set_length(b, kLength);
  }

  double first_reward = 0.0, last_reward = 0.0;
  for (int step = 0; step < steps; ++step) {
    // 1. Sample every token, and keep the sampling policy's log-probs.
    gather_logits(theta, logits);
    for (corl::index_t i = 0; i < kRows; ++i) {  // draw 0 of stream i (the token's row) at offset `step`
      const double u =
          corl::uniform01<double>(seed, static_cast<std::uint64_t>(step), static_cast<std::uint32_t>(i), 0);
      tokens[at(i)] = sample_token(std::span<const double>(logits).subspan(at(i * kVocab), at(kVocab)), u);
    }
    batch.logp_old.resize(at(kRows));
    corl::logprobs_from_logits<double, double>(logits, kVocab, tokens, 1.0, batch.logp_old);

    // 2. Rewards: the fraction of positions equal to the answer.
    for (corl::index_t b = 0; b < kBatch; ++b) {
      int correct = 0;
      for (corl::index_t t = 0; t < kLength; ++t) correct += tokens[at(b * kLength + t)] == answer(b / kGroupSize, t);
      rewards[at(b)] = static_cast<double>(correct) / static_cast<double>(kLength);
    }

    // [grpo-step]
    // 3. Group advantages: A_i = (r_i - mean_g) / (std_g + 1e-4) within each prompt's group.
    const corl::RewardBatch<double> scored{rewards, batch.group, kPrompts};
    const corl::AdvantageStats stats = corl::GroupZScore{}.compute<double>(scored, advantages);
    batch.advantages = advantages;

    // 4. Optimise the clipped objective on this batch; logp_old stays the sampler's.
    for (int update = 0; update < updates_per_batch; ++update) {
      gather_logits(theta, logits);
      corl::logprobs_from_logits<double, double>(logits, kVocab, tokens, 1.0, batch.logp, {}, lse);
      const corl::Normalizers totals = objective.count_normalizers(batch.view());
      const corl::ObjectiveResult<double> result = objective.evaluate(batch.view(), totals);
      // dL/dlogits from dL/dlogp, then sum over the group's completions into dL/dtheta.
      corl::logprobs_backward_from_logits<double, double, double>(
          logits, kVocab, tokens, 1.0, lse, std::span<const double>(result.grad_logp.data(), at(kRows)), dlogits);
      std::fill(theta_grad.begin(), theta_grad.end(), 0.0);
      for (corl::index_t i = 0; i < kRows; ++i) {
        const corl::index_t b = i / kLength, t = i % kLength, p = b / kGroupSize;
        for (corl::index_t v = 0; v < kVocab; ++v)
          theta_grad[at((p * kLength + t) * kVocab + v)] += dlogits[at(i * kVocab + v)];
      }
      optimizer.step({std::span<const double>(theta_grad)});
    }
    // [grpo-step]

    if (step == 0) first_reward = stats.reward_mean;
    last_reward = stats.reward_mean;
    if (step % 5 == 0 || step == steps - 1)
      std::printf("step %2d  mean reward %.3f  groups with equal rewards %.2f\n", step, stats.reward_mean,
                  stats.zero_std_fraction());
  }
  std::printf("mean reward: first step %.3f, last step %.3f\n", first_reward, last_reward);
  return last_reward > first_reward + 0.5 ? 0 : 1;
}

// corl/loss/aggregate.hpp — loss aggregation modes as per-sequence token weights.
//
// Every mode is  loss = sum_b w_b sum_t mask_bt term_bt  with w_b = sequence_weight(n_b, normalizers), n_b the
// sequence's number of loss tokens, and N_tok / N_seq the GLOBAL token / sequence totals of the optimizer step
// (corl::Normalizers; N_seq counts sequences with n_b > 0):
//   TokenMean              "token-mean"                w_b = 1 / N_tok                   (DAPO; TRL loss_type="dapo")
//   SeqMeanTokenMean       "seq-mean-token-mean"       w_b = 1 / (n_b N_seq)             (GRPO paper; TRL "grpo")
//   SeqMeanTokenSum        "seq-mean-token-sum"        w_b = 1 / N_seq
//   SeqMeanTokenSumNorm    "seq-mean-token-sum-norm"   w_b = 1 / (C N_seq), C = normalizers.constant_divisor
//                                                      (Dr.GRPO; TRL loss_type="dr_grpo" with C = max_completion_length)
// All weights are multiplied by normalizers.framework_scale() (1 when the framework SUMS gradients over micro-batches
// and ranks; world_size when it averages over ranks, e.g. PyTorch DDP; times grad_accum_steps when it divides each
// micro-batch loss by the number of accumulation steps, e.g. HF Trainer).
// Because w_b depends on sequence b and global constants only, the losses (and gradients) of any split of the step
// into micro-batches and ranks sum to the full-batch ones exactly. Normalising by the LOCAL token count instead
// (sum / mask.sum() per micro-batch, then averaging) over-weights short micro-batches: that was the TRL and verl bug.
// Sources: verl `actor.loss_agg_mode`; TRL `GRPOConfig.loss_type`; Liu et al. 2025 "Understanding R1-Zero-Like
// Training" (Dr.GRPO); Yu et al. 2025 (DAPO token-level loss).
#pragma once

#include <string_view>

#include "corl/concepts/aggregation.hpp"
#include "corl/core/batch.hpp"
#include "corl/core/error.hpp"

namespace corl {

struct TokenMean {
  static constexpr std::string_view name = "token-mean";
  [[nodiscard]] double sequence_weight(index_t n, const Normalizers& z) const {
    if (n == 0) return 0.0;
    require(z.total_tokens > 0, "TokenMean::sequence_weight: Normalizers.total_tokens = ", z.total_tokens,
            ", expected > 0 when a sequence has loss tokens");
    return z.framework_scale() / z.total_tokens;
  }
};

struct SeqMeanTokenMean {
  static constexpr std::string_view name = "seq-mean-token-mean";
  [[nodiscard]] double sequence_weight(index_t n, const Normalizers& z) const {
    if (n == 0) return 0.0;
    require(z.total_sequences > 0, "SeqMeanTokenMean::sequence_weight: Normalizers.total_sequences = ",
            z.total_sequences, ", expected > 0 when a sequence has loss tokens");
    return z.framework_scale() / (static_cast<double>(n) * z.total_sequences);
  }
};

struct SeqMeanTokenSum {
  static constexpr std::string_view name = "seq-mean-token-sum";
  [[nodiscard]] double sequence_weight(index_t n, const Normalizers& z) const {
    if (n == 0) return 0.0;
    require(z.total_sequences > 0, "SeqMeanTokenSum::sequence_weight: Normalizers.total_sequences = ",
            z.total_sequences, ", expected > 0 when a sequence has loss tokens");
    return z.framework_scale() / z.total_sequences;
  }
};

struct SeqMeanTokenSumNorm {
  static constexpr std::string_view name = "seq-mean-token-sum-norm";
  [[nodiscard]] double sequence_weight(index_t n, const Normalizers& z) const {
    if (n == 0) return 0.0;
    require(z.total_sequences > 0, "SeqMeanTokenSumNorm::sequence_weight: Normalizers.total_sequences = ",
            z.total_sequences, ", expected > 0 when a sequence has loss tokens");
    require(z.constant_divisor > 0, "SeqMeanTokenSumNorm::sequence_weight: Normalizers.constant_divisor = ",
            z.constant_divisor, ", expected > 0 (Dr.GRPO: the maximum completion length)");
    return z.framework_scale() / (z.constant_divisor * z.total_sequences);
  }
};

static_assert(aggregation<TokenMean>, "TokenMean is a corl::aggregation");
static_assert(aggregation<SeqMeanTokenMean>, "SeqMeanTokenMean is a corl::aggregation");
static_assert(aggregation<SeqMeanTokenSum>, "SeqMeanTokenSum is a corl::aggregation");
static_assert(aggregation<SeqMeanTokenSumNorm>, "SeqMeanTokenSumNorm is a corl::aggregation");

}  // namespace corl

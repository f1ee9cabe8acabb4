// corl/logprob/grpo_from_logits.hpp — the GRPO-family loss, forward and backward, straight from logits (CPU reference
// of the fused CUDA kernel corl/cuda/grpo_loss.cuh).
//
// Rows are tokens: row i = b * seq_len + t of logits [sequences * seq_len, vocab]. For every row with mask_i != 0:
//   logp_i, entropy_i  from corl/logprob/from_logits.hpp (softmax of logits / temperature)
//   s_b   = masked mean over t of policy.seq_stat_term(logp, logp_old, A_b)       (sequence-level losses only: GSPO...)
//   P_i   = policy.token(logp_i, logp_old_i, A_b, s_b)                             (corl/loss/token_term.hpp contract)
//   K_i   = kl.token(logp_i, logp_ref_i, logp_old_i)          (only when Kl::uses_reference and logp_ref is given)
//   loss  = sum_i mask_i w_b (P_i.value + kl_coef K_i.value - entropy_coef entropy_i)
//   dL/dlogp_i = w_b (P_i.grad + kl_coef K_i.grad),  dL/dentropy_i = -w_b entropy_coef, then dL/dlogits by the softmax
//   backward. w_b is the aggregation weight of one token of sequence b (corl/loss/aggregate.hpp gives it: 1 / total
//   tokens for token-mean, 1 / (B |y_b|) for seq-mean-token-mean, ...). Masked rows are not read: their dlogits are 0
//   and their logp / entropy outputs 0. Without logp_old the step is on-policy: logp_old = logp (detached), ratio 1.
// Totals (loss, metrics) are summed in double in row order. Sources: DeepSeekMath GRPO; TRL GRPOTrainer
// (`loss_type`, `beta`, `temperature`); verl `actor.entropy_coeff`, `loss_agg_mode`.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/concepts/kl_estimator.hpp"
#include "corl/concepts/policy_loss.hpp"
#include "corl/core/half_types.hpp"
#include "corl/loss/token_term.hpp"
#include "corl/logprob/detail/parallel_rows.hpp"
#include "corl/logprob/from_logits.hpp"

namespace corl {

/// Sums over the unmasked tokens of a batch, shared by the CPU reference and the CUDA kernel.
struct GrpoLossTotals {
  double loss = 0;          ///< the aggregated loss: sum mask w (policy + kl_coef kl - entropy_coef entropy)
  double policy_loss = 0;   ///< sum mask w policy.value
  double kl = 0;            ///< sum mask w kl.value (0 without logp_ref)
  double entropy_sum = 0;   ///< sum mask entropy (unweighted; divide by tokens for the mean)
  double ratio_sum = 0;     ///< sum mask ratio
  std::int64_t tokens = 0;  ///< number of unmasked tokens
  std::int64_t clipped_low = 0, clipped_high = 0, dual_clipped = 0;  ///< counts of TokenFlag bits
};

/// Inputs of grpo_loss_from_logits. Empty spans mean "absent" where the comment says so.
template <class Logit, class Real = compute_type_t<Logit>>
struct GrpoLogitsBatch {
  std::span<const Logit> logits;          ///< [sequences * seq_len, vocab] row-major
  index_t sequences = 0, seq_len = 0, vocab = 0;
  std::span<const std::int32_t> targets;  ///< [rows] sampled token ids
  std::span<const std::uint8_t> mask;     ///< [rows]; empty = every token counts
  std::span<const Real> logp_old;         ///< [rows]; empty = on-policy (ratio 1)
  std::span<const Real> logp_ref;         ///< [rows]; empty = no KL term (then kl_coef must be 0 unless Kl = NoKl)
  std::span<const Real> advantages;       ///< [sequences]
  std::span<const Real> token_weight;     ///< [sequences] aggregation weight of one token of each sequence
  Real temperature = 1, kl_coef = 0, entropy_coef = 0;
};

namespace detail {
template <class Real, class Logit>
void check_grpo_logits_batch(const GrpoLogitsBatch<Logit, Real>& in, bool kl_uses_reference, const char* where) {
  require(in.sequences > 0 && in.seq_len > 0 && in.vocab > 0, where, ": sequences = ", in.sequences,
          ", seq_len = ", in.seq_len, ", vocab = ", in.vocab, ", expected all > 0");
  const index_t rows = in.sequences * in.seq_len;
  auto sized = [&](std::size_t got, index_t want, const char* name, bool optional) {
    require((optional && got == 0) || static_cast<index_t>(got) == want, where, ": ", name, " has ", got,
            " elements, expected ", optional ? "0 or " : "", want);
  };
  sized(in.logits.size(), rows * in.vocab, "logits", false);
  sized(in.targets.size(), rows, "targets", false);
  sized(in.mask.size(), rows, "mask", true);
  sized(in.logp_old.size(), rows, "logp_old", true);
  sized(in.logp_ref.size(), rows, "logp_ref", true);
  sized(in.advantages.size(), in.sequences, "advantages", false);
  sized(in.token_weight.size(), in.sequences, "token_weight", false);
  require(!kl_uses_reference || !in.logp_ref.empty() || in.kl_coef == Real(0), where, ": kl_coef = ", in.kl_coef,
          " but logp_ref is empty, expected kl_coef == 0 without reference log-probs");
  require(std::isfinite(in.kl_coef) && std::isfinite(in.entropy_coef), where, ": kl_coef = ", in.kl_coef,
          ", entropy_coef = ", in.entropy_coef, ", expected finite");
  for (index_t b = 0; b < in.sequences; ++b) {
    const auto k = static_cast<std::size_t>(b);
    require(std::isfinite(in.advantages[k]), where, ": advantages[", b, "] = ", in.advantages[k], ", expected finite");
    require(std::isfinite(in.token_weight[k]) && in.token_weight[k] >= Real(0), where, ": token_weight[", b, "] = ",
            in.token_weight[k], ", expected finite and >= 0");
  }
}
}  // namespace detail

/// Loss, metrics and dL/dlogits (written once for every row, 0 on masked rows; may alias the logits when Grad = Logit).
/// Optional per-token outputs logp_out / entropy_out ([rows] or empty).
template <class Real, class Logit, class Grad, class Policy, class Kl>
  requires policy_loss_of<Policy, Real> && kl_estimator_of<Kl, Real>
GrpoLossTotals grpo_loss_from_logits(const GrpoLogitsBatch<Logit, Real>& in, const Policy& policy, const Kl& kl,
                                     std::span<Grad> dlogits, std::span<Real> logp_out = {},
                                     std::span<Real> entropy_out = {}, int threads = 0) {
  constexpr const char* where = "grpo_loss_from_logits";
  detail::check_grpo_logits_batch(in, static_cast<bool>(Kl::uses_reference), where);
  detail::validate_component(policy, where);
  detail::validate_component(kl, where);
  const index_t rows = in.sequences * in.seq_len, vocab = in.vocab;
  require(static_cast<index_t>(dlogits.size()) == rows * vocab, where, ": dlogits has ", dlogits.size(),
          " elements, expected rows * vocab = ", rows, " * ", vocab);
  require(logp_out.empty() || static_cast<index_t>(logp_out.size()) == rows, where, ": logp_out has ",
          logp_out.size(), " elements, expected 0 or ", rows);
  require(entropy_out.empty() || static_cast<index_t>(entropy_out.size()) == rows, where, ": entropy_out has ",
          entropy_out.size(), " elements, expected 0 or ", rows);
  const Real inv_t = detail::checked_inv_temperature(in.temperature, where);
  constexpr bool with_entropy = true;  // always: entropy_sum is a metric (one extra multiply-add per logit)
  const bool with_kl = static_cast<bool>(Kl::uses_reference) && !in.logp_ref.empty();
  auto active = [&](index_t i) { return in.mask.empty() || in.mask[static_cast<std::size_t>(i)] != 0; };

  // pass 1: softmax statistics of every unmasked row
  std::vector<RowSoftmax<Real>> stats(static_cast<std::size_t>(rows), RowSoftmax<Real>{0, 0, 0});
  detail::parallel_rows(rows, threads, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      if (!active(i)) continue;
      const auto k = static_cast<std::size_t>(i);
      stats[k] = row_softmax<Real>(in.logits.data() + i * vocab, vocab, in.targets[k], inv_t, with_entropy, i, where);
      if (!in.logp_old.empty())
        require(std::isfinite(in.logp_old[k]), where, ": logp_old[", i, "] = ", in.logp_old[k], ", expected finite");
      if (with_kl)
        require(std::isfinite(in.logp_ref[k]), where, ": logp_ref[", i, "] = ", in.logp_ref[k], ", expected finite");
    }
  });
  auto old_of = [&](index_t i) {
    const auto k = static_cast<std::size_t>(i);
    return in.logp_old.empty() ? stats[k].logp : in.logp_old[k];
  };

  // between the passes: the per-sequence statistic of sequence-level losses (masked mean, row order)
  std::vector<Real> seq_stat(static_cast<std::size_t>(in.sequences), Real(0));
  if constexpr (Policy::sequence_level) {
    for (index_t b = 0; b < in.sequences; ++b) {
      Real sum = 0;
      index_t count = 0;
      for (index_t t = 0; t < in.seq_len; ++t) {
        const index_t i = b * in.seq_len + t;
        if (!active(i)) continue;
        sum += policy.template seq_stat_term<Real>(stats[static_cast<std::size_t>(i)].logp, old_of(i),
                                                   in.advantages[static_cast<std::size_t>(b)]);
        ++count;
      }
      seq_stat[static_cast<std::size_t>(b)] = count > 0 ? sum / static_cast<Real>(count) : Real(0);
    }
  }

  // pass 2: per-token terms and dL/dlogits
  struct RowTerms {
    Real policy, kl, ratio;
    std::uint8_t flags;
  };
  std::vector<RowTerms> terms(static_cast<std::size_t>(rows), RowTerms{0, 0, 0, 0});
  detail::parallel_rows(rows, threads, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      const auto k = static_cast<std::size_t>(i);
      Grad* grad_row = dlogits.data() + i * vocab;
      if (!active(i)) {
        for (index_t v = 0; v < vocab; ++v) grad_row[v] = from_real<Grad>(Real(0));
        continue;
      }
      const auto b = static_cast<std::size_t>(i / in.seq_len);
      const Real logp = stats[k].logp, old = old_of(i), w = in.token_weight[b];
      const TokenTerm<Real> p = policy.template token<Real>(logp, old, in.advantages[b], seq_stat[b]);
      Real g = p.grad, kl_value = 0;
      if (with_kl) {
        const TokenTerm<Real> q = kl.template token<Real>(logp, in.logp_ref[k], old);
        g += in.kl_coef * q.grad;
        kl_value = q.value;
      }
      terms[k] = RowTerms{p.value, kl_value, p.ratio, p.flags};
      row_softmax_backward<Real>(in.logits.data() + i * vocab, grad_row, vocab, in.targets[k], inv_t, stats[k].lse,
                                 stats[k].entropy, w * g, -w * in.entropy_coef);
    }
  });

  GrpoLossTotals totals;
  for (index_t i = 0; i < rows; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (!logp_out.empty()) logp_out[k] = stats[k].logp;
    if (!entropy_out.empty()) entropy_out[k] = stats[k].entropy;
    if (!active(i)) continue;
    const double w = static_cast<double>(in.token_weight[static_cast<std::size_t>(i / in.seq_len)]);
    const RowTerms& r = terms[k];
    totals.policy_loss += w * static_cast<double>(r.policy);
    totals.kl += w * static_cast<double>(r.kl);
    totals.loss += w * (static_cast<double>(r.policy) + static_cast<double>(in.kl_coef) * static_cast<double>(r.kl) -
                        static_cast<double>(in.entropy_coef) * static_cast<double>(stats[k].entropy));
    totals.entropy_sum += static_cast<double>(stats[k].entropy);
    totals.ratio_sum += static_cast<double>(r.ratio);
    totals.tokens += 1;
    totals.clipped_low += (r.flags & kClippedLow) ? 1 : 0;
    totals.clipped_high += (r.flags & kClippedHigh) ? 1 : 0;
    totals.dual_clipped += (r.flags & kDualClipped) ? 1 : 0;
  }
  require(std::isfinite(totals.loss), where, ": the loss is ", totals.loss,
          ", expected a finite value (the inputs and the loss parameters were checked; please report this as a corl "
          "bug)");
  return totals;
}

}  // namespace corl

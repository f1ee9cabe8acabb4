// corl/core/batch.hpp — the batch layout the GRPO objective reads, its global normalisers, and its validation.
//
// A batch holds B = P x G sequences (P prompts, G completions each), padded to T tokens, row-major [B, T]:
//   logp          [B,T]  current policy log-prob of each sampled token (required)
//   mask          [B,T]  uint8, 1 = token counts in the loss (required); only positions t < lengths[b] may be 1
//   lengths       [B]    completion length of each sequence, 0 <= lengths[b] <= T (required)
//   group         [B]    group index of each sequence (the prompt it answers; required, >= 0)
//   advantages    [B]    one advantage per sequence (required)
//   token_advantages [B,T] optional per-token advantages; when present they replace `advantages` per token
//   logp_old      [B,T]  optional: log-prob under the policy that produced the batch (absent: logp itself, ratio 1)
//   logp_ref      [B,T]  optional: reference policy log-prob (needed when a KL term is used)
//   logp_sampler  [B,T]  optional: the inference engine's log-prob (for the sampler/trainer importance correction)
//   entropy       [B,T]  optional: per-token policy entropy (entropy bonus, top-entropy token mask)
//   truncated     [B]    optional uint8: 1 = the completion hit the length limit (truncated-completion mask)
// BatchView<Real> is the non-owning view (std::span; an empty span = absent); Batch<Real> owns the arrays (tests,
// examples) and hands out a view.
//
// Normalizers carries the GLOBAL totals of one optimizer step (over all micro-batches and all data-parallel ranks), so
// that the per-sequence aggregation weights (corl/loss/aggregate.hpp) make the sum of the micro-batch losses equal the
// full-batch loss exactly. Counts are additive: count the tokens/sequences of each micro-batch with
// corl::count_normalizers (corl/loss/objective.hpp), add them up (all-reduce across ranks), then evaluate.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"

namespace corl {

/// Non-owning view of one (micro-)batch. Per-token arrays are row-major [batch, max_len].
template <class Real>
struct BatchView {
  index_t batch = 0;    ///< B, number of sequences
  index_t max_len = 0;  ///< T, padded length
  std::span<const Real> logp;
  std::span<const std::uint8_t> mask;
  std::span<const index_t> lengths;
  std::span<const index_t> group;
  std::span<const Real> advantages;
  std::span<const Real> token_advantages;  ///< optional
  std::span<const Real> logp_old;          ///< optional
  std::span<const Real> logp_ref;          ///< optional
  std::span<const Real> logp_sampler;      ///< optional
  std::span<const Real> entropy;           ///< optional
  std::span<const std::uint8_t> truncated; ///< optional

  [[nodiscard]] index_t tokens() const { return batch * max_len; }
  [[nodiscard]] bool has_token_advantages() const { return !token_advantages.empty(); }
  [[nodiscard]] bool has_logp_old() const { return !logp_old.empty(); }
  [[nodiscard]] bool has_logp_ref() const { return !logp_ref.empty(); }
  [[nodiscard]] bool has_logp_sampler() const { return !logp_sampler.empty(); }
  [[nodiscard]] bool has_entropy() const { return !entropy.empty(); }
  [[nodiscard]] bool has_truncated() const { return !truncated.empty(); }
  /// Advantage of token (b, t): the per-token array when present, else the sequence's advantage.
  [[nodiscard]] Real advantage(index_t b, index_t t) const {
    return has_token_advantages() ? token_advantages[static_cast<std::size_t>(b * max_len + t)]
                                  : advantages[static_cast<std::size_t>(b)];
  }
};

/// Owning batch (std::vector storage) for tests and examples. Optional arrays are empty when absent.
template <class Real>
struct Batch {
  index_t batch = 0;
  index_t max_len = 0;
  std::vector<Real> logp, advantages, token_advantages, logp_old, logp_ref, logp_sampler, entropy;
  std::vector<std::uint8_t> mask, truncated;
  std::vector<index_t> lengths, group;

  Batch() = default;
  /// B sequences of T tokens: logp = 0, mask = 0, lengths = 0, group = 0, advantages = 0; optional arrays absent.
  Batch(index_t b, index_t t)
      : batch(b),
        max_len(t),
        logp(static_cast<std::size_t>(b * t), Real(0)),
        advantages(static_cast<std::size_t>(b), Real(0)),
        mask(static_cast<std::size_t>(b * t), 0),
        lengths(static_cast<std::size_t>(b), 0),
        group(static_cast<std::size_t>(b), 0) {
    require(b >= 0 && t >= 0, "corl::Batch: batch = ", b, ", max_len = ", t, ", expected both >= 0");
  }

  /// Sets lengths[b] = n and mask[b, t] = (t < n).
  void set_length(index_t b, index_t n) {
    lengths[static_cast<std::size_t>(b)] = n;
    for (index_t t = 0; t < max_len; ++t) mask[static_cast<std::size_t>(b * max_len + t)] = t < n ? 1 : 0;
  }
  Real& at(std::vector<Real>& a, index_t b, index_t t) { return a[static_cast<std::size_t>(b * max_len + t)]; }

  [[nodiscard]] BatchView<Real> view() const {
    BatchView<Real> v;
    v.batch = batch;
    v.max_len = max_len;
    v.logp = logp;
    v.mask = mask;
    v.lengths = lengths;
    v.group = group;
    v.advantages = advantages;
    v.token_advantages = token_advantages;
    v.logp_old = logp_old;
    v.logp_ref = logp_ref;
    v.logp_sampler = logp_sampler;
    v.entropy = entropy;
    v.truncated = truncated;
    return v;
  }

  /// Rows [first, first + count) as a new owning batch (micro-batch splitting in tests).
  [[nodiscard]] Batch rows(index_t first, index_t count) const {
    require(first >= 0 && count >= 0 && first + count <= batch, "corl::Batch::rows: rows [", first, ", ",
            first + count, ") out of [0, ", batch, ")");
    Batch out;
    out.batch = count;
    out.max_len = max_len;
    const auto tok = [&](const std::vector<Real>& a, std::vector<Real>& o) {
      if (!a.empty()) o.assign(a.begin() + first * max_len, a.begin() + (first + count) * max_len);
    };
    tok(logp, out.logp);
    tok(token_advantages, out.token_advantages);
    tok(logp_old, out.logp_old);
    tok(logp_ref, out.logp_ref);
    tok(logp_sampler, out.logp_sampler);
    tok(entropy, out.entropy);
    out.mask.assign(mask.begin() + first * max_len, mask.begin() + (first + count) * max_len);
    out.advantages.assign(advantages.begin() + first, advantages.begin() + first + count);
    out.lengths.assign(lengths.begin() + first, lengths.begin() + first + count);
    out.group.assign(group.begin() + first, group.begin() + first + count);
    if (!truncated.empty()) out.truncated.assign(truncated.begin() + first, truncated.begin() + first + count);
    return out;
  }
};

/// Global totals of one optimizer step (all micro-batches, all ranks). See corl/loss/aggregate.hpp for their use.
struct Normalizers {
  double total_tokens = 0;     ///< loss tokens (after every token mask) over all micro-batches and ranks
  double total_sequences = 0;  ///< sequences with at least one loss token, over all micro-batches and ranks
  index_t world_size = 1;      ///< number of data-parallel ranks
  index_t grad_accum_steps = 1;  ///< micro-batches per rank per optimizer step
  double constant_divisor = 0;   ///< seq-mean-token-sum-norm divisor (Dr.GRPO: the max completion length); 0 = unset
  /// Set when the training framework AVERAGES gradients over ranks (PyTorch DDP, most all-reduce setups): the local
  /// loss is then multiplied by world_size so that the average of the rank gradients is the full-batch gradient.
  bool ranks_average_gradients = false;
  /// Set when the framework divides each micro-batch loss by grad_accum_steps itself (HF Trainer): the local loss is
  /// then multiplied by grad_accum_steps to undo it.
  bool framework_divides_by_accum_steps = false;

  /// The factor applied to every micro-batch loss and gradient (1 for frameworks that sum).
  [[nodiscard]] double framework_scale() const {
    return (ranks_average_gradients ? static_cast<double>(world_size) : 1.0) *
           (framework_divides_by_accum_steps ? static_cast<double>(grad_accum_steps) : 1.0);
  }
  /// Adds the counts of another micro-batch / rank (the configuration fields are kept).
  Normalizers& operator+=(const Normalizers& o) {
    total_tokens += o.total_tokens;
    total_sequences += o.total_sequences;
    return *this;
  }
};

namespace detail {
template <class Span>
void require_size(const Span& s, index_t expected, std::string_view where, std::string_view name,
                  std::string_view shape) {
  require(static_cast<index_t>(s.size()) == expected, where, ": ", name, " has ", s.size(), " elements, expected ",
          expected, " (", shape, ")");
}
template <class Real>
void require_finite(std::span<const Real> a, index_t max_len, std::string_view where, std::string_view name) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) {
      if (max_len > 0)
        fail(where, ": ", name, "[", static_cast<index_t>(i) / max_len, ", ", static_cast<index_t>(i) % max_len,
             "] = ", a[i], ", expected a finite value");
      fail(where, ": ", name, "[", i, "] = ", a[i], ", expected a finite value");
    }
  }
}
}  // namespace detail

/// Checks shapes, ranges and finiteness; throws corl::Error naming `where`, the array, the index and the condition.
/// Only masked-in tokens of logp / logp_old / logp_ref / logp_sampler / entropy / token_advantages must be finite
/// (padding may hold anything, e.g. -inf from a masked softmax).
template <class Real>
void validate(const BatchView<Real>& v, std::string_view where) {
  require(v.batch >= 0 && v.max_len >= 0, where, ": batch = ", v.batch, ", max_len = ", v.max_len,
          ", expected both >= 0");
  const index_t bt = v.batch * v.max_len;
  const char* tok_shape = "[batch, max_len]";
  detail::require_size(v.logp, bt, where, "logp", tok_shape);
  detail::require_size(v.mask, bt, where, "mask", tok_shape);
  detail::require_size(v.lengths, v.batch, where, "lengths", "[batch]");
  detail::require_size(v.group, v.batch, where, "group", "[batch]");
  detail::require_size(v.advantages, v.batch, where, "advantages", "[batch]");
  if (v.has_token_advantages()) detail::require_size(v.token_advantages, bt, where, "token_advantages", tok_shape);
  if (v.has_logp_old()) detail::require_size(v.logp_old, bt, where, "logp_old", tok_shape);
  if (v.has_logp_ref()) detail::require_size(v.logp_ref, bt, where, "logp_ref", tok_shape);
  if (v.has_logp_sampler()) detail::require_size(v.logp_sampler, bt, where, "logp_sampler", tok_shape);
  if (v.has_entropy()) detail::require_size(v.entropy, bt, where, "entropy", tok_shape);
  if (v.has_truncated()) detail::require_size(v.truncated, v.batch, where, "truncated", "[batch]");
  detail::require_finite(v.advantages, 0, where, "advantages");

  for (index_t b = 0; b < v.batch; ++b) {
    const auto bi = static_cast<std::size_t>(b);
    const index_t len = v.lengths[bi];
    require(len >= 0 && len <= v.max_len, where, ": lengths[", b, "] = ", len, ", expected 0 <= length <= max_len = ",
            v.max_len);
    require(v.group[bi] >= 0, where, ": group[", b, "] = ", v.group[bi], ", expected a group index >= 0");
    if (v.has_truncated())
      require(v.truncated[bi] <= 1, where, ": truncated[", b, "] = ", int(v.truncated[bi]), ", expected 0 or 1");
    for (index_t t = 0; t < v.max_len; ++t) {
      const auto i = static_cast<std::size_t>(b * v.max_len + t);
      const std::uint8_t m = v.mask[i];
      require(m <= 1, where, ": mask[", b, ", ", t, "] = ", int(m), ", expected 0 or 1");
      if (m == 0) continue;
      require(t < len, where, ": mask[", b, ", ", t, "] = 1 beyond lengths[", b, "] = ", len,
              ", expected mask = 0 at t >= length");
      const auto check = [&](std::span<const Real> a, const char* name) {
        if (!a.empty() && !std::isfinite(a[i]))
          fail(where, ": ", name, "[", b, ", ", t, "] = ", a[i], ", expected a finite value at a masked-in token");
      };
      check(v.logp, "logp");
      check(v.logp_old, "logp_old");
      check(v.logp_ref, "logp_ref");
      check(v.logp_sampler, "logp_sampler");
      check(v.entropy, "entropy");
      check(v.token_advantages, "token_advantages");
    }
  }
}

/// Checks the normalisers against the aggregation needs: totals > 0 when any loss token exists, sizes >= 1.
inline void validate(const Normalizers& n, std::string_view where) {
  require(std::isfinite(n.total_tokens) && n.total_tokens >= 0, where, ": Normalizers.total_tokens = ",
          n.total_tokens, ", expected a finite count >= 0");
  require(std::isfinite(n.total_sequences) && n.total_sequences >= 0, where, ": Normalizers.total_sequences = ",
          n.total_sequences, ", expected a finite count >= 0");
  require(n.world_size >= 1, where, ": Normalizers.world_size = ", n.world_size, ", expected >= 1");
  require(n.grad_accum_steps >= 1, where, ": Normalizers.grad_accum_steps = ", n.grad_accum_steps, ", expected >= 1");
  require(std::isfinite(n.constant_divisor) && n.constant_divisor >= 0, where, ": Normalizers.constant_divisor = ",
          n.constant_divisor, ", expected a finite value >= 0");
}

}  // namespace corl

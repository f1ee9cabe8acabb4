// corl/logprob/from_logits.hpp — per-token log-probabilities (and entropy) from logits, and their backward, on the CPU.
//
// For row i of logits x[i, 0..V) and target id y_i, with z = x / temperature (computed as x * (1 / temperature)):
//   lse_i     = log sum_v exp(z_v)                       (online log-sum-exp: one pass, running max m and sum s)
//   logp_i    = z_{y_i} - lse_i
//   entropy_i = -sum_v p_v log p_v = log s - u / s,      u = sum_v exp(z_v - m) (z_v - m)  (kept relative to m)
// Backward, from g_i = dL/dlogp_i and h_i = dL/dentropy_i:
//   dL/dz_v = g_i ([v == y_i] - p_v) - h_i p_v (log p_v + entropy_i),   dL/dx_v = dL/dz_v / temperature
// The math runs in Real (float for float / bf16 / fp16 logits, double for double), and may write dL/dlogits in place
// over the logits. Rows are split over std::threads; each row's arithmetic is independent of the thread count, so the
// results are bitwise identical for any `threads`. This is the reference the CUDA kernels (corl/cuda/logprobs.cuh,
// corl/cuda/grpo_loss.cuh) are tested against. Sources: TRL `selective_log_softmax`, verl `logprobs_from_logits` and
// `entropy_from_logits`; temperature as TRL `temperature` / verl `rollout.temperature`.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "corl/core/error.hpp"
#include "corl/core/half_types.hpp"
#include "corl/core/hd.hpp"
#include "corl/logprob/detail/parallel_rows.hpp"

namespace corl {

/// Softmax statistics of one row: log-sum-exp of z = x / T, log-prob of the target, entropy (0 unless asked for).
template <class Real>
struct RowSoftmax {
  Real lse;
  Real logp;
  Real entropy;
};

/// One-pass statistics of one row of `vocab` logits. Throws corl::Error naming `where` and `row` on a target out of
/// range or a non-finite logit.
template <class Real, class Logit>
RowSoftmax<Real> row_softmax(const Logit* row_logits, index_t vocab, std::int32_t target, Real inv_temperature,
                             bool with_entropy, index_t row, const char* where) {
  require(target >= 0 && target < vocab, where, ": targets[", row, "] = ", target, ", expected in [0, vocab = ", vocab,
          ")");
  using std::exp;
  using std::isfinite;
  using std::log;
  Real m = 0, s = 0, u = 0;
  for (index_t v = 0; v < vocab; ++v) {
    const Real x = to_real<Real>(row_logits[v]);
    const Real z = x * inv_temperature;
    if (!isfinite(z))
      fail(where, ": logits[row ", row, ", column ", v, "] = ", x,
           isfinite(x) ? " overflows when divided by the temperature" : "", ", expected a finite value");
    if (v == 0) {
      m = z;
      s = Real(1);
    } else if (z > m) {
      const Real scale = exp(m - z);
      if (with_entropy) u = scale * (u - (z - m) * s);
      s = s * scale + Real(1);
      m = z;
    } else {
      const Real e = exp(z - m);
      s += e;
      if (with_entropy) u += e * (z - m);
    }
  }
  RowSoftmax<Real> out{};
  out.lse = m + log(s);
  // (z_y - m) is exact for nearby values (Sterbenz), so this keeps full relative accuracy even when |z| is large
  out.logp = (to_real<Real>(row_logits[target]) * inv_temperature - m) - log(s);
  out.entropy = with_entropy ? log(s) - u / s : Real(0);
  return out;
}

/// Writes dL/dlogits for one row from g = dL/dlogp and h = dL/dentropy (h = 0 when entropy is not used).
/// `row_grad` may alias `row_logits` (each element is read before it is written).
template <class Real, class Logit, class Grad>
void row_softmax_backward(const Logit* row_logits, Grad* row_grad, index_t vocab, std::int32_t target,
                          Real inv_temperature, Real lse, Real entropy, Real g, Real h) {
  using std::exp;
  for (index_t v = 0; v < vocab; ++v) {
    const Real z = to_real<Real>(row_logits[v]) * inv_temperature;
    const Real logp_v = z - lse;
    const Real p = exp(logp_v);
    Real dz = -g * p;
    if (v == target) dz += g;
    if (h != Real(0)) dz -= h * p * (logp_v + entropy);
    row_grad[v] = from_real<Grad>(dz * inv_temperature);
  }
}

namespace detail {
template <class Real>
Real checked_inv_temperature(Real temperature, const char* where) {
  require(std::isfinite(temperature) && temperature > Real(0), where, ": temperature = ", temperature,
          ", expected a finite value > 0");
  const Real inv = Real(1) / temperature;
  require(std::isfinite(inv), where, ": temperature = ", temperature, ", expected one whose inverse is finite");
  return inv;
}
}  // namespace detail

/// Forward: log-prob of each row's target under softmax(logits / temperature); optional entropy and lse outputs
/// (pass empty spans to skip them). logits is [rows, vocab] row-major with rows = targets.size().
template <class Real, class Logit>
void logprobs_from_logits(std::span<const Logit> logits, index_t vocab, std::span<const std::int32_t> targets,
                          Real temperature, std::span<Real> logp, std::span<Real> entropy = {},
                          std::span<Real> lse = {}, int threads = 0) {
  constexpr const char* where = "logprobs_from_logits";
  const index_t rows = static_cast<index_t>(targets.size());
  require(vocab > 0, where, ": vocab = ", vocab, ", expected > 0");
  require(static_cast<index_t>(logits.size()) == rows * vocab, where, ": logits has ", logits.size(),
          " elements, expected rows * vocab = ", rows, " * ", vocab);
  require(static_cast<index_t>(logp.size()) == rows, where, ": logp has ", logp.size(), " elements, expected rows = ",
          rows);
  require(entropy.empty() || static_cast<index_t>(entropy.size()) == rows, where, ": entropy has ", entropy.size(),
          " elements, expected 0 or rows = ", rows);
  require(lse.empty() || static_cast<index_t>(lse.size()) == rows, where, ": lse has ", lse.size(),
          " elements, expected 0 or rows = ", rows);
  const Real inv_t = detail::checked_inv_temperature(temperature, where);
  const bool with_entropy = !entropy.empty();
  detail::parallel_rows(rows, threads, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      const auto st = row_softmax<Real>(logits.data() + i * vocab, vocab, targets[static_cast<std::size_t>(i)], inv_t,
                                        with_entropy, i, where);
      logp[static_cast<std::size_t>(i)] = st.logp;
      if (with_entropy) entropy[static_cast<std::size_t>(i)] = st.entropy;
      if (!lse.empty()) lse[static_cast<std::size_t>(i)] = st.lse;
    }
  });
}

/// Backward: dL/dlogits from dL/dlogp (and dL/dentropy, optional: pass empty spans for dentropy and entropy).
/// lse and entropy are the forward's outputs. dlogits may be the logits' own storage (in place, Grad = Logit).
template <class Real, class Logit, class Grad>
void logprobs_backward_from_logits(std::span<const Logit> logits, index_t vocab, std::span<const std::int32_t> targets,
                                   Real temperature, std::span<const Real> lse, std::span<const Real> dlogp,
                                   std::span<Grad> dlogits, std::span<const Real> entropy = {},
                                   std::span<const Real> dentropy = {}, int threads = 0) {
  constexpr const char* where = "logprobs_backward_from_logits";
  const index_t rows = static_cast<index_t>(targets.size());
  require(vocab > 0, where, ": vocab = ", vocab, ", expected > 0");
  require(static_cast<index_t>(logits.size()) == rows * vocab, where, ": logits has ", logits.size(),
          " elements, expected rows * vocab = ", rows, " * ", vocab);
  require(static_cast<index_t>(dlogits.size()) == rows * vocab, where, ": dlogits has ", dlogits.size(),
          " elements, expected rows * vocab = ", rows, " * ", vocab);
  require(static_cast<index_t>(lse.size()) == rows, where, ": lse has ", lse.size(), " elements, expected ", rows);
  require(static_cast<index_t>(dlogp.size()) == rows, where, ": dlogp has ", dlogp.size(), " elements, expected ",
          rows);
  require(dentropy.empty() || static_cast<index_t>(dentropy.size()) == rows, where, ": dentropy has ",
          dentropy.size(), " elements, expected 0 or ", rows);
  require(dentropy.empty() || static_cast<index_t>(entropy.size()) == rows, where, ": entropy has ", entropy.size(),
          " elements, expected ", rows, " (needed with dentropy)");
  const Real inv_t = detail::checked_inv_temperature(temperature, where);
  detail::parallel_rows(rows, threads, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const std::int32_t y = targets[k];
      require(y >= 0 && y < vocab, where, ": targets[", i, "] = ", y, ", expected in [0, vocab = ", vocab, ")");
      require(std::isfinite(dlogp[k]) && std::isfinite(lse[k]), where, ": row ", i, ": dlogp = ", dlogp[k],
              ", lse = ", lse[k], ", expected finite");
      const Real h = dentropy.empty() ? Real(0) : dentropy[k];
      require(std::isfinite(h) && (h == Real(0) || std::isfinite(entropy[k])), where, ": row ", i, ": dentropy = ", h,
              ", entropy = ", h == Real(0) ? Real(0) : entropy[k], ", expected finite");
      const Logit* row_logits = logits.data() + i * vocab;
      for (index_t v = 0; v < vocab; ++v) {
        const Real z = to_real<Real>(row_logits[v]) * inv_t;
        if (!std::isfinite(z))
          fail(where, ": logits[row ", i, ", column ", v, "] = ", to_real<Real>(row_logits[v]),
               ", expected a finite value (also after division by the temperature)");
      }
      row_softmax_backward<Real>(logits.data() + i * vocab, dlogits.data() + i * vocab, vocab, y, inv_t, lse[k],
                                 h != Real(0) ? entropy[k] : Real(0), dlogp[k], h);
    }
  });
}

}  // namespace corl

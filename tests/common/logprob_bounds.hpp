// Worst-case error bounds of the CUDA kernels' fp32 softmax-row statistics (lse / logp / entropy), for comparing them
// against the double CPU reference: used by tests/gpu/logprobs.cu and tests/gpu/grpo_loss.cu, and restated on the CPU
// by tests/unit/logprob_precision.cpp. Host code only; compiles as C++ and as CUDA.
//
// One thread folds n = ceil(V / (N threads)) N terms (N logits per 16-byte vector, one rescale per vector), then
// log2(threads) merge levels; each add, ex2 (2 ulp) or rescale costs a few u (u = 2^-24) of relative error in s and in
// u = sum 2^d d, so
//   gamma = (n + 3 n / N + 4 log2(threads) + 4) u                    relative error of s (and of u: 2 gamma + 2 u)
//   |d lse|     <= gamma + 8 u (|m| + |lse| + 1)                       (scale log2(e) / T rounded, m + log2 s, x ln 2)
//   |d logp|    <= |d lse| + 8 u (|z_t| + |m| + |logp|)
//   |d entropy| <= gamma (1 + 2 |ln s - H|) + 8 u (|H| + |ln s - H| + E_p[(z - m)^2] + 1)   (H = ln s - u / s)
// with m = max z, ln s = lse - m, taken from an exact (long double, two-pass) evaluation of the row (exact_row).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <corl/core/half_types.hpp>
#include <corl/core/hd.hpp>

namespace corl_test {

inline constexpr double kUnitRoundoff = 1.0 / (1 << 24);  // u of fp32

/// Exact (long double, two-pass) statistics of one row of z = x / T, used for the bounds and to vouch for the double
/// reference.
struct RowExact {
  double m, z_t, lse, logp, entropy, mean_sq_gap;
};

template <class Host>
RowExact exact_row(const Host* row, corl::index_t vocab, std::int32_t target, double temperature) {
  const long double inv_t = 1.0L / static_cast<long double>(temperature);
  long double m = -INFINITY;
  for (corl::index_t v = 0; v < vocab; ++v) m = std::max(m, corl::to_real<long double>(row[v]) * inv_t);
  long double s = 0, u = 0, q = 0;
  for (corl::index_t v = 0; v < vocab; ++v) {
    const long double d = corl::to_real<long double>(row[v]) * inv_t - m;
    const long double e = std::exp(d);
    s += e;
    u += e * d;
    q += e * d * d;
  }
  const long double z_t = corl::to_real<long double>(row[target]) * inv_t;
  return RowExact{static_cast<double>(m), static_cast<double>(z_t), static_cast<double>(m + std::log(s)),
                  static_cast<double>(z_t - m - std::log(s)), static_cast<double>(std::log(s) - u / s),
                  static_cast<double>(q / s)};
}

/// Worst-case error bounds of the kernel's fp32 lse / logp / entropy for one row.
struct RowErrorBound {
  double lse = 0, logp = 0, entropy = 0;
};

/// The bounds of one row of `vocab` logits reduced by `threads` threads reading `per_vector` logits per vector.
inline RowErrorBound row_error_bound(corl::index_t vocab, int threads, int per_vector, const RowExact& r,
                                     int parts = 1) {
  const double u = kUnitRoundoff;
  // a row split over `parts` blocks: each folds a chunk of ceil(vectors / parts) vectors, and the parts' states are
  // merged one after the other (parts - 1 more merges)
  const double chunk = std::ceil(static_cast<double>((vocab + per_vector - 1) / per_vector) / parts);
  const double n_vec = std::ceil(chunk / threads);
  const double n = n_vec * per_vector;
  const double gamma = (n + 3 * n_vec + 4 * (std::log2(static_cast<double>(threads)) + (parts - 1)) + 4) * u;
  const double ln_s = r.lse - r.m;
  RowErrorBound b{};
  b.lse = gamma + 8 * u * (std::abs(r.m) + std::abs(r.lse) + 1);
  b.logp = b.lse + 8 * u * (std::abs(r.z_t) + std::abs(r.m) + std::abs(r.logp));
  b.entropy = gamma * (1 + 2 * std::abs(ln_s - r.entropy)) +
              8 * u * (std::abs(r.entropy) + std::abs(ln_s - r.entropy) + r.mean_sq_gap + 1);
  return b;
}

}  // namespace corl_test

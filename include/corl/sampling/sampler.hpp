// corl/sampling/sampler.hpp — CPU reference sampler for one row (or a batch of independent rows) of logits, with
// classifier-free guidance, temperature, top-k, top-p and min-p, returning the token and its exact log-probability.
//
//   z_i   = (u_i + w (c_i - u_i)) / T            (CFG, then temperature; without an unconditional row z_i = c_i / T)
//   keep  = { i : z_i >= t },  t = max(t_k, t_p, t_min)     (no sort: thresholds are values of z found by selection)
//           t_k   = k-th largest z                               (top-k; ties at the threshold are all kept)
//           t_p   = largest v with  sum_{z_i >= v, i in top-k} p_i >= top_p * sum_{i in top-k} p_i   (top-p on the
//                   top-k distribution, the HF / vLLM order; ties kept)
//           t_min = max z + log(min_p)                           (min-p: p_i >= min_p * p_max)
//   token ~ exp(z_i) / sum_{keep} exp(z_k)         (the group race: Gumbel-max over the masses of groups of 32
//                                                   tokens, then a draw inside the winning group; exact; see
//                                                   sampling_math.hpp)
//   logp  = z_token - log(sum_{i in keep} exp(z_i))  the log-prob under the distribution actually drawn from.
// Greedy (T = 0): the first index of the largest guided logit, logp = 0 (a point mass). top_k = 1 is greedy with
// logp = 0 unless several tokens tie for the maximum. Randomness: counter (seed, offset, row, group's call) ->
// Philox4x32-10, the same on the GPU (corl/cuda/sampling.cuh), so both pick the same token for the same key.
// Callers use a new `offset` for every decoding step and the row index within the batch as `row`.
// sampling_logprob recomputes logp for a given token (e.g. image tokens that were sampled under CFG): -inf when the
// token lies outside the kept set. Bad input (NaN or +inf logits, no finite logit, bad parameters) -> corl::Error
// naming the function, the row and the index.
// Sources: HF transformers / vLLM sampling options temperature, top_k, top_p, min_p; Janus-Pro cfg_weight (5 for images).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <span>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/core/half_types.hpp"
#include "corl/core/hd.hpp"
#include "corl/sampling/sampling_math.hpp"

namespace corl::sampling {

/// What the sampler draws from. Defaults = plain sampling at temperature 1, no truncation, no guidance.
struct SamplingParams {
  double temperature = 1.0;  ///< 0 = greedy (argmax); otherwise > 0
  index_t top_k = 0;         ///< 0 = off; keep the k largest (ties at the k-th value kept)
  double top_p = 1.0;        ///< 1 = off; in (0, 1]
  double min_p = 0.0;        ///< 0 = off; in [0, 1]
  double cfg_weight = 1.0;   ///< guidance weight w, used only when an unconditional row is given
};

/// The random key of a sampling call: the same (seed, offset) and row give the same draw on CPU and GPU.
struct RngKey {
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;  ///< advance per decoding step
};

template <class Real>
struct Sample {
  index_t token;
  Real logp;
};

/// A batch of rows of logits in memory: row r is data[r * row_stride, r * row_stride + vocab).
template <class In>
struct LogitRows {
  const In* data = nullptr;
  index_t rows = 0;
  index_t vocab = 0;
  index_t row_stride = 0;
  std::span<const In> row(index_t r) const {
    return {data + r * row_stride, static_cast<std::size_t>(vocab)};
  }
};

/// The largest temperature accepted: 1 / T stays a positive normal float (it would round to 0 in float above ~1.4e45),
/// so that the GPU kernel's -inf * (1 / T) is -inf without a test.
inline constexpr double kMaxTemperature = 1e30;

/// Throws corl::Error naming `where` and the field unless the parameters are in range.
inline void validate_params(const SamplingParams& p, const char* where) {
  require(std::isfinite(p.temperature) && p.temperature >= 0.0 && p.temperature <= kMaxTemperature, where,
          ": params.temperature = ", p.temperature, ", expected in [0, 1e30] (0 = greedy)");
  require(p.top_k >= 0, where, ": params.top_k = ", p.top_k, ", expected >= 0 (0 = off)");
  require(p.top_p > 0.0 && p.top_p <= 1.0, where, ": params.top_p = ", p.top_p, ", expected in (0, 1] (1 = off)");
  require(p.min_p >= 0.0 && p.min_p <= 1.0, where, ": params.min_p = ", p.min_p, ", expected in [0, 1] (0 = off)");
  require(std::isfinite(p.cfg_weight), where, ": params.cfg_weight = ", p.cfg_weight, ", expected finite");
}

namespace detail {

/// The truncated distribution of one row: scores z, their max, the threshold and the kept mass sum exp(z - max).
template <class Real>
struct RowDistribution {
  std::vector<Real> z;
  Real max = 0;
  Real threshold = -std::numeric_limits<Real>::infinity();
  Real kept_mass = 0;  ///< sum over kept i of exp(z_i - max)
  index_t argmax = 0;
};

/// Largest value v among `values` with sum_{values >= v} exp(value - max) >= target (weighted quickselect; no sort).
template <class Real>
Real top_mass_threshold(std::vector<Real> values, Real max, Real target) {
  using std::exp;
  auto begin = values.begin(), end = values.end();
  Real above = 0;  // mass of the values known to be larger than every value in [begin, end)
  while (end - begin > 1) {
    const auto mid = begin + (end - begin) / 2;
    std::nth_element(begin, mid, end, std::greater<Real>());
    Real upper = 0;
    for (auto it = begin; it != mid; ++it) upper += exp(*it - max);
    if (above + upper >= target) {
      end = mid;
      continue;
    }
    const Real with_mid = upper + exp(*mid - max);
    if (above + with_mid >= target) return *mid;
    above += with_mid;
    begin = mid + 1;
  }
  // Only reachable when rounding left the total just below the target: keep everything left.
  return begin == end ? *std::min_element(values.begin(), values.end()) : *begin;
}

/// Guided, tempered scores of one row and the truncation threshold. Greedy rows get threshold = max (the point mass).
template <class Real, class In>
RowDistribution<Real> row_distribution(std::span<const In> cond, std::span<const In> uncond, const SamplingParams& p,
                                       index_t row, const char* where) {
  const index_t vocab = static_cast<index_t>(cond.size());
  require(vocab >= 1, where, ": row ", row, " has an empty vocabulary, expected at least one logit");
  require(uncond.empty() || uncond.size() == cond.size(), where, ": row ", row, ": uncond has ", uncond.size(),
          " logits, expected 0 (no guidance) or ", cond.size(), " (the size of cond)");
  const bool guided = !uncond.empty();
  const bool greedy = p.temperature == 0.0;
  const Real weight = static_cast<Real>(p.cfg_weight);
  const Real inv_temperature = greedy ? Real(1) : static_cast<Real>(1.0 / p.temperature);
  constexpr Real neg_inf = -std::numeric_limits<Real>::infinity();

  RowDistribution<Real> d;
  d.z.resize(static_cast<std::size_t>(vocab));
  d.max = neg_inf;
  for (index_t i = 0; i < vocab; ++i) {
    const Real c = to_real<Real>(cond[static_cast<std::size_t>(i)]);
    require(!std::isnan(c) && c != std::numeric_limits<Real>::infinity(), where, ": row ", row, ": cond[", i,
            "] = ", c, ", expected a finite logit or -inf");
    Real mixed = c;
    if (guided) {
      const Real u = to_real<Real>(uncond[static_cast<std::size_t>(i)]);
      require(!std::isnan(u) && u != std::numeric_limits<Real>::infinity(), where, ": row ", row, ": uncond[", i,
              "] = ", u, ", expected a finite logit or -inf");
      mixed = cfg_mix(c, u, weight);
    }
    const Real z = mixed == neg_inf ? neg_inf : mul_rn(mixed, inv_temperature);
    require(!std::isnan(z) && z != std::numeric_limits<Real>::infinity(), where, ": row ", row, ": guided logit ",
            i, " = ", z, " overflows, expected finite or -inf (cfg_weight / temperature too large)");
    d.z[static_cast<std::size_t>(i)] = z;
    if (z > d.max) {
      d.max = z;
      d.argmax = i;
    }
  }
  require(d.max != neg_inf, where, ": row ", row, " has no finite logit (all ", vocab, " are -inf), expected at least one");

  using std::exp;
  if (greedy) {
    d.threshold = d.max;
    d.kept_mass = 1;
    return d;
  }
  if (p.top_k > 0 && p.top_k < vocab) {
    std::vector<Real> copy = d.z;
    const auto kth = copy.begin() + (p.top_k - 1);
    std::nth_element(copy.begin(), kth, copy.end(), std::greater<Real>());
    d.threshold = *kth;
  }
  if (p.top_p < 1.0) {
    std::vector<Real> candidates;
    Real candidate_mass = 0;
    for (const Real z : d.z) {
      if (z >= d.threshold && z != neg_inf) {
        candidates.push_back(z);
        candidate_mass += exp(z - d.max);
      }
    }
    const Real target = static_cast<Real>(p.top_p) * candidate_mass;
    d.threshold = std::max(d.threshold, top_mass_threshold(std::move(candidates), d.max, target));
  }
  if (p.min_p > 0.0) {
    const Real log_min_p = static_cast<Real>(std::log(p.min_p));
    d.threshold = std::max(d.threshold, add_rn(d.max, log_min_p));
  }
  d.kept_mass = 0;
  for (const Real z : d.z) {
    if (z >= d.threshold && z != neg_inf) d.kept_mass += exp(z - d.max);
  }
  return d;
}

/// The 32 scores of group `group` of a row of scores z (entry e is token group_entry_token(group, e)), -inf beyond
/// the row and below `threshold`; returns whether any entry is left.
template <class Real>
bool group_scores(std::span<const Real> z, std::uint64_t group, Real threshold, Real (&out)[kRaceGroupSize]) {
  constexpr Real neg_inf = -std::numeric_limits<Real>::infinity();
  bool any = false;
  for (int e = 0; e < kRaceGroupSize; ++e) {
    const std::uint64_t i = group_entry_token(group, e);
    const Real v = i < z.size() ? z[static_cast<std::size_t>(i)] : neg_inf;
    out[e] = (v < threshold) ? neg_inf : v;
    any = any || out[e] != neg_inf;
  }
  return any;
}

template <class Real>
Real logp_of(const RowDistribution<Real>& d, index_t token, bool greedy) {
  const Real z = d.z[static_cast<std::size_t>(token)];
  if (greedy) return token == d.argmax ? Real(0) : -std::numeric_limits<Real>::infinity();
  if (z < d.threshold || z == -std::numeric_limits<Real>::infinity()) return -std::numeric_limits<Real>::infinity();
  using std::log;
  return (z - d.max) - log(d.kept_mass);
}

}  // namespace detail

namespace detail {
template <class Real, class In>
Sample<Real> sample_row_in(std::span<const In> cond, std::span<const In> uncond, const SamplingParams& params,
                           RngKey key, std::uint32_t row, const char* where) {
  static_assert(std::is_floating_point_v<Real>, "corl::sampling: Real must be float or double");
  const auto d = detail::row_distribution<Real>(cond, uncond, params, row, where);
  const bool greedy = params.temperature == 0.0;
  if (greedy) return {d.argmax, Real(0)};
  constexpr Real neg_inf = -std::numeric_limits<Real>::infinity();
  const index_t vocab = static_cast<index_t>(d.z.size());
  require(vocab / 4 < (index_t{1} << 31), where, ": row ", row, " has ", vocab,
          " logits, expected fewer than 2^33 (the group race's counter range)");
  // The group race over the kept tokens: the group with the largest key, then the draw inside it.
  const auto quads = static_cast<std::uint64_t>((vocab + 3) / 4);
  std::int64_t best_group = -1;
  Real best_key = neg_inf;
  Real best_z[kRaceGroupSize];
  const std::uint64_t groups = race_groups(quads);
  for (std::uint64_t group = 0; group < groups; ++group) {
    Real zg[kRaceGroupSize];
    if (!detail::group_scores(std::span<const Real>(d.z), group, d.threshold, zg)) continue;
    const Real x = word_to_race_uniform<Real>(race_word(key.seed, key.offset, row, group));
    const Real k = group_race_key(zg, race_exponential(x));
    if (best_group < 0 || k > best_key) {
      best_group = static_cast<std::int64_t>(group);
      best_key = k;
      std::copy(std::begin(zg), std::end(zg), std::begin(best_z));
    }
  }
  const auto g = static_cast<std::uint64_t>(best_group);
  Philox4x32 words[kRaceGroupQuads];
  for (int j = 0; j < kRaceGroupQuads; ++j) words[j] = pick_words(key.seed, key.offset, row, group_quad(g, j));
  const auto best = static_cast<index_t>(group_entry_token(g, pick_in_group(best_z, words)));
  return {best, detail::logp_of(d, best, false)};
}
}  // namespace detail

/// Draws one token from one row. `uncond` empty = no guidance. `row` is the RNG stream (the row index in the batch).
template <class Real, class In>
Sample<Real> sample_row(std::span<const In> cond, std::span<const In> uncond, const SamplingParams& params, RngKey key,
                        std::uint32_t row) {
  validate_params(params, "corl::sampling::sample_row");
  return detail::sample_row_in<Real, In>(cond, uncond, params, key, row, "corl::sampling::sample_row");
}

/// Convenience overload without guidance.
template <class Real, class In>
Sample<Real> sample_row(std::span<const In> logits, const SamplingParams& params, RngKey key, std::uint32_t row) {
  return sample_row<Real, In>(logits, std::span<const In>{}, params, key, row);
}

/// log-prob of `token` under the distribution sample_row draws from for this row (after CFG, temperature, truncation):
/// -inf when truncation removed the token; greedy: 0 for the argmax, -inf otherwise.
template <class Real, class In>
Real sampling_logprob(std::span<const In> cond, std::span<const In> uncond, index_t token,
                      const SamplingParams& params) {
  validate_params(params, "corl::sampling::sampling_logprob");
  require(token >= 0 && token < static_cast<index_t>(cond.size()), "corl::sampling::sampling_logprob: token = ", token,
          ", expected in [0, ", cond.size(), ")");
  const auto d = detail::row_distribution<Real>(cond, uncond, params, 0, "corl::sampling::sampling_logprob");
  return detail::logp_of(d, token, params.temperature == 0.0);
}

/// Convenience overload without guidance.
template <class Real, class In>
Real sampling_logprob(std::span<const In> logits, index_t token, const SamplingParams& params) {
  return sampling_logprob<Real, In>(logits, std::span<const In>{}, token, params);
}

namespace detail {
template <class In>
void check_rows(const LogitRows<In>& rows, const char* where, const char* name) {
  require(rows.rows >= 0 && rows.vocab >= 1, where, ": ", name, " has ", rows.rows, " rows of ", rows.vocab,
          " logits, expected rows >= 0 and vocab >= 1");
  require(rows.row_stride >= rows.vocab, where, ": ", name, ".row_stride = ", rows.row_stride,
          ", expected >= vocab = ", rows.vocab);
  require(rows.rows == 0 || rows.data != nullptr, where, ": ", name, ".data is null");
}

/// The argument checks of the batch functions: cond (and uncond when given, same shape), one token and one log-prob
/// per row, valid params. Returns whether guidance is on (uncond.data != nullptr).
template <class In>
bool check_batch(const LogitRows<In>& cond, const LogitRows<In>& uncond, std::size_t n_tokens, std::size_t n_logps,
                 const SamplingParams& params, const char* where) {
  check_rows(cond, where, "cond");
  const bool guided = uncond.data != nullptr;
  if (guided) {
    check_rows(uncond, where, "uncond");
    require(uncond.rows == cond.rows && uncond.vocab == cond.vocab, where, ": uncond is ", uncond.rows, "x",
            uncond.vocab, ", expected the shape of cond ", cond.rows, "x", cond.vocab);
  }
  require(static_cast<index_t>(n_tokens) == cond.rows && static_cast<index_t>(n_logps) == cond.rows, where,
          ": tokens has ", n_tokens, " and logps ", n_logps, " entries, expected ", cond.rows, " (rows)");
  validate_params(params, where);
  return guided;
}
}  // namespace detail

/// Samples every row of `cond` (rows are independent; row r uses RNG stream r). `uncond.data == nullptr` = no
/// guidance; otherwise it must have the same rows and vocab. Writes tokens[r] and logps[r].
template <class Real, class In>
void sample_rows(LogitRows<In> cond, LogitRows<In> uncond, const SamplingParams& params, RngKey key,
                 std::span<index_t> tokens, std::span<Real> logps) {
  constexpr const char* where = "corl::sampling::sample_rows";
  const bool guided = detail::check_batch(cond, uncond, tokens.size(), logps.size(), params, where);
  for (index_t r = 0; r < cond.rows; ++r) {
    const auto s = detail::sample_row_in<Real, In>(cond.row(r), guided ? uncond.row(r) : std::span<const In>{}, params,
                                                   key, static_cast<std::uint32_t>(r), where);
    tokens[static_cast<std::size_t>(r)] = s.token;
    logps[static_cast<std::size_t>(r)] = s.logp;
  }
}

/// log-probs of given tokens, one per row, under the sampling distribution of each row (see sampling_logprob).
template <class Real, class In>
void sampling_logprobs(LogitRows<In> cond, LogitRows<In> uncond, std::span<const index_t> tokens,
                       const SamplingParams& params, std::span<Real> logps) {
  constexpr const char* where = "corl::sampling::sampling_logprobs";
  const bool guided = detail::check_batch(cond, uncond, tokens.size(), logps.size(), params, where);
  for (index_t r = 0; r < cond.rows; ++r) {
    const index_t t = tokens[static_cast<std::size_t>(r)];
    require(t >= 0 && t < cond.vocab, where, ": tokens[", r, "] = ", t, ", expected in [0, ", cond.vocab, ")");
    const auto d = detail::row_distribution<Real>(cond.row(r), guided ? uncond.row(r) : std::span<const In>{}, params,
                                                  r, where);
    logps[static_cast<std::size_t>(r)] = detail::logp_of(d, t, params.temperature == 0.0);
  }
}

}  // namespace corl::sampling

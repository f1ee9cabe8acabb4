// corl/sampling/streaming_race.hpp — the one-pass, mergeable state of the exponential race (Gumbel-max) over a row of
// sampling scores z, as the GPU sampler (corl/cuda/sampling.cuh) computes it per thread and then merges per block.
// Written once for host and device so that a CPU test can run exactly the fold the GPU runs on any split of the row.
//
// State of a stretch of the row: m = max z, sum = sum exp(z - m) (online: rescaled when m grows), the first index of
// m, and the race winner (key, index, z) with key_i = z_i - log(E_i) (sampling_math.hpp). Elements come in groups of
// four consecutive indices sharing one Philox call. The filter: E_i >= x_i, so an element with
// x_i >= exp(z_i - best_key) * (1 + 1e-3) cannot beat the current winner; since exp(z_i - best_key) =
// exp(z_i - m) * exp(m - best_key) and exp(z_i - m) is needed for the sum anyway, most elements cost one exp and a
// compare, and a group whose four elements all fail skips its Philox call. Elements that set a new running max are
// always evaluated, so exp(m - best_key) stays below ~17 (E <= 16.6 for float uniforms). The margin covers the
// rounding of exp (device: __expf) and of the key for |z| < 4096; the exact comparison is always made on the exact key,
// so the winner is the exhaustive argmax of the keys (ties: the smaller index), the same as sample_row's.
// Source: Gumbel-max (Maddison et al. 2014); online softmax (Milakov & Gimelshein 2018).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "corl/core/hd.hpp"
#include "corl/core/rng.hpp"
#include "corl/sampling/sampling_math.hpp"

namespace corl::sampling {

/// exp for the online sum and the filter: __expf on the device (2 ulp), std::exp on the host.
CORL_HD float stream_exp(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  return std::exp(x);
#endif
}

inline constexpr float kRaceFilterMargin = 1.001f;
inline constexpr float kMinRaceUniformFloat = 1.1641532e-10f;  // 2^-33: the smallest x word_to_race_uniform<float> gives

/// The mergeable pass-1 state of a stretch of a row.
struct RaceState {
  float max;         ///< m; -inf when nothing finite was seen
  float sum;         ///< sum exp(z - m)
  index_t argmax;    ///< first index of m (max of index_t when none)
  float best_key;    ///< the race winner's key
  index_t best_idx;  ///< the race winner (-1 when none)
  float best_z;      ///< the winner's score
};

CORL_HD RaceState empty_race_state() {
  return RaceState{-std::numeric_limits<float>::infinity(), 0.0f, std::numeric_limits<index_t>::max(),
                   -std::numeric_limits<float>::infinity(), -1, -std::numeric_limits<float>::infinity()};
}

/// The race order: larger key wins, equal keys go to the smaller index; an empty winner (idx < 0) always loses.
CORL_HD bool race_beats(float key, index_t idx, float best_key, index_t best_idx) {
  return idx >= 0 && (best_idx < 0 || key > best_key || (key == best_key && idx < best_idx));
}

/// Where a row's random words come from.
struct RaceStream {
  std::uint64_t seed;
  std::uint64_t offset;
  std::uint32_t row;
  bool greedy;  ///< only max / argmax are needed
};

/// Folds the four scores of group g (indices 4g .. 4g + 3; -inf for masked, invalid or out-of-row entries) into `st`.
/// Groups must reach one state in increasing g. `c_bound` = exp(m - best_key) belongs to the state (start: +inf).
/// `exact_key(z, x)` returns race_key(z, race_exponential(x)) (the device passes an out-of-line function).
template <class ExactKey>
CORL_HD void fold_race_group(RaceState& st, float& c_bound, const float (&z)[4], index_t g, const RaceStream& rs,
                             ExactKey exact_key) {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  const index_t i0 = g * 4;
  float group_max = neg_inf;
  for (int k = 0; k < 4; ++k) group_max = z[k] > group_max ? z[k] : group_max;
  const float old_max = st.max;
  if (group_max > old_max) {
    st.sum = (old_max == neg_inf) ? 0.0f : st.sum * stream_exp(old_max - group_max);
    st.max = group_max;
    c_bound = (st.best_idx < 0) ? std::numeric_limits<float>::infinity() : stream_exp(st.max - st.best_key);
    st.argmax = z[0] == group_max ? i0 : (z[1] == group_max ? i0 + 1 : (z[2] == group_max ? i0 + 2 : i0 + 3));
  }
  float e[4];
  float e_max = 0.0f;
  for (int k = 0; k < 4; ++k) {
    e[k] = (z[k] == neg_inf) ? 0.0f : stream_exp(z[k] - st.max);
    st.sum += e[k];
    e_max = e[k] > e_max ? e[k] : e_max;
  }
  if (rs.greedy) return;
  const bool new_max = group_max > old_max;
  // Skip the random words when no element of the group can win (NaN from 0 * inf does not skip).
  if (!new_max && e_max * c_bound * kRaceFilterMargin < kMinRaceUniformFloat) return;
  const Philox4x32 w = random_words(rs.seed, rs.offset, rs.row, static_cast<std::uint32_t>(g));
  for (int k = 0; k < 4; ++k) {
    if (z[k] == neg_inf) continue;
    const float x = word_to_race_uniform<float>(w.v[k]);
    if (!(z[k] > old_max) && x >= e[k] * c_bound * kRaceFilterMargin) continue;  // certainly losing
    const float key = exact_key(z[k], x);
    if (race_beats(key, i0 + k, st.best_key, st.best_idx)) {
      st.best_key = key;
      st.best_idx = i0 + k;
      st.best_z = z[k];
      c_bound = stream_exp(st.max - st.best_key);
    }
  }
}

/// Merge of two states of disjoint stretches (associative and commutative up to the rounding of `sum`).
CORL_HD RaceState merge_race_states(const RaceState& a, const RaceState& b) {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  RaceState r;
  r.max = a.max > b.max ? a.max : b.max;
  const float sa = (a.max == neg_inf) ? 0.0f : a.sum * stream_exp(a.max - r.max);
  const float sb = (b.max == neg_inf) ? 0.0f : b.sum * stream_exp(b.max - r.max);
  r.sum = sa + sb;
  r.argmax = (a.max > b.max || (a.max == b.max && a.argmax <= b.argmax)) ? a.argmax : b.argmax;
  const bool take_b = race_beats(b.best_key, b.best_idx, a.best_key, a.best_idx);
  r.best_key = take_b ? b.best_key : a.best_key;
  r.best_idx = take_b ? b.best_idx : a.best_idx;
  r.best_z = take_b ? b.best_z : a.best_z;
  return r;
}

}  // namespace corl::sampling

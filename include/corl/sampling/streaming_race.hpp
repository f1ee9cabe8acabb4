// corl/sampling/streaming_race.hpp — the one-pass, mergeable state of the quad race (sampling_math.hpp) over a row of
// sampling scores z, as the GPU sampler (corl/cuda/sampling.cuh) computes it per thread and then merges per block.
// Written once for host and device so that a CPU test can run exactly the fold the GPU runs on any split of the row.
//
// State of a stretch of the row: m = max z, sum = sum exp(z - m) (online: rescaled when m grows), the first index of
// m, and the winning quad (key, quad index) with key_g = log S_g - log E_g. The filter: E_g >= x_g, so a quad with
// x_g >= S_g exp(-B) (1 + 1e-3) cannot beat a key B that some quad of the row certainly has. B is the larger of the
// state's own winner key and `known_key`, a key the caller learnt elsewhere (the GPU kernel passes the best key of the
// warp, refreshed after every round of loads: with 32 lanes sharing one bound, a quad passes the filter about 32
// times less often, and a warp runs the exact key, which diverges, about 32 times less often than with per-lane
// bounds). Since S_g exp(-B) = (sum_{i in g} exp(z_i - m)) exp(m - B) and exp(z_i - m) is needed for the sum anyway, a
// quad costs four exps, a sum and one compare; a quad that cannot win even with the smallest uniform does not ask for
// its word at all (the caller's word source may then skip a Philox call). The filter is used only while
// c = exp(m - B) <= 2^40, so that an underflowing exp(z_i - m) cannot hide a quad that could win; above that (no B yet,
// or a new max far above B) every quad gets its exact key. The margin covers the rounding of exp (device: ex2.approx,
// results below 2^-126 flushed to 0) and of the key for |z| < 4096; the exact comparison is always made on the exact
// key, so the winner is the exhaustive argmax of the quad keys (ties: the smaller quad), the same as sample_row's,
// whatever the split of the row and whatever valid B the caller passes. The token inside the winning quad is drawn
// afterwards (pick_in_quad), once per row.
// Source: Gumbel-max (Maddison et al. 2014); online softmax (Milakov & Gimelshein 2018).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "corl/core/hd.hpp"
#include "corl/core/rng.hpp"
#include "corl/sampling/sampling_math.hpp"

namespace corl::sampling {

/// exp for the online sum and the filter: ex2.approx on the device (as __expf: 2 + 1.2 |x| ulp, ~1e-5 relative at
/// |x| = 87, far inside the filter margin of 1e-3), std::exp on the host.
CORL_HD float stream_exp(float x) {
#if defined(__CUDA_ARCH__)
  // __expf's ex2.approx without its subnormal-result path (2 SASS instructions instead of 5 per call): a result
  // below 2^-126 becomes 0. Nothing here can notice: a sum holds exp(0) = 1, and a flushed quad has
  // S_g exp(m - B) <= 4 * 2^-126 * 2^40 (the filter's limit on c), far below the smallest uniform.
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.44269504088896341f));
  return y;
#else
  return std::exp(x);
#endif
}

inline constexpr float kRaceFilterMargin = 1.001f;
inline constexpr float kMaxRaceFilterBound = 1099511627776.0f;  // 2^40: above it, c = exp(m - B) is not used
inline constexpr float kMinRaceUniformFloat = 1.1641532e-10f;  // 2^-33: the smallest x word_to_race_uniform<float> gives

/// The mergeable pass-1 state of a stretch of a row.
struct RaceState {
  float max;          ///< m; -inf when nothing finite was seen
  float sum;          ///< sum exp(z - m)
  index_t argmax;     ///< first index of m (max of index_t when none)
  float best_key;     ///< the winning quad's key
  index_t best_quad;  ///< the winning quad (-1 when none)
};

CORL_HD RaceState empty_race_state() {
  return RaceState{-std::numeric_limits<float>::infinity(), 0.0f, std::numeric_limits<index_t>::max(),
                   -std::numeric_limits<float>::infinity(), -1};
}

/// The race order: larger key wins, equal keys go to the smaller quad; an empty winner (quad < 0) always loses.
CORL_HD bool race_beats(float key, index_t quad, float best_key, index_t best_quad) {
  return quad >= 0 && (best_quad < 0 || key > best_key || (key == best_key && quad < best_quad));
}

/// The filter's factor c = exp(m - B), B = the larger of the state's winner key and `known_key` (-inf: none);
/// +inf while there is no B.
CORL_HD float race_filter_bound(const RaceState& st, float known_key) {
  const float own = st.best_quad < 0 ? -std::numeric_limits<float>::infinity() : st.best_key;
  const float b = own > known_key ? own : known_key;
  return b == -std::numeric_limits<float>::infinity() ? std::numeric_limits<float>::infinity()
                                                      : stream_exp(st.max - b);
}

/// Folds the four scores of quad g (indices 4g .. 4g + 3; -inf for masked, invalid or out-of-row entries) into `st`.
/// Quads must reach one state in increasing g. `c_bound` = race_filter_bound(st, known_key) belongs to the state
/// (start: +inf) and must be recomputed by the caller when it changes `known_key`, a key some quad of the row certainly
/// has (-inf when none is known). `greedy`: only max / argmax / sum are kept. `word_of(g)` returns quad g's race word
/// (race_word; it is asked only for quads that may win). `exact_key(z, x)` returns quad_race_key(z,
/// race_exponential(x)) (the device passes an out-of-line function).
template <class WordOf, class ExactKey>
CORL_HD void fold_race_quad(RaceState& st, float& c_bound, const float (&z)[4], index_t g, bool greedy, WordOf word_of,
                            ExactKey exact_key, float known_key = -std::numeric_limits<float>::infinity()) {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  const index_t i0 = g * 4;
  float quad_max = neg_inf;
#if defined(__CUDA_ARCH__)
  for (int k = 0; k < 4; ++k) quad_max = fmaxf(quad_max, z[k]);  // one FMNMX each; no z is NaN here
#else
  for (int k = 0; k < 4; ++k) quad_max = z[k] > quad_max ? z[k] : quad_max;
#endif
  if (quad_max > st.max) {
    st.sum = (st.max == neg_inf) ? 0.0f : st.sum * stream_exp(st.max - quad_max);
    st.max = quad_max;
    c_bound = race_filter_bound(st, known_key);
    st.argmax = z[0] == quad_max ? i0 : (z[1] == quad_max ? i0 + 1 : (z[2] == quad_max ? i0 + 2 : i0 + 3));
  }
  float quad_sum = 0.0f;
  for (int k = 0; k < 4; ++k) quad_sum += (z[k] == neg_inf) ? 0.0f : stream_exp(z[k] - st.max);
  st.sum += quad_sum;
  if (greedy || quad_max == neg_inf) return;
  const bool filter = c_bound <= kMaxRaceFilterBound;
  const float reach = quad_sum * c_bound * kRaceFilterMargin;  // S_g exp(-B) with the margin
  // No word at all when the quad cannot win even with the smallest uniform.
  if (filter && reach < kMinRaceUniformFloat) return;
  const float x = word_to_race_uniform<float>(word_of(g));
  if (filter && x >= reach) return;  // certainly losing
  const float key = exact_key(z, x);
  if (race_beats(key, g, st.best_key, st.best_quad)) {
    st.best_key = key;
    st.best_quad = g;
    c_bound = race_filter_bound(st, known_key);
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
  const bool take_b = race_beats(b.best_key, b.best_quad, a.best_key, a.best_quad);
  r.best_key = take_b ? b.best_key : a.best_key;
  r.best_quad = take_b ? b.best_quad : a.best_quad;
  return r;
}

}  // namespace corl::sampling

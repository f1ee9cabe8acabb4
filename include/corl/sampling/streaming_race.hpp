// corl/sampling/streaming_race.hpp — the one-pass, mergeable state of the group race (sampling_math.hpp) over a row of
// sampling scores z, as the GPU sampler (corl/cuda/sampling.cuh) computes it per thread and then merges per block in
// its exact race passes (the race over the kept set of a truncated row; a row whose pass-1 winner the certified race,
// corl/sampling/certified_race.hpp, cannot settle). Written once for host and device so that a CPU test can run
// exactly the fold the GPU runs on any split of the row.
//
// State of a stretch of the row: m = max z, sum = sum exp(z - m) (online: rescaled when m grows), the first index of
// m, the winning group (key, group index) with key_G = log S_G - log E_G, and the open group's partial mass. A stretch
// is made of whole groups, each folded quad by quad (fold_race_quad) and then raced (close_race_group). The filter:
// E_G >= x_G, so a group with x_G >= S_G exp(-B) (1 + 1e-3) cannot beat a key B that some group of the row certainly
// has. B is the larger of the state's own winner key and `known_key`, a key the caller learnt elsewhere (the GPU kernel
// passes a key some group of the kept set certainly reaches; warps that share their best key after every group pass
// the filter about 32 times less often than lanes alone, which is how the certified race uses its bound). Since S_G exp(-B) = (sum_{i in G} exp(z_i - m)) exp(m - B) and exp(z_i - m) is needed for the
// sum anyway, a group costs its 32 exps, a sum and one compare; a group that cannot win even with the smallest
// uniform does not ask for its word at all (the caller's word source may then skip a Philox call). The filter is
// used only while c = exp(m - B) <= 2^40, so that an underflowing exp(z_i - m) cannot hide a group that could win;
// above that (no B yet, or a new max far above B) every group with a nonzero partial mass gets its exact key (a group
// whose every term underflows lies more than 80 nats below m, and the group holding m beats it). The margin covers the
// rounding of exp (device: ex2.approx, results below 2^-126 flushed to 0) and of the key for |z| < 4096; the exact
// comparison is always made on the exact key, so the winner is the exhaustive argmax of the group keys (ties: the
// smaller group), the same as sample_row's, whatever split of the row into stretches of whole groups and whatever
// valid B the caller passes. The token inside the winning group is drawn afterwards (pick_in_group), once per row.
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
  // below 2^-126 becomes 0. Nothing here can notice: a sum holds exp(0) = 1, and a flushed group has
  // S_G exp(m - B) <= 32 * 2^-126 * 2^40 (the filter's limit on c), far below the smallest uniform.
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x * 1.44269504088896341f));
  return y;
#else
  return std::exp(x);
#endif
}

/// exp(z - m) for many z and one m as one FFMA and an ex2 per z on the device: with -m log2(e) = hi + lo exactly
/// (hi = its float rounding, lo = the rounding's error, by an FFMA),
///     exp(z - m) = ex2(fma(z, log2 e, hi)) * ex2(lo),
/// where the first factor is stream_exp_shifted(z, hi) and the second, `correction`, is taken once for all z (the
/// caller multiplies the sum of the first factors by it). The FFMA rounds once, relative to its result |z - m| log2 e,
/// so the error of a term is that of stream_exp (a subtract and a multiply, each rounded): it does not grow with |m|,
/// which it would without the correction (2^-24 |m| log2 e: 6e-4 relative at |m| = 1e4). Needs |m| <= 2^20
/// (kMaxShiftedExpMax: |lo| <= 2^-4, so neither ex2 leaves its range through lo); beyond, and for the clamp of a max of
/// -inf, the caller uses stream_exp. On the host: exp(z - m) and a correction of 1.
inline constexpr float kMaxShiftedExpMax = 1048576.0f;  // 2^20
struct ExpShift {
  float shift;       ///< hi: the device's rounding of -m log2(e); the host keeps m itself
  float correction;  ///< ex2(lo) on the device, 1 on the host
};
CORL_HD ExpShift stream_exp_shift(float m) {
#if defined(__CUDA_ARCH__)
  constexpr float kLog2e = 1.44269504088896341f;
  const float hi = __fmul_rn(-m, kLog2e);
  const float lo = fmaf(-m, kLog2e, -hi);  // exact: -m log2(e) - hi, the product's rounding error
  float correction;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(correction) : "f"(lo));
  return {hi, correction};
#else
  return {m, 1.0f};
#endif
}
/// The first factor of exp(z - m) (stream_exp_shift): ex2(fma(z, log2 e, shift)) on the device, exp(z - m) on the host.
CORL_HD float stream_exp_shifted(float z, float shift) {
#if defined(__CUDA_ARCH__)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(fmaf(z, 1.44269504088896341f, shift)));
  return y;
#else
  return std::exp(z - shift);
#endif
}

/// Probability mass in fixed point for the GPU sampler's radix selection (exact integer sums, independent of order):
/// round(exp(z - m) 2^40), 0 for z = -inf; m is the row's max, so a term is at most 2^40. The CPU transcriptions of
/// the selection call it too.
inline constexpr float kFixedMassScale = 1099511627776.0f;  // 2^40
CORL_HD unsigned long long fixed_point_mass(float z, float m) {
  if (z == -std::numeric_limits<float>::infinity()) return 0ull;
  const float scaled = stream_exp(z - m) * kFixedMassScale;
#if defined(__CUDA_ARCH__)
  return __float2ull_rn(scaled);
#else
  return static_cast<unsigned long long>(std::nearbyint(static_cast<double>(scaled)));
#endif
}

/// The float value of a fixed-point mass.
CORL_HD float from_fixed_point_mass(unsigned long long mass) {
  return static_cast<float>(static_cast<double>(mass) / static_cast<double>(kFixedMassScale));
}

inline constexpr float kRaceFilterMargin = 1.001f;
inline constexpr float kMaxRaceFilterBound = 1099511627776.0f;  // 2^40: above it, c = exp(m - B) is not used
inline constexpr float kMinRaceUniformFloat = 1.1641532e-10f;  // 2^-33: the smallest x word_to_race_uniform<float> gives

/// The mergeable pass-1 state of a stretch of a row.
struct RaceState {
  float max;          ///< m; -inf when nothing finite was seen
  float sum;          ///< sum exp(z - m)
  index_t argmax;     ///< first index of m (max of index_t when none)
  float best_key;     ///< the winning group's key
  index_t best_group; ///< the winning group (-1 when none)
  float group_sum;    ///< sum exp(z - m) over the quads of the open group folded so far (0 between groups)
};

CORL_HD RaceState empty_race_state() {
  return RaceState{-std::numeric_limits<float>::infinity(), 0.0f, std::numeric_limits<index_t>::max(),
                   -std::numeric_limits<float>::infinity(), -1, 0.0f};
}

/// The race order: larger key wins, equal keys go to the smaller group; an empty winner (group < 0) always loses.
CORL_HD bool race_beats(float key, index_t group, float best_key, index_t best_group) {
  return group >= 0 && (best_group < 0 || key > best_key || (key == best_key && group < best_group));
}

/// The filter's factor c = exp(m - B), B = the larger of the state's winner key and `known_key` (-inf: none);
/// +inf while there is no B.
CORL_HD float race_filter_bound(const RaceState& st, float known_key) {
  const float own = st.best_group < 0 ? -std::numeric_limits<float>::infinity() : st.best_key;
  const float b = own > known_key ? own : known_key;
  return b == -std::numeric_limits<float>::infinity() ? std::numeric_limits<float>::infinity()
                                                      : stream_exp(st.max - b);
}

/// sum exp(z_k - m) over a quad's four scores, in index order (m finite: -inf - m is -inf, whose exp is 0).
CORL_HD float quad_mass(const float (&z)[4], float m) {
  float quad_sum = stream_exp(z[0] - m);  // not 0 + ...: the compiler may not drop an addition of +0
  for (int k = 1; k < 4; ++k) quad_sum += stream_exp(z[k] - m);
  return quad_sum;
}

/// Folds the four scores of quad q (indices 4q .. 4q + 3; -inf for masked, invalid or out-of-row entries) into `st`:
/// max, argmax (ties: the smaller index), sum and the open group's mass. The quads of a group must come one after the
/// other, and the group closed (close_race_group) before the next group's first quad; groups may come in any order.
/// `c_bound` = race_filter_bound(st, known_key) belongs to the state (start: +inf); it is refreshed here when m grows,
/// and must be recomputed by the caller when it changes `known_key`. Per entry: one max, one subtract, one multiply,
/// one ex2, one add (no branch on -inf: exp(-inf - m) = 0, and while m is still -inf every entry is -inf and the
/// difference is taken against -FLT_MAX instead). A NaN score is left out of the max (fmaxf / the compare ignore it)
/// and makes the sum NaN, which stays NaN through every rescale and merge: that is how the GPU kernel finds a bad row.
CORL_HD void fold_race_quad(RaceState& st, float& c_bound, const float (&z)[4], index_t q,
                            float known_key = -std::numeric_limits<float>::infinity()) {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  float quad_max = neg_inf;
#if defined(__CUDA_ARCH__)
  for (int k = 0; k < 4; ++k) quad_max = fmaxf(quad_max, z[k]);  // one FMNMX each; a NaN z is ignored
#else
  for (int k = 0; k < 4; ++k) quad_max = z[k] > quad_max ? z[k] : quad_max;
#endif
  if (quad_max >= st.max && quad_max != neg_inf) {  // a new max, or a tie with it (rare either way)
    const index_t i0 = q * 4;
    const index_t first =
        z[0] == quad_max ? i0 : (z[1] == quad_max ? i0 + 1 : (z[2] == quad_max ? i0 + 2 : i0 + 3));
    if (quad_max > st.max) {
      const float scale = (st.max == neg_inf) ? 0.0f : stream_exp(st.max - quad_max);
      st.sum *= scale;
      st.group_sum *= scale;
      st.max = quad_max;
      c_bound = race_filter_bound(st, known_key);
      st.argmax = first;
    } else if (first < st.argmax) {  // the quads of a state need not come in index order (a group's do not)
      st.argmax = first;
    }
  }
  const float m = st.max > -3.402823466e38f ? st.max : -3.402823466e38f;  // -inf - (-inf) would be NaN
  const float quad_sum = quad_mass(z, m);
  st.sum += quad_sum;
  st.group_sum += quad_sum;
}

/// A race state whose max is fixed in advance to a value m that no score of the stretch exceeds (the row's max, found
/// by an earlier pass): add_quad_mass then folds a group's mass at that one scale, four exps and adds per quad, with no
/// max, rescale or argmax; the state's sum and argmax are not kept. close_race_group works on it unchanged: its filter
/// tests S_G exp(-B) as c = exp(m - B) times the mass at scale m. A group whose every term underflows lies more than
/// 87 nats below m (ex2.approx.ftz: a result below 2^-126 is 0), so its key is below m - 60 (32 terms, -log E_G <=
/// 22.9), and the caller must pass a known key B >= m - 60 for its "cannot win" (the GPU sampler's fused kept race
/// passes the kept key of the group holding m, which is at least m - log 22.9).
CORL_HD RaceState fixed_scale_race_state(float m) {
  RaceState st = empty_race_state();
  st.max = m;
  return st;
}

/// Adds the mass of quad z at the fixed scale of `st` (fixed_scale_race_state; every z <= st.max, -inf for masked or
/// out-of-row entries) to its open group.
CORL_HD void add_quad_mass(RaceState& st, const float (&z)[4]) { st.group_sum += quad_mass(z, st.max); }

/// Races the open group G (its quads all folded) and resets the open mass. `word_of(G)` returns group G's race word
/// (race_word; it is asked only when the group may win). `exact_key(G, x)` returns group_race_key(z_G,
/// race_exponential(x)) over the group's 32 scores (the caller keeps or reloads them; the device reloads).
template <class WordOf, class ExactKey>
CORL_HD void close_race_group(RaceState& st, float& c_bound, index_t group, WordOf word_of, ExactKey exact_key,
                              float known_key = -std::numeric_limits<float>::infinity()) {
  const float group_sum = st.group_sum;
  st.group_sum = 0.0f;
  if (group_sum == 0.0f) return;  // empty, or every term below the underflow limit: cannot win
  const bool filter = c_bound <= kMaxRaceFilterBound;
  const float reach = group_sum * c_bound * kRaceFilterMargin;  // S_G exp(-B) with the margin
  // No word at all when the group cannot win even with the smallest uniform.
  if (filter && reach < kMinRaceUniformFloat) return;
  const float x = word_to_race_uniform<float>(word_of(group));
  if (filter && x >= reach) return;  // certainly losing
  const float key = exact_key(group, x);
  if (race_beats(key, group, st.best_key, st.best_group)) {
    st.best_key = key;
    st.best_group = group;
    c_bound = race_filter_bound(st, known_key);
  }
}

/// The max and the normaliser sum exp(z - max) of two stretches together: the larger max, each sum rescaled to it. A
/// stretch with max = -inf has sum 0, or NaN when it folded a NaN score: kept as is, so that NaN reaches the total.
CORL_HD void merge_max_sum(float a_max, float a_sum, float b_max, float b_sum, float& max, float& sum) {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  max = a_max > b_max ? a_max : b_max;
  const float sa = (a_max == neg_inf) ? a_sum : a_sum * stream_exp(a_max - max);
  const float sb = (b_max == neg_inf) ? b_sum : b_sum * stream_exp(b_max - max);
  sum = sa + sb;
}

/// Merge of two states of disjoint stretches of whole groups (associative and commutative up to the rounding of
/// `sum`). A NaN sum (a NaN score was folded) stays NaN, and a +inf max stays the max: the GPU kernel's test for a bad
/// unguided row.
CORL_HD RaceState merge_race_states(const RaceState& a, const RaceState& b) {
  RaceState r;
  merge_max_sum(a.max, a.sum, b.max, b.sum, r.max, r.sum);
  r.argmax = (a.max > b.max || (a.max == b.max && a.argmax <= b.argmax)) ? a.argmax : b.argmax;
  const bool take_b = race_beats(b.best_key, b.best_group, a.best_key, a.best_group);
  r.best_key = take_b ? b.best_key : a.best_key;
  r.best_group = take_b ? b.best_group : a.best_group;
  r.group_sum = 0.0f;
  return r;
}

}  // namespace corl::sampling

// corl/sampling/certified_race.hpp — the GPU sampler's pass-1 group race with approximate keys and a certificate:
// the same winner as the exact race (corl/sampling/streaming_race.hpp) without reloading any group's logits, except on
// the rare row whose best two keys are too close to tell apart, where the caller runs the exact race.
//
// The exact race needs key_G = m_G + log(s_G) - log(E_G) for every group that passes the filter; on the GPU that
// reloads the group's 32 logits and evaluates 32 expf, a logf and a log1pf in a branch one lane of a warp
// takes while the others wait (~3 times per warp per row, the first group of every lane included, since no bound
// exists yet). But the fold already holds the group's mass relative to the running max, S_G = sum exp(z_i - m), so
//     a_G = m + log(S_G) - log(E_G)
// (no reload; E_G is the same as the exact key's) approximates key_G with |a_G - key_G| <= slack(a_G) / 2, where
//     slack(a) = 1e-4 + (|a| + 160) 2^-20,
// for every group that can matter, i.e. whose mass is not flushed (a group more than ~60 nats below the lane's max is
// at least ~57 nats below the group holding that max, whatever its uniform: -log E_G lies in [-2.81, 22.9]). What
// separates a_G from key_G: the relative error of S_G (32 ex2.approx terms, ~2^-22 each, with arguments rounded once
// relative to |z - m| (stream_exp_shifted, or stream_exp's subtract and multiply: ~5e-6 at the flush limit), the
// correction ex2(lo) and up to eight rescales of the open group (U = 1), float sums: < 1e-5), that of the two logs (an
// ulp of |log S_G| <= ~90), and the float rounding of sums of magnitude up to |m| + 106 (|m| <= |a| + 106: log S_G >=
// -87 for a group within range, or ~-103 after a rescale to a subnormal), at most ~(|a| + 106) 2^-22, a quarter of the
// slack (the host test finds at most 5.3% of it used, with the host's exp; the device's ex2.approx is within the
// first term). Then:
// - a group with x_G >= S_G exp(m - B) (1 + 1e-3) has key_G < B (the exact race's filter), and B = A - slack(A), A the
//   best approximate key seen (by the lane, or by its warp: `known_key`), is at least slack(A) / 2 below the exact key
//   of A's group; such a group is not evaluated at all;
// - every evaluated group enters the best two (larger a; equal a: the smaller group), `runner_up` being the second's
//   key, and `third`, the largest a of the other evaluated groups;
// - after the merge, the winner W is certified when runner_up < a_W - 2 slack(a_W): every other evaluated group T
//   then has key_T <= a_T + slack(a_T) / 2 < a_W - slack(a_W) / 2 <= key_W (slack(a_T) <= slack(a_W) + (a_W - a_T)
//   2^-20, so a_T + slack(a_T) / 2 stays below a_W - 2 slack(a_W) + slack(a_W) / 2 + a little), and every filtered one
//   has key < B <= the exact key of an evaluated group. So W is the exact race's winner, ties or not.
// Not certified (the best two exact keys within ~4 slack, i.e. ~1e-3 at |z| ~ 10: about one row in a thousand or
// fewer, since the gap between the two largest Gumbel keys is ~Exp(1)): the exact race's winner has an approximate
// key of at least a_W - 2 slack(a_W), so when `third` is below that (settled_by_best_two), the exact keys of the best
// two groups decide (two reloads). Otherwise (three keys that close: ~1e-6 of the rows) the caller runs the exact race
// with known_key = a_W - slack(a_W), a key the row's winner certainly reaches.
// The fold takes a round of U quads at once (the GPU thread's U loaded quads, in increasing index order): the round's
// max first, one rescale of the sums per round without a branch, then the U * 4 exps; the argmax is kept with selects
// as the first quad holding the max (strictly greater: quads arrive in index order, so the first one stays; quads are
// disjoint runs of the row, so the smallest such quad holds the first index of the max, which the caller finds there
// when it needs it). Per logit: a max, a subtract, a multiply, an ex2 and an add; per quad a compare and two selects.
// Source: Gumbel-max (Maddison et al. 2014), online softmax (Milakov & Gimelshein 2018); the certificate is corl's.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "corl/core/hd.hpp"
#include "corl/sampling/sampling_math.hpp"
#include "corl/sampling/streaming_race.hpp"

namespace corl::sampling {

/// The mergeable pass-1 state of a stretch of a row (whole groups, each one's quads in increasing order).
struct CertifiedRaceState {
  float max;          ///< m; -inf when nothing finite was seen
  float sum;          ///< sum exp(z - m)
  std::uint32_t argmax_quad;  ///< the first quad holding m (kNoQuad when none): its first entry equal to m is argmax
  float best_key;     ///< approximate key a of the best group (-inf when none)
  index_t best_group; ///< the best group (-1 when none)
  float runner_up;    ///< approximate key of the second best evaluated group (-inf when none)
  index_t runner_group;  ///< the second best evaluated group (-1 when none)
  float third;        ///< the largest approximate key of the other evaluated groups (-inf when none)
  float group_sum;    ///< sum exp(z - m) over the open group's quads folded so far (0 between groups)
};

inline constexpr std::uint32_t kNoQuad = 0xffffffffu;

CORL_HD CertifiedRaceState empty_certified_race_state() {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  return CertifiedRaceState{neg_inf, 0.0f, kNoQuad, neg_inf, -1, neg_inf, -1, neg_inf, 0.0f};
}

/// slack(a): the most an approximate key a and the group's exact key can differ (see the header comment).
CORL_HD float certified_key_slack(float key) {
  using std::fabs;
  return 1e-4f + (fabs(key) + 160.0f) * 9.5367431640625e-07f;  // 2^-20
}

/// A lower bound of the exact key of some group of the row: B = A - slack(A), A the larger of the state's best
/// approximate key and `known_key` (an approximate key the caller saw elsewhere); -inf when there is neither.
CORL_HD float certified_bound(const CertifiedRaceState& st, float known_key) {
  const float own = st.best_group < 0 ? -std::numeric_limits<float>::infinity() : st.best_key;
  const float a = own > known_key ? own : known_key;
  return a == -std::numeric_limits<float>::infinity() ? a : a - certified_key_slack(a);
}

/// Folds one round of U quads (quad j = q0 + j * stride < kNoQuad, in increasing order; all of the open group, which
/// the round does not leave) into the state: max, argmax quad, sum and the open group's mass. Missing quads (beyond the
/// row) come as four -inf. A NaN score is left out of the max and makes the sum NaN; a +inf one becomes the max (the
/// GPU kernel's bad-row test, row_is_bad, sees both). kArgmax = false: argmax_quad is left as it is (sampling at a
/// temperature without truncation never reads it), which saves a compare and two selects per quad; the max then comes
/// from max instructions (on the device, fmaxf: the same value, up to the sign of a zero max, which changes no score
/// difference, exp or key).
template <int U, bool kArgmax = true>
CORL_HD void fold_certified_round(CertifiedRaceState& st, const float (&z)[U][4], std::uint32_t q0,
                                  std::uint32_t stride) {
  constexpr float lowest = -3.402823466e38f;  // -FLT_MAX: differences against a max of -inf stay finite
  float m = st.max;
  for (int j = 0; j < U; ++j) {
#if defined(__CUDA_ARCH__)
    const float qm = fmaxf(fmaxf(z[j][0], z[j][1]), fmaxf(z[j][2], z[j][3]));  // NaN entries are ignored
#else
    float qm = -std::numeric_limits<float>::infinity();
    for (int k = 0; k < 4; ++k) qm = z[j][k] > qm ? z[j][k] : qm;
#endif
    if constexpr (kArgmax) {
      const bool up = qm > m;  // strictly: an equal max later in index order keeps the earlier quad
      st.argmax_quad = up ? q0 + static_cast<std::uint32_t>(j) * stride : st.argmax_quad;
      m = up ? qm : m;
    } else {
#if defined(__CUDA_ARCH__)
      m = fmaxf(m, qm);  // m is never NaN
#else
      m = qm > m ? qm : m;
#endif
    }
  }
  const float old_m = st.max > lowest ? st.max : lowest;
  const float new_m = m > lowest ? m : lowest;
  const float scale = stream_exp(old_m - new_m);  // 1 without a new max, 0 from -inf
  st.max = m;
  float round_sum = 0.0f;
#if defined(__CUDA_ARCH__)
  if (fabsf(new_m) <= kMaxShiftedExpMax) {  // rows with logits within +-2^20 (and a finite max): an FFMA per exp
    const ExpShift e = stream_exp_shift(new_m);
    for (int j = 0; j < U; ++j)
      for (int k = 0; k < 4; ++k) round_sum += stream_exp_shifted(z[j][k], e.shift);
    round_sum *= e.correction;
  } else {
    for (int j = 0; j < U; ++j)
      for (int k = 0; k < 4; ++k) round_sum += stream_exp(z[j][k] - new_m);
  }
#else
  for (int j = 0; j < U; ++j)
    for (int k = 0; k < 4; ++k) round_sum += stream_exp(z[j][k] - new_m);
#endif
  st.sum = st.sum * scale + round_sum;
  st.group_sum = st.group_sum * scale + round_sum;
}

/// Enters group `group` with approximate key `key` into the state's best two (race order: larger key, then smaller
/// group) and the largest key of the rest.
CORL_HD void certified_insert(CertifiedRaceState& st, float key, index_t group) {
  if (group < 0) return;
  auto keep_third = [&st](float k) { st.third = st.third > k ? st.third : k; };
  if (race_beats(key, group, st.best_key, st.best_group)) {
    if (st.runner_group >= 0) keep_third(st.runner_up);
    st.runner_up = st.best_key;
    st.runner_group = st.best_group;
    st.best_key = key;
    st.best_group = group;
  } else if (race_beats(key, group, st.runner_up, st.runner_group)) {
    if (st.runner_group >= 0) keep_third(st.runner_up);
    st.runner_up = key;
    st.runner_group = group;
  } else {
    keep_third(key);
  }
}

/// Races the open group G (all its quads folded) with its approximate key and resets the open mass; `word_of(G)`
/// returns G's race word (race_word), asked only when the group may beat the bound. `known_key`: the best approximate
/// key the caller saw elsewhere (the GPU kernel: its warp's), -inf for none.
template <class WordOf>
CORL_HD void close_certified_group(CertifiedRaceState& st, index_t group, WordOf word_of, float known_key) {
  const float group_sum = st.group_sum;
  st.group_sum = 0.0f;
  if (!(group_sum > 0.0f)) return;  // empty, every term below the underflow limit (cannot win), or a NaN (a bad row)
  const float bound = certified_bound(st, known_key);
  const float c = stream_exp(st.max - bound);  // +inf without a bound
  const bool filter = c <= kMaxRaceFilterBound;
  const float reach = group_sum * c * kRaceFilterMargin;  // S_G exp(-B) with the exact race's margin
  if (filter && reach < kMinRaceUniformFloat) return;  // loses even with the smallest uniform: no word
  const float x = word_to_race_uniform<float>(word_of(group));
  if (filter && x >= reach) return;  // key < B
  using std::log;
  const float key = sub_rn(add_rn(st.max, static_cast<float>(log(group_sum))),
                           static_cast<float>(log(race_exponential(x))));
  certified_insert(st, key, group);
}

/// Merge of two states of disjoint stretches (associative and commutative up to the rounding of `sum`); as
/// merge_race_states for max, sum and argmax; the best two of the four groups stay, the others join `third`.
CORL_HD CertifiedRaceState merge_certified_race_states(const CertifiedRaceState& a, const CertifiedRaceState& b) {
  CertifiedRaceState r = a;
  merge_max_sum(a.max, a.sum, b.max, b.sum, r.max, r.sum);
  r.argmax_quad = (a.max > b.max || (a.max == b.max && a.argmax_quad <= b.argmax_quad)) ? a.argmax_quad
                                                                                         : b.argmax_quad;
  r.third = a.third > b.third ? a.third : b.third;
  certified_insert(r, b.best_key, b.best_group);
  certified_insert(r, b.runner_up, b.runner_group);
  r.group_sum = 0.0f;
  return r;
}

/// The merge of many states (a GPU warp's lanes, then a block's warps) by all-reductions of single fields instead of a
/// tree of merge_certified_race_states (a warp shuffles one word per step instead of the whole state, and compares
/// once instead of running two certified_inserts): with the race order encoded as a rank (race_rank; 0 for no group),
///   M = max of max,  A = min of argmax_candidate(st, M),  S = sum of scaled_sum(st, M),
///   W = max of race_rank(best),  R = max of second_rank(st, W),  T = max of third_key(st, W, R),
/// and assemble_certified(M, S, A, W, R, T) is the merge of the states in any order (the same state, up to the
/// rounding of S): W is the best group in race order; R the best of every lane's best group other than W, i.e. the
/// second; T the largest key of the evaluated groups other than those two (a state's groups other than its best two
/// are below its runner-up, so its `third` is all that is left of them). A state's groups are distinct from every other
/// state's (the stretches are disjoint). Ranks need group < 2^32 (pass 1: groups < 2^29).
CORL_HD std::uint64_t race_rank(float key, index_t group) {
  if (group < 0) return 0;
  return (std::uint64_t{ordered_bits(key)} << 32) | (0xffffffffu - static_cast<std::uint32_t>(group));
}
/// The key of a rank (-inf for none); a key of -0.0 comes back as +0.0, which compares the same.
CORL_HD float rank_key(std::uint64_t rank) {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  return rank == 0 ? neg_inf : from_ordered_bits(static_cast<std::uint32_t>(rank >> 32));
}
CORL_HD index_t rank_group(std::uint64_t rank) {
  return rank == 0 ? index_t{-1} : static_cast<index_t>(0xffffffffu - static_cast<std::uint32_t>(rank));
}
/// The state's argmax quad if its max is the merged max M, else kNoQuad (the merge keeps the smallest such quad).
CORL_HD std::uint32_t argmax_candidate(const CertifiedRaceState& st, float total_max) {
  return st.max == total_max ? st.argmax_quad : kNoQuad;
}
/// The state's sum relative to the merged max M (merge_max_sum's term).
CORL_HD float scaled_sum(const CertifiedRaceState& st, float total_max) {
  // rounded products and sums (mul_rn, add_rn on the GPU's side too): no contraction into an FMA on one lane and not
  // on another
  return st.max == -std::numeric_limits<float>::infinity() ? st.sum
                                                            : mul_rn(st.sum, stream_exp(sub_rn(st.max, total_max)));
}
/// The state's best group other than the merged winner (rank W): its runner-up when it holds W, else its best.
CORL_HD std::uint64_t second_rank(const CertifiedRaceState& st, std::uint64_t winner) {
  const std::uint64_t best = race_rank(st.best_key, st.best_group);
  return best == winner ? race_rank(st.runner_up, st.runner_group) : best;
}
/// The largest key of the state's evaluated groups other than the merged best two (ranks W and R).
CORL_HD float third_key(const CertifiedRaceState& st, std::uint64_t winner, std::uint64_t second) {
  const std::uint64_t best = race_rank(st.best_key, st.best_group);
  const std::uint64_t runner = race_rank(st.runner_up, st.runner_group);
  float t = st.third;
  if (best != 0 && best != winner && best != second) t = st.best_key > t ? st.best_key : t;
  if (runner != 0 && runner != winner && runner != second) t = st.runner_up > t ? st.runner_up : t;
  return t;
}
/// The merged state from the all-reduced fields (see race_rank).
CORL_HD CertifiedRaceState assemble_certified(float total_max, float total_sum, std::uint32_t argmax_quad,
                                              std::uint64_t winner, std::uint64_t second, float third) {
  return CertifiedRaceState{total_max,          total_sum,           argmax_quad, rank_key(winner),
                            rank_group(winner), rank_key(second),    rank_group(second), third, 0.0f};
}

/// Whether approximate key `key` lies more than twice the slack below the merged state's best (so that its group's
/// exact key is below the best group's); false when there is no best.
CORL_HD bool clearly_below_best(const CertifiedRaceState& total, float key) {
  return total.best_group >= 0 && key < total.best_key - 2.0f * certified_key_slack(total.best_key);
}

/// Whether the merged state's best group is certainly the exact race's winner (see the header comment). False also
/// when there is no winner.
CORL_HD bool certified_winner(const CertifiedRaceState& total) {
  return clearly_below_best(total, total.runner_up);
}

/// Whether the exact keys of the best and the runner-up group settle an uncertified race: every other evaluated group
/// has an approximate key below a_W - 2 slack(a_W), so the exact winner, whose approximate key is at least that, is
/// one of the two (the larger exact key; equal keys: the smaller group).
CORL_HD bool settled_by_best_two(const CertifiedRaceState& total) {
  return clearly_below_best(total, total.third);
}

}  // namespace corl::sampling

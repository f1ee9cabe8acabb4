// corl/sampling/sampling_math.hpp — the per-element arithmetic of corl's sampler, written once for CPU and GPU.
//
// A row of logits is turned into sampling scores
//     z_i = (u_i + w (c_i - u_i)) * (1 / T)        (classifier-free guidance, then temperature; without CFG z_i = c_i / T)
// and a token is drawn by a two-level exponential race (the Gumbel-max trick written with exponentials) over GROUPS of
// 32 tokens, each group the eight quads (runs of four consecutive tokens) that one GPU thread folds in a row:
//     quad q = {4q, 4q+1, 4q+2, 4q+3};  group G = {quads G % 512 + 4096 (G / 512) + 512 j : j = 0..7}
//     S_G   = sum_{i in G, kept} exp(z_i)                           (the group's mass; empty groups do not race)
//     key_G = log S_G - log E_G,  E_G = -log(1 - x_G),  x_G uniform in (0, 1)
//     G*    = argmax_G key_G                                       (group G wins with probability S_G / sum_H S_H)
//     token = argmax_{i in G*, kept} z_i - log(E'_i)                (a race of the group's tokens with fresh uniforms)
// so token i is drawn with probability S_G / S * exp(z_i) / S_G = exp(z_i) / sum_{kept} exp(z_k): exact sampling with
// no sort and no prefix sum over the row, only an argmax, in the same single pass over the row that computes the max
// and the normaliser. Any partition of the row into groups gives this distribution; this one gives one race word (and
// one filter test) per 32 logits, and a GPU thread that folds the quads t, t + 512, t + 1024, ... (as the kernel's
// thread t of 512 does, with coalesced loads) sees each of its groups whole, one after the other; the draw inside the
// winning group is one token per lane of a GPU warp. log S_G = m_G + log(sum_i exp(z_i - m_G)) with m_G the group's
// max, so no overflow. Rows of at most 2048 logits (512 quads) have groups of one quad, G = q. (Until 2026-11-28
// groups had four quads, sixteen tokens: the GPU kernel's pass 1 spent about a fifth of its instructions closing groups
// and drawing their words. Rows of at most 8192 logits have the same groups, words and draws with either size.)
// Random words, Philox4x32-10 (corl/core/rng.hpp) with counter (offset, row, call): the race word x_G is word
// (G / 512) % 4 of call (G % 512) + 512 * (G / 2048) (the same interleave one level up: a thread, which folds the groups
// G = t mod 512, shares one call between four consecutive groups of its own; calls < 2^29); the uniforms of the race
// inside the winning group are the four words of call 2^31 + q for each of its quads q (a disjoint counter range for
// rows of fewer than 2^33 logits).
//
// Why CPU and GPU agree: every operation that decides a token is a single IEEE-754 float operation rounded to nearest
// (the device side uses __fmul_rn / __fadd_rn / __fsub_rn so that nvcc does not contract them into FMAs), the uniforms
// are bit-identical integers, and the truncation thresholds are values of z itself (top-k, top-p) or m + log(min_p) with
// log(min_p) computed once on the host. The functions that may differ by an ulp or two between the host's libm and
// CUDA's are the exp / log / log1p inside a group's key and pick; two groups (or two tokens of the winning group) can
// then swap only when their keys are within a few ulp (probability ~1e-7 per row). Top-p thresholds depend on sums
// of probabilities, whose rounding differs with the summation order: a row whose cumulative mass lands within
// rounding of p may keep one token more or less on one side.
// Sources: Gumbel 1954; Maddison et al. 2014 ("A* sampling", Gumbel-max; the race over groups is its top-down
// construction with a categorical draw in the winning group); HF / vLLM options temperature, top_k, top_p, min_p;
// CFG: Ho & Salimans 2022, Janus-Pro image generation (cfg_weight).
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>

#include "corl/core/hd.hpp"
#include "corl/core/rng.hpp"

namespace corl::sampling {

/// a * b, rounded once (never fused into an FMA on the device).
template <class Real>
CORL_HD Real mul_rn(Real a, Real b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(Real) == sizeof(float)) return __fmul_rn(a, b); else return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

/// a + b, rounded once.
template <class Real>
CORL_HD Real add_rn(Real a, Real b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(Real) == sizeof(float)) return __fadd_rn(a, b); else return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

/// a - b, rounded once.
template <class Real>
CORL_HD Real sub_rn(Real a, Real b) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(Real) == sizeof(float)) return __fsub_rn(a, b); else return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

/// The guided logit u + w (c - u). A token masked (-inf) in either branch stays masked, so -inf never turns into NaN.
template <class Real>
CORL_HD Real cfg_mix(Real cond, Real uncond, Real weight) {
  const Real neg_inf = -std::numeric_limits<Real>::infinity();
  if (cond == neg_inf || uncond == neg_inf) return neg_inf;
  return add_rn(uncond, mul_rn(weight, sub_rn(cond, uncond)));
}

/// The interleave of the race (section "Random words" above): a thread of the GPU kernel folds the quads t + 512 n,
/// n = 0, 1, 2, ...; eight consecutive ones form a group, and four consecutive groups share one Philox call.
inline constexpr std::uint32_t kRaceQuadInterleave = 512;
inline constexpr int kRaceGroupQuads = 8;                           ///< quads per group
inline constexpr int kRaceGroupSize = 4 * kRaceGroupQuads;          ///< logits per group (a GPU warp's lanes)
inline constexpr int kRaceWordsPerCall = 4;                         ///< groups whose race words one Philox call gives
static_assert((kRaceGroupQuads & (kRaceGroupQuads - 1)) == 0, "the kernel takes a quad's slot with a mask");

// race_group, race_call and race_word_lane compute in the unsigned type they are given: 64 bits on the host, 32 in
// the GPU kernel's loop (its quads and groups are < 2^31; a 64-bit division there costs a call).

/// The group of quad q: q % 512 + 512 * (q / 4096).
template <std::unsigned_integral U>
CORL_HD U race_group(U quad) {
  return quad % kRaceQuadInterleave + kRaceQuadInterleave * (quad / (kRaceGroupQuads * kRaceQuadInterleave));
}

/// Quad j (0..7) of group G: G % 512 + 4096 * (G / 512) + 512 j (it may lie beyond the row).
CORL_HD std::uint64_t group_quad(std::uint64_t group, int j) {
  return group % kRaceQuadInterleave + kRaceGroupQuads * kRaceQuadInterleave * (group / kRaceQuadInterleave) +
         kRaceQuadInterleave * static_cast<std::uint64_t>(j);
}

/// Which quad of its group q is (j = 0..7).
CORL_HD int quad_slot(std::uint64_t quad) { return static_cast<int>((quad / kRaceQuadInterleave) % kRaceGroupQuads); }

/// Whether q is the last quad of its group in a row of `quads` quads (slot kRaceGroupQuads - 1, or the next one lies
/// beyond the row).
CORL_HD bool closes_group(std::uint64_t quad, std::uint64_t quads) {
  return quad_slot(quad) == kRaceGroupQuads - 1 || quad + kRaceQuadInterleave >= quads;
}

/// The number of groups of a row of `quads` quads; they are G = 0 .. race_groups(quads) - 1, every one non-empty.
CORL_HD std::uint64_t race_groups(std::uint64_t quads) {
  constexpr std::uint64_t span = kRaceGroupQuads * kRaceQuadInterleave;  // quads of 512 whole groups
  const std::uint64_t rest = quads % span;
  return kRaceQuadInterleave * (quads / span) + (rest < kRaceQuadInterleave ? rest : kRaceQuadInterleave);
}

/// The Philox call index (counter word 3) of group G's race word: G % 512 + 512 * (G / 2048); G < 2^31.
template <std::unsigned_integral U>
CORL_HD std::uint32_t race_call(U group) {
  return static_cast<std::uint32_t>(group % kRaceQuadInterleave +
                                    kRaceQuadInterleave * (group / (kRaceWordsPerCall * kRaceQuadInterleave)));
}

/// Which of the call's four words is group G's: (G / 512) % 4.
template <std::unsigned_integral U>
CORL_HD int race_word_lane(U group) {
  return static_cast<int>((group / kRaceQuadInterleave) % kRaceWordsPerCall);
}

/// Word k (a run-time value) of a Philox result, by selects: indexing the array with a run-time value would put it in
/// local memory on the device.
CORL_HD std::uint32_t philox_word(const Philox4x32& w, int k) {
  return k == 0 ? w.v[0] : (k == 1 ? w.v[1] : (k == 2 ? w.v[2] : w.v[3]));
}

/// The race word of group `group` of `row`.
CORL_HD std::uint32_t race_word(std::uint64_t seed, std::uint64_t offset, std::uint32_t row, std::uint64_t group) {
  return philox_word(random_words(seed, offset, row, race_call(group)), race_word_lane(group));
}

/// The four words of the race inside the winning group that belong to its quad `quad`: call 2^31 + quad, quad < 2^31.
CORL_HD Philox4x32 pick_words(std::uint64_t seed, std::uint64_t offset, std::uint32_t row, std::uint64_t quad) {
  return random_words(seed, offset, row, 0x80000000u | static_cast<std::uint32_t>(quad));
}

/// The uniform x = (word + 1/2) / 2^32 in (0, 1). In float it is capped at the largest float below 1 (the rounding of
/// word + 1/2 can reach 2^32); in double it is exact. Small x keep full relative precision, which is what matters: the
/// race is won by the smallest E = -log(1 - x) ~ x.
template <class Real>
CORL_HD Real word_to_race_uniform(std::uint32_t word) {
  if constexpr (sizeof(Real) == sizeof(float)) {
    const float x = mul_rn(add_rn(static_cast<float>(word), 0.5f), 2.3283064365386963e-10f);  // 2^-32
    return x < 0.99999994f ? x : 0.99999994f;
  } else {
    return (static_cast<double>(word) + 0.5) * 2.3283064365386963e-10;
  }
}

/// Standard exponential E = -log(1 - x) (accurate for small x).
template <class Real>
CORL_HD Real race_exponential(Real x) {
  using std::log1p;
  return -log1p(-x);
}

/// Race key of a group: log S - log E with log S = m + log(sum_k exp(z_k - m)), m = max z_k, over its 32 scores
/// (quad j's at 4j .. 4j + 3; -inf for masked entries and quads beyond the row). Entries equal to -inf do not count; at
/// least one must be finite. The sum runs k = 0..31 (the same order on host and device), so a group of one quad gets
/// exactly that quad's four-term sum.
template <class Real>
CORL_HD Real group_race_key(const Real (&z)[kRaceGroupSize], Real exponential) {
  using std::exp;
  using std::log;
  const Real neg_inf = -std::numeric_limits<Real>::infinity();
  Real m = neg_inf;
  for (int k = 0; k < kRaceGroupSize; ++k) m = z[k] > m ? z[k] : m;
  Real s = 0;
  for (int k = 0; k < kRaceGroupSize; ++k)
    if (z[k] != neg_inf) s = add_rn(s, static_cast<Real>(exp(sub_rn(z[k], m))));
  return sub_rn(add_rn(m, static_cast<Real>(log(s))), static_cast<Real>(log(exponential)));
}

/// Race key of one token: z - log(E) (exact Gumbel-max among tokens).
template <class Real>
CORL_HD Real token_race_key(Real z, Real exponential) {
  using std::log;
  return sub_rn(z, static_cast<Real>(log(exponential)));
}

/// The draw inside the winning group: the kept entry (z != -inf) with the largest z - log(E'), E' of entry 4j + k from
/// word k of words[j] (pick_words of the group's quad j); ties go to the smaller entry. Returns the entry (0..31). A
/// race rather than an inverse CDF, so that a token far below the others of its group keeps its probability to the same
/// resolution as the group race (an inverse CDF in float loses shares below 2^-24).
template <class Real>
CORL_HD int pick_in_group(const Real (&z)[kRaceGroupSize], const Philox4x32 (&words)[kRaceGroupQuads]) {
  const Real neg_inf = -std::numeric_limits<Real>::infinity();
  int best = -1;
  Real best_key = neg_inf;
  for (int e = 0; e < kRaceGroupSize; ++e) {
    if (z[e] == neg_inf) continue;
    const Real key = token_race_key(z[e], race_exponential(word_to_race_uniform<Real>(philox_word(words[e / 4], e % 4))));
    if (best < 0 || key > best_key) {
      best = e;
      best_key = key;
    }
  }
  return best;
}

/// Token index of entry e (0..31) of group G.
CORL_HD std::uint64_t group_entry_token(std::uint64_t group, int entry) {
  return 4 * group_quad(group, entry / 4) + static_cast<std::uint64_t>(entry % 4);
}

/// Monotone map float -> uint32 for radix selection: for non-NaN a, b, a >= b exactly when ordered_bits(a) >=
/// ordered_bits(b), so keys order as the floats compare; -inf maps below every finite value. -0.0 gets the key of +0.0
/// (they compare equal: with keys of their own, a threshold of +0.0 would leave out a -0.0 that `z >= threshold` keeps).
CORL_HD std::uint32_t ordered_bits(float value) {
  std::uint32_t bits;
#if defined(__CUDA_ARCH__)
  bits = __float_as_uint(value);
#else
  __builtin_memcpy(&bits, &value, sizeof(bits));
#endif
  bits = bits == 0x80000000u ? 0u : bits;  // -0.0 -> +0.0
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

/// Inverse of ordered_bits (up to the sign of zero: the key of +/-0.0 gives +0.0, which compares and weighs the same).
CORL_HD float from_ordered_bits(std::uint32_t key) {
  const std::uint32_t bits = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float value;
  __builtin_memcpy(&value, &bits, sizeof(value));
  return value;
#endif
}

}  // namespace corl::sampling

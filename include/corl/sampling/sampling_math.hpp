// corl/sampling/sampling_math.hpp — the per-element arithmetic of corl's sampler, written once for CPU and GPU.
//
// A row of logits is turned into sampling scores
//     z_i = (u_i + w (c_i - u_i)) * (1 / T)        (classifier-free guidance, then temperature; without CFG z_i = c_i / T)
// and a token is drawn by a two-level exponential race (the Gumbel-max trick written with exponentials), over QUADS,
// the groups q = {4g, 4g+1, 4g+2, 4g+3} of consecutive indices:
//     S_g   = sum_{i in g, kept} exp(z_i)                           (the quad's mass; empty quads do not race)
//     key_g = log S_g - log E_g,  E_g = -log(1 - x_g),  x_g uniform in (0, 1)
//     g*    = argmax_g key_g                                       (quad g wins with probability S_g / sum_h S_h)
//     token = argmax_{i in g*, kept} z_i - log(E'_i)                (a race of the quad's tokens with fresh uniforms)
// so token i is drawn with probability S_g / S * exp(z_i) / S_g = exp(z_i) / sum_{kept} exp(z_k): exact sampling with
// no sort and no prefix sum over the row, only an argmax, in the same single pass over the row that computes the max
// and the normaliser. One race word per quad instead of one per element: the GPU kernel draws one Philox call per 16
// logits and tests its filter once per quad (corl/cuda/sampling.cuh). log S_g = m_g + log(sum_i exp(z_i - m_g)) with
// m_g the quad's max, so no overflow.
// Random words, Philox4x32-10 (corl/core/rng.hpp) with counter (offset, row, call): the race word x_g is word
// (g / 512) % 4 of call (g % 512) + 512 * (g / 2048) (the layout that lets each GPU thread, which folds the quads
// g = t mod 512, share one call between four of its quads; calls < 2^29); the four uniforms of the race inside the
// winning quad are the four words of call 2^31 + g (a disjoint counter range for rows of fewer than 2^33 logits).
//
// Why CPU and GPU agree: every operation that decides a token is a single IEEE-754 float operation rounded to nearest
// (the device side uses __fmul_rn / __fadd_rn / __fsub_rn so that nvcc does not contract them into FMAs), the uniforms
// are bit-identical integers, and the truncation thresholds are values of z itself (top-k, top-p) or m + log(min_p) with
// log(min_p) computed once on the host. The functions that may differ by an ulp or two between the host's libm and
// CUDA's are the exp / log / log1p inside a quad's key and pick; two quads (or two tokens of the winning quad) can then
// swap only when their keys (or the pick's uniform and a cumulative share) are within a few ulp (probability ~1e-7 per
// row). Top-p thresholds depend on sums of probabilities, whose rounding differs with the summation order: a row whose
// cumulative mass lands within rounding of p may keep one token more or less on one side.
// Sources: Gumbel 1954; Maddison et al. 2014 ("A* sampling", Gumbel-max; the race over groups is its top-down
// construction with a categorical draw in the winning group); HF / vLLM options temperature, top_k, top_p, min_p;
// CFG: Ho & Salimans 2022, Janus-Pro image generation (cfg_weight).
#pragma once

#include <cmath>
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

/// Quads of the race whose words share one Philox call (section "Random words" above): the call covers quads
/// c % 512 + 512 * (4 * (c / 512) + w), w = 0..3, i.e. one quad in each of four consecutive blocks of 512.
inline constexpr std::uint32_t kRaceQuadInterleave = 512;

/// The Philox call index (counter word 3) of quad g's race word; g < 2^32.
CORL_HD std::uint32_t race_call(std::uint64_t quad) {
  return static_cast<std::uint32_t>(quad % kRaceQuadInterleave + kRaceQuadInterleave * (quad / (4 * kRaceQuadInterleave)));
}

/// Which of the call's four words is quad g's.
CORL_HD int race_word_lane(std::uint64_t quad) { return static_cast<int>((quad / kRaceQuadInterleave) % 4); }

/// Word k (a run-time value) of a Philox result, by selects: indexing the array with a run-time value would put it in
/// local memory on the device.
CORL_HD std::uint32_t philox_word(const Philox4x32& w, int k) {
  return k == 0 ? w.v[0] : (k == 1 ? w.v[1] : (k == 2 ? w.v[2] : w.v[3]));
}

/// The race word of quad `quad` of `row`.
CORL_HD std::uint32_t race_word(std::uint64_t seed, std::uint64_t offset, std::uint32_t row, std::uint64_t quad) {
  return philox_word(random_words(seed, offset, row, race_call(quad)), race_word_lane(quad));
}

/// The four words of the race inside quad `quad` (drawn for the winning quad only): call 2^31 + quad, quad < 2^31.
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

/// Race key of a quad: log S - log E with log S = m + log(sum_k exp(z_k - m)), m = max z_k. Entries equal to -inf do
/// not count; at least one must be finite. The sum runs k = 0..3 (the same order on host and device).
template <class Real>
CORL_HD Real quad_race_key(const Real (&z)[4], Real exponential) {
  using std::exp;
  using std::log;
  const Real neg_inf = -std::numeric_limits<Real>::infinity();
  Real m = neg_inf;
  for (int k = 0; k < 4; ++k) m = z[k] > m ? z[k] : m;
  Real s = 0;
  for (int k = 0; k < 4; ++k)
    if (z[k] != neg_inf) s = add_rn(s, static_cast<Real>(exp(sub_rn(z[k], m))));
  return sub_rn(add_rn(m, static_cast<Real>(log(s))), static_cast<Real>(log(exponential)));
}

/// Race key of one token: z - log(E) (exact Gumbel-max among tokens).
template <class Real>
CORL_HD Real token_race_key(Real z, Real exponential) {
  using std::log;
  return sub_rn(z, static_cast<Real>(log(exponential)));
}

/// The draw inside the winning quad: the kept token (z != -inf) with the largest z - log(E'), E' from word k of
/// `words` (pick_words); ties go to the smaller k. A race rather than an inverse CDF, so that a token far below the
/// others of its quad keeps its probability to the same resolution as the quad race (an inverse CDF in float loses
/// shares below 2^-24).
template <class Real>
CORL_HD int pick_in_quad(const Real (&z)[4], const Philox4x32& words) {
  const Real neg_inf = -std::numeric_limits<Real>::infinity();
  int best = -1;
  Real best_key = neg_inf;
  for (int k = 0; k < 4; ++k) {
    if (z[k] == neg_inf) continue;
    const Real key = token_race_key(z[k], race_exponential(word_to_race_uniform<Real>(philox_word(words, k))));
    if (best < 0 || key > best_key) {
      best = k;
      best_key = key;
    }
  }
  return best;
}

/// Monotone map float -> uint32 (larger float, larger key) for radix selection; -inf maps below every finite value.
CORL_HD std::uint32_t ordered_bits(float value) {
  std::uint32_t bits;
#if defined(__CUDA_ARCH__)
  bits = __float_as_uint(value);
#else
  __builtin_memcpy(&bits, &value, sizeof(bits));
#endif
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

/// Inverse of ordered_bits.
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

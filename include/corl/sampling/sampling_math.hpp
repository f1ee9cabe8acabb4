// corl/sampling/sampling_math.hpp — the per-element arithmetic of corl's sampler, written once for CPU and GPU.
//
// A row of logits is turned into sampling scores
//     z_i = (u_i + w (c_i - u_i)) * (1 / T)        (classifier-free guidance, then temperature; without CFG z_i = c_i / T)
// and a token is drawn by the exponential race (the Gumbel-max trick written with exponentials):
//     E_i = -log(1 - x_i),  x_i uniform in (0, 1);   token = argmax_{i kept} key_i,  key_i = z_i - log(E_i)
// which picks i with probability exp(z_i) / sum_{kept} exp(z_k) (Gumbel-max: -log E_i is standard Gumbel). It needs no
// sort and no prefix sum, only an argmax, so it runs in the same single pass over the row that computes the max and the
// normaliser. x_i comes from Philox4x32-10 (corl/core/rng.hpp): counter (offset, row, i / 4), word i % 4.
//
// Why CPU and GPU agree: every operation that decides a token is a single IEEE-754 float operation rounded to nearest
// (the device side uses __fmul_rn / __fadd_rn / __fsub_rn so that nvcc does not contract them into FMAs), the uniforms
// are bit-identical integers, and the truncation thresholds are values of z itself (top-k, top-p) or m + log(min_p) with
// log(min_p) computed once on the host. The only functions that may differ by one ulp between the host's libm and CUDA's
// are log1pf / logf inside the key; two tokens can then swap only when their keys are within one ulp (probability
// ~1e-7 per row). Top-p thresholds depend on sums of probabilities, whose rounding differs with the summation order:
// a row whose cumulative mass lands within rounding of p may keep one token more or less on one side.
// Sources: Gumbel 1954; Maddison et al. 2014 ("A* sampling", Gumbel-max); HF / vLLM options temperature, top_k, top_p,
// min_p; CFG: Ho & Salimans 2022, Janus-Pro image generation (cfg_weight).
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

/// The 32-bit random word of vocabulary entry `index` of `row`: Philox(seed; offset, row, index / 4), word index % 4.
CORL_HD std::uint32_t noise_word(std::uint64_t seed, std::uint64_t offset, std::uint32_t row, std::uint64_t index) {
  const Philox4x32 w = random_words(seed, offset, row, static_cast<std::uint32_t>(index >> 2));
  return w.v[index & 3u];
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

/// Race key z - log(E): the token with the largest key among the kept ones is the sample (exact Gumbel-max).
template <class Real>
CORL_HD Real race_key(Real z, Real exponential) {
  using std::log;
  return sub_rn(z, static_cast<Real>(log(exponential)));
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

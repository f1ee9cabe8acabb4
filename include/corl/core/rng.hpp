// corl/core/rng.hpp — counter-based random numbers (Philox4x32-10, Salmon et al., SC'11), identical on CPU and GPU.
//
// A draw is a pure function of (seed, counter): no state to carry, split or synchronise, so that a sampler on the CPU
// and one on the GPU given the same (seed, offset, row, draw index) see the same uniforms, and any element of a batch
// can be computed independently by any thread. Convention used throughout corl:
//   key     = (seed_lo, seed_hi)
//   counter = (offset_lo, offset_hi, stream, index)      stream: e.g. the row; index: e.g. the draw within the row
// One call yields four 32-bit words; uniform01 uses the first (float, 24 bits) or the first two (double, 53 bits).
#pragma once

#include <cstdint>

#include "corl/core/hd.hpp"

namespace corl {

struct Philox4x32 {
  std::uint32_t v[4];
};

namespace detail {
CORL_HD std::uint32_t mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t* hi) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b);
  *hi = static_cast<std::uint32_t>(p >> 32);
  return static_cast<std::uint32_t>(p);
}
}  // namespace detail

/// Philox4x32 with 10 rounds applied to `counter` under `key`.
CORL_HD Philox4x32 philox4x32_10(std::uint64_t seed, std::uint32_t c0, std::uint32_t c1, std::uint32_t c2,
                                 std::uint32_t c3) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  std::uint32_t k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  std::uint32_t x0 = c0, x1 = c1, x2 = c2, x3 = c3;
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, hi1;
    const std::uint32_t lo0 = detail::mulhilo32(kM0, x0, &hi0);
    const std::uint32_t lo1 = detail::mulhilo32(kM1, x2, &hi1);
    x0 = hi1 ^ x1 ^ k0;
    x1 = lo1;
    x2 = hi0 ^ x3 ^ k1;
    x3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return Philox4x32{{x0, x1, x2, x3}};
}

/// The four words for (seed, offset, stream, index) in corl's counter convention.
CORL_HD Philox4x32 random_words(std::uint64_t seed, std::uint64_t offset, std::uint32_t stream, std::uint32_t index) {
  return philox4x32_10(seed, static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(offset >> 32), stream,
                       index);
}

/// Uniform float in the open interval (0, 1) from a 32-bit word (23 bits + 1/2, exactly representable: never 0 or 1).
CORL_HD float u32_to_open01f(std::uint32_t w) { return (static_cast<float>(w >> 9) + 0.5f) * (1.0f / 8388608.0f); }

/// Uniform double in the open interval (0, 1) from two 32-bit words (53 significant bits, never 0 or 1).
CORL_HD double u64_to_open01(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t bits = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
  return (static_cast<double>(bits) + 0.5) * (1.0 / 9007199254740992.0);
}

/// Uniform in (0, 1) for (seed, offset, stream, index); float uses word 0 (23 bits), double words 0 and 1 (53 bits).
template <class Real>
CORL_HD Real uniform01(std::uint64_t seed, std::uint64_t offset, std::uint32_t stream, std::uint32_t index) {
  const Philox4x32 w = random_words(seed, offset, stream, index);
  if constexpr (sizeof(Real) == sizeof(float)) {
    return static_cast<Real>(u32_to_open01f(w.v[0]));
  } else {
    return static_cast<Real>(u64_to_open01(w.v[0], w.v[1]));
  }
}

/// A small sequential generator on top of Philox for host code that wants a stream (data generation, init):
/// draw k of stream s under seed is uniform01(seed, 0, s, k). Copyable, so a snapshot reproduces the rest exactly.
class CounterRng {
 public:
  CounterRng(std::uint64_t seed, std::uint32_t stream) : seed_(seed), stream_(stream) {}
  /// Uniform double in (0, 1).
  double uniform() { return uniform01<double>(seed_, hi_, stream_, next_index()); }
  /// Integer uniform in [0, n) for n >= 1 (rejection-free multiply-shift on 53 bits; bias < 2^-20 for n < 2^32).
  std::uint64_t below(std::uint64_t n) { return static_cast<std::uint64_t>(uniform() * static_cast<double>(n)) % n; }
  /// Standard normal (Box-Muller on two draws).
  double normal();
  std::uint64_t seed() const { return seed_; }
  std::uint32_t stream() const { return stream_; }
  std::uint64_t position() const { return (hi_ << 32) | index_; }

 private:
  std::uint32_t next_index() {
    const std::uint32_t i = index_++;
    if (index_ == 0) ++hi_;
    return i;
  }
  std::uint64_t seed_;
  std::uint32_t stream_;
  std::uint64_t hi_ = 0;
  std::uint32_t index_ = 0;
};

}  // namespace corl

#include <cmath>

inline double corl::CounterRng::normal() {
  const double u1 = uniform(), u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
}

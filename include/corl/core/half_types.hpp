// corl/core/half_types.hpp — host-side bfloat16 and float16 storage types.
//
// corl::bfloat16 and corl::float16 hold the 16 raw bits of a bf16 / IEEE binary16 number. Conversion from float rounds
// to nearest, ties to even, exactly as CUDA's __float2bfloat16 / __float2half (cvt.rn.bf16.f32 / cvt.rn.f16.f32) do:
// overflow goes to +-inf, NaN becomes the canonical quiet NaN 0x7FFF, float16 subnormals are kept. Conversion to float
// is exact. The layout (one uint16, no padding) matches __nv_bfloat16 / __half, so a host array of these can be copied
// to the device and read there as the CUDA types: CPU references then see exactly the values the GPU reads.
// Source: IEEE 754-2008 binary16; bfloat16 = the top half of binary32 (Google Brain); CUDA Math API, cuda_bf16.h.
#pragma once

#include <bit>
#include <cstdint>
#include <type_traits>

namespace corl {

/// bfloat16 storage: 1 sign bit, 8 exponent bits, 7 mantissa bits.
struct bfloat16 {
  std::uint16_t bits = 0;

  constexpr bfloat16() = default;
  /// Rounds to nearest even (CUDA __float2bfloat16).
  constexpr explicit bfloat16(float value) : bits(from_float_bits(value)) {}
  static constexpr bfloat16 from_bits(std::uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
  constexpr explicit operator float() const { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }
  friend constexpr bool operator==(bfloat16, bfloat16) = default;  // bitwise

  static constexpr std::uint16_t from_float_bits(float value) {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN -> canonical quiet NaN
    const std::uint32_t upper = x >> 16;
    const std::uint32_t lower = x & 0xffffu;
    // round half to even on the 16 dropped bits; carrying into the exponent is the correct overflow to inf
    const bool round_up = lower > 0x8000u || (lower == 0x8000u && (upper & 1u) != 0u);
    return static_cast<std::uint16_t>(upper + (round_up ? 1u : 0u));
  }
};

/// IEEE binary16 storage: 1 sign bit, 5 exponent bits, 10 mantissa bits.
struct float16 {
  std::uint16_t bits = 0;

  constexpr float16() = default;
  /// Rounds to nearest even (CUDA __float2half).
  constexpr explicit float16(float value) : bits(from_float_bits(value)) {}
  static constexpr float16 from_bits(std::uint16_t b) {
    float16 h;
    h.bits = b;
    return h;
  }
  constexpr explicit operator float() const { return to_float(bits); }
  friend constexpr bool operator==(float16, float16) = default;  // bitwise

  static constexpr std::uint16_t from_float_bits(float value) {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t magnitude = x & 0x7fffffffu;
    if (magnitude >= 0x7f800000u) return static_cast<std::uint16_t>(magnitude == 0x7f800000u ? (sign | 0x7c00u) : 0x7fffu);
    if (magnitude >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
    std::uint32_t result = 0;
    std::uint32_t dropped = 0;  // the bits shifted out, and the value of half an ulp at that position
    std::uint32_t half_ulp = 0;
    if (magnitude >= 0x38800000u) {  // normal binary16: rebias the exponent (127 -> 15), drop 13 mantissa bits
      result = (magnitude - 0x38000000u) >> 13;
      dropped = magnitude & 0x1fffu;
      half_ulp = 0x1000u;
    } else if (magnitude <= 0x33000000u) {  // |value| <= 2^-25: rounds to zero (2^-25 is a tie to the even 0)
      return static_cast<std::uint16_t>(sign);
    } else {  // subnormal binary16: value = m * 2^-24 with the implicit bit made explicit
      const std::uint32_t exponent = magnitude >> 23;         // 102 .. 112
      const std::uint32_t shift = 126u - exponent;            // 14 .. 24
      const std::uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
      result = mantissa >> shift;
      dropped = mantissa & ((1u << shift) - 1u);
      half_ulp = 1u << (shift - 1u);
    }
    if (dropped > half_ulp || (dropped == half_ulp && (result & 1u) != 0u)) ++result;
    return static_cast<std::uint16_t>(sign | result);
  }

  static constexpr float to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1fu;
    std::uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0x1fu) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));  // inf / NaN
    if (exponent != 0u) return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    if (mantissa == 0u) return std::bit_cast<float>(sign);
    // subnormal: normalise the mantissa
    std::uint32_t e = 113u;
    while ((mantissa & 0x400u) == 0u) {
      mantissa <<= 1;
      --e;
    }
    return std::bit_cast<float>(sign | (e << 23) | ((mantissa & 0x3ffu) << 13));
  }
};

static_assert(sizeof(bfloat16) == 2 && sizeof(float16) == 2, "half types must be 2 bytes, like the CUDA types");

/// The type corl computes in for a given storage type: double for double, float for float / bf16 / fp16.
template <class T>
struct compute_type {
  using type = float;
};
template <>
struct compute_type<double> {
  using type = double;
};
template <class T>
using compute_type_t = typename compute_type<T>::type;

/// Widening conversion used by the CPU references: exact for every storage type.
template <class Real, class T>
constexpr Real to_real(T value) {
  if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>) {
    return static_cast<Real>(static_cast<float>(value));
  } else {
    return static_cast<Real>(value);
  }
}

/// Narrowing conversion (round to nearest even) used to store results in a storage type.
template <class T, class Real>
constexpr T from_real(Real value) {
  if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>) {
    return T(static_cast<float>(value));
  } else {
    return static_cast<T>(value);
  }
}

}  // namespace corl

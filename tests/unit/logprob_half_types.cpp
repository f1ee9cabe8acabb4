// Tests of corl/core/half_types.hpp: bf16 / fp16 round-to-nearest-even against hand-computed bit patterns.
// (The conversions were also checked exhaustively over all 2^32 floats against CUDA's cuda_bf16.h / cuda_fp16.h host
// code during development; tests/gpu/logprobs.cu compares them with the device conversions on random floats.)
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include <corl/core/half_types.hpp>

using corl::bfloat16;
using corl::float16;

static float from_bits32(std::uint32_t b) { return std::bit_cast<float>(b); }

TEST_CASE("bfloat16 rounds to nearest, ties to even, like __float2bfloat16") {
  CHECK(bfloat16(1.0f).bits == 0x3F80);
  CHECK(bfloat16(-2.0f).bits == 0xC000);
  CHECK(bfloat16(from_bits32(0x3F808000u)).bits == 0x3F80);  // exact tie, upper half even: stays
  CHECK(bfloat16(from_bits32(0x3F818000u)).bits == 0x3F82);  // exact tie, upper half odd: rounds up to even
  CHECK(bfloat16(from_bits32(0x3F808001u)).bits == 0x3F81);  // just above the tie: up
  CHECK(bfloat16(from_bits32(0x3F807FFFu)).bits == 0x3F80);  // just below the tie: down
  CHECK(bfloat16(from_bits32(0x7F7FFFFFu)).bits == 0x7F80);  // FLT_MAX rounds to +inf
  CHECK(bfloat16(std::numeric_limits<float>::infinity()).bits == 0x7F80);
  CHECK(bfloat16(std::numeric_limits<float>::quiet_NaN()).bits == 0x7FFF);
  CHECK(bfloat16(from_bits32(0x00000001u)).bits == 0x0000);  // smallest subnormal float rounds to +0
  CHECK(static_cast<float>(bfloat16::from_bits(0x4049)) == 3.140625f);
}

TEST_CASE("float16 rounds to nearest, ties to even, like __float2half") {
  CHECK(float16(1.0f).bits == 0x3C00);
  CHECK(float16(-0.5f).bits == 0xB800);
  CHECK(float16(65504.0f).bits == 0x7BFF);      // largest finite half
  CHECK(float16(65519.996f).bits == 0x7BFF);    // below the midpoint to 65536: stays finite
  CHECK(float16(65520.0f).bits == 0x7C00);      // the midpoint ties to even = inf
  CHECK(float16(std::ldexp(1.0f, -24)).bits == 0x0001);         // smallest subnormal
  CHECK(float16(std::ldexp(1.0f, -25)).bits == 0x0000);         // half of it: tie to even 0
  CHECK(float16(std::ldexp(1.5f, -25)).bits == 0x0001);         // above the tie
  CHECK(float16(std::ldexp(3.0f, -25)).bits == 0x0002);         // 1.5 ulp: tie, rounds to even 2
  CHECK(float16(1.0f + std::ldexp(1.0f, -11)).bits == 0x3C00);  // tie at 1 + half ulp: even
  CHECK(float16(1.0f + std::ldexp(3.0f, -11)).bits == 0x3C02);  // tie at 1 + 1.5 ulp: even
  CHECK(float16(-std::numeric_limits<float>::infinity()).bits == 0xFC00);
  CHECK(float16(std::numeric_limits<float>::quiet_NaN()).bits == 0x7FFF);
}

TEST_CASE("float16 -> float -> float16 is the identity on every non-NaN pattern") {
  int mismatches = 0;
  for (std::uint32_t b = 0; b < 65536u; ++b) {
    const auto h = float16::from_bits(static_cast<std::uint16_t>(b));
    const float f = static_cast<float>(h);
    if (std::isnan(f)) continue;
    if (float16(f).bits != h.bits) ++mismatches;
  }
  CHECK(mismatches == 0);
  CHECK(static_cast<float>(float16::from_bits(0x0001)) == std::ldexp(1.0f, -24));
  CHECK(static_cast<float>(float16::from_bits(0x3555)) == 0.333251953125f);
}

TEST_CASE("bfloat16 -> float -> bfloat16 is the identity on every non-NaN pattern") {
  int mismatches = 0;
  for (std::uint32_t b = 0; b < 65536u; ++b) {
    const auto h = bfloat16::from_bits(static_cast<std::uint16_t>(b));
    const float f = static_cast<float>(h);
    if (std::isnan(f)) continue;
    if (bfloat16(f).bits != h.bits) ++mismatches;
  }
  CHECK(mismatches == 0);
}

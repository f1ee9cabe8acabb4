#include <doctest/doctest.h>

#include <corl/core/error.hpp>
#include <corl/core/rng.hpp>

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors") {
  // Known-answer test from Random123 (kat_vectors): philox4x32 10 rounds, counter = key = 0.
  const auto z = corl::philox4x32_10(0, 0, 0, 0, 0);
  CHECK(z.v[0] == 0x6627e8d5u);
  CHECK(z.v[1] == 0xe169c58du);
  CHECK(z.v[2] == 0xbc57ac4cu);
  CHECK(z.v[3] == 0x9b00dbd8u);
  // counter = all ones, key = all ones.
  const auto o = corl::philox4x32_10(0xffffffffffffffffull, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  CHECK(o.v[0] == 0x408f276du);
  CHECK(o.v[1] == 0x41c83b0eu);
  CHECK(o.v[2] == 0xa20bc7c6u);
  CHECK(o.v[3] == 0x6d5451fdu);
}

TEST_CASE("uniform01 stays in the open interval and is a pure function of the counter") {
  for (std::uint32_t i = 0; i < 1000; ++i) {
    const double u = corl::uniform01<double>(42, 7, 3, i);
    const float f = corl::uniform01<float>(42, 7, 3, i);
    CHECK(u > 0.0);
    CHECK(u < 1.0);
    CHECK(f > 0.0f);
    CHECK(f < 1.0f);
    CHECK(u == corl::uniform01<double>(42, 7, 3, i));
  }
  CHECK(corl::u32_to_open01f(0u) > 0.0f);
  CHECK(corl::u32_to_open01f(0xffffffffu) < 1.0f);
}

TEST_CASE("CounterRng: copies replay, mean and variance are right") {
  corl::CounterRng a(123, 0);
  for (int i = 0; i < 10; ++i) a.uniform();
  corl::CounterRng b = a;
  CHECK(a.uniform() == b.uniform());
  double s = 0, s2 = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double x = a.normal();
    s += x;
    s2 += x * x;
  }
  CHECK(std::abs(s / n) < 0.02);
  CHECK(std::abs(s2 / n - 1.0) < 0.03);
}

TEST_CASE("corl::require throws corl::Error with the streamed message") {
  CHECK_THROWS_WITH_AS(corl::require(false, "f: x[", 3, "] = ", 1.5, ", expected < 1"), "f: x[3] = 1.5, expected < 1",
                       corl::Error);
  CHECK_NOTHROW(corl::require(true, "never"));
}

// corl packaging consumer: compiled against an installed or add_subdirectory'd corl, it exercises a few real APIs and
// returns non-zero if any value is wrong, so that the packaging test fails on a broken package, not only on a missing one.
#include <cmath>
#include <cstdio>
#include <string>

#include <corl/core/error.hpp>
#include <corl/core/rng.hpp>
#include <corl/loss/ppo_clip.hpp>

namespace {
int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "corl_consumer: FAILED: %s\n", what);
    ++failures;
  }
}

bool close(double a, double b) { return std::abs(a - b) <= 1e-12 * (1.0 + std::abs(b)); }
}  // namespace

int main() {
  // PPO clip, eps 0.2: ratio 1.1 lies inside [0.8, 1.2], so loss = -r A = -2.2 and d loss / d logp = -2.2.
  const corl::PpoClip clip{};
  const auto inside = clip.token<double>(std::log(1.1), 0.0, 2.0, 0.0);
  expect(close(inside.value, -2.2), "PpoClip inside value == -2.2");
  expect(close(inside.grad, -2.2), "PpoClip inside grad == -2.2");
  expect(inside.flags == 0, "PpoClip inside: no clip flag");
  // Ratio 1.5 with A = 1 is clipped at 1.2: loss = -1.2, no gradient, flagged as clipped high.
  const auto above = clip.token<double>(std::log(1.5), 0.0, 1.0, 0.0);
  expect(close(above.value, -1.2), "PpoClip clipped value == -1.2");
  expect(above.grad == 0.0, "PpoClip clipped grad == 0");
  expect(above.flags == corl::kClippedHigh, "PpoClip clipped flag == kClippedHigh");

  // Philox4x32-10 known answer (Random123 kat_vectors, counter = key = 0).
  const auto words = corl::philox4x32_10(0, 0, 0, 0, 0);
  expect(words.v[0] == 0x6627e8d5u && words.v[3] == 0x9b00dbd8u, "philox4x32_10 known-answer vector");
  const double u = corl::uniform01<double>(7, 0, 1, 2);
  expect(u > 0.0 && u < 1.0 && u == corl::uniform01<double>(7, 0, 1, 2), "uniform01 in (0,1) and reproducible");

  // corl::Error carries the message built by require.
  try {
    corl::require(false, "consumer: x[", 3, "] = ", -1, ", expected >= 0");
    expect(false, "corl::require(false, ...) throws");
  } catch (const corl::Error& e) {
    expect(std::string(e.what()) == "consumer: x[3] = -1, expected >= 0", "corl::Error message");
  }

  if (failures == 0) std::printf("corl_consumer: all checks passed\n");
  return failures == 0 ? 0 : 1;
}

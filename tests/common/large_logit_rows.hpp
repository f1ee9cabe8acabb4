// Rows of logits at both ends of the float range, shared by the GPU test "rows of large logits ..."
// (tests/gpu/sampling.cu) and its host counterpart on the kernel's transcription (tests/unit/sampling_race.cpp), so
// that both check the same rows. 16 rows of 9001 logits; row r is of kind r % 8:
//   0, 2: 1e33 below the max everywhere (exp(-1e33) = 0), then three exact maxima 3e38 (kind 0) or FLT_MAX (kind 2);
//   1, 3: every entry -3e38 (kind 1) or -FLT_MAX (kind 3): all tie;
//   4-7: spread 3 around offsets 1e4, -4.7e4, 3e6, -2.5e6 (+ 123 r), on both sides of the shifted exp's 2^20 limit.
// Host code only; compiles as C++ and as CUDA.
#pragma once

#include <cstddef>
#include <limits>
#include <vector>

#include <corl/core/rng.hpp>
#include <corl/core/hd.hpp>

namespace corl_test {

struct LargeLogitRows {
  static constexpr corl::index_t kRows = 16, kVocab = 9001;
  std::vector<float> values;                       ///< kRows x kVocab, row-major
  std::vector<std::vector<corl::index_t>> maxima;  ///< the tied maxima of rows of kind 0 and 2, empty otherwise
  /// Rows of kind 4-7 (spread logits); the others are exact ties.
  static bool spread(corl::index_t r) { return r % 8 >= 4; }
  std::vector<float> row(corl::index_t r) const {
    return {values.begin() + r * kVocab, values.begin() + (r + 1) * kVocab};
  }
};

inline LargeLogitRows large_logit_rows() {
  using corl::index_t;
  constexpr index_t vocab = LargeLogitRows::kVocab;
  const float big = 3.0e38f, flt_max = std::numeric_limits<float>::max();
  const double offsets[] = {1.0e4, -4.7e4, 3.0e6, -2.5e6};
  LargeLogitRows out;
  out.values.resize(static_cast<std::size_t>(LargeLogitRows::kRows * vocab));
  out.maxima.resize(static_cast<std::size_t>(LargeLogitRows::kRows));
  corl::CounterRng rng(606, 1);
  for (index_t r = 0; r < LargeLogitRows::kRows; ++r) {
    auto at = [&](index_t i) -> float& { return out.values[static_cast<std::size_t>(r * vocab + i)]; };
    const int kind = static_cast<int>(r % 8);
    if (kind >= 4) {
      const double offset = offsets[kind - 4] + 123.0 * static_cast<double>(r);
      for (index_t i = 0; i < vocab; ++i) at(i) = static_cast<float>(offset + 3.0 * rng.normal());
      continue;
    }
    const bool high = kind % 2 == 0;
    const float top = kind == 0 ? big : flt_max;
    for (index_t i = 0; i < vocab; ++i) at(i) = high ? top - 1.0e33f : (kind == 1 ? -big : -flt_max);
    if (high) {
      for (const index_t i : {index_t{17} * (r + 1), vocab / 2 + r, vocab - 1 - r}) {
        at(i) = top;
        out.maxima[static_cast<std::size_t>(r)].push_back(i);
      }
    }
  }
  return out;
}

}  // namespace corl_test

// corl/pipeline/schedule.hpp — which data rows and which random numbers a pipeline step uses, as pure functions.
//
//   sample_key(seed, stage, step, task)  = SampleKey{seed, offset},
//                                          offset = stage << 56 | task << 52 | step << 16
//                                          (stage < 2^8, task < 2^4, step < 2^36). The low 16 bits are the policy's:
//                                          it may use offset + d for its d-th draw of the call (d < 2^16, e.g. the
//                                          token position), and draws row r, sample g from Philox stream r * G + g.
//   step_rows(n, B, seed, stage, step)   = the B dataset rows of a step: the concatenation of per-epoch permutations
//                                          of [0, n) (Fisher-Yates driven by CounterRng(seed ^ stage tag, epoch)),
//                                          read at positions step * B .. step * B + B - 1.
// Because both are functions of (seed, stage, step, ...) only, resuming at any (stage, step) replays the same rows and
// the same draws as the uninterrupted run. No generator state is carried between steps.
#pragma once

#include <cstdint>
#include <numeric>
#include <vector>

#include "corl/concepts/policy.hpp"
#include "corl/core/error.hpp"
#include "corl/core/rng.hpp"

namespace corl {

/// The counter-RNG coordinates of task `task`'s sampling call at (stage, step).
inline SampleKey sample_key(std::uint64_t seed, index_t stage, index_t step, index_t task) {
  require(stage >= 0 && stage < 256, "corl::sample_key: stage = ", stage, ", expected 0 <= stage < 256");
  require(task >= 0 && task < 16, "corl::sample_key: task = ", task, ", expected 0 <= task < 16");
  require(step >= 0 && step < (index_t(1) << 36), "corl::sample_key: step = ", step, ", expected 0 <= step < 2^36");
  const std::uint64_t offset = (static_cast<std::uint64_t>(stage) << 56) | (static_cast<std::uint64_t>(task) << 52) |
                               (static_cast<std::uint64_t>(step) << 16);
  return SampleKey{seed, offset};
}

/// A permutation of [0, n) for (seed, stage, epoch).
inline std::vector<index_t> epoch_permutation(index_t n, std::uint64_t seed, index_t stage, index_t epoch) {
  std::vector<index_t> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), index_t(0));
  CounterRng rng(seed ^ (0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(stage + 1)),
                 static_cast<std::uint32_t>(epoch));
  for (index_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<index_t>(rng.below(static_cast<std::uint64_t>(i + 1)));
    std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
  }
  return perm;
}

/// The dataset rows used by step `step` of stage `stage` (see the header comment).
inline std::vector<index_t> step_rows(index_t num_rows, index_t rows_per_step, std::uint64_t seed, index_t stage,
                                      index_t step) {
  require(num_rows >= 1, "corl::step_rows: num_rows = ", num_rows, ", expected >= 1 (the stage has no data)");
  require(rows_per_step >= 1, "corl::step_rows: rows_per_step = ", rows_per_step, ", expected >= 1");
  require(step >= 0, "corl::step_rows: step = ", step, ", expected >= 0");
  std::vector<index_t> out;
  out.reserve(static_cast<std::size_t>(rows_per_step));
  index_t pos = step * rows_per_step;
  index_t epoch = -1;
  std::vector<index_t> perm;
  for (index_t j = 0; j < rows_per_step; ++j, ++pos) {
    const index_t e = pos / num_rows;
    if (e != epoch) {
      epoch = e;
      perm = epoch_permutation(num_rows, seed, stage, epoch);
    }
    out.push_back(perm[static_cast<std::size_t>(pos % num_rows)]);
  }
  return out;
}

}  // namespace corl

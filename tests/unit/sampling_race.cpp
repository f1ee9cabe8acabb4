// The streaming race of the GPU sampler (corl/sampling/streaming_race.hpp), run on the host over the same splits of a
// row that the kernel uses (threads x unrolled groups, then a merge tree): it must pick exactly the token of the
// exhaustive CPU sampler (corl/sampling/sampler.hpp) on every row, whatever the split, because its filter only skips
// elements that certainly lose.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <corl/core/rng.hpp>
#include <corl/sampling/sampler.hpp>
#include <corl/sampling/streaming_race.hpp>

namespace {

using corl::index_t;
using corl::sampling::RaceState;

struct Emulated {
  RaceState state;
  long exact_keys = 0;  // elements whose exact key was computed
};

// Threads t = 0 .. threads-1 each fold groups g = t + (j + unroll * r) * threads in increasing order (the kernel's
// pass 1), then states are merged pairwise in a tree (the block reduction). Threads come in warps of `warp` lanes
// (consecutive t); after every round r the lanes of a warp share their best key, which every lane then passes to the
// fold as `known_key` (the kernel's shuffle); warp = 1 is the plain per-thread filter.
Emulated emulate(const std::vector<float>& z, int threads, int unroll, const corl::sampling::RaceStream& rs,
                 int warp = 1) {
  const index_t vocab = static_cast<index_t>(z.size()), groups = (vocab + 3) / 4;
  Emulated out;
  auto exact_key = [&out](float zz, float x) {
    ++out.exact_keys;
    return corl::sampling::race_key(zz, corl::sampling::race_exponential(x));
  };
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  std::vector<RaceState> states(static_cast<std::size_t>(threads), corl::sampling::empty_race_state());
  std::vector<float> c_bound(static_cast<std::size_t>(threads), std::numeric_limits<float>::infinity());
  const int warps = (threads + warp - 1) / warp;
  std::vector<float> known(static_cast<std::size_t>(warps), neg_inf);
  const index_t round_stride = static_cast<index_t>(threads) * unroll;
  for (index_t round = 0; round * round_stride < groups; ++round) {
    for (int t = 0; t < threads; ++t) {
      const auto ti = static_cast<std::size_t>(t);
      for (int j = 0; j < unroll; ++j) {
        const index_t g = t + round * round_stride + static_cast<index_t>(j) * threads;
        if (g >= groups) continue;
        float zz[4];
        for (int k = 0; k < 4; ++k) {
          const index_t i = g * 4 + k;
          zz[k] = i < vocab ? z[static_cast<std::size_t>(i)] : neg_inf;
        }
        corl::sampling::fold_race_group(states[ti], c_bound[ti], zz, g, rs, exact_key,
                                        known[static_cast<std::size_t>(t / warp)]);
      }
    }
    if (rs.greedy) continue;
    for (int w = 0; w < warps; ++w) {
      float best = neg_inf;
      for (int t = w * warp; t < std::min(threads, (w + 1) * warp); ++t) {
        const RaceState& st = states[static_cast<std::size_t>(t)];
        if (st.best_idx >= 0) best = std::max(best, st.best_key);
      }
      auto& kw = known[static_cast<std::size_t>(w)];
      if (best > kw) {
        kw = best;
        for (int t = w * warp; t < std::min(threads, (w + 1) * warp); ++t) {
          const auto ti = static_cast<std::size_t>(t);
          c_bound[ti] = corl::sampling::race_filter_bound(states[ti], kw);
        }
      }
    }
  }
  while (states.size() > 1) {  // pairwise tree
    std::vector<RaceState> next;
    for (std::size_t i = 0; i + 1 < states.size(); i += 2) next.push_back(corl::sampling::merge_race_states(states[i], states[i + 1]));
    if (states.size() % 2 == 1) next.push_back(states.back());
    states.swap(next);
  }
  out.state = states[0];
  return out;
}

std::vector<float> random_scores(corl::CounterRng& rng, index_t vocab, double scale, double masked, bool coarse) {
  std::vector<float> z(static_cast<std::size_t>(vocab));
  for (auto& v : z) {
    if (rng.uniform() < masked) {
      v = -std::numeric_limits<float>::infinity();
      continue;
    }
    double x = scale * rng.normal();
    if (coarse) x = std::round(x * 2.0) / 2.0;  // many exact ties in z
    v = static_cast<float>(x);
  }
  return z;
}

}  // namespace

TEST_CASE("the streaming race picks the exhaustive sampler's token on every row, for every split of the row") {
  corl::CounterRng rng(314, 0);
  const int splits[][3] = {{1, 1, 1}, {3, 2, 1}, {32, 4, 1}, {512, 2, 1}, {7, 1, 1}, {64, 2, 32}, {512, 2, 32}, {7, 1, 4}};
  int rows = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const index_t vocab = 1 + static_cast<index_t>(rng.below(trial < 200 ? 300 : 5000));
    const double scale = trial % 3 == 0 ? 0.3 : (trial % 3 == 1 ? 3.0 : 40.0);  // flat, typical, peaked
    auto z = random_scores(rng, vocab, scale, trial % 4 == 0 ? 0.3 : 0.0, trial % 5 == 0);
    if (trial % 7 == 0) z[static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(vocab)))] = 1.0f;  // >= 1 finite
    bool any_finite = false;
    for (const float v : z) any_finite = any_finite || v != -std::numeric_limits<float>::infinity();
    if (!any_finite) continue;
    ++rows;
    const corl::sampling::RngKey key{1000 + static_cast<std::uint64_t>(trial), static_cast<std::uint64_t>(trial) * 3};
    const std::uint32_t row = static_cast<std::uint32_t>(trial % 17);
    // The scores are already tempered: sample at T = 1 without guidance, so that z is used as is.
    const auto ref = corl::sampling::sample_row<float, float>(z, corl::sampling::SamplingParams{}, key, row);
    corl::sampling::SamplingParams greedy;
    greedy.temperature = 0.0;
    const auto ref_greedy = corl::sampling::sample_row<float, float>(z, greedy, key, row);
    for (const auto& split : splits) {
      CAPTURE(trial);
      CAPTURE(vocab);
      CAPTURE(split[0]);
      CAPTURE(split[1]);
      CAPTURE(split[2]);
      const auto e = emulate(z, split[0], split[1], {key.seed, key.offset, row, false}, split[2]);
      CHECK(e.state.best_idx == ref.token);
      CHECK(e.state.argmax == ref_greedy.token);
      const float logp = (e.state.best_z - e.state.max) - std::log(e.state.sum);
      CHECK(std::abs(logp - ref.logp) <= 1e-4f + 1e-5f * std::abs(ref.logp));
      const auto g = emulate(z, split[0], split[1], {key.seed, key.offset, row, true}, split[2]);
      CHECK(g.exact_keys == 0);
      CHECK(g.state.argmax == ref_greedy.token);
    }
  }
  CHECK(rows > 250);
}

TEST_CASE("the filter computes few exact keys: a 100000-entry row needs a few dozen log evaluations per thread") {
  corl::CounterRng rng(2718, 0);
  const auto z = random_scores(rng, 100000, 3.0, 0.0, false);
  const corl::sampling::RngKey key{5, 6};
  const auto ref = corl::sampling::sample_row<float, float>(z, corl::sampling::SamplingParams{}, key, 0);
  const auto one = emulate(z, 1, 1, {key.seed, key.offset, 0, false});
  CHECK(one.state.best_idx == ref.token);
  // One thread sees all 100000 entries: records of a race grow like log(n); allow a generous bound.
  CHECK(one.exact_keys < 200);
  const auto many = emulate(z, 512, 2, {key.seed, key.offset, 0, false});
  CHECK(many.state.best_idx == ref.token);
  CHECK(many.exact_keys < 512 * 40);  // ~49 entries per thread: far fewer evaluated than the 100000 entries
  // Warps of 32 lanes sharing their best key (the kernel): fewer, and the same token. Most of what is left is the first
  // round, where no lane has a bound yet (512 lanes x 4 exact keys); after it, few elements per warp pass the filter.
  const auto warps = emulate(z, 512, 2, {key.seed, key.offset, 0, false}, 32);
  CHECK(warps.state.best_idx == ref.token);
  MESSAGE("exact keys: one thread " << one.exact_keys << ", 512 threads " << many.exact_keys << ", 512 threads in warps "
                                    << warps.exact_keys);
  CHECK(warps.exact_keys * 3 < many.exact_keys * 2);
  CHECK(warps.exact_keys < 512 * 4 + 512 * 2);
}

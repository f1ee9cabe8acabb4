// The streaming quad race of the GPU sampler (corl/sampling/streaming_race.hpp), run on the host over the same splits
// of a row that the kernel uses (threads x unrolled quads, then a merge tree): it must pick exactly the quad, and so
// the token, of the exhaustive CPU sampler (corl/sampling/sampler.hpp) on every row, whatever the split, because its
// filter only skips quads that certainly lose.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <corl/core/rng.hpp>
#include <corl/sampling/sampler.hpp>
#include <corl/sampling/streaming_race.hpp>

namespace {

using corl::index_t;
using corl::sampling::RaceState;

struct Emulated {
  RaceState state;
  long exact_keys = 0;   // quads whose exact key was computed
  long words = 0;        // quads whose race word was asked for
  long philox_calls = 0; // Philox calls made by threads that keep their last call (the kernel's RaceWordCache)
};

struct Stream {
  std::uint64_t seed, offset;
  std::uint32_t row;
  bool greedy;
};

/// The token the kernel draws inside the winning quad.
index_t pick(const std::vector<float>& z, index_t quad, const Stream& rs) {
  float zq[4];
  for (int k = 0; k < 4; ++k) {
    const index_t i = quad * 4 + k;
    zq[k] = i < static_cast<index_t>(z.size()) ? z[static_cast<std::size_t>(i)] : -std::numeric_limits<float>::infinity();
  }
  return quad * 4 + corl::sampling::pick_in_quad(
                        zq, corl::sampling::pick_words(rs.seed, rs.offset, rs.row, static_cast<std::uint64_t>(quad)));
}

// Threads t = 0 .. threads-1 each fold groups g = t + (j + unroll * r) * threads in increasing order (the kernel's
// pass 1), then states are merged pairwise in a tree (the block reduction). Threads come in warps of `warp` lanes
// (consecutive t); after every round r the lanes of a warp share their best key, which every lane then passes to the
// fold as `known_key` (the kernel's shuffle); warp = 1 is the plain per-thread filter.
// `initial_known`: a key some quad certainly has, known before the first round (the kernel's truncation pass).
Emulated emulate(const std::vector<float>& z, int threads, int unroll, const Stream& rs, int warp = 1,
                 float initial_known = -std::numeric_limits<float>::infinity()) {
  const index_t vocab = static_cast<index_t>(z.size()), groups = (vocab + 3) / 4;
  Emulated out;
  auto exact_key = [&out](const float (&zz)[4], float x) {
    ++out.exact_keys;
    return corl::sampling::quad_race_key(zz, corl::sampling::race_exponential(x));
  };
  std::vector<std::uint32_t> cached_call(static_cast<std::size_t>(threads), 0xffffffffu);
  int current = 0;  // the thread folding now
  auto word_of = [&out, &rs, &cached_call, &current](index_t quad) {
    ++out.words;
    const std::uint32_t call = corl::sampling::race_call(static_cast<std::uint64_t>(quad));
    if (cached_call[static_cast<std::size_t>(current)] != call) {
      ++out.philox_calls;
      cached_call[static_cast<std::size_t>(current)] = call;
    }
    return corl::sampling::race_word(rs.seed, rs.offset, rs.row, static_cast<std::uint64_t>(quad));
  };
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  std::vector<RaceState> states(static_cast<std::size_t>(threads), corl::sampling::empty_race_state());
  std::vector<float> c_bound(static_cast<std::size_t>(threads), std::numeric_limits<float>::infinity());
  const int warps = (threads + warp - 1) / warp;
  std::vector<float> known(static_cast<std::size_t>(warps), initial_known);
  const index_t round_stride = static_cast<index_t>(threads) * unroll;
  for (index_t round = 0; round * round_stride < groups; ++round) {
    for (int t = 0; t < threads; ++t) {
      const auto ti = static_cast<std::size_t>(t);
      current = t;
      for (int j = 0; j < unroll; ++j) {
        const index_t g = t + round * round_stride + static_cast<index_t>(j) * threads;
        if (g >= groups) continue;
        float zz[4];
        for (int k = 0; k < 4; ++k) {
          const index_t i = g * 4 + k;
          zz[k] = i < vocab ? z[static_cast<std::size_t>(i)] : neg_inf;
        }
        corl::sampling::fold_race_quad(states[ti], c_bound[ti], zz, g, rs.greedy, word_of, exact_key,
                                       known[static_cast<std::size_t>(t / warp)]);
      }
    }
    if (rs.greedy) continue;
    for (int w = 0; w < warps; ++w) {
      float best = neg_inf;
      for (int t = w * warp; t < std::min(threads, (w + 1) * warp); ++t) {
        const RaceState& st = states[static_cast<std::size_t>(t)];
        if (st.best_quad >= 0) best = std::max(best, st.best_key);
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
    // up to 20000 tokens for the last trials, so that quads past 2048 (a second Philox call per thread) are covered
    const index_t vocab = 1 + static_cast<index_t>(rng.below(trial < 200 ? 300 : (trial < 280 ? 5000 : 20000)));
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
      const Stream rs{key.seed, key.offset, row, false};
      const auto e = emulate(z, split[0], split[1], rs, split[2]);
      const index_t token = pick(z, e.state.best_quad, rs);
      CHECK(token == ref.token);
      CHECK(e.state.argmax == ref_greedy.token);
      const float logp = (z[static_cast<std::size_t>(token)] - e.state.max) - std::log(e.state.sum);
      CHECK(std::abs(logp - ref.logp) <= 1e-4f + 1e-5f * std::abs(ref.logp));
      const auto g = emulate(z, split[0], split[1], {key.seed, key.offset, row, true}, split[2]);
      CHECK(g.exact_keys == 0);
      CHECK(g.words == 0);
      CHECK(g.state.argmax == ref_greedy.token);
    }
  }
  CHECK(rows > 250);
}

TEST_CASE("the filter computes few exact keys, and the kernel's threads make one Philox call per four quads") {
  corl::CounterRng rng(2718, 0);
  const auto z = random_scores(rng, 100000, 3.0, 0.0, false);
  const corl::sampling::RngKey key{5, 6};
  const Stream rs{key.seed, key.offset, 0, false};
  const auto ref = corl::sampling::sample_row<float, float>(z, corl::sampling::SamplingParams{}, key, 0);
  const auto one = emulate(z, 1, 1, rs);
  CHECK(pick(z, one.state.best_quad, rs) == ref.token);
  // One thread sees all 25000 quads: records of a race grow like log(n); allow a generous bound.
  CHECK(one.exact_keys < 200);
  const auto many = emulate(z, 512, 2, rs);
  CHECK(pick(z, many.state.best_quad, rs) == ref.token);
  CHECK(many.exact_keys < 512 * 12);  // ~49 quads per thread: few evaluated
  // Warps of 32 lanes sharing their best key (the kernel): fewer, and the same token. Most of what is left is the first
  // round, where no lane has a bound yet (512 lanes x 2 exact keys); after it, few quads per warp pass the filter.
  const auto warps = emulate(z, 512, 2, rs, 32);
  CHECK(pick(z, warps.state.best_quad, rs) == ref.token);
  MESSAGE("exact keys: one thread " << one.exact_keys << ", 512 threads " << many.exact_keys << ", 512 threads in warps "
                                    << warps.exact_keys << "; words " << warps.words << ", Philox calls "
                                    << warps.philox_calls << " for 25000 quads");
  CHECK(warps.exact_keys < many.exact_keys);
  CHECK(warps.exact_keys < 512 * 2 + 512);
  // This row's logits span ~25 nats, so nearly every quad asks for its word; the kernel's threads fold the quads
  // t, t + 512, t + 1024, t + 1536 (two rounds of two) and so share one Philox call between four of them.
  const long quads = 25000;
  CHECK(warps.words > quads / 2);
  CHECK(warps.philox_calls <= quads / 4 + 512);
  // A peaked row (one token 40 nats above a flat rest): the filter needs no word for almost any quad once a lane
  // has seen the peak's key, so most Philox calls are skipped.
  std::vector<float> peaked(100000, 0.0f);
  for (std::size_t i = 0; i < peaked.size(); i += 97) peaked[i] = 40.0f;
  const auto ref_peaked = corl::sampling::sample_row<float, float>(peaked, corl::sampling::SamplingParams{}, key, 0);
  const auto p = emulate(peaked, 512, 2, rs, 32);
  CHECK(pick(peaked, p.state.best_quad, rs) == ref_peaked.token);
  MESSAGE("peaked row: words " << p.words << ", Philox calls " << p.philox_calls);
  CHECK(p.philox_calls < quads / 8);
}

TEST_CASE("truncation: the whole-row winning quad wins the kept set when all of it is kept, else the filtered second "
          "race (the kernel's) finds the reference's quad") {
  corl::CounterRng rng(1618, 0);
  int whole = 0, raced = 0;
  for (int trial = 0; trial < 240; ++trial) {
    const index_t vocab = 8 + static_cast<index_t>(rng.below(trial < 200 ? 3000 : 12000));
    const double scale = trial % 3 == 0 ? 0.5 : (trial % 3 == 1 ? 2.0 : 6.0);
    const auto z = random_scores(rng, vocab, scale, trial % 4 == 0 ? 0.2 : 0.0, trial % 5 == 0);
    bool any_finite = false;
    for (const float v : z) any_finite = any_finite || v != -std::numeric_limits<float>::infinity();
    if (!any_finite) continue;
    corl::sampling::SamplingParams p;
    if (trial % 3 == 0) p.top_k = 1 + static_cast<index_t>(rng.below(60));
    if (trial % 3 == 1) p.top_p = trial % 2 ? 0.5 + 0.45 * rng.uniform() : 0.999;   // 0.999: most quads kept whole
    if (trial % 3 == 2) p.min_p = trial % 2 ? 0.02 + 0.2 * rng.uniform() : 1e-4;
    if (trial % 7 == 0) p.top_p = 0.9;  // combined with the above
    const corl::sampling::RngKey key{77 + static_cast<std::uint64_t>(trial), 5};
    const std::uint32_t row = static_cast<std::uint32_t>(trial % 13);
    const Stream rs{key.seed, key.offset, row, false};
    const auto ref = corl::sampling::sample_row<float, float>(z, p, key, row);
    const auto d = corl::sampling::detail::row_distribution<float>(std::span<const float>(z), std::span<const float>{},
                                                                   p, row, "test");
    std::vector<float> kept(z);
    for (float& v : kept)
      if (!(v >= d.threshold)) v = -std::numeric_limits<float>::infinity();
    CAPTURE(trial);
    CAPTURE(vocab);
    // pass 1 over the whole row, as the kernel (512 threads, warps of 32)
    const auto pass1 = emulate(z, 512, 2, rs, 32);
    const index_t w = pass1.state.best_quad;
    bool wholly_kept = true;
    for (int k = 0; k < 4; ++k) {
      const index_t i = w * 4 + k;
      if (i < vocab && z[static_cast<std::size_t>(i)] != -std::numeric_limits<float>::infinity())
        wholly_kept = wholly_kept && z[static_cast<std::size_t>(i)] >= d.threshold;
    }
    if (wholly_kept) {
      ++whole;
      CHECK(pick(kept, w, rs) == ref.token);
      continue;
    }
    ++raced;
    // the second race over the kept set, bounded by the kept key of the argmax's quad
    const index_t aq = pass1.state.argmax / 4;
    float zq[4];
    for (int k = 0; k < 4; ++k) {
      const index_t i = aq * 4 + k;
      zq[k] = i < vocab ? kept[static_cast<std::size_t>(i)] : -std::numeric_limits<float>::infinity();
    }
    const float x = corl::sampling::word_to_race_uniform<float>(
        corl::sampling::race_word(rs.seed, rs.offset, rs.row, static_cast<std::uint64_t>(aq)));
    const float bound = corl::sampling::quad_race_key(zq, corl::sampling::race_exponential(x));
    const auto second = emulate(kept, 512, 1, rs, 1, bound);
    CHECK(pick(kept, second.state.best_quad, rs) == ref.token);
  }
  MESSAGE("wholly kept winners: " << whole << ", second races: " << raced);
  CHECK(whole > 10);
  CHECK(raced > 10);
}

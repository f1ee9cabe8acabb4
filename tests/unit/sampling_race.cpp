// The streaming group race of the GPU sampler (corl/sampling/streaming_race.hpp), run on the host over the same
// splits of a row that the kernel uses (threads x groups, then a merge tree) and others: it must pick exactly the
// group, and so the token, of the exhaustive CPU sampler (corl/sampling/sampler.hpp) on every row, whatever the split,
// because its filter only skips groups that certainly lose.
#include <doctest/doctest.h>

#include "common/large_logit_rows.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include <corl/core/rng.hpp>
#include <corl/sampling/certified_race.hpp>
#include <corl/sampling/sampler.hpp>
#include <corl/sampling/streaming_race.hpp>

namespace {

using corl::index_t;
using corl::sampling::CertifiedRaceState;
using corl::sampling::RaceState;
using corl::sampling::kRaceGroupSize;

struct Emulated {
  RaceState state;
  long exact_keys = 0;   // groups whose exact key was computed
  long words = 0;        // groups whose race word was asked for
  long philox_calls = 0; // Philox calls made by threads that keep their last call (the kernel's RaceWordCache)
};

struct Stream {
  std::uint64_t seed, offset;
  std::uint32_t row;
  bool greedy;
};

index_t quads_of(const std::vector<float>& z) { return (static_cast<index_t>(z.size()) + 3) / 4; }

/// z[i], or -inf beyond the row.
float score_at(const std::vector<float>& z, index_t i) {
  return i < static_cast<index_t>(z.size()) ? z[static_cast<std::size_t>(i)] : -std::numeric_limits<float>::infinity();
}

/// The 32 scores of a group (-inf beyond the row): the reference sampler's gather, without a threshold.
void group_scores(const std::vector<float>& z, index_t group, float (&out)[kRaceGroupSize]) {
  corl::sampling::detail::group_scores(std::span<const float>(z), static_cast<std::uint64_t>(group),
                                       -std::numeric_limits<float>::infinity(), out);
}

/// The exact race key of a group over its entries >= threshold, from its uniform x.
float exact_group_key_at(const std::vector<float>& z, index_t group, float threshold, float x) {
  float zg[kRaceGroupSize];
  corl::sampling::detail::group_scores(std::span<const float>(z), static_cast<std::uint64_t>(group), threshold, zg);
  return corl::sampling::group_race_key(zg, corl::sampling::race_exponential(x));
}

/// The exact race key of a group of z from its uniform x (what the kernel's exact-key source computes).
float exact_group_key(const std::vector<float>& z, index_t group, float x) {
  return exact_group_key_at(z, group, -std::numeric_limits<float>::infinity(), x);
}

/// z with the entries below `threshold` (the truncated-away ones) set to -inf.
std::vector<float> kept_scores(std::vector<float> z, float threshold) {
  for (float& v : z)
    if (!(v >= threshold)) v = -std::numeric_limits<float>::infinity();
  return z;
}

/// Group `group`'s race word in the stream of `rs`.
std::uint32_t stream_race_word(const Stream& rs, index_t group) {
  return corl::sampling::race_word(rs.seed, rs.offset, rs.row, static_cast<std::uint64_t>(group));
}

/// The exact race key of a group of z from its own race word in the stream of `rs`.
float group_key_own_word(const std::vector<float>& z, index_t group, const Stream& rs) {
  return exact_group_key(z, group, corl::sampling::word_to_race_uniform<float>(stream_race_word(rs, group)));
}

/// The kernel's bound for the race over the kept set: the exact kept key of the group holding the row's argmax.
float rerace_bound(const std::vector<float>& kept, index_t argmax, const Stream& rs) {
  const auto group = static_cast<index_t>(corl::sampling::race_group(static_cast<std::uint64_t>(argmax / 4)));
  return group_key_own_word(kept, group, rs);
}

/// The token the kernel draws inside the winning group.
index_t pick(const std::vector<float>& z, index_t group, const Stream& rs) {
  float zg[kRaceGroupSize];
  group_scores(z, group, zg);
  corl::Philox4x32 words[corl::sampling::kRaceGroupQuads];
  for (int j = 0; j < corl::sampling::kRaceGroupQuads; ++j)
    words[j] = corl::sampling::pick_words(rs.seed, rs.offset, rs.row,
                                          corl::sampling::group_quad(static_cast<std::uint64_t>(group), j));
  return static_cast<index_t>(
      corl::sampling::group_entry_token(static_cast<std::uint64_t>(group), corl::sampling::pick_in_group(zg, words)));
}

// Threads t = 0 .. threads-1 each fold the groups G = t + threads * i in increasing order, each group quad by quad
// (fold_race_quad for its quads j = 0..kRaceGroupQuads - 1 inside the row, then close_race_group): with threads = 512
// this is the kernel's pass 1, where thread t folds the quads t + 512 n. States are then merged pairwise in a tree (the
// block reduction). Threads come in warps of `warp` lanes (consecutive t); after every round of `per_round` groups the lanes
// of a warp share their best key, which every lane then passes as `known_key` (the kernel's shuffle after each group);
// warp = 1 is the plain per-thread filter. `initial_known`: a key some group certainly has, known before the first
// round (the kernel's truncation pass).
Emulated emulate(const std::vector<float>& z, int threads, int per_round, const Stream& rs, int warp = 1,
                 float initial_known = -std::numeric_limits<float>::infinity()) {
  const index_t quads = quads_of(z);
  const auto groups = static_cast<index_t>(corl::sampling::race_groups(static_cast<std::uint64_t>(quads)));
  Emulated out;
  auto exact_key = [&out, &z](index_t group, float x) {
    ++out.exact_keys;
    return exact_group_key(z, group, x);
  };
  std::vector<std::uint32_t> cached_call(static_cast<std::size_t>(threads), 0xffffffffu);
  int current = 0;  // the thread folding now
  auto word_of = [&out, &rs, &cached_call, &current](index_t group) {
    ++out.words;
    const std::uint32_t call = corl::sampling::race_call(static_cast<std::uint64_t>(group));
    if (cached_call[static_cast<std::size_t>(current)] != call) {
      ++out.philox_calls;
      cached_call[static_cast<std::size_t>(current)] = call;
    }
    return stream_race_word(rs, group);
  };
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  std::vector<RaceState> states(static_cast<std::size_t>(threads), corl::sampling::empty_race_state());
  std::vector<float> c_bound(static_cast<std::size_t>(threads), std::numeric_limits<float>::infinity());
  const int warps = (threads + warp - 1) / warp;
  std::vector<float> known(static_cast<std::size_t>(warps), initial_known);
  const index_t round_stride = static_cast<index_t>(threads) * per_round;
  for (index_t round = 0; round * round_stride < groups; ++round) {
    for (int t = 0; t < threads; ++t) {
      const auto ti = static_cast<std::size_t>(t);
      const float kk = known[static_cast<std::size_t>(t / warp)];
      current = t;
      for (int j = 0; j < per_round; ++j) {
        const index_t g = t + round * round_stride + static_cast<index_t>(j) * threads;
        if (g >= groups) continue;
        for (int slot = 0; slot < corl::sampling::kRaceGroupQuads; ++slot) {
          const auto q = static_cast<index_t>(corl::sampling::group_quad(static_cast<std::uint64_t>(g), slot));
          if (q >= quads) break;
          float zz[4];
          for (int k = 0; k < 4; ++k) {
            const index_t i = q * 4 + k;
            zz[k] = i < static_cast<index_t>(z.size()) ? z[static_cast<std::size_t>(i)] : neg_inf;
          }
          corl::sampling::fold_race_quad(states[ti], c_bound[ti], zz, q, kk);
        }
        if (!rs.greedy) corl::sampling::close_race_group(states[ti], c_bound[ti], g, word_of, exact_key, kk);
      }
    }
    if (rs.greedy) continue;
    for (int w = 0; w < warps; ++w) {
      float best = neg_inf;
      for (int t = w * warp; t < std::min(threads, (w + 1) * warp); ++t) {
        const RaceState& st = states[static_cast<std::size_t>(t)];
        if (st.best_group >= 0) best = std::max(best, st.best_key);
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
    for (std::size_t i = 0; i + 1 < states.size(); i += 2)
      next.push_back(corl::sampling::merge_race_states(states[i], states[i + 1]));
    if (states.size() % 2 == 1) next.push_back(states.back());
    states.swap(next);
  }
  out.state = states[0];
  return out;
}

using corl::sampling::fixed_point_mass;

struct FusedOutcome {
  index_t winner = -1;
  std::size_t deferred = 0;
  unsigned long long kept_fixed = 0;  // entries kept for sure + listed candidates >= threshold
};

/// The kept race that the truncated kernel fuses into the last selection's listing read (FusedKeptRace in
/// corl/cuda/sampling.cuh), written out: 512 threads, thread t folding the quads t + 512 n; entries classified by the
/// first digit's bin (bin_prefix), restrict_min and t_min; groups with an undetermined entry deferred with a lower
/// bound; then the deferred groups' exact keys at `threshold` and the merge tree. The kernel's deferred list fills in
/// whatever order its atomics give, and entry i is applied by thread i % 512: `shuffle` permutes the list first and
/// hands each entry to a random thread instead.
FusedOutcome emulate_fused_kept_race(const std::vector<float>& z, std::uint32_t bin_prefix, std::uint32_t restrict_min,
                                     bool by_mass, float t_min, float threshold, const RaceState& pass1,
                                     const Stream& rs, corl::CounterRng* shuffle = nullptr) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  const float m = pass1.max;
  const std::uint32_t bin_hi_key = bin_prefix >= 0xffe00000u ? 0u : bin_prefix + 0x00200000u;
  const float t_hi = bin_hi_key == 0u ? inf : corl::sampling::from_ordered_bits(bin_hi_key);
  const float t_lo = corl::sampling::from_ordered_bits(std::max(bin_prefix, restrict_min));
  const float thr_det = std::fmax(t_lo, t_min);
  const float thr_sure = t_hi <= m ? std::fmax(t_hi, t_min) : m;
  const bool sure_bounds = t_hi <= m;
  auto x_of = [&](index_t g) { return corl::sampling::word_to_race_uniform<float>(stream_race_word(rs, g)); };
  const index_t argmax_group =
      static_cast<index_t>(corl::sampling::race_group(static_cast<std::uint64_t>(pass1.argmax / 4)));
  const float bound = std::fmax(exact_group_key_at(z, pass1.best_group, thr_sure, x_of(pass1.best_group)),
                                exact_group_key_at(z, argmax_group, thr_sure, x_of(argmax_group)));
  const index_t quads = quads_of(z);
  FusedOutcome out;
  std::vector<std::pair<index_t, float>> deferred;
  std::vector<RaceState> states;
  for (int t = 0; t < 512; ++t) {
    // the groups' masses at the row's max, the filter from the start (fixed_scale_race_state, as the kernel)
    RaceState st = corl::sampling::fixed_scale_race_state(m);
    float c_bound = corl::sampling::race_filter_bound(st, bound);
    bool open_undetermined = false;
    auto word_of = [&](index_t g) { return stream_race_word(rs, g); };
    auto exact_key = [&](index_t g, float x) {
      if (!open_undetermined) return exact_group_key_at(z, g, thr_det, x);
      deferred.emplace_back(g, x);
      return sure_bounds ? exact_group_key_at(z, g, thr_sure, x) : -inf;
    };
    for (index_t q = t; q < quads; q += 512) {
      float zr[4];
      for (int k = 0; k < 4; ++k) {
        const float v = score_at(z, q * 4 + k);
        const bool sure = bin_hi_key != 0u && corl::sampling::ordered_bits(v) >= bin_hi_key && v >= t_min;
        const bool maybe = v >= thr_det;
        zr[k] = maybe ? v : -inf;
        open_undetermined = open_undetermined || (maybe && !sure);
        if (sure) out.kept_fixed += fixed_point_mass(v, m);
      }
      corl::sampling::add_quad_mass(st, zr);
      if (corl::sampling::closes_group(static_cast<std::uint64_t>(q), static_cast<std::uint64_t>(quads))) {
        const auto g = static_cast<index_t>(corl::sampling::race_group(static_cast<std::uint64_t>(q)));
        corl::sampling::close_race_group(st, c_bound, g, word_of, exact_key, bound);
        open_undetermined = false;
      }
    }
    states.push_back(st);
  }
  if (shuffle != nullptr) {
    for (std::size_t i = deferred.size(); i > 1; --i) std::swap(deferred[i - 1], deferred[shuffle->below(i)]);
  }
  for (std::size_t i = 0; i < deferred.size(); ++i) {
    const auto [g, x] = deferred[i];
    const float key = exact_group_key_at(z, g, threshold, x);
    RaceState& st = states[shuffle != nullptr ? shuffle->below(512) : i % 512];
    if (corl::sampling::race_beats(key, g, st.best_key, st.best_group)) {
      st.best_key = key;
      st.best_group = g;
    }
  }
  // the listed candidates (the first digit's bin, taking part) at or above the threshold
  for (const float v : z) {
    const std::uint32_t key = corl::sampling::ordered_bits(v);
    const bool takes_part = !(by_mass && v == -inf) && key >= restrict_min;
    if (takes_part && (key & 0xffe00000u) == bin_prefix && v >= threshold) out.kept_fixed += fixed_point_mass(v, m);
  }
  while (states.size() > 1) {
    std::vector<RaceState> next;
    for (std::size_t i = 0; i + 1 < states.size(); i += 2)
      next.push_back(corl::sampling::merge_race_states(states[i], states[i + 1]));
    if (states.size() % 2 == 1) next.push_back(states.back());
    states.swap(next);
  }
  out.winner = states[0].best_group;
  out.deferred = deferred.size();
  return out;
}

std::vector<float> random_scores(corl::CounterRng& rng, index_t vocab, double scale, double masked, bool coarse);

/// The rows of the truncation tests: 8 + below(width) entries, scale 0.5 / 2 / 6 by trial, 20% -inf on every fourth
/// trial, ties on every fifth; empty when no entry is finite.
std::vector<float> truncation_row(corl::CounterRng& rng, int trial, index_t width) {
  const index_t vocab = 8 + static_cast<index_t>(rng.below(static_cast<std::uint64_t>(width)));
  const double scale = trial % 3 == 0 ? 0.5 : (trial % 3 == 1 ? 2.0 : 6.0);
  auto z = random_scores(rng, vocab, scale, trial % 4 == 0 ? 0.2 : 0.0, trial % 5 == 0);
  for (const float v : z)
    if (v != -std::numeric_limits<float>::infinity()) return z;
  return {};
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
  // {threads, groups per round, lanes per warp}; {512, 1, 32} is the kernel
  const int splits[][3] = {{1, 1, 1}, {3, 2, 1}, {32, 4, 1}, {512, 1, 1}, {7, 1, 1}, {64, 2, 32}, {512, 1, 32}, {7, 1, 4}};
  int rows = 0;
  for (int trial = 0; trial < 300; ++trial) {
    // up to 70000 tokens for the last trials: groups of one to eight quads (rows past 2048 tokens), and groups past
    // 2048 (rows past 65536 tokens: a second Philox call per thread of 512)
    const index_t vocab = 1 + static_cast<index_t>(rng.below(trial < 200 ? 300 : (trial < 280 ? 9000 : 70000)));
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
      const index_t token = pick(z, e.state.best_group, rs);
      CHECK(token == ref.token);
      CHECK(e.state.argmax == ref_greedy.token);
      const float logp = (z[static_cast<std::size_t>(token)] - e.state.max) - std::log(e.state.sum);
      // the float reference's own error grows with V (its sequential sum: ~2e-4 at 70000, see tests/gpu/sampling.cu)
      const float tol = 1e-4f + 2e-9f * static_cast<float>(vocab);
      CHECK(std::abs(logp - ref.logp) <= tol + 1e-5f * std::abs(ref.logp));
      const auto g = emulate(z, split[0], split[1], {key.seed, key.offset, row, true}, split[2]);
      CHECK(g.exact_keys == 0);
      CHECK(g.words == 0);
      CHECK(g.state.argmax == ref_greedy.token);
    }
  }
  CHECK(rows > 250);
}

TEST_CASE("the filter computes few exact keys, and the kernel's threads make one Philox call per four groups") {
  corl::CounterRng rng(2718, 0);
  const auto z = random_scores(rng, 100000, 3.0, 0.0, false);
  const corl::sampling::RngKey key{5, 6};
  const Stream rs{key.seed, key.offset, 0, false};
  const auto ref = corl::sampling::sample_row<float, float>(z, corl::sampling::SamplingParams{}, key, 0);
  const auto one = emulate(z, 1, 1, rs);
  CHECK(pick(z, one.state.best_group, rs) == ref.token);
  // One thread sees all 3496 groups (25000 quads): records of a race grow like log(n); allow a generous bound.
  CHECK(one.exact_keys < 200);
  const auto many = emulate(z, 512, 1, rs);
  CHECK(pick(z, many.state.best_group, rs) == ref.token);
  CHECK(many.exact_keys < 512 * 5);  // ~7 groups per thread: records ~ 1 + 1/2 + ... + 1/7
  // Warps of 32 lanes sharing their best key (the kernel): fewer, and the same token. Most of what is left is the first
  // group of each lane, which has no bound yet (512 exact keys); after it, few groups per warp pass the filter.
  const auto warps = emulate(z, 512, 1, rs, 32);
  CHECK(pick(z, warps.state.best_group, rs) == ref.token);
  MESSAGE("exact keys: one thread " << one.exact_keys << ", 512 threads " << many.exact_keys << ", 512 threads in warps "
                                    << warps.exact_keys << "; words " << warps.words << ", Philox calls "
                                    << warps.philox_calls << " for 3496 groups");
  CHECK(warps.exact_keys < many.exact_keys);
  CHECK(warps.exact_keys < 512 + 256);
  // This row's logits span ~25 nats, so nearly every group asks for its word; the kernel's thread t folds the groups
  // t, t + 512, t + 1024, t + 1536, ... and shares one Philox call between four consecutive ones.
  const auto groups = static_cast<long>(corl::sampling::race_groups(25000));  // 3496: 3072 of eight quads, 424 of one
  CHECK(warps.words > groups / 2);
  CHECK(warps.philox_calls <= groups / 4 + 512);
  // A peaked row (one token in 997 lies 40 nats above a flat rest): once a lane has seen a peak's key, the filter needs
  // no word for a group without a peak, so most Philox calls are skipped; what is left is each lane's first group
  // (512 calls: no bound yet) and the ~100 groups that hold one of the 101 peaks (the flat row above: 1024 calls).
  std::vector<float> peaked(100000, 0.0f);
  for (std::size_t i = 0; i < peaked.size(); i += 997) peaked[i] = 40.0f;
  const auto ref_peaked = corl::sampling::sample_row<float, float>(peaked, corl::sampling::SamplingParams{}, key, 0);
  const auto p = emulate(peaked, 512, 1, rs, 32);
  CHECK(pick(peaked, p.state.best_group, rs) == ref_peaked.token);
  MESSAGE("peaked row: words " << p.words << ", Philox calls " << p.philox_calls);
  CHECK(p.philox_calls < 512 + 2 * 101);
}

TEST_CASE("truncation: the whole-row winning group wins the kept set when all of it is kept, else the filtered second "
          "race (the kernel's) finds the reference's group") {
  corl::CounterRng rng(1618, 0);
  int whole = 0, raced = 0;
  for (int trial = 0; trial < 240; ++trial) {
    const auto z = truncation_row(rng, trial, trial < 200 ? 3000 : 12000);
    if (z.empty()) continue;
    const auto vocab = static_cast<index_t>(z.size());
    corl::sampling::SamplingParams p;
    if (trial % 3 == 0) p.top_k = 1 + static_cast<index_t>(rng.below(60));
    if (trial % 3 == 1) p.top_p = trial % 2 ? 0.5 + 0.45 * rng.uniform() : 0.999;   // 0.999: most groups kept whole
    if (trial % 3 == 2) p.min_p = trial % 2 ? 0.02 + 0.2 * rng.uniform() : 1e-4;
    if (trial % 7 == 0) p.top_p = 0.9;  // combined with the above
    const corl::sampling::RngKey key{77 + static_cast<std::uint64_t>(trial), 5};
    const std::uint32_t row = static_cast<std::uint32_t>(trial % 13);
    const Stream rs{key.seed, key.offset, row, false};
    const auto ref = corl::sampling::sample_row<float, float>(z, p, key, row);
    const auto d = corl::sampling::detail::row_distribution<float>(std::span<const float>(z), std::span<const float>{},
                                                                   p, row, "test");
    const std::vector<float> kept = kept_scores(z, d.threshold);
    CAPTURE(trial);
    CAPTURE(vocab);
    // pass 1 over the whole row, as the kernel (512 threads, warps of 32)
    const auto pass1 = emulate(z, 512, 1, rs, 32);
    const index_t w = pass1.state.best_group;
    float zw[kRaceGroupSize];
    group_scores(z, w, zw);
    bool wholly_kept = true;
    for (const float v : zw)
      if (v != -std::numeric_limits<float>::infinity()) wholly_kept = wholly_kept && v >= d.threshold;
    if (wholly_kept) {
      ++whole;
      CHECK(pick(kept, w, rs) == ref.token);
      continue;
    }
    ++raced;
    // the second race over the kept set, bounded by the kept key of the argmax's group
    const float bound = rerace_bound(kept, pass1.state.argmax, rs);
    const auto second = emulate(kept, 512, 1, rs, 1, bound);
    CHECK(pick(kept, second.state.best_group, rs) == ref.token);
  }
  MESSAGE("wholly kept winners: " << whole << ", second races: " << raced);
  CHECK(whole > 10);
  CHECK(raced > 10);
}

TEST_CASE("rows of at most 2048 logits draw the tokens of the former quad race (groups of one quad, same words)") {
  // The quad race that preceded the group race, written out: quad q's key log S_q - log E_q with x_q word 0 of Philox
  // call q, the largest key wins (ties: the smaller quad), then the race of its four tokens with the words of call
  // 2^31 + q. For rows of at most 512 quads every group is one quad, so sample_row must agree token for token: the
  // seeded results of the ULM-R1 trainer (vocabularies of 128 and 25 tokens) do not change with the grouping.
  corl::CounterRng rng(4242, 0);
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  int rows = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const index_t vocab = 1 + static_cast<index_t>(rng.below(trial < 300 ? 200 : 2048));
    auto z = random_scores(rng, vocab, trial % 2 ? 3.0 : 0.5, trial % 4 == 0 ? 0.3 : 0.0, trial % 5 == 0);
    z[static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(vocab)))] = 0.25f;  // at least one finite
    const corl::sampling::RngKey key{9 + static_cast<std::uint64_t>(trial), 3};
    const std::uint32_t row = static_cast<std::uint32_t>(trial % 5);
    index_t best_quad = -1;
    float best_key = neg_inf;
    for (index_t q = 0; q * 4 < vocab; ++q) {
      float zq[kRaceGroupSize];
      std::fill(std::begin(zq), std::end(zq), neg_inf);
      bool any = false;
      for (int k = 0; k < 4; ++k) {
        const index_t i = q * 4 + k;
        zq[k] = i < vocab ? z[static_cast<std::size_t>(i)] : neg_inf;
        any = any || zq[k] != neg_inf;
      }
      if (!any) continue;
      const std::uint32_t word =
          corl::random_words(key.seed, key.offset, row, static_cast<std::uint32_t>(q)).v[0];
      const float k = corl::sampling::group_race_key(
          zq, corl::sampling::race_exponential(corl::sampling::word_to_race_uniform<float>(word)));
      if (best_quad < 0 || k > best_key) {
        best_quad = q;
        best_key = k;
      }
    }
    const auto words = corl::random_words(key.seed, key.offset, row, 0x80000000u | static_cast<std::uint32_t>(best_quad));
    index_t expected = -1;
    float expected_key = neg_inf;
    for (int k = 0; k < 4; ++k) {
      const index_t i = best_quad * 4 + k;
      if (i >= vocab || z[static_cast<std::size_t>(i)] == neg_inf) continue;
      const float tk = corl::sampling::token_race_key(
          z[static_cast<std::size_t>(i)],
          corl::sampling::race_exponential(corl::sampling::word_to_race_uniform<float>(words.v[k])));
      if (expected < 0 || tk > expected_key) {
        expected = i;
        expected_key = tk;
      }
    }
    CAPTURE(trial);
    CAPTURE(vocab);
    CHECK(corl::sampling::sample_row<float, float>(z, corl::sampling::SamplingParams{}, key, row).token == expected);
    ++rows;
  }
  CHECK(rows == 400);
}

TEST_CASE("a NaN or +inf score always shows in the merged state: the kernel's unguided bad-row test") {
  // The GPU kernel does not test unguided scores one by one: a row is bad when its merged pass-1 state has max = +inf
  // or sum = NaN (corl/cuda/sampling.cuh, row_is_bad). Here on every split, greedy or not, wherever the bad entry sits
  // (first, last, among -inf only, next to the max), and never on a good row.
  corl::CounterRng rng(99, 0);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  auto flagged = [](const RaceState& s) { return !(s.max < std::numeric_limits<float>::infinity()) || std::isnan(s.sum); };
  const int splits[][3] = {{512, 1, 32}, {7, 2, 1}, {1, 1, 1}};
  for (int trial = 0; trial < 120; ++trial) {
    const index_t vocab = 1 + static_cast<index_t>(rng.below(trial < 60 ? 100 : 20000));
    auto z = random_scores(rng, vocab, 3.0, trial % 3 == 0 ? 0.5 : 0.0, false);
    if (trial % 10 == 0) std::fill(z.begin(), z.end(), -inf);  // the bad entry is the only non -inf one
    const index_t last = vocab - 1;
    const auto at = static_cast<std::size_t>(
        trial % 4 == 0 ? 0 : (trial % 4 == 1 ? last : static_cast<index_t>(rng.below(static_cast<std::uint64_t>(vocab)))));
    const float bad_value = trial % 2 ? nan : inf;
    for (const auto& split : splits) {
      CAPTURE(trial);
      CAPTURE(vocab);
      CAPTURE(split[0]);
      for (const bool greedy : {false, true}) {
        const Stream rs{1, 2, 3, greedy};
        if (std::any_of(z.begin(), z.end(), [](float v) { return v != -std::numeric_limits<float>::infinity(); }))
          CHECK_FALSE(flagged(emulate(z, split[0], split[1], rs, split[2]).state));
        auto badz = z;
        badz[at] = bad_value;
        CHECK(flagged(emulate(badz, split[0], split[1], rs, split[2]).state));
      }
    }
  }
}

namespace {
// The GPU kernel's block reduction of pass-1 states (sampling.cuh, warp_merge_pass1: every field all-reduced over the
// lanes of a warp, then over the warps' results), with the reductions done in order on the host.
CertifiedRaceState fieldwise_merge(const std::vector<CertifiedRaceState>& lanes) {
  float m = -std::numeric_limits<float>::infinity();
  for (const auto& st : lanes) m = std::max(m, st.max);
  std::uint32_t argmax = corl::sampling::kNoQuad;
  float sum = 0.0f;
  std::uint64_t winner = 0;
  for (const auto& st : lanes) {
    argmax = std::min(argmax, corl::sampling::argmax_candidate(st, m));
    sum += corl::sampling::scaled_sum(st, m);
    winner = std::max(winner, corl::sampling::race_rank(st.best_key, st.best_group));
  }
  std::uint64_t second = 0;
  for (const auto& st : lanes) second = std::max(second, corl::sampling::second_rank(st, winner));
  float third = -std::numeric_limits<float>::infinity();
  for (const auto& st : lanes) third = std::max(third, corl::sampling::third_key(st, winner, second));
  return corl::sampling::assemble_certified(m, sum, argmax, winner, second, third);
}
}  // namespace

namespace {

// The kernel's own pass-1 loop (corl/cuda/sampling.cuh, sample_rows_kernel), statement for statement, on the host:
// 512 threads in warps of 32 that run in lockstep, U quads per round folded at once (fold_certified_round), the round
// counter n0, the group-closing test (n0 + U == kRaceGroupQuads or the row ends before the lane's next quad), the
// shuffle after each
// round that ends a group; then the block's merge, the certificate, and when the winner is not certified the settling:
// the exact keys of the best two groups when every other key is far enough below (settled_by_best_two), else the exact
// race (kernel_kept_race with no threshold, bounded by the winner's key less its slack). `state` is what the kernel
// continues with: max, sum, the argmax (the first entry equal to the max in the argmax quad) and the settled winner.
// `closing_errors` counts closes whose folded quads are not exactly the group's quads in the row.
struct KernelLoop {
  RaceState state;
  long closing_errors = 0;
  bool certified = true;
  bool settled_by_two = false;  // settled by the exact keys of the best two groups
  bool exact_race = false;      // settled by the exact race
  long approximate_keys = 0;    // race words asked for (an upper bound of the groups raced with an approximate key)
};

/// How the transcription settles pass 1's winner (the kernel's SettlePass1).
enum class Settle { kAsNeeded, kBestTwo, kExactRace };

KernelLoop kernel_kept_race(const std::vector<float>& kept, float bound_key, const Stream& rs);

template <int U>
KernelLoop kernel_pass1_rounds(const std::vector<float>& z, const Stream& rs, Settle settle) {
  constexpr std::uint32_t kBlock = 512;
  const index_t quads = quads_of(z);
  const auto quads32 = static_cast<std::uint32_t>(quads);
  KernelLoop out;
  auto word_of = [&rs, &out](index_t group) {
    ++out.approximate_keys;
    return stream_race_word(rs, group);
  };
  std::vector<CertifiedRaceState> states(kBlock, corl::sampling::empty_certified_race_state());
  std::vector<float> known(kBlock, -std::numeric_limits<float>::infinity());
  std::vector<std::vector<index_t>> open(kBlock);
  for (std::uint32_t warp = 0; warp < kBlock / 32; ++warp) {
    int n0 = 0;
    for (std::uint32_t base = warp * 32; base < quads32;
         base += kBlock * U, n0 = (n0 + U) & (corl::sampling::kRaceGroupQuads - 1)) {
      for (std::uint32_t lane = 0; lane < 32; ++lane) {
        const std::uint32_t t = warp * 32 + lane, q0 = base + lane;
        float zz[U][4];
        for (int j = 0; j < U; ++j) {
          const std::uint32_t q = q0 + static_cast<std::uint32_t>(j) * kBlock;
          for (int k = 0; k < 4; ++k)
            zz[j][k] = q < quads32 ? score_at(z, index_t{q} * 4 + k) : -std::numeric_limits<float>::infinity();
          if (q < quads32) open[t].push_back(index_t{q});
        }
        corl::sampling::fold_certified_round<U>(states[t], zz, q0, kBlock);
        if (!rs.greedy && q0 < quads32 && (n0 + U == corl::sampling::kRaceGroupQuads || q0 + kBlock * U >= quads32)) {
          const auto group = static_cast<index_t>(corl::sampling::race_group(q0));
          std::vector<index_t> expected;
          for (int slot = 0; slot < corl::sampling::kRaceGroupQuads; ++slot) {
            const auto gq = static_cast<index_t>(corl::sampling::group_quad(static_cast<std::uint64_t>(group), slot));
            if (gq < quads) expected.push_back(gq);
          }
          if (open[t] != expected) ++out.closing_errors;
          open[t].clear();
          corl::sampling::close_certified_group(states[t], group, word_of, known[t]);
        }
      }
      if (!rs.greedy && n0 + U == corl::sampling::kRaceGroupQuads) {  // the shuffle: fmaxf over the warp's best keys
        float best = -std::numeric_limits<float>::infinity();
        for (std::uint32_t t = warp * 32; t < warp * 32 + 32; ++t)
          if (states[t].best_group >= 0) best = std::max(best, states[t].best_key);
        for (std::uint32_t t = warp * 32; t < warp * 32 + 32; ++t) known[t] = best;
      }
    }
  }
  for (std::uint32_t t = 0; t < kBlock; ++t)
    if (!rs.greedy && !open[t].empty()) ++out.closing_errors;  // a group left open
  // the block's merge, as the kernel's warp_merge_pass1: each warp's lanes, then the 16 warps' states
  std::vector<CertifiedRaceState> warp_states;
  for (std::uint32_t w = 0; w < kBlock / 32; ++w) {
    warp_states.push_back(fieldwise_merge(std::vector<CertifiedRaceState>(states.begin() + 32 * w,
                                                                          states.begin() + 32 * (w + 1))));
  }
  const CertifiedRaceState total = fieldwise_merge(warp_states);
  out.state = corl::sampling::empty_race_state();
  out.state.max = total.max;
  out.state.sum = total.sum;
  if (total.argmax_quad != corl::sampling::kNoQuad) {
    index_t first = 3;
    for (index_t k = 3; k >= 0; --k)
      if (score_at(z, index_t{total.argmax_quad} * 4 + k) == total.max) first = k;
    out.state.argmax = index_t{total.argmax_quad} * 4 + first;
  }
  out.state.best_key = total.best_key;
  out.state.best_group = total.best_group;
  if (rs.greedy || total.max == -std::numeric_limits<float>::infinity()) return out;
  out.certified = corl::sampling::certified_winner(total);
  if (!out.certified || settle != Settle::kAsNeeded) {  // (the kernel's PathLimits::settle)
    if (settle != Settle::kExactRace && corl::sampling::settled_by_best_two(total)) {
      auto exact_key = [&](index_t group) {
        return group < 0 ? -std::numeric_limits<float>::infinity() : group_key_own_word(z, group, rs);
      };
      const float best = exact_key(total.best_group), runner = exact_key(total.runner_group);
      out.state.best_group = corl::sampling::race_beats(runner, total.runner_group, best, total.best_group)
                                 ? total.runner_group
                                 : total.best_group;
      out.settled_by_two = true;
    } else {
      const float bound = total.best_key - corl::sampling::certified_key_slack(total.best_key);
      out.state.best_group = kernel_kept_race(z, bound, rs).state.best_group;
      out.exact_race = true;
    }
  }
  return out;
}

KernelLoop kernel_pass1(const std::vector<float>& z, int unroll, const Stream& rs, Settle settle = Settle::kAsNeeded) {
  if (unroll == 1) return kernel_pass1_rounds<1>(z, rs, settle);
  if (unroll == 2) return kernel_pass1_rounds<2>(z, rs, settle);
  return kernel_pass1_rounds<4>(z, rs, settle);
}

// The kernel's race over the kept set (one quad per thread and round, bounded from the start by `bound_key`).
KernelLoop kernel_kept_race(const std::vector<float>& kept, float bound_key, const Stream& rs) {
  constexpr index_t kBlock = 512;
  const index_t quads = quads_of(kept);
  KernelLoop out;
  auto exact_key = [&kept](index_t group, float x) { return exact_group_key(kept, group, x); };
  auto word_of = [&rs](index_t group) { return stream_race_word(rs, group); };
  RaceState total = corl::sampling::empty_race_state();
  for (index_t t = 0; t < kBlock; ++t) {
    RaceState st = corl::sampling::empty_race_state();
    float c_bound = std::numeric_limits<float>::infinity();
    int folded = 0;
    for (index_t q = t; q < quads; q += kBlock) {
      float zz[4];
      for (int k = 0; k < 4; ++k) zz[k] = score_at(kept, q * 4 + k);
      corl::sampling::fold_race_quad(st, c_bound, zz, q, bound_key);
      ++folded;
      if (corl::sampling::closes_group(static_cast<std::uint64_t>(q), static_cast<std::uint64_t>(quads))) {
        const auto group = static_cast<index_t>(corl::sampling::race_group(static_cast<std::uint64_t>(q)));
        const auto first = static_cast<index_t>(corl::sampling::group_quad(static_cast<std::uint64_t>(group), 0));
        const index_t in_row =
            std::min<index_t>(corl::sampling::kRaceGroupQuads, (quads - first + kBlock - 1) / kBlock);
        if (folded != static_cast<int>(in_row)) ++out.closing_errors;
        folded = 0;
        corl::sampling::close_race_group(st, c_bound, group, word_of, exact_key, bound_key);
      }
    }
    total = corl::sampling::merge_race_states(total, st);
  }
  out.state = total;
  return out;
}

}  // namespace

TEST_CASE("the kernel's own loops (rounds of 1, 2, 4 quads, closing test, shuffle, kept race) give the reference's "
          "tokens at every row length around the group boundaries") {
  corl::CounterRng rng(2468, 0);
  const index_t lengths[] = {1,    3,    4,    5,    511,  2047, 2048,  2049,  2051,  4096,   6001,
                             8191, 8192, 8193, 8195, 8196, 12289, 32768, 32771, 65539, 100003};
  int rows = 0, reraced = 0, uncertified = 0;
  long approximate_keys = 0;
  for (const index_t vocab : lengths) {
    for (int trial = 0; trial < 3; ++trial) {
      auto z = random_scores(rng, vocab, trial == 0 ? 0.3 : (trial == 1 ? 3.0 : 40.0), trial == 2 ? 0.4 : 0.0, false);
      z[static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(vocab)))] = 1.5f;
      const corl::sampling::RngKey key{31 + static_cast<std::uint64_t>(vocab), static_cast<std::uint64_t>(trial)};
      const std::uint32_t row = static_cast<std::uint32_t>(trial + 2);
      const Stream rs{key.seed, key.offset, row, false};
      const auto ref = corl::sampling::sample_row<float, float>(z, corl::sampling::SamplingParams{}, key, row);
      corl::sampling::SamplingParams greedy;
      greedy.temperature = 0.0;
      const auto ref_greedy = corl::sampling::sample_row<float, float>(z, greedy, key, row);
      corl::sampling::SamplingParams top_k;
      top_k.top_k = 1 + static_cast<index_t>(rng.below(40));
      const auto ref_top_k = corl::sampling::sample_row<float, float>(z, top_k, key, row);
      const auto d = corl::sampling::detail::row_distribution<float>(std::span<const float>(z), std::span<const float>{},
                                                                     top_k, row, "test");
      const std::vector<float> kept = kept_scores(z, d.threshold);
      for (const int unroll : {1, 2, 4}) {  // fp32 guided, fp32 / 16-bit guided, 16-bit
        CAPTURE(vocab);
        CAPTURE(trial);
        CAPTURE(unroll);
        const auto pass1 = kernel_pass1(z, unroll, rs);
        CHECK(pass1.closing_errors == 0);
        CHECK(pick(z, pass1.state.best_group, rs) == ref.token);
        CHECK(pass1.state.argmax == ref_greedy.token);
        uncertified += pass1.certified ? 0 : 1;
        approximate_keys += pass1.approximate_keys;
        // the paths of uncertified rows find the same group: the exact keys of the best two (the exact winner is one of
        // them), and the exact race bounded by the approximate winner's key less its slack (below the winner's exact
        // key)
        const auto two = kernel_pass1(z, unroll, rs, Settle::kBestTwo);
        CHECK(two.settled_by_two);
        CHECK(two.state.best_group == pass1.state.best_group);
        const auto raced = kernel_pass1(z, unroll, rs, Settle::kExactRace);
        CHECK(raced.exact_race);
        CHECK(raced.state.best_group == pass1.state.best_group);
        CHECK(kernel_pass1(z, unroll, {key.seed, key.offset, row, true}).state.argmax == ref_greedy.token);
        // truncation: the whole winning group, else the kept race bounded by the argmax group's kept key
        float zw[kRaceGroupSize];
        group_scores(z, pass1.state.best_group, zw);
        bool whole = true;
        for (const float v : zw)
          if (v != -std::numeric_limits<float>::infinity()) whole = whole && v >= d.threshold;
        index_t winner = pass1.state.best_group;
        if (!whole) {
          ++reraced;
          const auto second = kernel_kept_race(kept, rerace_bound(kept, pass1.state.argmax, rs), rs);
          CHECK(second.closing_errors == 0);
          // its fold is also the kept mass (the kernel's logp under top-k / min-p when it re-races)
          CHECK(second.state.max == d.max);
          CHECK(std::abs(second.state.sum - d.kept_mass) <= 2e-6f * d.kept_mass);
          winner = second.state.best_group;
        }
        CHECK(pick(kept, winner, rs) == ref_top_k.token);
        ++rows;
      }
    }
  }
  MESSAGE("rows " << rows << ", of which re-raced after top-k " << reraced << "; not certified " << uncertified
                    << "; race words asked " << approximate_keys);
  CHECK(rows == 21 * 3 * 3);
  CHECK(reraced > 100);
}

// The rows of the GPU test "rows of large logits ..." (tests/common/large_logit_rows.hpp), through the kernel's
// transcription: the certificate's slack grows with |key| (2.9e32 at 3e38), so near-ties at large magnitudes are
// settled by the best two or the exact race, whose filter must not be fooled by exp(m - B) = inf times an underflowed
// mass (0 * inf). Every row, every round width and every settling path must give the reference's token, and the fold
// the exact normaliser.
TEST_CASE("the kernel's loops give the reference's tokens on rows of logits up to FLT_MAX in magnitude") {
  const corl_test::LargeLogitRows rows_of = corl_test::large_logit_rows();
  int checked = 0, uncertified = 0;
  for (index_t r = 0; r < corl_test::LargeLogitRows::kRows; ++r) {
    const std::vector<float> z = rows_of.row(r);
    const corl::sampling::RngKey key{31, 4};
    const auto row = static_cast<std::uint32_t>(r);
    const Stream rs{key.seed, key.offset, row, false};
    const auto ref = corl::sampling::sample_row<float, float>(z, corl::sampling::SamplingParams{}, key, row);
    const double exact_logp = corl::sampling::sampling_logprob<double, float>(z, {}, ref.token, {});
    for (const int unroll : {1, 2, 4}) {
      for (const Settle settle : {Settle::kAsNeeded, Settle::kBestTwo, Settle::kExactRace}) {
        CAPTURE(r);
        CAPTURE(unroll);
        CAPTURE(static_cast<int>(settle));
        const auto pass1 = kernel_pass1(z, unroll, rs, settle);
        CHECK(pass1.closing_errors == 0);
        REQUIRE(pass1.state.best_group >= 0);
        uncertified += pass1.certified ? 0 : 1;
        const index_t token = pick(z, pass1.state.best_group, rs);
        CHECK(token == ref.token);
        // the kernel's log-prob: z - max - log(sum)
        const double logp = static_cast<double>(z[static_cast<std::size_t>(token)] - pass1.state.max) -
                            std::log(static_cast<double>(pass1.state.sum));
        CHECK(std::isfinite(logp));
        CHECK(std::abs(logp - exact_logp) <= 1e-4 + 1e-5 * std::abs(exact_logp));
        ++checked;
      }
    }
  }
  MESSAGE("row passes not certified by pass 1: " << uncertified << " of " << checked);
  CHECK(uncertified >= 4 * 3 * 3);  // the tied rows, at least: a tie is never certified
  CHECK(checked == 16 * 3 * 3);
}

TEST_CASE("certified race: approximate keys lie well within the slack of the exact keys") {
  // A group folded against a running max m above its own (as a GPU lane folds it after larger logits), raced with no
  // bound: its approximate key a = m + log(S_G) - log(E_G) against the exact key (group_race_key over its 32
  // scores). The slack must hold with room to spare (a quarter of it here), at logit scales from 0.1 to 1e4 and with
  // the group up to 60 nats below m.
  corl::CounterRng rng(4242, 0);
  float worst_ratio = 0.0f;
  for (int trial = 0; trial < 4000; ++trial) {
    const double scale = trial % 4 == 0 ? 0.1 : (trial % 4 == 1 ? 3.0 : (trial % 4 == 2 ? 40.0 : 1e4 * rng.uniform()));
    const double centre = (trial % 3 == 0 ? 1.0 : -1.0) * (trial % 5 == 0 ? 3000.0 : 5.0) * rng.uniform();
    std::vector<float> z(kRaceGroupSize);
    for (auto& v : z) v = static_cast<float>(centre + scale * rng.normal());
    if (trial % 7 == 0)
      z[static_cast<std::size_t>(rng.below(kRaceGroupSize))] = -std::numeric_limits<float>::infinity();
    float gmax = -std::numeric_limits<float>::infinity();
    for (const float v : z) gmax = std::max(gmax, v);
    CertifiedRaceState st = corl::sampling::empty_certified_race_state();
    // a lane that already saw a larger max (up to 60 nats above the group's, never more than 1e-3 relative)
    st.max = gmax + static_cast<float>(std::min(60.0 * rng.uniform(), 1e-3 * std::abs(gmax) + 1.0));
    for (int j = 0; j < corl::sampling::kRaceGroupQuads; ++j) {
      float quad[1][4] = {{z[static_cast<std::size_t>(4 * j)], z[static_cast<std::size_t>(4 * j + 1)],
                           z[static_cast<std::size_t>(4 * j + 2)], z[static_cast<std::size_t>(4 * j + 3)]}};
      corl::sampling::fold_certified_round<1>(st, quad, static_cast<std::uint32_t>(j) * 512u, 512u);
    }
    const std::uint32_t word = static_cast<std::uint32_t>(rng.below(std::uint64_t{1} << 32));
    corl::sampling::close_certified_group(st, 7, [word](index_t) { return word; },
                                          -std::numeric_limits<float>::infinity());
    REQUIRE(st.best_group == 7);
    float zg[kRaceGroupSize];
    for (int e = 0; e < kRaceGroupSize; ++e) zg[e] = z[static_cast<std::size_t>(e)];
    const float exact = corl::sampling::group_race_key(
        zg, corl::sampling::race_exponential(corl::sampling::word_to_race_uniform<float>(word)));
    const float slack = corl::sampling::certified_key_slack(st.best_key);
    CAPTURE(trial);
    CAPTURE(exact);
    CAPTURE(st.best_key);
    CHECK(std::abs(st.best_key - exact) <= 0.25f * slack);
    worst_ratio = std::max(worst_ratio, std::abs(st.best_key - exact) / slack);
  }
  MESSAGE("largest |approximate - exact| / slack: " << worst_ratio);
}

// Sampling without truncation folds without the argmax (fold_certified_round<U, false>, the GPU kernel's common path):
// every other field must be what the fold with the argmax gives, on rounds with new maxima, ties, -inf, NaN and +-0.
TEST_CASE("certified race: the fold without the argmax keeps every other field of the fold with it") {
  corl::CounterRng rng(77, 3);
  const float specials[] = {-std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(), 0.0f,
                            -0.0f, 5.0f};
  int argmax_moves = 0;
  for (int trial = 0; trial < 500; ++trial) {
    CertifiedRaceState with = corl::sampling::empty_certified_race_state();
    CertifiedRaceState without = with;
    for (int round = 0; round < 6; ++round) {
      float z[2][4];
      for (auto& quad : z) {
        for (float& v : quad) {
          v = rng.below(6) == 0 ? specials[rng.below(5)] : static_cast<float>(3.0 * rng.normal() + round);
        }
      }
      const auto q0 = static_cast<std::uint32_t>(trial % 512 + 1024 * round);
      const std::uint32_t before = with.argmax_quad;
      corl::sampling::fold_certified_round<2, true>(with, z, q0, 512u);
      corl::sampling::fold_certified_round<2, false>(without, z, q0, 512u);
      argmax_moves += with.argmax_quad != before;
      CAPTURE(trial);
      CAPTURE(round);
      CHECK(std::memcmp(&with.max, &without.max, sizeof(float)) == 0);
      CHECK(std::memcmp(&with.sum, &without.sum, sizeof(float)) == 0);
      CHECK(std::memcmp(&with.group_sum, &without.group_sum, sizeof(float)) == 0);
      CHECK(without.argmax_quad == corl::sampling::kNoQuad);
    }
  }
  CHECK(argmax_moves > 500);  // the rounds did move the argmax, so the fields compared above came through new maxima
}

// The device's exps in pass 1 (corl/sampling/streaming_race.hpp, stream_exp_shift / stream_exp_shifted), emulated on
// the host with its exactly rounded float FMA and a double ex2: exp(z - m) = ex2(fma(z, L, hi)) ex2(lo),
// -m L = hi + lo, L = log2(e) in float. Each term's error must stay relative to |z - m| (the FFMA's one rounding and
// L's), as the subtract-then-multiply it replaced: within (|z - m| + 1) 2^-23, for maxima up to 2^20 in magnitude.
// Without the correction ex2(lo) the error grows with |m| instead: the same bound must fail for some of these terms.
TEST_CASE("the device's shifted exps keep each term's error relative to |z - m|, not to |m| (host emulation)") {
  constexpr float kLog2e = 1.44269504088896341f;
  corl::CounterRng rng(2020, 11);
  int checked = 0, uncorrected_over = 0;
  double worst = 0.0;
  for (int trial = 0; trial < 20000; ++trial) {
    const double magnitude = std::ldexp(1.0, static_cast<int>(rng.below(21)));  // 1 .. 2^20
    const auto m = static_cast<float>((rng.uniform() < 0.5 ? -1.0 : 1.0) * magnitude * (0.5 + 0.5 * rng.uniform()));
    const auto z = static_cast<float>(m - 60.0 * rng.uniform());
    if (!(z <= m) || std::abs(m) > corl::sampling::kMaxShiftedExpMax) continue;
    const float hi = -m * kLog2e;
    const float lo = std::fma(-m, kLog2e, -hi);
    const float x = std::fma(z, kLog2e, hi);
    const double term = std::exp2(static_cast<double>(x)) * std::exp2(static_cast<double>(lo));
    const double exact = std::exp(static_cast<double>(z) - static_cast<double>(m));
    const double bound = (std::abs(static_cast<double>(z) - m) + 1.0) * std::ldexp(1.0, -23);
    const double error = std::abs(term / exact - 1.0);
    CHECK(std::abs(lo) <= 0.0625f);
    CHECK(error <= bound);
    worst = std::max(worst, error / bound);
    uncorrected_over += std::abs(std::exp2(static_cast<double>(x)) / exact - 1.0) > bound;
    ++checked;
  }
  MESSAGE("largest error / bound: " << worst << "; uncorrected terms over the bound: " << uncorrected_over);
  CHECK(checked > 15000);
  CHECK(uncorrected_over > 1000);
}

TEST_CASE("certified race: merge and certificate, hand-computed") {
  auto state = [](float best, index_t group, float runner = -std::numeric_limits<float>::infinity(),
                  index_t runner_group = -1, float third = -std::numeric_limits<float>::infinity()) {
    // max 1, sum 1, argmax quad 0, no open group
    return CertifiedRaceState{1.0f, 1.0f, 0u, best, group, runner, runner_group, third, 0.0f};
  };
  // slack(5) = 1e-4 + 165 * 2^-20 = 2.5735e-4: certified below 5 - 5.147e-4 = 4.999485
  CHECK(corl::sampling::certified_key_slack(5.0f) == doctest::Approx(2.5735e-4).epsilon(1e-3));
  const auto ab = corl::sampling::merge_certified_race_states(state(5.0f, 3), state(4.0f, 7, 3.5f, 11, 1.0f));
  CHECK(ab.best_key == 5.0f);
  CHECK(ab.best_group == 3);
  CHECK(ab.runner_up == 4.0f);
  CHECK(ab.runner_group == 7);
  CHECK(ab.third == 3.5f);
  CHECK(corl::sampling::certified_winner(ab));
  // the best two of the four stay, the rest joins `third`, in either order of the merge
  for (const bool swap : {false, true}) {
    const auto x = state(5.0f, 3, 2.0f, 8, 1.0f), y = state(4.9996f, 9, 4.9995f, 10, 0.5f);
    const auto m = swap ? corl::sampling::merge_certified_race_states(y, x)
                        : corl::sampling::merge_certified_race_states(x, y);
    CHECK(m.best_group == 3);
    CHECK(m.runner_group == 9);
    CHECK(m.runner_up == 4.9996f);
    CHECK(m.third == 4.9995f);
    CHECK_FALSE(corl::sampling::certified_winner(m));     // 4.9996 >= 4.999485
    CHECK_FALSE(corl::sampling::settled_by_best_two(m));  // 4.9995 >= 4.999485: a third group is as close
  }
  const auto two = corl::sampling::merge_certified_race_states(state(5.0f, 3, 2.0f, 8), state(4.9996f, 9, 4.99f, 10));
  CHECK_FALSE(corl::sampling::certified_winner(two));
  CHECK(corl::sampling::settled_by_best_two(two));  // third = 4.99 < 4.999485
  CHECK(corl::sampling::certified_winner(
      corl::sampling::merge_certified_race_states(state(5.0f, 3, 1.0f, 4), state(4.9994f, 9, 2.0f, 5))));
  // equal keys: the smaller group wins, and the tie is never certified
  const auto tie = corl::sampling::merge_certified_race_states(state(5.0f, 3), state(5.0f, 2));
  CHECK(tie.best_group == 2);
  CHECK(tie.runner_group == 3);
  CHECK_FALSE(corl::sampling::certified_winner(tie));
  CHECK(corl::sampling::settled_by_best_two(tie));
  // no winner: nothing to certify
  CHECK_FALSE(corl::sampling::certified_winner(corl::sampling::empty_certified_race_state()));
  CHECK_FALSE(corl::sampling::settled_by_best_two(corl::sampling::empty_certified_race_state()));
  // a lane's inserts: new best, new second, the rest
  CertifiedRaceState lane = corl::sampling::empty_certified_race_state();
  corl::sampling::certified_insert(lane, 1.0f, 4);
  corl::sampling::certified_insert(lane, 3.0f, 8);
  corl::sampling::certified_insert(lane, 2.0f, 12);
  corl::sampling::certified_insert(lane, 0.5f, 16);
  CHECK(lane.best_group == 8);
  CHECK(lane.runner_group == 12);
  CHECK(lane.third == 1.0f);
  CHECK(lane.runner_up == 2.0f);
  CHECK(lane.best_key == 3.0f);
  // argmax quad: the larger max, on equal maxima the smaller quad
  auto p = state(5.0f, 3), q = state(4.0f, 7);
  p.max = 2.0f;
  p.argmax_quad = 40;
  q.max = 2.0f;
  q.argmax_quad = 12;
  CHECK(corl::sampling::merge_certified_race_states(p, q).argmax_quad == 12);
  q.max = 1.5f;
  CHECK(corl::sampling::merge_certified_race_states(p, q).argmax_quad == 40);
}


TEST_CASE("certified race: the field-wise all-reduction of many states equals their merge") {
  // 512 lane states (16 warps of 32) with distinct groups, equal keys and equal maxima on purpose, lanes without any
  // group or without a finite max: the kernel's two-level field-wise reduction against a chain of merges in lane order
  // and in reverse order. Everything equal but the sum, whose rounding depends on the order.
  corl::CounterRng rng(777, 0);
  for (int trial = 0; trial < 300; ++trial) {
    CAPTURE(trial);
    std::vector<CertifiedRaceState> lanes(512);
    index_t next_group = 0;
    for (auto& st : lanes) {
      st = corl::sampling::empty_certified_race_state();
      if (rng.uniform() < 0.9) {
        st.max = static_cast<float>(std::floor(8.0 * rng.uniform()));  // few distinct maxima: ties
        st.sum = static_cast<float>(1.0 + 10.0 * rng.uniform());
        st.argmax_quad = static_cast<std::uint32_t>(rng.below(100000));
      }
      const int evaluated = trial % 3 == 0 ? 0 : static_cast<int>(rng.below(5));
      for (int g = 0; g < evaluated; ++g) {
        next_group += 1 + static_cast<index_t>(rng.below(3));
        const float key = trial % 2 == 0 ? static_cast<float>(std::floor(6.0 * rng.uniform()))  // ties of keys
                                         : static_cast<float>(20.0 * rng.normal());
        corl::sampling::certified_insert(st, key, next_group);
      }
    }
    if (trial % 3 == 0 && trial % 2 == 0) {  // a few groups only, some with the same key
      for (int g = 0; g < 3; ++g) corl::sampling::certified_insert(lanes[rng.below(512)], 1.0f, next_group += 7);
    }
    std::vector<CertifiedRaceState> warps;
    for (int w = 0; w < 16; ++w) {
      warps.push_back(fieldwise_merge(std::vector<CertifiedRaceState>(lanes.begin() + 32 * w,
                                                                      lanes.begin() + 32 * (w + 1))));
    }
    const CertifiedRaceState fieldwise = fieldwise_merge(warps);
    CertifiedRaceState forward = lanes[0], backward = lanes[511];
    for (std::size_t i = 1; i < 512; ++i) {
      forward = corl::sampling::merge_certified_race_states(forward, lanes[i]);
      backward = corl::sampling::merge_certified_race_states(backward, lanes[511 - i]);
    }
    for (const auto& merged : {forward, backward}) {
      CHECK(fieldwise.max == merged.max);
      CHECK(fieldwise.sum == doctest::Approx(merged.sum).epsilon(1e-5));
      CHECK(fieldwise.argmax_quad == merged.argmax_quad);
      CHECK(fieldwise.best_group == merged.best_group);
      CHECK(fieldwise.runner_group == merged.runner_group);
      CHECK(fieldwise.third == merged.third);
      CHECK(corl::sampling::certified_winner(fieldwise) == corl::sampling::certified_winner(merged));
      CHECK(corl::sampling::settled_by_best_two(fieldwise) == corl::sampling::settled_by_best_two(merged));
      if (merged.best_group >= 0) CHECK(fieldwise.best_key == merged.best_key);
      if (merged.runner_group >= 0) CHECK(fieldwise.runner_up == merged.runner_up);
    }
  }
  // a NaN sum (a NaN score) and a +inf max (a +inf score) still show after the reduction: the bad-row test
  std::vector<CertifiedRaceState> lanes(32, corl::sampling::empty_certified_race_state());
  lanes[3].max = 2.0f;
  lanes[3].sum = 1.0f;
  lanes[9].max = 1.0f;
  lanes[9].sum = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(fieldwise_merge(lanes).sum));
  lanes[9].sum = 1.0f;
  lanes[20].max = std::numeric_limits<float>::infinity();
  lanes[20].sum = 1.0f;
  CHECK(fieldwise_merge(lanes).max == std::numeric_limits<float>::infinity());
  // no lane saw a finite logit: max -inf, sum 0, no quad, no group
  const auto none = fieldwise_merge(std::vector<CertifiedRaceState>(32, corl::sampling::empty_certified_race_state()));
  CHECK(none.max == -std::numeric_limits<float>::infinity());
  CHECK(none.sum == 0.0f);
  CHECK(none.argmax_quad == corl::sampling::kNoQuad);
  CHECK(none.best_group == -1);
  CHECK(none.runner_group == -1);
}

TEST_CASE("certified race: rows whose best keys tie exactly are settled by the best two, or by the exact race") {
  // Scores of 1e29 (a logit of ~1 at a temperature of 1e-29) at 2, 3 or 5 places in distinct groups, the rest O(1):
  // the groups holding them have keys equal to 1e29 exactly (log S_G and log E_G vanish in its rounding), so the
  // approximate keys tie too and no row is certified. With two such groups the best two settle it, with more the exact
  // race runs; either way the smaller group wins, as in the exhaustive reference.
  corl::CounterRng rng(777, 0);
  int settled_by_two = 0, raced = 0;
  for (const int copies : {2, 3, 5}) {
    for (int trial = 0; trial < 6; ++trial) {
      const index_t vocab = 1500 + 3001 * trial;  // 1500 (groups of one quad) .. 16505
      auto z = random_scores(rng, vocab, 3.0, 0.0, false);
      std::vector<std::uint64_t> groups;
      while (static_cast<int>(groups.size()) < copies) {
        const auto i = static_cast<index_t>(rng.below(static_cast<std::uint64_t>(vocab)));
        const std::uint64_t g = corl::sampling::race_group(static_cast<std::uint64_t>(i / 4));
        if (std::find(groups.begin(), groups.end(), g) != groups.end()) continue;
        groups.push_back(g);
        z[static_cast<std::size_t>(i)] = 1e29f;
      }
      const corl::sampling::RngKey key{91, static_cast<std::uint64_t>(trial)};
      const Stream rs{key.seed, key.offset, 5, false};
      const auto ref = corl::sampling::sample_row<float, float>(z, corl::sampling::SamplingParams{}, key, 5);
      for (const int unroll : {1, 2, 4}) {
        CAPTURE(copies);
        CAPTURE(vocab);
        CAPTURE(unroll);
        const auto pass1 = kernel_pass1(z, unroll, rs);
        CHECK_FALSE(pass1.certified);
        CHECK(pass1.settled_by_two == (copies == 2));
        CHECK(pass1.exact_race == (copies > 2));
        CHECK(pass1.state.best_group == static_cast<index_t>(*std::min_element(groups.begin(), groups.end())));
        CHECK(pick(z, pass1.state.best_group, rs) == ref.token);
        settled_by_two += pass1.settled_by_two ? 1 : 0;
        raced += pass1.exact_race ? 1 : 0;
      }
    }
  }
  CHECK(settled_by_two == 18);
  CHECK(raced == 36);
}

TEST_CASE("the kernel's warp-wide draw inside the winning group (lane scoring, xor-shuffle argmax) equals "
          "pick_in_group") {
  // Transcribed from corl/cuda/sampling.cuh, pick_token_warp, starting from a row, a group and a threshold: lane e
  // scores entry e of the 32 (token group_entry_token(group, e); -inf beyond the row), keeps it when z >= threshold and
  // z is not -inf, draws its key from word e % 4 of pick_words(group_quad(group, e / 4)) (lanes beyond a smaller group
  // hold nothing); five
  // xor-shuffle steps keep the largest key, ties to the smaller entry, every lane updating from its partner's values
  // of the previous step. Against group_scores-style scores and pick_in_group, on rows of every width (partial groups
  // at the row's end) and, in over a third of the trials, with all four words of a quad equal so that equal scores tie.
  constexpr int kNone = kRaceGroupSize;
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  corl::CounterRng rng(1357, 0);
  int draws = 0, tied = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const index_t vocab = 1 + static_cast<index_t>(rng.below(trial < 1500 ? 2100 : 40000));
    const bool coarse = trial % 3 == 0;  // integer scores: many equal values
    auto z = random_scores(rng, vocab, coarse ? 0.6 : 3.0, 0.3, coarse);  // coarse: z in {..., -0.5, 0, 0.5, ...}
    const auto groups = corl::sampling::race_groups(static_cast<std::uint64_t>(quads_of(z)));
    const auto group = static_cast<index_t>(rng.below(groups));
    const float threshold = trial % 4 == 0 ? static_cast<float>(rng.normal()) : neg_inf;
    z[static_cast<std::size_t>(corl::sampling::group_entry_token(static_cast<std::uint64_t>(group), 0))] = 5.0f;  // kept
    const Stream rs{11, static_cast<std::uint64_t>(trial), static_cast<std::uint32_t>(trial % 7), false};
    const bool equal_words = coarse || trial % 5 == 1;  // with coarse scores: equal keys
    auto words_of = [&](std::uint64_t q) {
      corl::Philox4x32 w = corl::sampling::pick_words(rs.seed, rs.offset, rs.row, q);
      if (equal_words) w.v[1] = w.v[2] = w.v[3] = w.v[0];
      return w;
    };
    // the reference: group_scores masked at the threshold, then pick_in_group
    float zg[kRaceGroupSize];
    group_scores(z, group, zg);
    for (float& v : zg) v = v >= threshold ? v : neg_inf;
    corl::Philox4x32 words[corl::sampling::kRaceGroupQuads];
    for (int j = 0; j < corl::sampling::kRaceGroupQuads; ++j)
      words[j] = words_of(corl::sampling::group_quad(static_cast<std::uint64_t>(group), j));
    const int expected = corl::sampling::pick_in_group(zg, words);
    // the warp
    float key[32], val[32];
    int best[32];
    for (int lane = 0; lane < 32; ++lane) {
      const int e = lane % kRaceGroupSize;
      const std::uint64_t q = corl::sampling::group_quad(static_cast<std::uint64_t>(group), e / 4);
      const auto i = static_cast<index_t>(corl::sampling::group_entry_token(static_cast<std::uint64_t>(group), e));
      const float ze = (lane < kRaceGroupSize && group >= 0 && i < vocab) ? z[static_cast<std::size_t>(i)] : neg_inf;
      const bool kept = ze >= threshold && ze != neg_inf;
      key[lane] = kept ? corl::sampling::token_race_key(
                             ze, corl::sampling::race_exponential(corl::sampling::word_to_race_uniform<float>(
                                     corl::sampling::philox_word(words_of(q), e % 4))))
                       : neg_inf;
      best[lane] = kept ? e : kNone;
      val[lane] = ze;
    }
    int ties_seen = 0;
    for (int off = 16; off > 0; off >>= 1) {
      float k2[32], v2[32];
      int b2[32];
      for (int lane = 0; lane < 32; ++lane) {
        const int p = lane ^ off;
        if (best[p] != kNone && best[lane] != kNone && key[p] == key[lane] && best[p] != best[lane]) ++ties_seen;
        const bool take = best[p] != kNone &&
                          (best[lane] == kNone || key[p] > key[lane] || (key[p] == key[lane] && best[p] < best[lane]));
        k2[lane] = take ? key[p] : key[lane];
        b2[lane] = take ? best[p] : best[lane];
        v2[lane] = take ? val[p] : val[lane];
      }
      std::copy(std::begin(k2), std::end(k2), std::begin(key));
      std::copy(std::begin(b2), std::end(b2), std::begin(best));
      std::copy(std::begin(v2), std::end(v2), std::begin(val));
    }
    CAPTURE(trial);
    CAPTURE(vocab);
    CAPTURE(group);
    REQUIRE(best[0] != kNone);
    CHECK(best[0] == expected);
    CHECK(corl::sampling::group_entry_token(static_cast<std::uint64_t>(group), best[0]) ==
          corl::sampling::group_entry_token(static_cast<std::uint64_t>(group), expected));
    CHECK(val[0] == zg[expected]);
    tied += ties_seen > 0;
    ++draws;
  }
  MESSAGE("draws " << draws << ", with equal keys met in the reduction " << tied);
  CHECK(draws == 3000);
  CHECK(tied > 50);
}

TEST_CASE("truncation: the kept race fused into the last selection's listing read (deferred groups, lower bounds) "
          "finds the reference's token, and the kept mass splits into sure entries and listed candidates") {
  corl::CounterRng rng(2718, 0);
  corl::CounterRng order(2719, 0);  // deferral orders and applying threads
  int fused = 0;
  std::size_t deferred_total = 0, deferred_max = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const auto z = truncation_row(rng, trial, trial < 250 ? 3000 : 20000);
    if (z.empty()) continue;
    const auto vocab = static_cast<index_t>(z.size());
    corl::sampling::SamplingParams p;
    const int mode = trial % 4;  // top-k, top-p, top-k + top-p, and each with min-p on some trials
    if (mode == 0 || mode == 2) p.top_k = 1 + static_cast<index_t>(rng.below(trial % 8 < 4 ? 60 : 400));
    if (mode == 1 || mode == 2) p.top_p = 0.5 + 0.49 * rng.uniform();
    if (mode == 3) p.top_p = 0.999;
    if (trial % 5 == 1) p.min_p = trial % 2 ? 0.02 + 0.2 * rng.uniform() : 1e-4;
    const corl::sampling::RngKey key{91 + static_cast<std::uint64_t>(trial), 3};
    const auto row = static_cast<std::uint32_t>(trial % 11);
    const Stream rs{key.seed, key.offset, row, false};
    const std::span<const float> zs(z);
    const auto d = corl::sampling::detail::row_distribution<float>(zs, std::span<const float>{}, p, row, "test");
    // the selections as the kernel runs them: top-k (restricting top-p), then the last one, whose bin is fused
    corl::sampling::SamplingParams k_only;
    k_only.top_k = p.top_k;
    corl::sampling::SamplingParams sel_only = p;
    sel_only.min_p = 0.0;
    const bool top_k_on = p.top_k > 0 && p.top_k < vocab;
    const float t_k = top_k_on ? corl::sampling::detail::row_distribution<float>(zs, {}, k_only, row, "test").threshold
                               : -std::numeric_limits<float>::infinity();
    const float t_sel = corl::sampling::detail::row_distribution<float>(zs, {}, sel_only, row, "test").threshold;
    if (!top_k_on && p.top_p >= 1.0) continue;
    const std::uint32_t restrict_min = top_k_on && p.top_p < 1.0 ? corl::sampling::ordered_bits(t_k) : 0u;
    const std::uint32_t bin_prefix = corl::sampling::ordered_bits(t_sel) & 0xffe00000u;
    if (bin_prefix < 0x00800000u) continue;  // the kernel does not fuse: its bin holds -inf
    const float t_min = p.min_p > 0.0 ? corl::sampling::add_rn(d.max, static_cast<float>(std::log(p.min_p)))
                                      : -std::numeric_limits<float>::infinity();
    const float threshold = std::max(t_sel, t_min);
    REQUIRE(threshold == d.threshold);
    CAPTURE(trial);
    CAPTURE(vocab);
    const auto pass1 = emulate(z, 512, 1, rs, 32);
    const auto f = emulate_fused_kept_race(z, bin_prefix, restrict_min, p.top_p < 1.0, t_min, threshold, pass1.state, rs,
                                           trial % 2 == 0 ? &order : nullptr);
    const std::vector<float> kept = kept_scores(z, threshold);
    unsigned long long kept_fixed = 0;
    for (const float v : kept) kept_fixed += fixed_point_mass(v, d.max);
    const auto ref = corl::sampling::sample_row<float, float>(z, p, key, row);
    CHECK(pick(kept, f.winner, rs) == ref.token);
    CHECK(f.kept_fixed == kept_fixed);
    ++fused;
    deferred_total += f.deferred;
    deferred_max = std::max(deferred_max, f.deferred);
  }
  MESSAGE("fused rows: " << fused << ", deferred groups: " << deferred_total << " in all, at most " << deferred_max
                         << " in a row");
  CHECK(fused > 150);
  CHECK(deferred_max <= 512);  // kDeferredCap: more falls back to the race pass
}

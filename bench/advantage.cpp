// CPU advantage estimators at GRPO / CoRL batch shapes (128 groups of 8, 16 of 16, 1024 of 16): the CPU path is what
// the bundled trainer uses when no GPU is present. items_per_second = sequences per second.
#include <benchmark/benchmark.h>

#include <vector>

#include <corl/advantage/advantage.hpp>
#include <corl/core/rng.hpp>

namespace {

struct Batch {
  std::vector<double> rewards;
  std::vector<corl::index_t> group, lengths;
  corl::index_t num_groups;
};

Batch make(corl::index_t groups, corl::index_t size, bool binary) {
  corl::CounterRng rng(3, 0);
  Batch b{{}, {}, {}, groups};
  for (corl::index_t g = 0; g < groups; ++g) {
    for (corl::index_t j = 0; j < size; ++j) {
      b.rewards.push_back(binary ? static_cast<double>(rng.below(2)) : rng.normal());
      b.group.push_back(g);
      b.lengths.push_back(1 + static_cast<corl::index_t>(rng.below(512)));
    }
  }
  return b;
}

template <class Estimator>
void run(benchmark::State& state, const Estimator& est, bool binary) {
  const Batch b = make(state.range(0), state.range(1), binary);
  std::vector<double> out(b.rewards.size());
  const corl::RewardBatch<double> view{b.rewards, b.group, b.num_groups, b.lengths};
  for (auto _ : state) {
    benchmark::DoNotOptimize(est.compute(view, std::span<double>(out)));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(b.rewards.size()));
}

void group_zscore(benchmark::State& s) { run(s, corl::GroupZScore{}, false); }
void rloo(benchmark::State& s) { run(s, corl::Rloo{}, false); }
void reinforce_pp_baseline(benchmark::State& s) { run(s, corl::ReinforcePlusPlusBaseline{}, false); }
void opo(benchmark::State& s) { run(s, corl::Opo{}, false); }
void pass_at_k4(benchmark::State& s) { run(s, corl::PassAtK{.k = 4}, true); }

void gdpo_two_rewards(benchmark::State& state) {
  const Batch a = make(state.range(0), state.range(1), true);
  std::vector<double> table;
  for (std::size_t i = 0; i < a.rewards.size(); ++i) {
    table.push_back(a.rewards[i]);
    table.push_back(1.0 - a.rewards[(i * 7) % a.rewards.size()]);
  }
  const std::vector<double> w{1.0, 0.8};
  std::vector<double> out(a.rewards.size());
  const corl::RewardTable<double> t{table, static_cast<corl::index_t>(a.rewards.size()), 2};
  for (auto _ : state) {
    benchmark::DoNotOptimize(corl::normalize_then_sum(corl::GroupZScore{}, t, w, a.group, a.num_groups,
                                                      std::span<double>(out)));
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(a.rewards.size()));
}

}  // namespace

BENCHMARK(group_zscore)->Args({128, 8})->Args({16, 16})->Args({1024, 16});
BENCHMARK(rloo)->Args({128, 8});
BENCHMARK(reinforce_pp_baseline)->Args({128, 8});
BENCHMARK(opo)->Args({128, 8});
BENCHMARK(pass_at_k4)->Args({128, 8});
BENCHMARK(gdpo_two_rewards)->Args({128, 8});

BENCHMARK_MAIN();

// CPU reference sampler (corl/sampling/sampler.hpp), one row: V in {16384, 102400}, float, plain / top-p 0.9 / CFG 5.
// The reference is written for clarity and exactness, not speed; this measures what a CPU fallback costs per row.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include <corl/core/rng.hpp>
#include <corl/sampling/sampler.hpp>

namespace {

std::vector<float> random_row(std::int64_t vocab, std::uint64_t seed) {
  corl::CounterRng rng(seed, 0);
  std::vector<float> v(static_cast<std::size_t>(vocab));
  for (auto& x : v) x = static_cast<float>(2.3 * rng.normal());
  return v;
}

void sample_cpu(benchmark::State& state, int mode) {
  const std::int64_t vocab = state.range(0);
  const auto cond = random_row(vocab, 1), uncond = random_row(vocab, 2);
  corl::sampling::SamplingParams p;
  if (mode == 1) p.top_p = 0.9;
  if (mode == 2) p.cfg_weight = 5.0;
  std::uint64_t step = 0;
  for (auto _ : state) {
    const auto s = corl::sampling::sample_row<float, float>(
        cond, mode == 2 ? std::span<const float>(uncond) : std::span<const float>{}, p, {7, step++}, 0);
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(state.iterations() * vocab * static_cast<std::int64_t>(sizeof(float)) * (mode == 2 ? 2 : 1));
}

void plain(benchmark::State& s) { sample_cpu(s, 0); }
void top_p(benchmark::State& s) { sample_cpu(s, 1); }
void cfg(benchmark::State& s) { sample_cpu(s, 2); }

}  // namespace

BENCHMARK(plain)->Name("sample_row_cpu/fp32/plain")->Arg(16384)->Arg(102400)->Unit(benchmark::kMicrosecond);
BENCHMARK(top_p)->Name("sample_row_cpu/fp32/top_p0.9")->Arg(16384)->Arg(102400)->Unit(benchmark::kMicrosecond);
BENCHMARK(cfg)->Name("sample_row_cpu/fp32/cfg5")->Arg(16384)->Arg(102400)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();

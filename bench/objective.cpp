// Benchmark of the CPU reference objective: Objective::evaluate_into at B = 64, T = 1024 (65536 tokens) for a few
// Loss x KL x Aggregation combinations, float and double. items/s = tokens/s; bytes/s counts the per-token arrays
// read (logp, logp_old, logp_ref when a KL is used, mask) and written (dL/dlogp).
#include <benchmark/benchmark.h>

#include <corl/loss/aggregate.hpp>
#include <corl/loss/cispo.hpp>
#include <corl/loss/gspo.hpp>
#include <corl/loss/kl.hpp>
#include <corl/loss/objective.hpp>
#include <corl/loss/ppo_clip.hpp>
#include <random>

namespace {

constexpr corl::index_t kBatch = 64, kLen = 1024;

template <class Real>
corl::Batch<Real> make_batch() {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  corl::Batch<Real> b(kBatch, kLen);
  b.logp_old.resize(b.logp.size());
  b.logp_ref.resize(b.logp.size());
  for (corl::index_t s = 0; s < kBatch; ++s) {
    b.set_length(s, kLen / 2 + static_cast<corl::index_t>(u(rng) * (kLen / 2)));
    b.group[static_cast<std::size_t>(s)] = s / 8;
    b.advantages[static_cast<std::size_t>(s)] = static_cast<Real>(2 * u(rng) - 1);
  }
  for (std::size_t i = 0; i < b.logp.size(); ++i) {
    b.logp[i] = static_cast<Real>(-0.05 - 3 * u(rng));
    b.logp_old[i] = static_cast<Real>(b.logp[i] + 0.4 * u(rng) - 0.2);
    b.logp_ref[i] = static_cast<Real>(b.logp[i] + 1.0 * u(rng) - 0.5);
  }
  return b;
}

template <class Real, class Loss, class Kl, class Agg>
void BM_objective(benchmark::State& state) {
  const auto batch = make_batch<Real>();
  corl::ObjectiveConfig cfg;
  cfg.beta = Kl::uses_reference ? 0.04 : 0.0;
  const corl::Objective<Loss, Kl, Agg> obj(Loss{}, Kl{}, Agg{}, cfg);
  corl::Normalizers z = obj.count_normalizers(batch.view());
  z.constant_divisor = static_cast<double>(kLen);
  std::vector<Real> grad(static_cast<std::size_t>(kBatch * kLen));
  double loss = 0;
  for (auto _ : state) {
    const auto m = obj.evaluate_into(batch.view(), z, std::span<Real>(grad), std::span<Real>(), &loss);
    benchmark::DoNotOptimize(loss);
    benchmark::DoNotOptimize(m.tokens);
    benchmark::ClobberMemory();
  }
  const auto tokens = static_cast<std::int64_t>(kBatch * kLen);
  const std::int64_t arrays = Kl::uses_reference ? 4 : 3;  // logp, logp_old, [logp_ref], grad
  state.SetItemsProcessed(state.iterations() * tokens);
  state.SetBytesProcessed(state.iterations() * tokens * (arrays * static_cast<std::int64_t>(sizeof(Real)) + 1));
}

}  // namespace

BENCHMARK(BM_objective<float, corl::PpoClip, corl::NoKl, corl::TokenMean>)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_objective<double, corl::PpoClip, corl::NoKl, corl::TokenMean>)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_objective<float, corl::PpoClip, corl::K3, corl::SeqMeanTokenMean>)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_objective<double, corl::PpoClip, corl::K3, corl::SeqMeanTokenMean>)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_objective<float, corl::Gspo, corl::K3, corl::SeqMeanTokenSumNorm>)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_objective<float, corl::Cispo, corl::K3Plus, corl::TokenMean>)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();

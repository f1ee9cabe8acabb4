// Group advantages on the GPU: one launch for 128 groups of 8 (the GRPO / CoRL batch shape) and larger batches.
// Manual time = CUDA-event time of one launch (the whole call is launch-latency bound; target <= 10 us for 128 x 8;
// a PyTorch eager version takes ~60 us in several launches). Counter latency_us: host wall-clock of launch +
// cudaStreamSynchronize, i.e. what a training loop waits for; back_to_back_us: device time per launch of 50 launches
// issued back to back (no host latency in it).
#include <benchmark/benchmark.h>

#include <chrono>
#include <vector>

#include <corl/core/rng.hpp>
#include <corl/cuda/group_advantage.cuh>

#include "bench_main.cuh"

namespace {

template <class Real>
void bench_group_advantage(benchmark::State& state, corl::cuda::GroupAdvantageKind kind) {
  const auto num_groups = static_cast<corl::index_t>(state.range(0));
  const auto group_size = static_cast<corl::index_t>(state.range(1));
  const corl::index_t n = num_groups * group_size;
  std::vector<Real> rewards(static_cast<std::size_t>(n));
  corl::CounterRng rng(1, 0);
  for (Real& r : rewards) r = static_cast<Real>(rng.below(2));
  std::vector<corl::index_t> offsets(static_cast<std::size_t>(num_groups + 1));
  for (corl::index_t g = 0; g <= num_groups; ++g) offsets[static_cast<std::size_t>(g)] = g * group_size;
  Real *d_r = nullptr, *d_a = nullptr;
  corl::index_t* d_o = nullptr;
  corl::cuda::check_cuda(cudaMalloc(&d_r, sizeof(Real) * rewards.size()), "malloc");
  corl::cuda::check_cuda(cudaMalloc(&d_a, sizeof(Real) * rewards.size()), "malloc");
  corl::cuda::check_cuda(cudaMalloc(&d_o, sizeof(corl::index_t) * offsets.size()), "malloc");
  corl::cuda::check_cuda(cudaMemcpy(d_r, rewards.data(), sizeof(Real) * rewards.size(), cudaMemcpyHostToDevice), "up");
  corl::cuda::check_cuda(
      cudaMemcpy(d_o, offsets.data(), sizeof(corl::index_t) * offsets.size(), cudaMemcpyHostToDevice), "up");
  cudaStream_t stream;
  cudaEvent_t start, stop;
  corl::cuda::check_cuda(cudaStreamCreate(&stream), "stream");
  corl::cuda::check_cuda(cudaEventCreate(&start), "event");
  corl::cuda::check_cuda(cudaEventCreate(&stop), "event");
  corl::cuda::GroupAdvantageParams params;
  params.kind = kind;
  for (int w = 0; w < 10; ++w) corl::cuda::group_advantage<Real>(d_r, d_o, num_groups, n, d_a, params, nullptr, stream);
  corl::cuda::check_cuda(cudaStreamSynchronize(stream), "sync");
  double wall_us = 0.0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    cudaEventRecord(start, stream);
    corl::cuda::group_advantage<Real>(d_r, d_o, num_groups, n, d_a, params, nullptr, stream);
    cudaEventRecord(stop, stream);
    cudaStreamSynchronize(stream);
    wall_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  // The same launch 50 times back to back between two events: the device time of one launch without the host's
  // submission latency, which the manual time above includes (the GPU idles between the first event and the kernel).
  constexpr int kBackToBack = 50;
  cudaEventRecord(start, stream);
  for (int k = 0; k < kBackToBack; ++k)
    corl::cuda::group_advantage<Real>(d_r, d_o, num_groups, n, d_a, params, nullptr, stream);
  cudaEventRecord(stop, stream);
  corl::cuda::check_cuda(cudaStreamSynchronize(stream), "back-to-back launches");
  float back_ms = 0.0f;
  cudaEventElapsedTime(&back_ms, start, stop);
  state.counters["back_to_back_us"] = static_cast<double>(back_ms) * 1e3 / kBackToBack;
  const double bytes = static_cast<double>(n) * 2.0 * sizeof(Real) + static_cast<double>(offsets.size()) * 8.0;
  state.counters["bytes_per_second"] =
      benchmark::Counter(bytes * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["latency_us"] = wall_us / static_cast<double>(state.iterations());
  state.counters["seqs"] = static_cast<double>(n);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  cudaFree(d_r);
  cudaFree(d_a);
  cudaFree(d_o);
}

void zscore_f32(benchmark::State& s) { bench_group_advantage<float>(s, corl::cuda::GroupAdvantageKind::kZScore); }
void batch_std_f32(benchmark::State& s) {
  bench_group_advantage<float>(s, corl::cuda::GroupAdvantageKind::kMeanBatchStd);
}
void rloo_f64(benchmark::State& s) { bench_group_advantage<double>(s, corl::cuda::GroupAdvantageKind::kRloo); }

}  // namespace

BENCHMARK(zscore_f32)->Args({128, 8})->Args({16, 8})->Args({1024, 16})->Args({8192, 16})->UseManualTime()
    ->Unit(benchmark::kMicrosecond)->MinTime(0.2);
BENCHMARK(batch_std_f32)->Args({128, 8})->Args({1024, 16})->UseManualTime()->Unit(benchmark::kMicrosecond)
    ->MinTime(0.2);
BENCHMARK(rloo_f64)->Args({128, 8})->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.2);

int main(int argc, char** argv) {
  if (corl_bench::skip_without_device()) return 0;
  return corl_bench::run_benchmarks(argc, argv);
}

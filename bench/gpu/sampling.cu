// GPU sampler throughput (corl/cuda/sampling.cuh): B = 256 rows, V in {16384, 102400}, fp32 and bf16, modes plain
// (T = 1), top-k 50, top-p 0.9, min-p 0.05, CFG 5 (two rows read); plain_staged / cfg5_staged: the same with pass 1's
// loads staged in shared memory (PathLimits::pass1_loads = kStaged), against the default (registers) in the same run;
// plain_multiply / cfg5_multiply: pass 1 multiplies by 1 / T = 1 (PathLimits::unit_temperature = false), which the
// default leaves out at T = 1.
// Timed with CUDA events (manual time) around each launch. Counters: bytes/s of logits read, floor_us = bytes / copy
// bandwidth (device-to-device copy, read + write bytes / time, measured at start in this binary), x_floor = time /
// floor (target <= 2 for the one-read modes); back_to_back_us: device time per launch of 32 launches queued back to
// back (a rollout queues the sampler behind the model's forward pass, so the host's submission latency, part of a lone
// launch's event time, is hidden there), and x_floor_back_to_back. The sample/ cases re-read one batch, which the L2
// partly holds when the batch is about its size or smaller (V16384; bf16 at V102400 on an H100 / H200); the
// sample_cold/ cases rotate among as many batches as make four times the L2 (read from the device), so that every
// launch reads its logits from device memory, as a rollout does.
#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <string>

#include <corl/core/rng.hpp>
#include <corl/cuda/check.cuh>
#include <corl/cuda/sampling.cuh>

#include "bench_main.cuh"

namespace {

double g_copy_bytes_per_s = 0.0;

double measure_copy_bandwidth() {
  const std::size_t bytes = std::size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  corl::cuda::check_cuda(cudaMalloc(&a, bytes), "cudaMalloc");
  corl::cuda::check_cuda(cudaMalloc(&b, bytes), "cudaMalloc");
  corl::cuda::check_cuda(cudaMemset(a, 1, bytes), "cudaMemset");
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  constexpr int reps = 10;
  cudaEventRecord(start);
  for (int i = 0; i < reps; ++i) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(stop);
  corl::cuda::check_cuda(cudaEventSynchronize(stop), "copy bandwidth");
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(bytes) * reps / (static_cast<double>(ms) * 1e-3);
}

template <class T>
__global__ void fill_logits(T* out, std::int64_t n, std::uint64_t seed) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const corl::Philox4x32 w = corl::random_words(seed, 0, 0, static_cast<std::uint32_t>(i));
    // Sum of three uniforms, centred: roughly normal, scale ~ 2.3 nats (a plausible LLM logit spread).
    const float v = 4.0f * (corl::u32_to_open01f(w.v[0]) + corl::u32_to_open01f(w.v[1]) +
                            corl::u32_to_open01f(w.v[2]) - 1.5f);
    out[i] = static_cast<T>(v);
  }
}

enum class Mode { kPlain, kTopK, kTopP, kTopKTopP, kMinP, kCfg };

using corl::cuda::sampling_detail::Pass1Loads;
using corl::cuda::sampling_detail::PathLimits;

/// Batches to rotate among: 1 (warm), or enough for four times the device's L2 (cold).
std::size_t batch_sets(bool cold, std::size_t batch_bytes) {
  if (!cold) return 1;
  int device = 0, l2 = 0;
  corl::cuda::check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  corl::cuda::check_cuda(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device), "L2 size");
  const std::size_t want = 4 * static_cast<std::size_t>(l2 > 0 ? l2 : (64 << 20));
  return std::max<std::size_t>(2, (want + batch_bytes - 1) / batch_bytes);
}

template <class In>
void bench_sampling(benchmark::State& state, Mode mode, bool cold, Pass1Loads loads, bool unit_temperature) {
  const std::int64_t rows = 256, vocab = state.range(0);
  const bool guided = mode == Mode::kCfg;
  In *cond = nullptr, *uncond = nullptr;
  std::int64_t* tokens = nullptr;
  float* logps = nullptr;
  const std::size_t n = static_cast<std::size_t>(rows * vocab);
  const std::size_t sets = batch_sets(cold, n * sizeof(In) * (guided ? 2 : 1));
  corl::cuda::check_cuda(cudaMalloc(&cond, sets * n * sizeof(In)), "cudaMalloc");
  corl::cuda::check_cuda(cudaMalloc(&uncond, (guided ? sets : 1) * n * sizeof(In)), "cudaMalloc");
  corl::cuda::check_cuda(cudaMalloc(&tokens, rows * sizeof(std::int64_t)), "cudaMalloc");
  corl::cuda::check_cuda(cudaMalloc(&logps, rows * sizeof(float)), "cudaMalloc");
  fill_logits<<<1024, 256>>>(cond, static_cast<std::int64_t>(sets * n), 1);
  fill_logits<<<1024, 256>>>(uncond, static_cast<std::int64_t>((guided ? sets : 1) * n), 2);
  corl::cuda::check_launch("fill_logits");
  // launch i reads batch i % sets (the same batch every time when warm)
  auto cond_of = [&](std::uint64_t i) { return cond + (i % sets) * n; };
  auto uncond_of = [&](std::uint64_t i) { return guided ? uncond + (i % sets) * n : nullptr; };
  corl::sampling::SamplingParams p;
  if (mode == Mode::kTopK || mode == Mode::kTopKTopP) p.top_k = 50;
  if (mode == Mode::kTopP || mode == Mode::kTopKTopP) p.top_p = 0.9;
  if (mode == Mode::kMinP) p.min_p = 0.05;
  if (mode == Mode::kCfg) p.cfg_weight = 5.0;
  PathLimits limits;
  limits.pass1_loads = loads;
  limits.unit_temperature = unit_temperature;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::uint64_t step = 0;
  auto launch = [&] {
    corl::cuda::sample_rows<In>(cond_of(step), uncond_of(step), rows, vocab, vocab, p, {7, step}, tokens, logps,
                                nullptr, limits);
    ++step;
  };
  for (int i = 0; i < 3; ++i) launch();
  corl::cuda::check_cuda(cudaDeviceSynchronize(), "warm-up");
  for (auto _ : state) {
    cudaEventRecord(start);
    launch();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  corl::cuda::check_cuda(cudaDeviceSynchronize(), "sample_rows");
  constexpr int kBackToBack = 32;
  cudaEventRecord(start);
  for (int i = 0; i < kBackToBack; ++i) launch();
  cudaEventRecord(stop);
  corl::cuda::check_cuda(cudaEventSynchronize(stop), "sample_rows (back to back)");
  float back_ms = 0;
  cudaEventElapsedTime(&back_ms, start, stop);
  const double bytes = static_cast<double>(n * sizeof(In)) * (guided ? 2.0 : 1.0);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes) * state.iterations());
  const double floor_s = bytes / g_copy_bytes_per_s;
  state.counters["floor_us"] = floor_s * 1e6;
  state.counters["x_floor"] = benchmark::Counter(floor_s * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["back_to_back_us"] = static_cast<double>(back_ms) * 1e3 / kBackToBack;
  state.counters["x_floor_back_to_back"] = static_cast<double>(back_ms) * 1e-3 / kBackToBack / floor_s;
  state.counters["copy_TBps"] = g_copy_bytes_per_s * 1e-12;
  state.counters["batches"] = static_cast<double>(sets);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(cond);
  cudaFree(uncond);
  cudaFree(tokens);
  cudaFree(logps);
}

void register_all() {
  struct Named {
    const char* name;
    Mode mode;
    Pass1Loads loads;
    bool unit_temperature = true;  // false: pass 1 multiplies by 1 / T = 1 all the same (what leaving it out saves)
  };
  const Named modes[] = {{"plain", Mode::kPlain, Pass1Loads::kRegisters},
                         {"plain_multiply", Mode::kPlain, Pass1Loads::kRegisters, false},
                         {"plain_staged", Mode::kPlain, Pass1Loads::kStaged},
                         {"top_k50", Mode::kTopK, Pass1Loads::kRegisters},
                         {"top_p0.9", Mode::kTopP, Pass1Loads::kRegisters},
                         {"top_k50_top_p0.9", Mode::kTopKTopP, Pass1Loads::kRegisters},
                         {"min_p0.05", Mode::kMinP, Pass1Loads::kRegisters},
                         {"cfg5", Mode::kCfg, Pass1Loads::kRegisters},
                         {"cfg5_multiply", Mode::kCfg, Pass1Loads::kRegisters, false},
                         {"cfg5_staged", Mode::kCfg, Pass1Loads::kStaged}};
  for (const bool cold : {false, true}) {
    const std::string prefix = cold ? "sample_cold/" : "sample/";
    for (const auto& [name, mode, loads, unit] : modes) {
      const Mode m = mode;
      const Pass1Loads l = loads;
      const bool u = unit;
      if (cold && m != Mode::kPlain && m != Mode::kTopP && m != Mode::kCfg) continue;
      if (cold && !u) continue;
      benchmark::RegisterBenchmark((prefix + "fp32/" + name).c_str(),
                                   [m, cold, l, u](benchmark::State& s) { bench_sampling<float>(s, m, cold, l, u); })
          ->Arg(16384)->Arg(102400)->UseManualTime()->Iterations(100)->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark((prefix + "bf16/" + name).c_str(),
                                   [m, cold, l, u](benchmark::State& s) {
                                     bench_sampling<__nv_bfloat16>(s, m, cold, l, u);
                                   })
          ->Arg(16384)->Arg(102400)->UseManualTime()->Iterations(100)->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (corl_bench::skip_without_device()) return 0;
  g_copy_bytes_per_s = measure_copy_bandwidth();
  std::printf("device-to-device copy bandwidth (read + write): %.3f TB/s\n", g_copy_bytes_per_s * 1e-12);
  register_all();
  return corl_bench::run_benchmarks(argc, argv);
}

// bench/gpu/bench_main.cuh — what every GPU benchmark's main() does: without a CUDA device it prints
// "skipped: no CUDA device present" and exits 0 before touching the device (scripts/gpu-check and builds on machines
// without a GPU then see a clean skip instead of an abort), otherwise it runs the registered benchmarks.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>

#include <corl/cuda/check.cuh>

namespace corl_bench {

/// True (after saying so) when there is no CUDA device: main() should then return 0.
inline bool skip_without_device() {
  if (corl::cuda::device_available()) return false;
  std::printf("skipped: no CUDA device present\n");
  return true;
}

/// Google Benchmark's own main(): parse the flags, run what they select, shut down.
inline int run_benchmarks(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace corl_bench

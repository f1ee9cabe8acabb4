// bench/gpu/copy_floor.cuh — the memory-bandwidth floor that corl's memory-bound kernels are judged against, measured
// in the same process as the kernel (so the ratio "floor time / kernel time" comes from one run on one device):
// device-to-device cudaMemcpyAsync of a buffer far larger than L2, bytes read + written per second, best of `reps`
// after one warm-up copy.
#pragma once

#include <algorithm>
#include <cstddef>

#include <cuda_runtime.h>

#include <corl/cuda/check.cuh>

namespace corl_bench {

struct CopyFloor {
  double best_bytes_per_second = 0;    ///< read + written bytes / time, best repetition
  double median_bytes_per_second = 0;  ///< the same, median repetition
  std::size_t bytes = 0;               ///< size of one copy (each way)
};

/// Measures D2D copy bandwidth with `bytes` per copy (default 2 GiB: ~40x the H200's L2).
inline CopyFloor measure_copy_floor(std::size_t bytes = std::size_t{2} << 30, int reps = 15) {
  using corl::cuda::check_cuda;
  void* a = nullptr;
  void* b = nullptr;
  check_cuda(cudaMalloc(&a, bytes), "copy floor: cudaMalloc");
  check_cuda(cudaMalloc(&b, bytes), "copy floor: cudaMalloc");
  check_cuda(cudaMemset(a, 1, bytes), "copy floor: cudaMemset");
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "copy floor: cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "copy floor: cudaEventCreate");
  check_cuda(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "copy floor: warm-up copy");
  double times[64];
  reps = std::min(reps, 64);
  for (int r = 0; r < reps; ++r) {
    check_cuda(cudaEventRecord(start), "copy floor: record");
    check_cuda(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "copy floor: copy");
    check_cuda(cudaEventRecord(stop), "copy floor: record");
    check_cuda(cudaEventSynchronize(stop), "copy floor: sync");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "copy floor: elapsed");
    times[r] = ms * 1e-3;
  }
  std::sort(times, times + reps);
  CopyFloor f;
  f.bytes = bytes;
  f.best_bytes_per_second = 2.0 * static_cast<double>(bytes) / times[0];
  f.median_bytes_per_second = 2.0 * static_cast<double>(bytes) / times[reps / 2];
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
  return f;
}

}  // namespace corl_bench

// Helpers shared by the GPU tests that compare kernels against a CPU reference (tests/gpu/logprobs.cu,
// tests/gpu/grpo_loss.cu, tests/gpu/sampling.cu, ...): an owning device buffer with typed upload / download / NaN
// poisoning, and the switch for the small shapes used under compute-sanitizer.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <vector>

#include <cuda_runtime.h>

#include <corl/cuda/check.cuh>

namespace corl_test {

/// scripts/gpu-check sets CORL_GPU_TEST_SMALL=1 when it runs the tests under compute-sanitizer (10-100x slower).
inline bool small_shapes_only() { return std::getenv("CORL_GPU_TEST_SMALL") != nullptr; }

/// n elements of T on the device; upload / download go through host vectors of any type of the same size (e.g.
/// corl::bfloat16 for __nv_bfloat16).
template <class T>
struct DeviceArray {
  T* ptr = nullptr;
  std::size_t n = 0;
  explicit DeviceArray(std::size_t count) : n(count) {
    corl::cuda::check_cuda(cudaMalloc(&ptr, sizeof(T) * (count ? count : 1)), "test cudaMalloc");
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr); }
  template <class H>
  void upload(const std::vector<H>& host) {
    static_assert(sizeof(H) == sizeof(T), "host and device element sizes must match");
    corl::cuda::check_cuda(cudaMemcpy(ptr, host.data(), sizeof(T) * host.size(), cudaMemcpyHostToDevice),
                           "test upload");
  }
  template <class H>
  std::vector<H> download() const {
    static_assert(sizeof(H) == sizeof(T), "host and device element sizes must match");
    std::vector<H> host(n);
    corl::cuda::check_cuda(cudaMemcpy(host.data(), ptr, sizeof(T) * n, cudaMemcpyDeviceToHost), "test download");
    return host;
  }
  void poison() { corl::cuda::check_cuda(cudaMemset(ptr, 0xff, sizeof(T) * n), "test poison"); }  // all-ones = NaN
};

}  // namespace corl_test

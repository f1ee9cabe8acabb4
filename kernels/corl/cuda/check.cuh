// corl/cuda/check.cuh — error handling for corl's CUDA device APIs.
// Every CUDA runtime call and every kernel launch in corl goes through check_cuda(), which throws corl::Error naming the
// kernel or call and the CUDA error string. Host-side input validation uses corl::require (corl/core/error.hpp).
#pragma once

#include <cuda_runtime.h>

#include "corl/core/error.hpp"

namespace corl::cuda {

/// Throws corl::Error("<what>: CUDA error <name>: <description>") when `status` is not cudaSuccess.
inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    fail(what, ": CUDA error ", cudaGetErrorName(status), ": ", cudaGetErrorString(status));
  }
}

/// Checks the launch of the kernel just issued (configuration errors, missing device code for this architecture).
inline void check_launch(const char* kernel_name) { check_cuda(cudaGetLastError(), kernel_name); }

/// True when at least one CUDA device can be used by this process.
inline bool device_available() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return count > 0;
}

/// Number of blocks for n items at `per_block` items per block (at least 1).
inline unsigned int blocks_for(long long n, long long per_block) {
  const long long b = (n + per_block - 1) / per_block;
  return static_cast<unsigned int>(b < 1 ? 1 : b);
}

}  // namespace corl::cuda

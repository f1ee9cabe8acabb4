// corl/core/hd.hpp — the one portability macro: functions marked CORL_HD compile for the host and, under nvcc, for the
// device too. This is how the per-token math is written once and shared by the CPU core and the CUDA kernels.
#pragma once

#if defined(__CUDACC__)
#define CORL_HD __host__ __device__ __forceinline__
#else
#define CORL_HD inline
#endif

#include <cstdint>

namespace corl {
/// Signed index type used for every size and offset in corl (like Eigen::Index).
using index_t = std::int64_t;
}  // namespace corl

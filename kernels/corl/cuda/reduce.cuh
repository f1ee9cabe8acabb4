// corl/cuda/reduce.cuh — deterministic warp / block reductions used by corl's row kernels.
//
// Design note. Every reduction here has a FIXED shape: a butterfly (xor) shuffle inside each warp, then one thread per
// block's warp 0 combines the per-warp partials with one more butterfly. No atomics, no order that depends on scheduling, so two runs give
// identical bits, and every thread of the block receives the same value (needed when all threads go on to use a row's
// max / sum). Block reductions need a 32-slot shared array the caller provides and blockDim.x a multiple of 32
// (<= 1024), and a 33-slot shared array. Layering follows CUB: warp -> block; the device-wide sums live with the kernels that need them.
#pragma once

#include <cuda_runtime.h>

namespace corl::cuda {

inline constexpr unsigned kFullWarpMask = 0xffffffffu;

/// Lane exchange for the reductions; types that are not plain scalars (corl::cuda::SoftmaxState) provide their own
/// overload, found by argument-dependent lookup.
template <class T>
__device__ __forceinline__ T shfl_xor(T value, int offset) {
  return __shfl_xor_sync(kFullWarpMask, value, offset);
}

/// Butterfly all-reduce within a warp: every lane gets op over the 32 lanes, combined in a fixed pattern.
template <class T, class Op>
__device__ __forceinline__ T warp_allreduce(T value, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) value = op(value, shfl_xor(value, offset));
  return value;
}

/// Block all-reduce: warp butterflies, then warp 0 combines the per-warp results with one more butterfly (lanes past
/// the last warp hold `identity`), and every thread reads that one value. `slots` is a __shared__ array of at least
/// 32 T. Contains three __syncthreads(); call from every thread. (Folding the 32 partials in every thread instead
/// costs 32 merges per thread: for the softmax state that is 64 ex2 per thread, a third of a 100k-logit row's.)
template <class T, class Op>
__device__ __forceinline__ T block_allreduce(T value, Op op, T identity, T* slots) {
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  const int warps = static_cast<int>(blockDim.x + 31) >> 5;
  value = warp_allreduce(value, op);
  if (lane == 0) slots[warp] = value;
  __syncthreads();
  if (warp == 0) {
    T v = lane < warps ? slots[lane] : identity;
    v = warp_allreduce(v, op);
    if (lane == 0) slots[32] = v;
  }
  __syncthreads();
  const T total = slots[32];
  __syncthreads();  // slots may be reused by the caller right after
  return total;
}

struct SumOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};

}  // namespace corl::cuda

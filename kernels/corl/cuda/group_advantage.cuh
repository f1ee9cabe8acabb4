// corl/cuda/group_advantage.cuh — group advantages (z-score, group mean, group mean / batch std, RLOO) in ONE launch.
//
// Design note. A GRPO batch holds a few thousand rewards at most (128 groups of 8 is typical), so the work is tiny and
// the cost is launch latency: PyTorch eager spends ~60 us in several launches (mean, std, sub, div, ...). Here one
// block of 1024 threads does everything, so no grid-wide synchronisation is needed even for the batch std:
//   1. (batch std only) the block reduces count and sum of the valid rewards, then the squared deviations (two-pass);
//   2. groups of up to 32 members (GRPO's G = 8 or 16): a team of lanes per group (the next power of two >= the
//      largest group), one member per lane, so a warp finishes 32 / team groups at once; count and "all rewards
//      equal" come from warp votes, the sum and the squared deviations from log2(team) shuffles. Larger groups: one
//      warp per group, lanes striding over the members, warp shuffles for count, sum, min, max, squared deviations;
//   3. the block reduces the per-warp counters into the stats.
// All sums are in double whatever Real is, in an order fixed by the thread layout, so two runs give identical bits and
// the result matches the CPU reference (corl/advantage/*.hpp, which also sums in double) to rounding.
// Measured on an H200 (CUDA-event time of one call, bench/gpu/group_advantage.cu): 128 groups of 8: 9.5 us with the
// team path (14.4 us with one warp per group); 16 groups of 8: 8.8 us (the launch floor); 1024 x 16: 32 us;
// 8192 x 16: 195 us. Staging the inputs in shared memory first was tried and gained nothing.
// NaN rewards are left out and get 0; a zero-std group (all valid rewards equal, incl. a group of one) gets exactly 0 —
// the same rules as the CPU code. Groups are contiguous segments given by offsets (CUB's segmented layout): group g
// owns sequences group_offsets[g] .. group_offsets[g + 1] (corl::group_offsets_from_index builds them from group ids).
// The kernel validates the offsets itself (they live on the device): on bad offsets it writes 0 everywhere and sets
// stats->bad_offsets. One block is the right shape up to ~10^5 sequences; past that a multi-block version would pay off.
// No scratch memory is needed. Stream last, as in CUB.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "corl/advantage/group_mean.hpp"
#include "corl/advantage/group_mean_batch_std.hpp"
#include "corl/advantage/group_zscore.hpp"
#include "corl/advantage/rloo.hpp"
#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"
#include "corl/cuda/check.cuh"

namespace corl::cuda {

enum class GroupAdvantageKind : int {
  kZScore = 0,        ///< corl::GroupZScore
  kMean = 1,          ///< corl::GroupMean (Dr.GRPO)
  kMeanBatchStd = 2,  ///< corl::GroupMeanBatchStd
  kRloo = 3,          ///< corl::Rloo
};

struct GroupAdvantageParams {
  GroupAdvantageKind kind = GroupAdvantageKind::kZScore;
  double eps = 1e-4;
  bool unbiased = true;
  double std_floor = 0.0;

  static GroupAdvantageParams from(const GroupZScore& e) {
    return {GroupAdvantageKind::kZScore, e.eps, e.unbiased, e.std_floor};
  }
  static GroupAdvantageParams from(const GroupMean&) { return {GroupAdvantageKind::kMean, 0.0, true, 0.0}; }
  static GroupAdvantageParams from(const GroupMeanBatchStd& e) {
    return {GroupAdvantageKind::kMeanBatchStd, e.eps, e.unbiased, 0.0};
  }
  static GroupAdvantageParams from(const Rloo&) { return {GroupAdvantageKind::kRloo, 0.0, true, 0.0}; }
};

/// Written by the kernel (when the pointer is not null).
struct GroupAdvantageDeviceStats {
  long long num_valid;        ///< rewards that are not NaN
  long long num_groups;       ///< groups with at least one valid reward
  long long zero_std_groups;  ///< of those, groups whose valid rewards all agree
  int bad_offsets;            ///< 1 when group_offsets was not 0 = o_0 <= o_1 <= ... <= o_G = num_seqs
};

inline constexpr int kGroupAdvantageThreads = 1024;

namespace detail {

__device__ __forceinline__ double warp_sum(double x) {
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(0xffffffffu, x, s);
  return x;
}
__device__ __forceinline__ long long warp_sum(long long x) {
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(0xffffffffu, x, s);
  return x;
}
__device__ __forceinline__ double warp_min(double x) {
  for (int s = 16; s > 0; s >>= 1) x = fmin(x, __shfl_xor_sync(0xffffffffu, x, s));
  return x;
}
__device__ __forceinline__ double warp_max(double x) {
  for (int s = 16; s > 0; s >>= 1) x = fmax(x, __shfl_xor_sync(0xffffffffu, x, s));
  return x;
}

/// Block-wide sum in a fixed order (per-thread value -> warp shuffle -> warp 0 over the per-warp partials).
/// Every thread gets the result. `shared` needs 32 slots.
template <class T>
__device__ T block_sum(T x, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  x = warp_sum(x);
  __syncthreads();  // shared may still be read from the previous call
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  const int num_warps = (blockDim.x + 31) >> 5;
  T total = lane < num_warps ? shared[lane] : T(0);
  total = warp_sum(total);
  return total;
}

/// factor and denom of advantage = (factor * (r - mean)) / denom for one group: the same expression, operand for
/// operand, as the CPU estimators.
__device__ __forceinline__ void group_scale(const GroupAdvantageParams& params, long long count, double m2,
                                            bool zero_std, double batch_denom, double* factor, double* denom) {
  *factor = 1.0;
  *denom = 1.0;
  switch (params.kind) {
    case GroupAdvantageKind::kZScore: {
      const long long dof = count - (params.unbiased ? 1 : 0);
      const double sd = (dof > 0 && !zero_std) ? sqrt(m2 / static_cast<double>(dof)) : 0.0;
      *denom = (sd > params.std_floor ? sd : params.std_floor) + params.eps;
      break;
    }
    case GroupAdvantageKind::kMean: break;
    case GroupAdvantageKind::kMeanBatchStd: *denom = batch_denom; break;
    case GroupAdvantageKind::kRloo:
      *factor = count >= 2 ? static_cast<double>(count) / static_cast<double>(count - 1) : 0.0;
      break;
  }
}

/// Sum over aligned teams of `team` lanes (a power of two <= 32): xor shuffles stay inside the team.
__device__ __forceinline__ double team_sum(double x, int team) {
  for (int s = team >> 1; s > 0; s >>= 1) x += __shfl_xor_sync(0xffffffffu, x, s);
  return x;
}

template <class Real>
__global__ void __launch_bounds__(kGroupAdvantageThreads)
    group_advantage_kernel(const Real* __restrict__ rewards, const index_t* __restrict__ group_offsets,
                           index_t num_groups, index_t num_seqs, Real* __restrict__ advantages,
                           GroupAdvantageParams params, GroupAdvantageDeviceStats* stats) {
  __shared__ double shared_d[32];
  __shared__ long long shared_ll[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int num_warps = blockDim.x >> 5;

  // 0. validate the offsets (they are on the device, so the host launcher cannot) and find the largest group.
  int bad = 0;
  long long largest = 0;
  for (index_t g = threadIdx.x; g <= num_groups; g += blockDim.x) {
    const index_t o = group_offsets[g];
    if (g == 0 && o != 0) bad = 1;
    if (g == num_groups && o != num_seqs) bad = 1;
    if (g > 0) {
      const index_t size = o - group_offsets[g - 1];
      if (size < 0) bad = 1;
      largest = size > largest ? size : largest;
    }
  }
  if (__syncthreads_or(bad)) {
    for (index_t i = threadIdx.x; i < num_seqs; i += blockDim.x) advantages[i] = Real(0);
    if (stats != nullptr && threadIdx.x == 0) *stats = GroupAdvantageDeviceStats{0, 0, 0, 1};
    return;
  }
  {
    // block max of the group sizes (sizes are >= 0 here, so a max over warps via shuffles then shared memory)
    for (int s = 16; s > 0; s >>= 1) {
      const long long other = __shfl_xor_sync(0xffffffffu, largest, s);
      largest = other > largest ? other : largest;
    }
    if (lane == 0) shared_ll[warp] = largest;
    __syncthreads();
    largest = 0;
    for (int w = 0; w < num_warps; ++w) largest = shared_ll[w] > largest ? shared_ll[w] : largest;
    __syncthreads();
  }

  // 1. batch statistics of the valid rewards (needed for the batch std only).
  double batch_denom = 1.0;
  if (params.kind == GroupAdvantageKind::kMeanBatchStd) {
    long long count = 0;
    double sum = 0.0;
    for (index_t i = threadIdx.x; i < num_seqs; i += blockDim.x) {
      const Real r = rewards[i];
      if (r == r) {
        ++count;
        sum += static_cast<double>(r);
      }
    }
    count = block_sum(count, shared_ll);
    sum = block_sum(sum, shared_d);
    const double mean = count > 0 ? sum / static_cast<double>(count) : 0.0;
    double m2 = 0.0;
    for (index_t i = threadIdx.x; i < num_seqs; i += blockDim.x) {
      const Real r = rewards[i];
      if (r == r) {
        const double d = static_cast<double>(r) - mean;
        m2 += d * d;
      }
    }
    m2 = block_sum(m2, shared_d);
    const long long dof = count - (params.unbiased ? 1 : 0);
    const double sd = (dof > 0 && m2 > 0.0) ? sqrt(m2 / static_cast<double>(dof)) : 0.0;
    batch_denom = sd + params.eps;
  }

  long long my_valid = 0, my_groups = 0, my_zero = 0;  // non-zero only on the lane that leads a group
  if (largest <= 32) {
    // 2a. small groups (GRPO's G = 8 or 16): a team of `team` lanes (the next power of two >= the largest group)
    //     per group, one member per lane, so a warp finishes 32 / team groups at once. Count and "all equal" come
    //     from warp votes, sums from log2(team) shuffles. (On an H200 the one-warp-per-group loop below took
    //     ~2 us per group per warp, dominated by its five 5-step double reductions.)
    int team = 1;
    while (team < largest) team <<= 1;
    const int teams_per_warp = 32 / team, my_team = lane / team, team_lane = lane % team;
    const unsigned team_mask = team == 32 ? 0xffffffffu : (((1u << team) - 1u) << (my_team * team));
    for (index_t base = static_cast<index_t>(warp) * teams_per_warp; base < num_groups;
         base += static_cast<index_t>(num_warps) * teams_per_warp) {
      const index_t g = base + my_team;
      index_t begin = 0, size = 0;
      if (g < num_groups) {
        begin = group_offsets[g];
        size = group_offsets[g + 1] - begin;
      }
      const bool member = team_lane < size;
      const Real r = member ? rewards[begin + team_lane] : Real(0);
      const bool valid = member && r == r;
      const double x = valid ? static_cast<double>(r) : 0.0;
      const unsigned valid_mask = __ballot_sync(0xffffffffu, valid) & team_mask;
      const long long count = __popc(valid_mask);
      const double sum = team_sum(x, team);
      const double mean = count > 0 ? sum / static_cast<double>(count) : 0.0;
      const int first = valid_mask != 0u ? __ffs(static_cast<int>(valid_mask)) - 1 : lane;
      const double first_value = __shfl_sync(0xffffffffu, x, first);
      const bool differs = valid && x != first_value;
      // every lane must reach the vote (a short-circuited __ballot_sync deadlocks the warp), so vote first
      const unsigned differ_mask = __ballot_sync(0xffffffffu, differs) & team_mask;
      const bool zero_std = count >= 1 && differ_mask == 0u;
      const double d = valid ? x - mean : 0.0;
      const double m2 = team_sum(d * d, team);
      double factor, denom;
      group_scale(params, count, m2, zero_std, batch_denom, &factor, &denom);
      if (member) advantages[begin + team_lane] = static_cast<Real>((valid && !zero_std) ? (factor * d) / denom : 0.0);
      if (team_lane == 0 && g < num_groups) {
        my_valid += count;
        my_groups += count > 0 ? 1 : 0;
        my_zero += zero_std ? 1 : 0;
      }
    }
  } else {
    // 2b. large groups: one warp per group, lanes striding over the members.
    for (index_t g = warp; g < num_groups; g += num_warps) {
      const index_t begin = group_offsets[g], end = group_offsets[g + 1];
      long long count = 0;
      double sum = 0.0, lo = INFINITY, hi = -INFINITY;
      for (index_t i = begin + lane; i < end; i += 32) {
        const Real r = rewards[i];
        if (r == r) {
          const double x = static_cast<double>(r);
          ++count;
          sum += x;
          lo = fmin(lo, x);
          hi = fmax(hi, x);
        }
      }
      count = warp_sum(count);
      sum = warp_sum(sum);
      lo = warp_min(lo);
      hi = warp_max(hi);
      const double mean = count > 0 ? sum / static_cast<double>(count) : 0.0;
      const bool zero_std = count >= 1 && lo == hi;
      double m2 = 0.0;
      for (index_t i = begin + lane; i < end; i += 32) {
        const Real r = rewards[i];
        if (r == r) {
          const double d = static_cast<double>(r) - mean;
          m2 += d * d;
        }
      }
      m2 = warp_sum(m2);
      double factor, denom;
      group_scale(params, count, m2, zero_std, batch_denom, &factor, &denom);
      for (index_t i = begin + lane; i < end; i += 32) {
        const Real r = rewards[i];
        const double a = (r == r && !zero_std) ? (factor * (static_cast<double>(r) - mean)) / denom : 0.0;
        advantages[i] = static_cast<Real>(a);
      }
      if (lane == 0) {
        my_valid += count;
        my_groups += count > 0 ? 1 : 0;
        my_zero += zero_std ? 1 : 0;
      }
    }
  }

  // 3. stats.
  if (stats != nullptr) {
    const long long valid = block_sum(my_valid, shared_ll);
    const long long groups = block_sum(my_groups, shared_ll);
    const long long zero = block_sum(my_zero, shared_ll);
    if (threadIdx.x == 0) *stats = GroupAdvantageDeviceStats{valid, groups, zero, 0};
  }
}

}  // namespace detail

/// Advantages of `num_seqs` rewards in `num_groups` contiguous groups (see the design note). Device pointers:
/// rewards[num_seqs], group_offsets[num_groups + 1], advantages[num_seqs]; stats may be null. Real: float or double.
template <class Real>
void group_advantage(const Real* rewards, const index_t* group_offsets, index_t num_groups, index_t num_seqs,
                     Real* advantages, const GroupAdvantageParams& params, GroupAdvantageDeviceStats* stats,
                     cudaStream_t stream = nullptr) {
  constexpr const char* where = "corl::cuda::group_advantage";
  static_assert(std::is_same_v<Real, float> || std::is_same_v<Real, double>, "Real must be float or double");
  require(rewards != nullptr, where, ": rewards is null, expected a device pointer");
  require(group_offsets != nullptr, where, ": group_offsets is null, expected a device pointer");
  require(advantages != nullptr, where, ": advantages is null, expected a device pointer");
  require(num_seqs >= 1, where, ": num_seqs = ", num_seqs, ", expected >= 1");
  require(num_groups >= 1, where, ": num_groups = ", num_groups, ", expected >= 1");
  require(params.eps >= 0.0, where, ": params.eps = ", params.eps, ", expected >= 0");
  require(params.std_floor >= 0.0, where, ": params.std_floor = ", params.std_floor, ", expected >= 0");
  const int kind = static_cast<int>(params.kind);
  require(kind >= 0 && kind <= 3, where, ": params.kind = ", kind, ", expected 0..3");
  detail::group_advantage_kernel<Real><<<1, kGroupAdvantageThreads, 0, stream>>>(
      rewards, group_offsets, num_groups, num_seqs, advantages, params, stats);
  check_launch("corl::cuda::group_advantage_kernel");
}

}  // namespace corl::cuda

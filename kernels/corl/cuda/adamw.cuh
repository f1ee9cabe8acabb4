// corl/cuda/adamw.cuh — fused multi-tensor AdamW: every parameter tensor of a model updated in ONE launch.
//
// Design note. AdamW is bandwidth-bound: per fp32 parameter it reads p, g, m, v and writes p, m, v — 28 bytes, plus 2
// for the optional bf16 copy of the parameters that the forward pass reads (written in the same pass instead of a
// separate cast kernel). So the kernel is a streaming loop and the design is about launch count and vector width:
//   - The tensors are cut into chunks of kAdamWChunk elements; block b takes chunk b and finds its tensor by binary
//     search in chunk_begin[] (prefix sums of per-tensor chunk counts), so one launch covers any number of tensors of
//     any sizes with no per-tensor launch and no padding.
//   - A tensor whose p, g, m, v pointers are 16-byte aligned (and bf16 copy 8-byte aligned) is processed with float4
//     loads and stores; chunk starts are multiples of 4 elements, so alignment holds for every chunk; the tail of a
//     tensor whose size is not a multiple of 4 and unaligned tensors take the scalar path.
//   - The step-dependent scalars (bias corrections) are computed once on the host in double (corl::adamw_scalars) and
//     passed by value; the per-element arithmetic is corl::adamw_update_element from corl/optim/adamw.hpp, the CPU
//     reference, with rounded (non-fused) device intrinsics, so the GPU reproduces the CPU's bits.
// The tensor table lives on the device; AdamWPlan builds and uploads it once (parameter pointers do not change between
// steps), after which each step is a single launch. The raw launcher adamw_multi_tensor takes the device table
// directly (CUB manners: caller-owned memory, stream last).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"
#include "corl/cuda/check.cuh"
#include "corl/optim/adamw.hpp"

namespace corl::cuda {

/// One parameter tensor: fp32 master weights, gradient, moments, and an optional bf16 copy (null: none).
struct AdamWTensor {
  float* param = nullptr;
  const float* grad = nullptr;
  float* exp_avg = nullptr;     ///< m
  float* exp_avg_sq = nullptr;  ///< v
  __nv_bfloat16* param_bf16 = nullptr;
  index_t size = 0;
  int vectorized = 0;  ///< set by AdamWPlan: 1 when every pointer allows 16-byte (8 for bf16) vector access
};

/// Elements per chunk (one block). 256 threads x 4 float4 = 4096 elements: large enough to amortise the tensor search,
/// small enough that a 1M-element tensor still spreads over 256 blocks.
inline constexpr index_t kAdamWChunk = 4096;
inline constexpr int kAdamWThreads = 256;

namespace detail {

__device__ __forceinline__ void adamw_store_bf16x4(__nv_bfloat16* dst, float4 p) {
  __nv_bfloat162* out = reinterpret_cast<__nv_bfloat162*>(dst);
  out[0] = __floats2bfloat162_rn(p.x, p.y);
  out[1] = __floats2bfloat162_rn(p.z, p.w);
}

__global__ void __launch_bounds__(kAdamWThreads)
    adamw_multi_tensor_kernel(const AdamWTensor* __restrict__ tensors, const index_t* __restrict__ chunk_begin,
                              int num_tensors, AdamWScalars<float> s) {
  const index_t chunk = blockIdx.x;
  // tensor t with chunk_begin[t] <= chunk < chunk_begin[t + 1]
  int lo = 0, hi = num_tensors - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (chunk_begin[mid] <= chunk) lo = mid; else hi = mid - 1;
  }
  const AdamWTensor t = tensors[lo];
  const index_t begin = (chunk - chunk_begin[lo]) * kAdamWChunk;
  const index_t end = begin + kAdamWChunk < t.size ? begin + kAdamWChunk : t.size;
  if (t.vectorized) {
    const index_t vec_end = begin + ((end - begin) & ~index_t(3));
    for (index_t i = begin + 4 * static_cast<index_t>(threadIdx.x); i < vec_end; i += 4 * kAdamWThreads) {
      float4 p = *reinterpret_cast<const float4*>(t.param + i);
      const float4 g = __ldcs(reinterpret_cast<const float4*>(t.grad + i));
      float4 m = *reinterpret_cast<const float4*>(t.exp_avg + i);
      float4 v = *reinterpret_cast<const float4*>(t.exp_avg_sq + i);
      adamw_update_element(p.x, m.x, v.x, g.x, s);
      adamw_update_element(p.y, m.y, v.y, g.y, s);
      adamw_update_element(p.z, m.z, v.z, g.z, s);
      adamw_update_element(p.w, m.w, v.w, g.w, s);
      *reinterpret_cast<float4*>(t.param + i) = p;
      __stcs(reinterpret_cast<float4*>(t.exp_avg + i), m);
      __stcs(reinterpret_cast<float4*>(t.exp_avg_sq + i), v);
      if (t.param_bf16 != nullptr) adamw_store_bf16x4(t.param_bf16 + i, p);
    }
    for (index_t i = vec_end + threadIdx.x; i < end; i += kAdamWThreads) {
      adamw_update_element(t.param[i], t.exp_avg[i], t.exp_avg_sq[i], t.grad[i], s);
      if (t.param_bf16 != nullptr) t.param_bf16[i] = __float2bfloat16_rn(t.param[i]);
    }
  } else {
    for (index_t i = begin + threadIdx.x; i < end; i += kAdamWThreads) {
      float p = t.param[i], m = t.exp_avg[i], v = t.exp_avg_sq[i];
      adamw_update_element(p, m, v, t.grad[i], s);
      t.param[i] = p;
      t.exp_avg[i] = m;
      t.exp_avg_sq[i] = v;
      if (t.param_bf16 != nullptr) t.param_bf16[i] = __float2bfloat16_rn(p);
    }
  }
}

}  // namespace detail

/// Raw launcher. Device arrays: tensors[num_tensors] (with `vectorized` set correctly), chunk_begin[num_tensors + 1]
/// with chunk_begin[0] = 0 and chunk_begin[t + 1] - chunk_begin[t] = ceil(size_t / kAdamWChunk) >= 1;
/// total_chunks = chunk_begin[num_tensors]. Most callers want AdamWPlan, which builds these.
inline void adamw_multi_tensor(const AdamWTensor* tensors, const index_t* chunk_begin, int num_tensors,
                               index_t total_chunks, const AdamWScalars<float>& scalars, cudaStream_t stream = nullptr) {
  constexpr const char* where = "corl::cuda::adamw_multi_tensor";
  require(tensors != nullptr, where, ": tensors is null, expected a device array");
  require(chunk_begin != nullptr, where, ": chunk_begin is null, expected a device array");
  require(num_tensors >= 1, where, ": num_tensors = ", num_tensors, ", expected >= 1");
  require(total_chunks >= num_tensors && total_chunks <= 0x7fffffffLL, where, ": total_chunks = ", total_chunks,
          ", expected num_tensors <= total_chunks <= 2^31 - 1");
  detail::adamw_multi_tensor_kernel<<<static_cast<unsigned int>(total_chunks), kAdamWThreads, 0, stream>>>(
      tensors, chunk_begin, num_tensors, scalars);
  check_launch("corl::cuda::adamw_multi_tensor_kernel");
}

/// Owns the device copy of the tensor table for a fixed set of parameter tensors; step() is one launch.
class AdamWPlan {
 public:
  /// Validates the tensors (non-null buffers, size >= 1; param_bf16 may be null), decides the vector path per tensor
  /// and uploads the table (synchronously, once).
  explicit AdamWPlan(std::vector<AdamWTensor> tensors) : host_(std::move(tensors)) {
    constexpr const char* where = "corl::cuda::AdamWPlan";
    require(!host_.empty(), where, ": tensors is empty, expected at least one tensor");
    std::vector<index_t> begin(host_.size() + 1, 0);
    for (std::size_t k = 0; k < host_.size(); ++k) {
      AdamWTensor& t = host_[k];
      require(t.param != nullptr && t.grad != nullptr && t.exp_avg != nullptr && t.exp_avg_sq != nullptr, where,
              ": tensors[", k, "] has a null param / grad / exp_avg / exp_avg_sq pointer, expected device pointers");
      require(t.size >= 1, where, ": tensors[", k, "].size = ", t.size, ", expected >= 1");
      const auto aligned = [](const void* p, std::uintptr_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; };
      t.vectorized = aligned(t.param, 16) && aligned(t.grad, 16) && aligned(t.exp_avg, 16) &&
                     aligned(t.exp_avg_sq, 16) && (t.param_bf16 == nullptr || aligned(t.param_bf16, 8));
      begin[k + 1] = begin[k] + (t.size + kAdamWChunk - 1) / kAdamWChunk;
      num_params_ += t.size;
    }
    total_chunks_ = begin.back();
    check_cuda(cudaMalloc(&d_tensors_, sizeof(AdamWTensor) * host_.size()), "AdamWPlan: cudaMalloc(tensors)");
    check_cuda(cudaMalloc(&d_chunk_begin_, sizeof(index_t) * begin.size()), "AdamWPlan: cudaMalloc(chunk_begin)");
    check_cuda(cudaMemcpy(d_tensors_, host_.data(), sizeof(AdamWTensor) * host_.size(), cudaMemcpyHostToDevice),
               "AdamWPlan: upload tensors");
    check_cuda(cudaMemcpy(d_chunk_begin_, begin.data(), sizeof(index_t) * begin.size(), cudaMemcpyHostToDevice),
               "AdamWPlan: upload chunk_begin");
  }
  AdamWPlan(const AdamWPlan&) = delete;
  AdamWPlan& operator=(const AdamWPlan&) = delete;
  ~AdamWPlan() {
    cudaFree(d_tensors_);
    cudaFree(d_chunk_begin_);
  }

  /// Update number `step` (>= 1) of every tensor, in one launch on `stream`.
  void step(const AdamWConfig& config, std::int64_t step, cudaStream_t stream = nullptr) const {
    adamw_multi_tensor(d_tensors_, d_chunk_begin_, static_cast<int>(host_.size()), total_chunks_,
                       adamw_scalars<float>(config, step), stream);
  }

  index_t num_params() const { return num_params_; }
  const std::vector<AdamWTensor>& tensors() const { return host_; }

 private:
  std::vector<AdamWTensor> host_;
  AdamWTensor* d_tensors_ = nullptr;
  index_t* d_chunk_begin_ = nullptr;
  index_t total_chunks_ = 0;
  index_t num_params_ = 0;
};

}  // namespace corl::cuda

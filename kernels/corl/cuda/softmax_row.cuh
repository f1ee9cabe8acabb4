// corl/cuda/softmax_row.cuh — the per-row machinery shared by corl's from-logits kernels (logprobs.cuh, grpo_loss.cuh):
// vector loads of bf16 / fp16 / fp32 logits, the online softmax state and its merge, the softmax backward of one
// element, and the device error word through which kernels report bad input rows.
//
// Design note. A row of V logits is handled by one thread block. Each thread walks 16-byte vectors of the row (8 bf16,
// 8 fp16 or 4 fp32; scalar walk when V or the pointer does not allow 16-byte alignment) and keeps an online softmax
// state in base 2 (y = x * log2(e) / T, so that the exponential is one ex2 instruction):
//     m = max y,   s = sum 2^(y - m),   u = sum 2^(y - m) (y - m)
// lse = ln2 (m + log2 s), logp_y = ln2 ((y_t - m) - log2 s), entropy = ln2 (log2 s - u / s): the same quantities as
// the CPU reference corl/logprob/from_logits.hpp, which works in natural log; tests compare the two with tolerances.
// The empty state is m = -FLT_MAX, s = u = 0. Rescaling u by the max difference (m - m_old) s is skipped for an empty
// state: with m_old = -FLT_MAX and a scaled max m above ~2^103 the difference overflows and inf * 0 would be NaN.
#pragma once

#include <cfloat>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda/ptx>
#include <cuda_runtime.h>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"
#include "corl/cuda/reduce.cuh"

namespace corl::cuda {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

/// Online softmax state of (part of) a row, base 2.
struct SoftmaxState {
  float m;  ///< running max of y
  float s;  ///< sum 2^(y - m)
  float u;  ///< sum 2^(y - m) (y - m)
};

__device__ __forceinline__ SoftmaxState empty_softmax_state() { return SoftmaxState{-FLT_MAX, 0.0f, 0.0f}; }

__device__ __forceinline__ SoftmaxState shfl_xor(SoftmaxState v, int offset) {
  return SoftmaxState{__shfl_xor_sync(0xffffffffu, v.m, offset), __shfl_xor_sync(0xffffffffu, v.s, offset),
                      __shfl_xor_sync(0xffffffffu, v.u, offset)};
}

/// 2^x in one MUFU.EX2 instruction (ex2.approx.ftz: relative error ~2^-22; results under 2^-126 flush to 0, which
/// no sum or gradient here can notice: such a term is 2^-126 of the row's largest). exp2f proper adds a range fix-up of
/// three instructions per element for those denormal results, which made up a tenth of the fused loss's instructions.
__device__ __forceinline__ float fast_exp2(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}

/// u of a state moved to the max m: e (u - (m - m_old) s) with e = 2^(m_old - m); 0 for the empty state (s = u = 0),
/// whose m - m_old may overflow. A NaN in u or s still propagates.
__device__ __forceinline__ float rescaled_u(const SoftmaxState& st, float e, float m) {
  return (st.s == 0.0f && st.u == 0.0f) ? 0.0f : e * (st.u - (m - st.m) * st.s);
}

/// Merge of two states (associative up to rounding; corl always merges in a fixed order).
struct SoftmaxMerge {
  __device__ __forceinline__ SoftmaxState operator()(SoftmaxState a, SoftmaxState b) const {
    const float m = fmaxf(a.m, b.m);
    const float ea = fast_exp2(a.m - m), eb = fast_exp2(b.m - m);
    // u relative to the new max: u' = e (u - (m - m_old) s)
    return SoftmaxState{m, a.s * ea + b.s * eb, rescaled_u(a, ea, m) + rescaled_u(b, eb, m)};
  }
};

/// Folds n raw values x[0..n) into the state, y = x * scale2 (scale2 = log2(e) / T > 0): one rescale per chunk, one
/// ex2 per value. The chunk max is taken on x and scaled once (rounding is monotone, so max(x) * scale2 rounds to the
/// max of the rounded y), and y - m is one fma, x * scale2 - m, rounded once.
template <int N>
__device__ __forceinline__ void softmax_accumulate(SoftmaxState& st, const float (&x)[N], float scale2) {
  float chunk_max = x[0];
#pragma unroll
  for (int j = 1; j < N; ++j) chunk_max = fmaxf(chunk_max, x[j]);
  const float m = fmaxf(st.m, chunk_max * scale2);
  const float a = fast_exp2(st.m - m);
  st.u = rescaled_u(st, a, m);
  st.s *= a;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const float d = fmaf(x[j], scale2, -m);
    const float e = fast_exp2(d);
    st.s += e;
    st.u = fmaf(e, d, st.u);
  }
  st.m = m;
}

// ---- storage types: scalar conversion and 16-byte vectors ------------------------------------------------------------

template <class Logit>
struct LogitTraits;

template <>
struct LogitTraits<float> {
  static constexpr int kPerVector = 4;
  static constexpr const char* name = "float";
  __device__ __forceinline__ static float to_float(float x) { return x; }
  __device__ __forceinline__ static float from_float(float x) { return x; }
  __device__ __forceinline__ static void unpack(const uint4& v, float (&out)[4]) {
    out[0] = __uint_as_float(v.x);
    out[1] = __uint_as_float(v.y);
    out[2] = __uint_as_float(v.z);
    out[3] = __uint_as_float(v.w);
  }
  __device__ __forceinline__ static uint4 pack(const float (&in)[4]) {
    return make_uint4(__float_as_uint(in[0]), __float_as_uint(in[1]), __float_as_uint(in[2]), __float_as_uint(in[3]));
  }
};

template <>
struct LogitTraits<__nv_bfloat16> {
  static constexpr int kPerVector = 8;
  static constexpr const char* name = "bfloat16";
  __device__ __forceinline__ static float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  __device__ __forceinline__ static __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  __device__ __forceinline__ static void unpack(const uint4& v, float (&out)[8]) {
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {  // bf16 -> fp32 is a shift: low half first (little endian)
      out[2 * k] = __uint_as_float(w[k] << 16);
      out[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
  }
  __device__ __forceinline__ static unsigned pack2(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&h);
  }
  __device__ __forceinline__ static uint4 pack(const float (&in)[8]) {
    return make_uint4(pack2(in[0], in[1]), pack2(in[2], in[3]), pack2(in[4], in[5]), pack2(in[6], in[7]));
  }
};

template <>
struct LogitTraits<__half> {
  static constexpr int kPerVector = 8;
  static constexpr const char* name = "float16";
  __device__ __forceinline__ static float to_float(__half x) { return __half2float(x); }
  __device__ __forceinline__ static __half from_float(float x) { return __float2half_rn(x); }
  __device__ __forceinline__ static void unpack(const uint4& v, float (&out)[8]) {
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[k]));
      out[2 * k] = f.x;
      out[2 * k + 1] = f.y;
    }
  }
  __device__ __forceinline__ static unsigned pack2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&h);
  }
  __device__ __forceinline__ static uint4 pack(const float (&in)[8]) {
    return make_uint4(pack2(in[0], in[1]), pack2(in[2], in[3]), pack2(in[4], in[5]), pack2(in[6], in[7]));
  }
};

template <class Logit>
concept device_logit_type = requires { LogitTraits<Logit>::kPerVector; };

/// True when rows of `vocab` logits starting at `ptr` can be walked in 16-byte vectors.
template <class Logit>
inline bool rows_vectorizable(const void* ptr, long long vocab) {
  return vocab % LogitTraits<Logit>::kPerVector == 0 && reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0;
}

/// 16-byte loads each thread issues before using them: 4 x 16 B x 1024 threads = 64 KiB in flight per block, about
/// what one SM needs to cover DRAM latency at its share of the bandwidth (Little's law: ~32 GB/s x ~1.5 us).
inline constexpr int kLoadBatch = 4;

/// Block-strided walk over the 16-byte vectors src[0..nvec): thread i visits i, i + blockDim.x, ...; kLoadBatch loads
/// are issued before any of them is used (memory-level parallelism). Calls visit(raw, k) for vector k.
template <class Visit>
__device__ __forceinline__ void for_each_vector_batched(const uint4* src, int nvec, Visit&& visit) {
  const int stride = static_cast<int>(blockDim.x);
  int k = static_cast<int>(threadIdx.x);
  for (; k + (kLoadBatch - 1) * stride < nvec; k += kLoadBatch * stride) {
    uint4 raw[kLoadBatch];
#pragma unroll
    for (int j = 0; j < kLoadBatch; ++j) raw[j] = src[k + j * stride];
#pragma unroll
    for (int j = 0; j < kLoadBatch; ++j) visit(raw[j], k + j * stride);
  }
  for (; k < nvec; k += stride) visit(src[k], k);
}

/// Pass 1 over one row: every thread folds its share into `st`; optionally copies the raw row into shared memory.
/// No per-element finiteness test: a NaN or +-inf y makes the state non-finite (NaN propagates through d = y - m,
/// +inf makes y - m = NaN, -inf gives u += 0 * -inf = NaN), which softmax_state_finite() detects once per row.
template <class Logit, bool kVec, bool kStoreRow>
__device__ __forceinline__ void softmax_row_pass(const Logit* row, int vocab, float scale2, SoftmaxState& st,
                                                 Logit* smem_row) {
  using Tr = LogitTraits<Logit>;
  if constexpr (kVec) {
    constexpr int N = Tr::kPerVector;
    for_each_vector_batched(reinterpret_cast<const uint4*>(row), vocab / N, [&](const uint4& raw, int k) {
      if constexpr (kStoreRow) reinterpret_cast<uint4*>(smem_row)[k] = raw;
      float x[N];
      Tr::unpack(raw, x);
      softmax_accumulate<N>(st, x, scale2);
    });
  } else {
    for (int k = static_cast<int>(threadIdx.x); k < vocab; k += static_cast<int>(blockDim.x)) {
      const Logit raw = row[k];
      if constexpr (kStoreRow) smem_row[k] = raw;
      const float x[1] = {Tr::to_float(raw)};
      softmax_accumulate<1>(st, x, scale2);
    }
  }
}

/// Stages of softmax_bulk_pass: the chunk arrives in this many pieces, each on its own mbarrier, so that the block
/// folds the first piece while the others are still in flight.
inline constexpr int kBulkStages = 8;

/// Pass 1 over `nvec` 16-byte vectors with the bulk-copy engine (sm_90): thread 0 issues one cp.async.bulk per stage,
/// global -> shared, each completing on its mbarrier with the stage's byte count; every thread waits for a stage and
/// folds its vectors from shared memory. Nothing of the row passes through registers on the way in, and the whole
/// chunk is in flight at once (a strided walk has kLoadBatch vectors per thread in flight). Each stage covers a
/// multiple of blockDim.x vectors, so thread t folds exactly the vectors k = t (mod blockDim.x) in increasing k, as
/// the strided walk of softmax_row_pass does: the state is bit for bit the same. `src` and `smem` 16-byte aligned.
template <class Logit>
__device__ __forceinline__ void softmax_bulk_pass(const Logit* src, int nvec, Logit* smem, float scale2,
                                                  SoftmaxState& st, std::uint64_t (&bars)[kBulkStages]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using Tr = LogitTraits<Logit>;
  constexpr int N = Tr::kPerVector;
  const int threads = static_cast<int>(blockDim.x);
  const int rounds = (nvec + threads - 1) / threads;  // vectors per thread
  const int piece = (rounds + kBulkStages - 1) / kBulkStages * threads;
  const int stages = nvec > 0 ? (nvec + piece - 1) / piece : 0;
  if (threadIdx.x == 0) {
    namespace ptx = ::cuda::ptx;
    for (int s = 0; s < stages; ++s) ptx::mbarrier_init(&bars[s], 1u);
    ptx::fence_mbarrier_init(ptx::sem_release, ptx::scope_cluster);  // the inits are visible to the copy engine
    for (int s = 0; s < stages; ++s) {
      const int v0 = s * piece;
      const int n = min(piece, nvec - v0);
      const auto bytes = static_cast<std::uint32_t>(n) * 16u;
      (void)ptx::mbarrier_arrive_expect_tx(ptx::sem_release, ptx::scope_cta, ptx::space_shared, &bars[s], bytes);
      ptx::cp_async_bulk(ptx::space_cluster, ptx::space_global, smem + static_cast<long long>(v0) * N,
                         src + static_cast<long long>(v0) * N, bytes, &bars[s]);
    }
  }
  __syncthreads();  // the barriers are initialised before anyone waits on them
  const uint4* sv = reinterpret_cast<const uint4*>(smem);
  for (int s = 0; s < stages; ++s) {
    while (!::cuda::ptx::mbarrier_try_wait_parity(&bars[s], 0u)) {
    }
    const int v1 = min(nvec, (s + 1) * piece);
    for (int k = s * piece + static_cast<int>(threadIdx.x); k < v1; k += threads) {
      float x[N];
      Tr::unpack(sv[k], x);
      softmax_accumulate<N>(st, x, scale2);
    }
  }
#else
  (void)src;
  (void)nvec;
  (void)smem;
  (void)scale2;
  (void)st;
  (void)bars;
  __trap();  // callers use it on sm_90 and newer only
#endif
}

/// True when a row's merged state came from finite logits only (see softmax_row_pass).
__device__ __forceinline__ bool softmax_state_finite(const SoftmaxState& st) {
  return isfinite(st.m) && isfinite(st.s) && isfinite(st.u) && st.s > 0.0f;
}

/// Per-row constants of the softmax backward, in base 2, with 1 / T folded in:
///   dx_v = p_v (a + b d_v) + g [v == t],  d_v = x_v * scale2 - lse2,  p_v = 2^d_v,
///   a = (-g0 - h H) / T,  b = -h ln2 / T,  g = g0 / T  (g0 = dL/dlogp, h = -w entropy_coef)
struct SoftmaxBackwardCoefs {
  float lse2, a, b, g;
  int target;
};

/// dx of one element from its raw logit x, without the target's +g (added by the caller for that one element).
__device__ __forceinline__ float softmax_backward_element(const SoftmaxBackwardCoefs& c, float x, float scale2) {
  const float d = fmaf(x, scale2, -c.lse2);
  return fast_exp2(d) * fmaf(c.b, d, c.a);
}

/// Pass 2 over one row: writes dlogits from the logits (global row or its shared-memory copy). Each element is read
/// before it is written by the same thread, so `grad_row` may alias `row`. Per element: unpack, fma, ex2, fma, mul and
/// the packing; the target's +g is one test per vector.
template <class Logit, bool kVec>
__device__ __forceinline__ void softmax_backward_pass(const Logit* row, Logit* grad_row, int vocab, float scale2,
                                                      const SoftmaxBackwardCoefs& c) {
  using Tr = LogitTraits<Logit>;
  if constexpr (kVec) {
    constexpr int N = Tr::kPerVector;
    const int target_vec = c.target >= 0 ? c.target / N : -1;  // a target outside [0, vocab) matches no vector
    const int target_lane = c.target >= 0 ? c.target % N : 0;
    uint4* dst = reinterpret_cast<uint4*>(grad_row);
    for_each_vector_batched(reinterpret_cast<const uint4*>(row), vocab / N, [&](const uint4& raw, int k) {
      float y[N];
      Tr::unpack(raw, y);
#pragma unroll
      for (int j = 0; j < N; ++j) y[j] = softmax_backward_element(c, y[j], scale2);
      if (k == target_vec) {
#pragma unroll
        for (int j = 0; j < N; ++j)
          if (j == target_lane) y[j] += c.g;
      }
      dst[k] = Tr::pack(y);
    });
  } else {
    for (int k = static_cast<int>(threadIdx.x); k < vocab; k += static_cast<int>(blockDim.x)) {
      float dx = softmax_backward_element(c, Tr::to_float(row[k]), scale2);
      if (k == c.target) dx += c.g;
      grad_row[k] = Tr::from_float(dx);
    }
  }
}

/// Writes zeros over one row (masked or rejected rows).
template <class Logit, bool kVec>
__device__ __forceinline__ void zero_row(Logit* grad_row, int vocab) {
  if constexpr (kVec) {
    const int nvec = vocab / LogitTraits<Logit>::kPerVector;
    for (int k = static_cast<int>(threadIdx.x); k < nvec; k += static_cast<int>(blockDim.x))
      reinterpret_cast<uint4*>(grad_row)[k] = make_uint4(0u, 0u, 0u, 0u);
  } else {
    for (int k = static_cast<int>(threadIdx.x); k < vocab; k += static_cast<int>(blockDim.x))
      grad_row[k] = LogitTraits<Logit>::from_float(0.0f);
  }
}

// ---- device error word -----------------------------------------------------------------------------------------------

/// What a kernel found wrong with a row (the lowest bad row is kept: atomicMin on (row << 2) | code).
enum RowErrorCode : unsigned {
  kRowTargetOutOfRange = 1,  ///< target id outside [0, vocab)
  kRowNonFiniteLogit = 2,    ///< a logit (divided by the temperature) is inf or NaN
  kRowNonFiniteInput = 3,    ///< logp_old / logp_ref / advantage / token weight of the row is not finite
};
inline constexpr unsigned long long kNoRowError = ~0ull;

__device__ __forceinline__ void report_row_error(unsigned long long* error_word, long long row, RowErrorCode code) {
  atomicMin(error_word, (static_cast<unsigned long long>(row) << 2) | code);
}

/// Host side: turns an error word read back from the device into a corl::Error naming the function, array and row.
inline void throw_row_error(unsigned long long word, const char* where, long long vocab, const std::int32_t* d_targets) {
  if (word == kNoRowError) return;
  const long long row = static_cast<long long>(word >> 2);
  switch (static_cast<unsigned>(word & 3u)) {
    case kRowTargetOutOfRange: {
      std::int32_t target = 0;
      if (cudaMemcpy(&target, d_targets + row, sizeof(target), cudaMemcpyDeviceToHost) != cudaSuccess)
        fail(where, ": targets[", row, "] is outside [0, vocab = ", vocab, ") (and could not be read back)");
      fail(where, ": targets[", row, "] = ", target, ", expected in [0, vocab = ", vocab, ")");
    }
    case kRowNonFiniteLogit:
      fail(where, ": logits row ", row, " holds a non-finite value (after dividing by the temperature), expected finite");
    default:
      fail(where, ": logp_old / logp_ref / advantages / token_weight of row ", row, " is not finite, expected finite");
  }
}

}  // namespace corl::cuda

// corl/cuda/logprobs.cuh — forward-only per-token log-probs (and entropy, log-sum-exp) from logits, for the old-policy
// and reference passes of GRPO. CUDA twin of corl::logprobs_from_logits (corl/logprob/from_logits.hpp).
//
// Design note. One thread block per row (token); the block walks the row once in 16-byte vectors, each thread keeping
// an online softmax state (corl/cuda/softmax_row.cuh), then merges the states in a fixed order: one read of the logits,
// nothing written but 4-12 bytes per row, deterministic. Block size grows with the row (128 threads up to 4 KiB rows,
// 256 up to 64 KiB, 1024 above) so that each thread has ~8-16 vectors in flight. Rows with a target outside [0, vocab)
// or a non-finite logit are reported through an error word in caller-owned scratch (lowest bad row wins); with
// `synchronous_check` (default) the launcher synchronises the stream and throws corl::Error naming the row.
// Masked rows (mask != nullptr and mask[row] == 0) are not read; their outputs are 0.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"
#include "corl/cuda/check.cuh"
#include "corl/cuda/reduce.cuh"
#include "corl/cuda/softmax_row.cuh"

namespace corl::cuda {

/// Arguments of logprobs_from_logits (device pointers).
template <class Logit>
struct LogprobsArgs {
  const Logit* logits = nullptr;            ///< [rows, vocab] row-major: float, __nv_bfloat16 or __half
  index_t rows = 0, vocab = 0;
  const std::int32_t* targets = nullptr;    ///< [rows]
  const std::uint8_t* mask = nullptr;       ///< [rows] or nullptr (every row)
  float temperature = 1.0f;
  float* logp = nullptr;                    ///< [rows] output
  float* entropy = nullptr;                 ///< [rows] output or nullptr
  float* lse = nullptr;                     ///< [rows] output (natural log-sum-exp of logits / T) or nullptr
  bool synchronous_check = true;            ///< synchronise and throw corl::Error on a bad row
};

/// Threads per block for rows of `row_bytes` (see the design note).
inline int row_block_threads(long long row_bytes) {
  if (row_bytes <= 4096) return 128;
  if (row_bytes <= 65536) return 256;
  return 1024;
}

template <class Logit, bool kVec>
__global__ void __launch_bounds__(1024)
    logprobs_kernel(const Logit* logits, int vocab, const std::int32_t* targets, const std::uint8_t* mask,
                    float scale2, float* logp, float* entropy, float* lse, float lse_of_bad_row,
                    unsigned long long* error_word) {
  __shared__ SoftmaxState slots[33];
  const long long row = blockIdx.x;
  const Logit* row_ptr = logits + row * static_cast<long long>(vocab);
  const int target = targets[row];
  const bool active = mask == nullptr || mask[row] != 0;
  const bool target_ok = target >= 0 && target < vocab;
  if (!active || !target_ok) {  // uniform over the block
    if (threadIdx.x == 0) {
      if (active) report_row_error(error_word, row, kRowTargetOutOfRange);
      logp[row] = 0.0f;
      if (entropy) entropy[row] = 0.0f;
      if (lse) lse[row] = active ? lse_of_bad_row : 0.0f;
    }
    return;
  }
  SoftmaxState st = empty_softmax_state();
  softmax_row_pass<Logit, kVec, false>(row_ptr, vocab, scale2, st, nullptr);
  st = block_allreduce(st, SoftmaxMerge{}, empty_softmax_state(), slots);
  const bool all_finite = softmax_state_finite(st);
  if (threadIdx.x != 0) return;
  if (!all_finite) {
    report_row_error(error_word, row, kRowNonFiniteLogit);
    logp[row] = 0.0f;
    if (entropy) entropy[row] = 0.0f;
    if (lse) lse[row] = lse_of_bad_row;
    return;
  }
  const float log2s = log2f(st.s);
  const float y_t = LogitTraits<Logit>::to_float(row_ptr[target]) * scale2;
  logp[row] = ((y_t - st.m) - log2s) * kLn2;
  if (entropy) entropy[row] = (log2s - st.u / st.s) * kLn2;
  if (lse) lse[row] = (st.m + log2s) * kLn2;
}

/// Bytes of scratch logprobs_from_logits needs (the error word, padded).
inline std::size_t logprobs_scratch_bytes() { return 256; }

/// Synchronises `stream`, reads the error word in `scratch` and throws corl::Error naming the first bad row.
inline void logprobs_check_errors(const void* scratch, index_t vocab, const std::int32_t* targets,
                                  cudaStream_t stream) {
  unsigned long long word = kNoRowError;
  check_cuda(cudaMemcpyAsync(&word, scratch, sizeof(word), cudaMemcpyDeviceToHost, stream),
             "logprobs_from_logits: reading the error word");
  check_cuda(cudaStreamSynchronize(stream), "logprobs_from_logits: cudaStreamSynchronize");
  throw_row_error(word, "logprobs_from_logits", vocab, targets);
}

/// Per-token log-probs of `targets` under softmax(logits / temperature); optional entropy and log-sum-exp.
/// Asynchronous on `stream` unless args.synchronous_check.
template <class Logit>
  requires device_logit_type<Logit>
void logprobs_from_logits(const LogprobsArgs<Logit>& args, void* scratch, std::size_t scratch_bytes,
                          cudaStream_t stream = 0) {
  constexpr const char* where = "logprobs_from_logits";
  require(args.rows > 0 && args.vocab > 0, where, ": rows = ", args.rows, ", vocab = ", args.vocab,
          ", expected both > 0");
  require(args.vocab < (1ll << 31) && args.rows < (1ll << 31), where, ": rows = ", args.rows, ", vocab = ", args.vocab,
          ", expected both < 2^31");
  require(args.logits != nullptr && args.targets != nullptr && args.logp != nullptr, where,
          ": logits, targets and logp must be device pointers, got a null pointer");
  require(scratch != nullptr && scratch_bytes >= logprobs_scratch_bytes(), where, ": scratch_bytes = ", scratch_bytes,
          ", expected >= logprobs_scratch_bytes() = ", logprobs_scratch_bytes());
  require(args.temperature > 0.0f && args.temperature < INFINITY, where, ": temperature = ", args.temperature,
          ", expected a finite value > 0");
  auto* error_word = static_cast<unsigned long long*>(scratch);
  check_cuda(cudaMemsetAsync(error_word, 0xff, sizeof(unsigned long long), stream), "logprobs_from_logits: memset");
  const float scale2 = kLog2e / args.temperature;
  const int threads = row_block_threads(args.vocab * static_cast<long long>(sizeof(Logit)));
  const dim3 grid(static_cast<unsigned>(args.rows));
  const int vocab = static_cast<int>(args.vocab);
  if (rows_vectorizable<Logit>(args.logits, args.vocab)) {
    logprobs_kernel<Logit, true><<<grid, threads, 0, stream>>>(args.logits, vocab, args.targets, args.mask, scale2,
                                                              args.logp, args.entropy, args.lse, 0.0f, error_word);
  } else {
    logprobs_kernel<Logit, false><<<grid, threads, 0, stream>>>(args.logits, vocab, args.targets, args.mask, scale2,
                                                               args.logp, args.entropy, args.lse, 0.0f, error_word);
  }
  check_launch("logprobs_kernel");
  if (args.synchronous_check) logprobs_check_errors(scratch, args.vocab, args.targets, stream);
}

}  // namespace corl::cuda

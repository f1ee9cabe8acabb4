// corl/cuda/grpo_loss.cuh — the GRPO-family loss, forward and backward, fused from logits: per-token log-prob of the
// sampled token under softmax(logits / T), ratio, clipping, KL, entropy bonus, aggregation weight and mask, and
// dL/dlogits written once (optionally in place over the logits). CUDA twin of corl::grpo_loss_from_logits
// (corl/logprob/grpo_from_logits.hpp); the per-token math is the SAME CORL_HD structs (corl/loss/*.hpp).
//
// Design note. The floor of this operation is one read of the logits and one write of the gradient (2 N V bytes).
//  * Token-level losses (PPO clip, CISPO, ...): ONE kernel, one thread block per row. Pass 1 streams the row in 16-byte
//    vectors, folding an online softmax state (corl/cuda/softmax_row.cuh) and, when the row fits in shared memory,
//    copying it there. The block merges the states in a fixed order, thread 0 evaluates policy.token / kl.token for the
//    row, and pass 2 writes dL/dlogits from the shared copy: the logits are read from DRAM exactly once.
//    Rows too large for two per SM (bf16 V > ~57k, fp32 V > ~28k) are split over a thread-block cluster of 2..8 blocks
//    (sm_90, grpo_loss_cluster_kernel), each holding one chunk in shared memory, sized so that four (else two) blocks
//    share an SM and one block's loads overlap another's writes; the blocks' states are merged through distributed
//    shared memory in rank order (grpo_loss_row_layout). Rows too large for that (fp32 V > ~230k), or without 16-byte
//    alignment, are read a second time from global memory right after the first read, which the L2 cache serves for
//    the few rows in flight per SM.
//  * Sequence-level losses (GSPO, GMPO: Policy::sequence_level): the token term needs the masked mean of seq_stat_term
//    over the whole sequence, so the work splits into three launches: the forward kernel of corl/cuda/logprobs.cuh
//    (log-prob, entropy, lse per row), a small per-sequence reduction, and a backward kernel that re-reads the logits
//    (3 N V bytes instead of 2).
//  * Outputs: per-row partial sums (24 bytes a row) are reduced by ONE block in a fixed order into a GrpoLossResult in
//    device memory: the loss is bit-identical from run to run (no float atomics).
//  * Bad input found on the device (target out of range, non-finite logit, non-finite logp_old / logp_ref / advantage /
//    weight) sets an error word (lowest row wins); the row is then treated as masked. With args.synchronous_check
//    (default) the launcher synchronises the stream and throws corl::Error naming the row; otherwise call
//    read_grpo_loss_result() later. Masked rows are not read: their dlogits are 0 and their logp / entropy outputs 0.
// Scratch is caller-owned (grpo_loss_scratch_bytes); the stream comes last (CUB's manners).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "corl/concepts/kl_estimator.hpp"
#include "corl/concepts/policy_loss.hpp"
#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"
#include "corl/cuda/check.cuh"
#include "corl/cuda/logprobs.cuh"
#include "corl/cuda/reduce.cuh"
#include "corl/cuda/softmax_row.cuh"
#include "corl/logprob/grpo_from_logits.hpp"  // corl::GrpoLossTotals, shared with the CPU reference
#include "corl/loss/token_term.hpp"

namespace corl::cuda {

/// What the loss launch leaves in device memory: the totals (same meaning as the CPU reference's) and the error word.
struct GrpoLossResult {
  GrpoLossTotals totals;
  unsigned long long error_word;  ///< kNoRowError, or (first bad row << 2) | RowErrorCode
};

/// Arguments of grpo_loss_from_logits (device pointers). Rows are tokens: row = b * seq_len + t.
template <class Logit>
struct GrpoLossArgs {
  const Logit* logits = nullptr;          ///< [rows, vocab]: float, __nv_bfloat16 or __half
  Logit* dlogits = nullptr;               ///< [rows, vocab] output; may equal logits (in place), must not overlap else
  index_t sequences = 0, seq_len = 0, vocab = 0;
  const std::int32_t* targets = nullptr;  ///< [rows] sampled token ids
  const std::uint8_t* mask = nullptr;     ///< [rows] or nullptr (every token counts)
  const float* logp_old = nullptr;        ///< [rows] or nullptr (on-policy: logp_old = logp, ratio 1)
  const float* logp_ref = nullptr;        ///< [rows] or nullptr (no KL term; kl_coef must then be 0 unless NoKl)
  const float* advantages = nullptr;      ///< [sequences]
  const float* token_weight = nullptr;    ///< [sequences] aggregation weight of one token (corl/loss/aggregate.hpp)
  float temperature = 1.0f, kl_coef = 0.0f, entropy_coef = 0.0f;
  float* logp_out = nullptr;              ///< [rows] output or nullptr
  float* entropy_out = nullptr;           ///< [rows] output or nullptr
  GrpoLossResult* result = nullptr;       ///< device output (required)
  bool synchronous_check = true;          ///< synchronise and throw corl::Error on bad input rows
  /// Most thread blocks (a cluster, sm_90+) one row may be split over so that two rows' worth of blocks fit per SM
  /// in shared memory (token-level losses; see grpo_loss_row_layout). 1 = one block per row, at most 8.
  int max_row_split = 8;
  /// sm_90, rows kept in shared memory: bring them in with the bulk-copy engine (cp.async.bulk on mbarriers) instead
  /// of loads through registers. Same results bit for bit. Off by default: on an H200 (2026-11-27, three runs) it was
  /// 1.966-1.988 ms against 1.996-2.016 ms at B32 T512 V102400 (~1% faster) but 0.373-0.378 ms against 0.352-0.354 ms
  /// at B32 T576 V16384 (6% slower).
  bool bulk_copy = false;
};

/// Per-row partial sums, reduced in a fixed order by grpo_loss_reduce_kernel.
struct GrpoRowPartials {
  float loss, policy, kl, entropy, ratio;
  unsigned flags;  ///< TokenFlag bits; bit 8 = the row counted (unmasked, valid)
};

/// Per-row softmax statistics kept between the launches of the sequence-level path.
struct GrpoRowStats {
  float logp, entropy, lse;
};

namespace detail {
inline std::size_t align_up(std::size_t n) { return (n + 255) / 256 * 256; }
}  // namespace detail

/// Scratch bytes grpo_loss_from_logits needs for `rows` tokens in `sequences` sequences.
inline std::size_t grpo_loss_scratch_bytes(index_t rows, index_t sequences) {
  const auto r = static_cast<std::size_t>(rows), s = static_cast<std::size_t>(sequences);
  return detail::align_up(r * sizeof(GrpoRowPartials)) + detail::align_up(r * sizeof(float) * 3) +
         detail::align_up(s * sizeof(float)) + 256;
}

/// Everything a row kernel needs besides the policy / KL objects (passed by value to the kernels).
template <class Logit>
struct GrpoKernelParams {
  const Logit* logits;
  Logit* dlogits;
  int vocab;
  long long seq_len;
  const std::int32_t* targets;
  const std::uint8_t* mask;
  const float* logp_old;
  const float* logp_ref;
  const float* advantages;
  const float* token_weight;
  float scale2, inv_t, kl_coef, entropy_coef;
  float* logp_out;
  float* entropy_out;
  GrpoRowPartials* partials;
  const float* stats_logp;     // sequence-level path: forward results
  const float* stats_entropy;
  const float* stats_lse;
  const float* seq_stat;       // [sequences] or nullptr
  unsigned long long* error_word;
};

/// Thread 0 of a row: the token term, the row's partial sums and outputs; returns false when the row's inputs are bad.
/// `writer` = false (the other blocks of a row split over a cluster): the same coefficients, no outputs or reports.
template <class Logit, class Policy, class Kl>
__device__ __forceinline__ bool grpo_row_term(const GrpoKernelParams<Logit>& p, const Policy& policy, const Kl& kl,
                                              long long row, float logp, float entropy, float lse2,
                                              SoftmaxBackwardCoefs& coefs, bool writer = true) {
  const long long b = row / p.seq_len;
  const float adv = p.advantages[b], w = p.token_weight[b];
  const float old = p.logp_old ? p.logp_old[row] : logp;
  constexpr bool kUsesRef = static_cast<bool>(Kl::uses_reference);
  const bool with_kl = kUsesRef && p.logp_ref != nullptr;
  const float ref = with_kl ? p.logp_ref[row] : 0.0f;
  if (!isfinite(adv) || !isfinite(w) || !isfinite(old) || !isfinite(ref)) {
    if (writer) report_row_error(p.error_word, row, kRowNonFiniteInput);
    return false;
  }
  const float seq_stat = p.seq_stat ? p.seq_stat[b] : 0.0f;
  const TokenTerm<float> pol = policy.template token<float>(logp, old, adv, seq_stat);
  float g = pol.grad, kl_value = 0.0f;
  if (with_kl) {
    const TokenTerm<float> k = kl.template token<float>(logp, ref, old);
    g += p.kl_coef * k.grad;
    kl_value = k.value;
  }
  if (writer) {
    p.partials[row] = GrpoRowPartials{w * (pol.value + p.kl_coef * kl_value - p.entropy_coef * entropy),
                                      w * pol.value, w * kl_value, entropy, pol.ratio,
                                      static_cast<unsigned>(pol.flags) | 0x100u};
    if (p.logp_out) p.logp_out[row] = logp;
    if (p.entropy_out) p.entropy_out[row] = entropy;
  }
  const float gw = w * g, h = -w * p.entropy_coef;
  const float coef_a = -gw - h * entropy, coef_b = -h * kLn2;
  coefs = SoftmaxBackwardCoefs{lse2, coef_a * p.inv_t, coef_b * p.inv_t, gw * p.inv_t, p.targets[row]};
  return true;
}

template <class Logit>
__device__ __forceinline__ void grpo_skip_row(const GrpoKernelParams<Logit>& p, long long row) {
  p.partials[row] = GrpoRowPartials{0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0u};
  if (p.logp_out) p.logp_out[row] = 0.0f;
  if (p.entropy_out) p.entropy_out[row] = 0.0f;
}

/// The start of a token-level row, for every thread: true when the row is not read (masked, or active with a target
/// outside [0, vocab), which is reported); thread 0 of the `writer` block then writes its outputs as skipped. The
/// answer is the same for every block of the row.
template <class Logit>
__device__ __forceinline__ bool grpo_row_inactive(const GrpoKernelParams<Logit>& p, long long row, int target,
                                                  bool writer) {
  const bool active = p.mask == nullptr || p.mask[row] != 0;
  if (active && target >= 0 && target < p.vocab) return false;
  if (threadIdx.x == 0 && writer) {
    if (active) report_row_error(p.error_word, row, kRowTargetOutOfRange);
    grpo_skip_row(p, row);
  }
  return true;
}

/// Thread 0 of a token-level row whose softmax state `st` is complete: the finiteness check, logp and entropy from the
/// state and the target's raw logit x_t, and the token term (grpo_row_term); a bad row is reported and its outputs
/// written as skipped (by the `writer` block only). Sets `coefs` when the row counts; returns whether it does.
template <class Logit, class Policy, class Kl>
__device__ __forceinline__ bool grpo_row_from_state(const GrpoKernelParams<Logit>& p, const Policy& policy,
                                                    const Kl& kl, long long row, const SoftmaxState& st, float x_t,
                                                    SoftmaxBackwardCoefs& coefs, bool writer = true) {
  bool ok = softmax_state_finite(st);
  if (!ok) {
    if (writer) report_row_error(p.error_word, row, kRowNonFiniteLogit);
  } else {
    const float log2s = log2f(st.s);
    const float y_t = x_t * p.scale2;
    const float logp = ((y_t - st.m) - log2s) * kLn2;
    const float entropy = (log2s - st.u / st.s) * kLn2;
    ok = grpo_row_term(p, policy, kl, row, logp, entropy, st.m + log2s, coefs, writer);
  }
  if (!ok && writer) grpo_skip_row(p, row);
  return ok;
}

/// The end of a row, for every thread of the block: thread 0 has set `row_ok` and, when it is 1, `coefs` (both in shared
/// memory). A skipped row gets dlogits = 0; otherwise pass 2 writes dlogits from `src` (the row or its shared copy).
template <class Logit, bool kVec>
__device__ __forceinline__ void grpo_row_backward(const int& row_ok, const SoftmaxBackwardCoefs& coefs,
                                                  const Logit* src, Logit* grad_ptr, int vocab, float scale2) {
  __syncthreads();
  if (!row_ok) {
    zero_row<Logit, kVec>(grad_ptr, vocab);
    return;
  }
  const SoftmaxBackwardCoefs c = coefs;  // registers, not shared memory, in the loop
  softmax_backward_pass<Logit, kVec>(src, grad_ptr, vocab, scale2, c);
}

/// Token-level losses: pass 1 (row -> shared memory when kRowInSmem), term, pass 2. One block per row.
template <class Logit, class Policy, class Kl, bool kVec, bool kRowInSmem>
__global__ void __launch_bounds__(1024) grpo_loss_fused_kernel(GrpoKernelParams<Logit> p, Policy policy, Kl kl) {
  extern __shared__ uint4 smem_raw[];
  __shared__ SoftmaxState slots[33];
  __shared__ SoftmaxBackwardCoefs coefs_shared;
  __shared__ int row_ok;
  const long long row = blockIdx.x;
  const Logit* row_ptr = p.logits + row * static_cast<long long>(p.vocab);
  Logit* grad_ptr = p.dlogits + row * static_cast<long long>(p.vocab);
  Logit* smem_row = reinterpret_cast<Logit*>(smem_raw);
  const int target = p.targets[row];
  if (grpo_row_inactive(p, row, target, true)) {  // uniform over the block
    zero_row<Logit, kVec>(grad_ptr, p.vocab);
    return;
  }
  SoftmaxState st = empty_softmax_state();
  softmax_row_pass<Logit, kVec, kRowInSmem>(row_ptr, p.vocab, p.scale2, st, smem_row);
  st = block_allreduce(st, SoftmaxMerge{}, empty_softmax_state(), slots);  // its barriers order the shared copy too
  if (threadIdx.x == 0) {
    const float x_t = LogitTraits<Logit>::to_float(kRowInSmem ? smem_row[target] : row_ptr[target]);
    row_ok = grpo_row_from_state(p, policy, kl, row, st, x_t, coefs_shared) ? 1 : 0;
  }
  grpo_row_backward<Logit, kVec>(row_ok, coefs_shared, kRowInSmem ? smem_row : row_ptr, grad_ptr, p.vocab, p.scale2);
}

/// Token-level losses, a row too large for two rows per SM in shared memory: the row is split over a thread-block
/// cluster of `parts` blocks (cluster dims (parts, 1, 1), blocks row * parts .. row * parts + parts - 1), each holding
/// one contiguous chunk of 16-byte vectors in its shared memory, so that four (or two) blocks fit per SM and one
/// block's loads overlap another's writes (one block per SM leaves the SM idle between its read and write phases). Each
/// block folds its chunk; the blocks' states are merged through distributed shared memory in rank order (the same
/// merge, bit for bit, in every block); every block evaluates the token term (block 0 alone writes the row's outputs
/// and error reports) and writes dlogits for its chunk. Needs sm_90 (clusters) and vectorizable rows.
/// kBulk: pass 1 brings the chunk in with the bulk-copy engine (softmax_bulk_pass: same state, bit for bit).
template <class Logit, class Policy, class Kl, bool kBulk>
__global__ void __launch_bounds__(1024) grpo_loss_cluster_kernel(GrpoKernelParams<Logit> p, Policy policy, Kl kl,
                                                                 int chunk_vectors) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  extern __shared__ uint4 smem_raw[];
  __shared__ SoftmaxState slots[33];
  __shared__ SoftmaxState block_state;
  __shared__ SoftmaxBackwardCoefs coefs_shared;
  __shared__ int row_ok;
  __shared__ alignas(8) std::uint64_t stage_bars[kBulkStages];
  const cg::cluster_group cluster = cg::this_cluster();
  const int parts = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  constexpr int N = LogitTraits<Logit>::kPerVector;
  const long long row = blockIdx.x / parts;
  const int nvec = p.vocab / N;
  const int begin = rank * chunk_vectors;
  const int count = begin < nvec ? min(chunk_vectors, nvec - begin) : 0;
  const Logit* row_ptr = p.logits + row * static_cast<long long>(p.vocab);
  const Logit* chunk_ptr = row_ptr + static_cast<long long>(begin) * N;
  Logit* grad_chunk = p.dlogits + row * static_cast<long long>(p.vocab) + static_cast<long long>(begin) * N;
  Logit* smem_chunk = reinterpret_cast<Logit*>(smem_raw);
  const int target = p.targets[row];
  const bool writer = rank == 0;
  if (grpo_row_inactive(p, row, target, writer)) {  // uniform over the cluster: no block touches another's memory
    zero_row<Logit, true>(grad_chunk, count * N);
    return;
  }
  SoftmaxState st = empty_softmax_state();
  if constexpr (kBulk) {
    softmax_bulk_pass<Logit>(chunk_ptr, count, smem_chunk, p.scale2, st, stage_bars);
  } else {
    softmax_row_pass<Logit, true, true>(chunk_ptr, count * N, p.scale2, st, smem_chunk);
  }
  // The target's logit, read before the cluster barrier: after it, the block that owns the target's chunk may
  // already be writing its gradient over the logits (in place).
  const float x_t = threadIdx.x == 0 ? LogitTraits<Logit>::to_float(row_ptr[target]) : 0.0f;
  st = block_allreduce(st, SoftmaxMerge{}, empty_softmax_state(), slots);
  if (threadIdx.x == 0) block_state = st;
  cluster.sync();  // every block's state is visible to the cluster
  if (threadIdx.x == 0) {
    SoftmaxState total = *cluster.map_shared_rank(&block_state, 0);
    for (int r = 1; r < parts; ++r) total = SoftmaxMerge{}(total, *cluster.map_shared_rank(&block_state, r));
    const bool ok = grpo_row_from_state(p, policy, kl, row, total, x_t, coefs_shared, writer);
    if (ok) coefs_shared.target -= begin * N;  // the backward pass indexes the chunk from 0
    row_ok = ok ? 1 : 0;
  }
  // This block is done with the other blocks' shared memory (thread 0 read their states above): arrive now, and wait
  // only before leaving, so that no block leaves while another may still read its state, without holding pass 2 back.
  cluster.barrier_arrive();
  grpo_row_backward<Logit, true>(row_ok, coefs_shared, smem_chunk, grad_chunk, count * N, p.scale2);
  cluster.barrier_wait();
#else
  (void)p;
  (void)policy;
  (void)kl;
  (void)chunk_vectors;
  __trap();  // the launcher uses this kernel only on sm_90 and newer
#endif
}

/// Sequence-level losses, last launch: the term from the forward's statistics and seq_stat, then the backward pass.
template <class Logit, class Policy, class Kl, bool kVec>
__global__ void __launch_bounds__(1024) grpo_loss_backward_kernel(GrpoKernelParams<Logit> p, Policy policy, Kl kl) {
  __shared__ SoftmaxBackwardCoefs coefs_shared;
  __shared__ int row_ok;
  const long long row = blockIdx.x;
  Logit* grad_ptr = p.dlogits + row * static_cast<long long>(p.vocab);
  const int target = p.targets[row];
  const bool active = p.mask == nullptr || p.mask[row] != 0;
  if (threadIdx.x == 0) {
    // the forward launch already reported bad targets / logits of active rows and left lse = NaN (internal scratch,
    // never returned) there: such rows are skipped
    bool ok = active && target >= 0 && target < p.vocab && isfinite(p.stats_lse[row]);
    if (ok) {
      ok = grpo_row_term(p, policy, kl, row, p.stats_logp[row], p.stats_entropy[row], p.stats_lse[row] * kLog2e,
                         coefs_shared);
    }
    if (!ok) grpo_skip_row(p, row);
    row_ok = ok ? 1 : 0;
  }
  grpo_row_backward<Logit, kVec>(row_ok, coefs_shared, p.logits + row * static_cast<long long>(p.vocab), grad_ptr,
                                 p.vocab, p.scale2);
}

/// Sequence-level losses, middle launch: seq_stat[b] = masked mean over t of policy.seq_stat_term (fixed order).
template <class Policy>
__global__ void __launch_bounds__(256)
    grpo_seq_stat_kernel(const float* stats_logp, const float* logp_old, const float* advantages,
                         const std::uint8_t* mask, long long seq_len, Policy policy, float* seq_stat) {
  __shared__ float slots[33];
  const long long b = blockIdx.x;
  const float adv = advantages[b];
  float sum = 0.0f, count = 0.0f;
  for (long long t = threadIdx.x; t < seq_len; t += blockDim.x) {
    const long long row = b * seq_len + t;
    if (mask != nullptr && mask[row] == 0) continue;
    const float logp = stats_logp[row], old = logp_old ? logp_old[row] : logp;
    if (!isfinite(old)) continue;  // reported by the backward launch (kRowNonFiniteInput); keeps NaN out of the mean
    sum += policy.template seq_stat_term<float>(logp, old, adv);
    count += 1.0f;
  }
  sum = block_allreduce(sum, SumOp{}, 0.0f, slots);
  count = block_allreduce(count, SumOp{}, 0.0f, slots);
  if (threadIdx.x == 0) seq_stat[b] = count > 0.0f ? sum / count : 0.0f;
}

/// Last launch of every path: one block folds the per-row partials in a fixed order into result->totals (double).
__global__ void __launch_bounds__(1024)
    grpo_loss_reduce_kernel(const GrpoRowPartials* partials, long long rows, GrpoLossResult* result) {
  __shared__ double dslots[33];
  __shared__ long long islots[33];
  double loss = 0, policy = 0, kl = 0, entropy = 0, ratio = 0;
  long long tokens = 0, low = 0, high = 0, dual = 0;
  for (long long i = threadIdx.x; i < rows; i += blockDim.x) {
    const GrpoRowPartials r = partials[i];
    loss += r.loss;
    policy += r.policy;
    kl += r.kl;
    entropy += r.entropy;
    ratio += r.ratio;
    tokens += (r.flags >> 8) & 1u;
    low += (r.flags & kClippedLow) ? 1 : 0;
    high += (r.flags & kClippedHigh) ? 1 : 0;
    dual += (r.flags & kDualClipped) ? 1 : 0;
  }
  GrpoLossTotals t;
  t.loss = block_allreduce(loss, SumOp{}, 0.0, dslots);
  t.policy_loss = block_allreduce(policy, SumOp{}, 0.0, dslots);
  t.kl = block_allreduce(kl, SumOp{}, 0.0, dslots);
  t.entropy_sum = block_allreduce(entropy, SumOp{}, 0.0, dslots);
  t.ratio_sum = block_allreduce(ratio, SumOp{}, 0.0, dslots);
  t.tokens = block_allreduce(tokens, SumOp{}, 0ll, islots);
  t.clipped_low = block_allreduce(low, SumOp{}, 0ll, islots);
  t.clipped_high = block_allreduce(high, SumOp{}, 0ll, islots);
  t.dual_clipped = block_allreduce(dual, SumOp{}, 0ll, islots);
  if (threadIdx.x == 0) result->totals = t;
}

/// Synchronises `stream`, copies the result back and throws corl::Error if a row was bad.
inline GrpoLossTotals read_grpo_loss_result(const GrpoLossResult* d_result, index_t vocab,
                                            const std::int32_t* d_targets, cudaStream_t stream) {
  GrpoLossResult host{};
  check_cuda(cudaMemcpyAsync(&host, d_result, sizeof(host), cudaMemcpyDeviceToHost, stream),
             "grpo_loss_from_logits: reading the result");
  check_cuda(cudaStreamSynchronize(stream), "grpo_loss_from_logits: cudaStreamSynchronize");
  throw_row_error(host.error_word, "grpo_loss_from_logits", vocab, d_targets);
  return host.totals;
}

/// Largest row (bytes) the fused kernel keeps in shared memory on the current device (0 if none).
inline std::size_t grpo_loss_max_smem_row_bytes() {
  int device = 0, optin = 0;
  check_cuda(cudaGetDevice(&device), "grpo_loss_from_logits: cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
             "grpo_loss_from_logits: cudaDeviceGetAttribute");
  constexpr int kStaticReserve = 1024;  // slots + coefficients of the kernel's static shared memory
  return optin > kStaticReserve ? static_cast<std::size_t>(optin - kStaticReserve) : 0;
}

/// How the fused token-level kernel covers one row on the current device.
struct GrpoRowLayout {
  int parts = 1;              ///< thread blocks per row (> 1: a cluster of that many blocks, each with one chunk)
  int threads = 0;            ///< threads per block
  int chunk_vectors = 0;      ///< 16-byte vectors per block (parts > 1, or bulk)
  std::size_t smem_bytes = 0; ///< dynamic shared memory per block (0: the row is read twice, the second time from L2)
  bool bulk = false;          ///< pass 1 through the bulk-copy engine (grpo_loss_cluster_kernel, also with parts = 1)
};

/// The layout grpo_loss_from_logits uses for token-level losses: rows that fit twice per SM in shared memory get one
/// block each; larger vectorizable rows are split over a cluster of 2..max_split blocks (sm_90+) whose chunks fit
/// four times per SM (256 threads), or else twice (512 threads), so that several blocks share an SM and one block's
/// loads overlap another's writes; else one block per row with the row in shared memory if it fits, else read twice
/// (the second read from L2).
template <class Logit>
GrpoRowLayout grpo_loss_row_layout(index_t vocab, bool vectorizable, int max_split, bool bulk_copy = false) {
  const std::size_t row_bytes = static_cast<std::size_t>(vocab) * sizeof(Logit);
  const std::size_t max_row = grpo_loss_max_smem_row_bytes();
  int device = 0, major = 0, per_sm = 0;
  check_cuda(cudaGetDevice(&device), "grpo_loss_row_layout: cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
             "grpo_loss_row_layout: cudaDeviceGetAttribute");
  check_cuda(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device),
             "grpo_loss_row_layout: cudaDeviceGetAttribute");
  // shared memory a block may use when `blocks` of them share an SM: its share less its static part and the driver's
  // 1 KiB
  const auto share = [per_sm](int blocks) -> std::size_t {
    constexpr int kPerBlockReserve = 2048;
    return per_sm / blocks > kPerBlockReserve ? static_cast<std::size_t>(per_sm / blocks - kPerBlockReserve) : 0;
  };
  const std::size_t half = share(2);
  GrpoRowLayout l;
  const bool bulk = bulk_copy && vectorizable && major >= 9;
  if (row_bytes <= half) {
    // rows over 64 KiB: 512 threads, so that registers too allow two blocks per SM
    l.threads = row_bytes > 65536 ? 512 : row_block_threads(static_cast<long long>(row_bytes));
    l.smem_bytes = row_bytes;
    l.bulk = bulk;
    l.chunk_vectors = static_cast<int>(row_bytes / 16);
    return l;
  }
  if (vectorizable && major >= 9 && max_split > 1) {
    // Prefer chunks that fit four per SM (256 threads each: the layout of a 32 KiB bf16 row, which runs closest to the
    // floor), else two per SM (512 threads each), with at most max_split (<= 8) blocks per row.
    const std::size_t nvec = row_bytes / 16;
    const int limit = max_split < 8 ? max_split : 8;
    for (const int per_block_sm : {4, 2}) {
      const std::size_t budget_vectors = share(per_block_sm) / 16;
      if (budget_vectors == 0) continue;
      const std::size_t parts = (nvec + budget_vectors - 1) / budget_vectors;
      if (parts < 2 || parts > static_cast<std::size_t>(limit)) continue;
      l.parts = static_cast<int>(parts);
      l.chunk_vectors = static_cast<int>((nvec + parts - 1) / parts);
      l.smem_bytes = static_cast<std::size_t>(l.chunk_vectors) * 16;
      l.threads = per_block_sm == 4 ? 256 : 512;  // registers: at most 64 a thread either way
      l.bulk = bulk;
      return l;
    }
  }
  l.threads = row_block_threads(static_cast<long long>(row_bytes));
  l.smem_bytes = row_bytes <= max_row ? row_bytes : 0;
  return l;
}

namespace detail {
/// Whether `kernel` was compiled from sm_90+ code (PTX version >= 9.0), i.e. not the pre-Hopper fallback body.
template <class Kernel>
bool has_sm90_code(Kernel kernel) {
  cudaFuncAttributes attr{};
  check_cuda(cudaFuncGetAttributes(&attr, kernel), "grpo_loss_from_logits: cudaFuncGetAttributes");
  return attr.ptxVersion >= 90;
}

/// Dynamic shared memory for a kernel that keeps rows (or chunks) on chip: raises its limit above 48 KiB when needed,
/// and asks for all of the unified L1 / shared storage as shared memory: the rows ARE the working set (6 bf16 rows of
/// V = 16384 per SM instead of the 3 a default carveout may give).
template <class Kernel>
void set_row_smem_attributes(Kernel kernel, std::size_t smem_bytes, const char* name) {
  if (smem_bytes > 48 * 1024) {
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes)),
               (std::string(name) + ": cudaFuncSetAttribute(MaxDynamicSharedMemorySize)").c_str());
  }
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100),
             (std::string(name) + ": cudaFuncSetAttribute(PreferredSharedMemoryCarveout)").c_str());
}

template <class Logit, class Policy, class Kl, bool kVec>
void launch_grpo_fused(const GrpoKernelParams<Logit>& p, const Policy& policy, const Kl& kl, long long rows,
                       const GrpoRowLayout& l, cudaStream_t stream) {
  if (l.parts > 1 || l.bulk) {
    if constexpr (kVec) {
      auto kernel = l.bulk ? grpo_loss_cluster_kernel<Logit, Policy, Kl, true>
                           : grpo_loss_cluster_kernel<Logit, Policy, Kl, false>;
      set_row_smem_attributes(kernel, l.smem_bytes, "grpo_loss_cluster_kernel");
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(static_cast<unsigned>(rows * l.parts), 1, 1);
      cfg.blockDim = dim3(static_cast<unsigned>(l.threads), 1, 1);
      cfg.dynamicSmemBytes = l.smem_bytes;
      cfg.stream = stream;
      cudaLaunchAttribute attr[1];
      attr[0].id = cudaLaunchAttributeClusterDimension;
      attr[0].val.clusterDim.x = static_cast<unsigned>(l.parts);
      attr[0].val.clusterDim.y = 1;
      attr[0].val.clusterDim.z = 1;
      cfg.attrs = attr;
      cfg.numAttrs = 1;
      check_cuda(cudaLaunchKernelEx(&cfg, kernel, p, policy, kl, l.chunk_vectors),
                 "grpo_loss_cluster_kernel: cudaLaunchKernelEx");
      check_launch("grpo_loss_cluster_kernel");
      return;
    }
  }
  if (l.smem_bytes > 0) {
    auto kernel = grpo_loss_fused_kernel<Logit, Policy, Kl, kVec, true>;
    set_row_smem_attributes(kernel, l.smem_bytes, "grpo_loss_fused_kernel");
    kernel<<<static_cast<unsigned>(rows), l.threads, l.smem_bytes, stream>>>(p, policy, kl);
  } else {
    grpo_loss_fused_kernel<Logit, Policy, Kl, kVec, false><<<static_cast<unsigned>(rows), l.threads, 0, stream>>>(
        p, policy, kl);
  }
  check_launch("grpo_loss_fused_kernel");
}
}  // namespace detail

/// Loss, metrics and dL/dlogits of a GRPO-family policy loss (+ KL + entropy bonus) from logits.
/// Asynchronous on `stream` unless args.synchronous_check; results land in args.result (device memory).
template <class Logit, class Policy, class Kl>
  requires device_logit_type<Logit> && policy_loss_of<Policy, float> && kl_estimator_of<Kl, float>
void grpo_loss_from_logits(const GrpoLossArgs<Logit>& a, const Policy& policy, const Kl& kl, void* scratch,
                           std::size_t scratch_bytes, cudaStream_t stream = 0) {
  constexpr const char* where = "grpo_loss_from_logits";
  corl::detail::validate_component(policy, where);  // the loss and KL settings (corl/loss/token_term.hpp)
  corl::detail::validate_component(kl, where);
  require(a.sequences > 0 && a.seq_len > 0 && a.vocab > 0, where, ": sequences = ", a.sequences, ", seq_len = ",
          a.seq_len, ", vocab = ", a.vocab, ", expected all > 0");
  const long long rows = a.sequences * a.seq_len;
  require(rows < (1ll << 31) && a.vocab < (1ll << 31), where, ": rows = ", rows, ", vocab = ", a.vocab,
          ", expected both < 2^31");
  require(a.logits && a.dlogits && a.targets && a.advantages && a.token_weight && a.result, where,
          ": logits, dlogits, targets, advantages, token_weight and result must be device pointers, got a null");
  const std::size_t row_bytes = static_cast<std::size_t>(a.vocab) * sizeof(Logit);
  {
    const auto* l0 = reinterpret_cast<const char*>(a.logits);
    const auto* g0 = reinterpret_cast<const char*>(a.dlogits);
    const std::size_t total = row_bytes * static_cast<std::size_t>(rows);
    require(l0 == g0 || g0 + total <= l0 || l0 + total <= g0, where,
            ": dlogits overlaps logits without being the same array, expected in place (equal) or disjoint");
  }
  constexpr bool kUsesRef = static_cast<bool>(Kl::uses_reference);
  require(!kUsesRef || a.logp_ref != nullptr || a.kl_coef == 0.0f, where, ": kl_coef = ", a.kl_coef,
          " but logp_ref is null, expected kl_coef == 0 without reference log-probs");
  require(a.temperature > 0.0f && a.temperature < INFINITY, where, ": temperature = ", a.temperature,
          ", expected a finite value > 0");
  require(a.max_row_split >= 1 && a.max_row_split <= 8, where, ": max_row_split = ", a.max_row_split,
          ", expected in [1, 8]");
  require(std::isfinite(a.kl_coef) && std::isfinite(a.entropy_coef), where, ": kl_coef = ", a.kl_coef, ", entropy_coef = ",
          a.entropy_coef, ", expected finite");
  const std::size_t need = grpo_loss_scratch_bytes(rows, a.sequences);
  require(scratch != nullptr && scratch_bytes >= need, where, ": scratch_bytes = ", scratch_bytes,
          ", expected >= grpo_loss_scratch_bytes(rows, sequences) = ", need);

  auto* base = static_cast<char*>(scratch);
  auto* partials = reinterpret_cast<GrpoRowPartials*>(base);
  base += detail::align_up(static_cast<std::size_t>(rows) * sizeof(GrpoRowPartials));
  auto* stats = reinterpret_cast<float*>(base);
  base += detail::align_up(static_cast<std::size_t>(rows) * sizeof(float) * 3);
  auto* seq_stat = reinterpret_cast<float*>(base);

  check_cuda(cudaMemsetAsync(&a.result->error_word, 0xff, sizeof(unsigned long long), stream),
             "grpo_loss_from_logits: memset of the error word");
  GrpoKernelParams<Logit> p{a.logits, a.dlogits, static_cast<int>(a.vocab), a.seq_len, a.targets, a.mask,
                            a.logp_old, a.logp_ref, a.advantages, a.token_weight, kLog2e / a.temperature,
                            1.0f / a.temperature, a.kl_coef, a.entropy_coef, a.logp_out, a.entropy_out, partials,
                            nullptr, nullptr, nullptr, nullptr, &a.result->error_word};
  const int threads = row_block_threads(static_cast<long long>(row_bytes));
  const bool vec = rows_vectorizable<Logit>(a.logits, a.vocab) && rows_vectorizable<Logit>(a.dlogits, a.vocab);
  if constexpr (!static_cast<bool>(Policy::sequence_level)) {
    // The cluster kernel exists only in sm_90+ device code: a build for older targets JIT-compiled on a Hopper GPU
    // must not pick it (its body would be the __trap of the fallback).
    // (per instantiation, asked once: the module's code does not change; both variants come from the same build)
    static const bool cluster_code = detail::has_sm90_code(grpo_loss_cluster_kernel<Logit, Policy, Kl, false>);
    const GrpoRowLayout layout = grpo_loss_row_layout<Logit>(a.vocab, vec, cluster_code ? a.max_row_split : 1,
                                                             cluster_code && a.bulk_copy);
    require(rows * layout.parts < (1ll << 31), where, ": rows = ", rows, " x ", layout.parts,
            " blocks per row exceeds the grid limit 2^31 - 1");
    if (vec)
      detail::launch_grpo_fused<Logit, Policy, Kl, true>(p, policy, kl, rows, layout, stream);
    else
      detail::launch_grpo_fused<Logit, Policy, Kl, false>(p, policy, kl, rows, layout, stream);
  } else {
    float* s_logp = stats;
    float* s_entropy = stats + rows;
    float* s_lse = stats + 2 * rows;
    const unsigned grid = static_cast<unsigned>(rows);
    const int vocab = static_cast<int>(a.vocab);
    // the forward's error reports go to the same error word
    if (rows_vectorizable<Logit>(a.logits, a.vocab))
      logprobs_kernel<Logit, true><<<grid, threads, 0, stream>>>(a.logits, vocab, a.targets, a.mask, p.scale2, s_logp,
                                                                s_entropy, s_lse, NAN, &a.result->error_word);
    else
      logprobs_kernel<Logit, false><<<grid, threads, 0, stream>>>(a.logits, vocab, a.targets, a.mask, p.scale2,
                                                                 s_logp, s_entropy, s_lse, NAN, &a.result->error_word);
    check_launch("logprobs_kernel (grpo_loss_from_logits, sequence-level)");
    grpo_seq_stat_kernel<Policy><<<static_cast<unsigned>(a.sequences), 256, 0, stream>>>(
        s_logp, a.logp_old, a.advantages, a.mask, a.seq_len, policy, seq_stat);
    check_launch("grpo_seq_stat_kernel");
    p.stats_logp = s_logp;
    p.stats_entropy = s_entropy;
    p.stats_lse = s_lse;
    p.seq_stat = seq_stat;
    if (vec)
      grpo_loss_backward_kernel<Logit, Policy, Kl, true><<<grid, threads, 0, stream>>>(p, policy, kl);
    else
      grpo_loss_backward_kernel<Logit, Policy, Kl, false><<<grid, threads, 0, stream>>>(p, policy, kl);
    check_launch("grpo_loss_backward_kernel");
  }
  grpo_loss_reduce_kernel<<<1, 1024, 0, stream>>>(partials, rows, a.result);
  check_launch("grpo_loss_reduce_kernel");
  if (a.synchronous_check) (void)read_grpo_loss_result(a.result, a.vocab, a.targets, stream);
}

}  // namespace corl::cuda

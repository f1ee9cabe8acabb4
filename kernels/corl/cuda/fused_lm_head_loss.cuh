// corl/cuda/fused_lm_head_loss.cuh — lm_head + GRPO-family loss, forward and backward, from hidden states, with
// extra memory O(chunk * V) instead of O(N * V).
//
//   logits = hidden @ W^T            hidden [N, H] bf16, W [V, H] bf16 (the lm_head), N = sequences * seq_len
//   loss, dL/dlogits                 corl::cuda::grpo_loss_from_logits (corl/cuda/grpo_loss.cuh): token log-prob under
//                                    softmax(logits / T), policy loss (+ KL, entropy bonus), aggregation weights, mask
//   dL/dhidden = dlogits @ W         [N, H] bf16
//   dL/dW      = dlogits^T @ hidden  [V, H] fp32 (accumulated over chunks by the GEMM's beta = 1)
// Design: the tokens are processed in chunks of whole sequences. For each chunk one cuBLAS GEMM writes the chunk's
// logits (bf16, fp32 accumulation) into a scratch buffer of chunk_rows x V, the fused loss kernel reads them once and
// writes dL/dlogits IN PLACE over them, and two more GEMMs consume that buffer: dhidden_chunk = dlogits @ W and
// dW += dlogits^T @ hidden_chunk. Nothing of size N x V ever exists; the chunk's buffer is reused. Flops: 6 N H V
// (three GEMMs), the loss kernel adds 2 chunk V bytes of traffic per chunk. Chunks hold whole sequences so that
// sequence-level losses (GSPO, GMPO: the sequence statistic is a mean over a sequence's tokens) run unchanged: each
// chunk's launch sees complete sequences, and the loss kernel's sequence-level path (forward, per-sequence statistic,
// backward) runs inside the chunk. The per-chunk totals (loss, metrics) are summed on the host in double in chunk
// order: deterministic. Token weights carry the global normaliser (corl/loss/aggregate.hpp), so the sum over chunks is
// exactly the full-batch loss and gradient.
// Like cuBLAS and CUB: caller-owned scratch (fused_lm_head_loss_scratch_bytes), a cuBLAS handle, the stream last. The
// call is asynchronous except for the final read-back of the totals (one synchronisation), which also turns a bad row
// (non-finite logit, target out of range, non-finite inputs) into corl::Error naming the global row.
// Measured (H200, bench/gpu/fused_lm_head_loss.cu, N 8192 = 16 x 512, H 2048, V 102400, bf16, PPO clip + K3): 15.1 to
// 15.7 ms = 657 to 683 TFLOP/s, 0.83 to 0.85 of a bf16 cuBLAS GEMM of the logits' shape measured in the same binary
// (791 TFLOP/s), with 400 MiB of scratch for chunks of 2048 rows (800 MiB for 4096, 1.6 GiB for one chunk of 8192: the
// time hardly changes). PyTorch eager unfused in the same run: 23.2 ms and 10.5 GiB of extra peak memory.
// Source: the memory-lean "chunked / fused linear cross-entropy" idea (Liger-Kernel FusedLinearCrossEntropy, Apple's
// Cut Cross-Entropy), applied to the GRPO objective of corl/loss/*.hpp.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/cuda/check.cuh"
#include "corl/cuda/grpo_loss.cuh"

namespace corl::cuda {

/// Throws corl::Error("<what>: cuBLAS status <name>") unless `status` is CUBLAS_STATUS_SUCCESS.
inline void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) fail(what, ": cuBLAS status ", cublasGetStatusName(status), " (", cublasGetStatusString(status), ")");
}

/// Inputs and outputs of fused_lm_head_grpo_loss (device pointers). Rows are tokens: row = b * seq_len + t.
struct FusedLmHeadArgs {
  const __nv_bfloat16* hidden = nullptr;  ///< [N, H] final hidden states (after the last norm)
  const __nv_bfloat16* weight = nullptr;  ///< [V, H] lm_head weight (row v produces logit v)
  index_t sequences = 0, seq_len = 0, hidden_size = 0, vocab = 0;
  const std::int32_t* targets = nullptr;  ///< [N] sampled token ids
  const std::uint8_t* mask = nullptr;     ///< [N] or nullptr
  const float* logp_old = nullptr;        ///< [N] or nullptr (on-policy)
  const float* logp_ref = nullptr;        ///< [N] or nullptr (no KL)
  const float* advantages = nullptr;      ///< [sequences]
  const float* token_weight = nullptr;    ///< [sequences] aggregation weight of one token (global normaliser inside)
  float temperature = 1.0f, kl_coef = 0.0f, entropy_coef = 0.0f;
  __nv_bfloat16* dhidden = nullptr;       ///< [N, H] output dL/dhidden
  float* dweight = nullptr;               ///< [V, H] output dL/dW (overwritten, fp32)
  float* logp_out = nullptr;              ///< [N] optional output: log-prob of each target
  float* entropy_out = nullptr;           ///< [N] optional output
  index_t chunk_sequences = 0;            ///< sequences per chunk; 0 = as many as fit kDefaultChunkRows rows (>= 1)
};

/// Default chunk size in rows: 2048 x 102400 bf16 logits = 400 MiB of scratch, GEMMs with n = 2048 still run near peak.
inline constexpr index_t kDefaultChunkRows = 2048;

/// The number of sequences per chunk the launcher will use.
inline index_t fused_lm_head_chunk_sequences(const FusedLmHeadArgs& a) {
  if (a.chunk_sequences > 0) return a.chunk_sequences < a.sequences ? a.chunk_sequences : a.sequences;
  const index_t per = a.seq_len > 0 ? kDefaultChunkRows / a.seq_len : 1;
  const index_t s = per < 1 ? 1 : per;
  return s < a.sequences ? s : (a.sequences > 0 ? a.sequences : 1);
}

namespace lm_head_detail {
struct Layout {
  index_t chunk_seqs, chunk_rows, chunks;
  std::size_t logits_bytes, loss_scratch_bytes, results_bytes, total;
};
inline Layout layout(const FusedLmHeadArgs& a) {
  Layout l{};
  l.chunk_seqs = fused_lm_head_chunk_sequences(a);
  l.chunk_rows = l.chunk_seqs * a.seq_len;
  l.chunks = (a.sequences + l.chunk_seqs - 1) / l.chunk_seqs;
  l.logits_bytes = detail::align_up(static_cast<std::size_t>(l.chunk_rows) * static_cast<std::size_t>(a.vocab) * 2);
  l.loss_scratch_bytes = detail::align_up(grpo_loss_scratch_bytes(l.chunk_rows, l.chunk_seqs));
  l.results_bytes = detail::align_up(static_cast<std::size_t>(l.chunks) * sizeof(GrpoLossResult));
  l.total = l.logits_bytes + l.loss_scratch_bytes + l.results_bytes;
  return l;
}
}  // namespace lm_head_detail

/// Scratch bytes fused_lm_head_grpo_loss needs: the chunk's logits (chunk_rows x V bf16), the loss kernel's scratch
/// and one result slot per chunk. This is all the extra device memory the call uses (besides cuBLAS's workspace).
inline std::size_t fused_lm_head_loss_scratch_bytes(const FusedLmHeadArgs& a) { return lm_head_detail::layout(a).total; }

/// Loss, metrics, dL/dhidden and dL/dW of a GRPO-family loss on top of an lm_head, chunked over whole sequences.
/// Returns the totals of the whole batch (see corl::GrpoLossTotals). Synchronises `stream` once at the end.
template <class Policy, class Kl>
  requires policy_loss_of<Policy, float> && kl_estimator_of<Kl, float>
GrpoLossTotals fused_lm_head_grpo_loss(const FusedLmHeadArgs& a, const Policy& policy, const Kl& kl,
                                       cublasHandle_t handle, void* scratch, std::size_t scratch_bytes,
                                       cudaStream_t stream = 0) {
  constexpr const char* where = "corl::cuda::fused_lm_head_grpo_loss";
  corl::detail::validate_component(policy, where);  // the loss and KL settings (corl/loss/token_term.hpp)
  corl::detail::validate_component(kl, where);
  require(a.sequences > 0 && a.seq_len > 0 && a.hidden_size > 0 && a.vocab > 0, where, ": sequences = ", a.sequences,
          ", seq_len = ", a.seq_len, ", hidden_size = ", a.hidden_size, ", vocab = ", a.vocab, ", expected all > 0");
  const index_t rows = a.sequences * a.seq_len;
  require(rows < (index_t{1} << 31) && a.vocab < (index_t{1} << 31) && a.hidden_size < (index_t{1} << 31), where,
          ": rows = ", rows, ", vocab = ", a.vocab, ", hidden_size = ", a.hidden_size, ", expected each < 2^31");
  require(a.hidden && a.weight && a.targets && a.advantages && a.token_weight && a.dhidden && a.dweight, where,
          ": hidden, weight, targets, advantages, token_weight, dhidden and dweight must be device pointers, got a null");
  require(handle != nullptr, where, ": the cuBLAS handle is null");
  const lm_head_detail::Layout l = lm_head_detail::layout(a);
  require(scratch != nullptr && scratch_bytes >= l.total, where, ": scratch_bytes = ", scratch_bytes,
          ", expected >= fused_lm_head_loss_scratch_bytes(args) = ", l.total);
  auto* base = static_cast<char*>(scratch);
  auto* logits = reinterpret_cast<__nv_bfloat16*>(base);
  void* loss_scratch = base + l.logits_bytes;
  auto* results = reinterpret_cast<GrpoLossResult*>(base + l.logits_bytes + l.loss_scratch_bytes);

  check_cublas(cublasSetStream(handle, stream), "fused_lm_head_grpo_loss: cublasSetStream");
  const int h = static_cast<int>(a.hidden_size), v = static_cast<int>(a.vocab);
  const float one = 1.0f, zero = 0.0f;
  for (index_t c = 0; c < l.chunks; ++c) {
    const index_t s0 = c * l.chunk_seqs;
    const index_t seqs = (a.sequences - s0) < l.chunk_seqs ? (a.sequences - s0) : l.chunk_seqs;
    const index_t r0 = s0 * a.seq_len, n = seqs * a.seq_len;
    const __nv_bfloat16* x = a.hidden + r0 * a.hidden_size;
    // Column-major view: logits^T [V, n] = W [V, H] * x^T [H, n]   (W stored row-major = W^T column-major, ld H).
    check_cublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, v, static_cast<int>(n), h, &one, a.weight, CUDA_R_16BF,
                              h, x, CUDA_R_16BF, h, &zero, logits, CUDA_R_16BF, v, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT),
                 "fused_lm_head_grpo_loss: logits GEMM");
    GrpoLossArgs<__nv_bfloat16> la;
    la.logits = logits;
    la.dlogits = logits;  // in place
    la.sequences = seqs;
    la.seq_len = a.seq_len;
    la.vocab = a.vocab;
    la.targets = a.targets + r0;
    la.mask = a.mask ? a.mask + r0 : nullptr;
    la.logp_old = a.logp_old ? a.logp_old + r0 : nullptr;
    la.logp_ref = a.logp_ref ? a.logp_ref + r0 : nullptr;
    la.advantages = a.advantages + s0;
    la.token_weight = a.token_weight + s0;
    la.temperature = a.temperature;
    la.kl_coef = a.kl_coef;
    la.entropy_coef = a.entropy_coef;
    la.logp_out = a.logp_out ? a.logp_out + r0 : nullptr;
    la.entropy_out = a.entropy_out ? a.entropy_out + r0 : nullptr;
    la.result = results + c;
    la.synchronous_check = false;
    grpo_loss_from_logits(la, policy, kl, loss_scratch, l.loss_scratch_bytes, stream);
    // dhidden^T [H, n] = W^T [H, V] * dlogits^T [V, n]
    check_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, h, static_cast<int>(n), v, &one, a.weight, CUDA_R_16BF,
                              h, logits, CUDA_R_16BF, v, &zero, a.dhidden + r0 * a.hidden_size, CUDA_R_16BF, h,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "fused_lm_head_grpo_loss: dhidden GEMM");
    // dW^T [H, V] (+)= x^T [H, n] * dlogits [n, V]
    check_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_T, h, v, static_cast<int>(n), &one, x, CUDA_R_16BF, h,
                              logits, CUDA_R_16BF, v, c == 0 ? &zero : &one, a.dweight, CUDA_R_32F, h,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "fused_lm_head_grpo_loss: dweight GEMM");
  }
  std::vector<GrpoLossResult> host(static_cast<std::size_t>(l.chunks));
  check_cuda(cudaMemcpyAsync(host.data(), results, host.size() * sizeof(GrpoLossResult), cudaMemcpyDeviceToHost, stream),
             "fused_lm_head_grpo_loss: reading the chunk results");
  check_cuda(cudaStreamSynchronize(stream), "fused_lm_head_grpo_loss: cudaStreamSynchronize");
  GrpoLossTotals t;
  for (index_t c = 0; c < l.chunks; ++c) {
    const GrpoLossResult& r = host[static_cast<std::size_t>(c)];
    if (r.error_word != kNoRowError) {  // re-number the chunk-local row as a global row
      const unsigned long long global_row = (r.error_word >> 2) + static_cast<unsigned long long>(c * l.chunk_rows);
      throw_row_error((global_row << 2) | (r.error_word & 3ull), where, a.vocab, a.targets);
    }
    t.loss += r.totals.loss;
    t.policy_loss += r.totals.policy_loss;
    t.kl += r.totals.kl;
    t.entropy_sum += r.totals.entropy_sum;
    t.ratio_sum += r.totals.ratio_sum;
    t.tokens += r.totals.tokens;
    t.clipped_low += r.totals.clipped_low;
    t.clipped_high += r.totals.clipped_high;
    t.dual_clipped += r.totals.dual_clipped;
  }
  return t;
}

}  // namespace corl::cuda

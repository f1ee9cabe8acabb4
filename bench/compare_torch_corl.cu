// bench/compare_torch_corl.cu — a tiny C API over corl::cuda::grpo_loss_from_logits (bf16 logits, PPO clip + K3 KL),
// built by scripts/gpu-check as a shared object and loaded by bench/compare_torch.py with ctypes, so that corl and
// PyTorch run on the same tensors in the same process. Not part of the CMake build (bench/*.cpp only).
//   nvcc -O3 -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -shared -Xcompiler -fPIC -Iinclude -Ikernels \
//        bench/compare_torch_corl.cu -o build-gpu/libcorl_compare.so
#include <cstdint>
#include <cstdio>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <corl/cuda/grpo_loss.cuh>
#include <corl/loss/kl.hpp>
#include <corl/loss/ppo_clip.hpp>

extern "C" {

/// Scratch bytes for `rows` tokens in `sequences` sequences.
std::size_t corl_grpo_scratch_bytes(long long rows, long long sequences) {
  return corl::cuda::grpo_loss_scratch_bytes(rows, sequences);
}

/// Bytes of the device result struct.
std::size_t corl_grpo_result_bytes() { return sizeof(corl::cuda::GrpoLossResult); }

/// Launches the fused loss on the legacy default stream. With sync != 0 it waits, writes the loss to *loss_out and
/// returns 0, or prints the corl::Error and returns 1. Pointers are device pointers (torch data_ptr()).
int corl_grpo_loss_bf16(const void* logits, void* dlogits, long long sequences, long long seq_len, long long vocab,
                        const std::int32_t* targets, const std::uint8_t* mask, const float* logp_old,
                        const float* logp_ref, const float* advantages, const float* token_weight, float temperature,
                        float kl_coef, float eps_low, float eps_high, void* scratch, std::size_t scratch_bytes,
                        void* result, int sync, double* loss_out) {
  try {
    corl::cuda::GrpoLossArgs<__nv_bfloat16> a;
    a.logits = static_cast<const __nv_bfloat16*>(logits);
    a.dlogits = static_cast<__nv_bfloat16*>(dlogits);
    a.sequences = sequences;
    a.seq_len = seq_len;
    a.vocab = vocab;
    a.targets = targets;
    a.mask = mask;
    a.logp_old = logp_old;
    a.logp_ref = logp_ref;
    a.advantages = advantages;
    a.token_weight = token_weight;
    a.temperature = temperature;
    a.kl_coef = kl_coef;
    a.result = static_cast<corl::cuda::GrpoLossResult*>(result);
    a.synchronous_check = false;
    corl::cuda::grpo_loss_from_logits(a, corl::PpoClip{eps_low, eps_high}, corl::K3{}, scratch, scratch_bytes);
    if (sync) {
      const corl::GrpoLossTotals t = corl::cuda::read_grpo_loss_result(a.result, vocab, targets, 0);
      if (loss_out) *loss_out = t.loss;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "corl_grpo_loss_bf16: %s\n", e.what());
    return 1;
  }
}

}  // extern "C"

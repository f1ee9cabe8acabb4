// Fused lm_head + GRPO loss (corl/cuda/fused_lm_head_loss.cuh): N = 8192 tokens (16 x 512), H = 2048, V = 102400,
// bf16, PPO clip + K3 KL, timed with CUDA events. Counters: TFLOPs (6 N H V flops / time), gemm_TFLOPs (a bf16 cuBLAS
// GEMM of the logits' shape, N x V x H, measured in this binary at start), x_gemm_rate (fraction of that rate) and
// extra_MiB (the scratch the call needs: chunk logits + loss scratch; the peak extra device memory besides cuBLAS's
// workspace). Variants: chunks of 2048 and 4096 rows, and one chunk of all 8192 rows (the unfused memory footprint).
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include <corl/core/rng.hpp>
#include <corl/cuda/check.cuh>
#include <corl/cuda/fused_lm_head_loss.cuh>
#include <corl/loss/kl.hpp>
#include <corl/loss/ppo_clip.hpp>

#include "bench_main.cuh"

namespace {

constexpr std::int64_t kSeqs = 16, kSeqLen = 512, kTokens = kSeqs * kSeqLen, kHidden = 2048, kVocab = 102400;
double g_gemm_flops_per_s = 0.0;
cublasHandle_t g_handle = nullptr;

__global__ void fill_bf16(__nv_bfloat16* out, std::int64_t n, std::uint64_t seed, float scale) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const corl::Philox4x32 w = corl::random_words(seed, 0, static_cast<std::uint32_t>(i >> 32), static_cast<std::uint32_t>(i));
    const float v = scale * (corl::u32_to_open01f(w.v[0]) + corl::u32_to_open01f(w.v[1]) + corl::u32_to_open01f(w.v[2]) - 1.5f);
    out[i] = __float2bfloat16(v);
  }
}

__global__ void fill_inputs(std::int32_t* targets, float* logp_old, float* logp_ref, float* adv, float* tw) {
  const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (i < kTokens) {
    targets[i] = static_cast<std::int32_t>(corl::random_words(3, 0, 0, static_cast<std::uint32_t>(i)).v[0] % kVocab);
    logp_old[i] = -11.5f;
    logp_ref[i] = -11.6f;
  }
  if (i < kSeqs) {
    adv[i] = (i % 2 == 0) ? 1.0f : -1.0f;
    tw[i] = 1.0f / static_cast<float>(kTokens);
  }
}

template <class F>
float time_ms(F&& f, int reps) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  for (int i = 0; i < reps; ++i) f();
  cudaEventRecord(b);
  corl::cuda::check_cuda(cudaEventSynchronize(b), "timing");
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / static_cast<float>(reps);
}

struct Buffers {
  __nv_bfloat16 *x = nullptr, *w = nullptr, *dx = nullptr;
  float *dw = nullptr, *old = nullptr, *ref = nullptr, *adv = nullptr, *tw = nullptr;
  std::int32_t* targets = nullptr;
  Buffers() {
    using corl::cuda::check_cuda;
    check_cuda(cudaMalloc(&x, kTokens * kHidden * 2), "cudaMalloc x");
    check_cuda(cudaMalloc(&w, kVocab * kHidden * 2), "cudaMalloc w");
    check_cuda(cudaMalloc(&dx, kTokens * kHidden * 2), "cudaMalloc dx");
    check_cuda(cudaMalloc(&dw, kVocab * kHidden * 4), "cudaMalloc dw");
    check_cuda(cudaMalloc(&old, kTokens * 4), "cudaMalloc");
    check_cuda(cudaMalloc(&ref, kTokens * 4), "cudaMalloc");
    check_cuda(cudaMalloc(&targets, kTokens * 4), "cudaMalloc");
    check_cuda(cudaMalloc(&adv, kSeqs * 4), "cudaMalloc");
    check_cuda(cudaMalloc(&tw, kSeqs * 4), "cudaMalloc");
    fill_bf16<<<2048, 256>>>(x, kTokens * kHidden, 1, 2.0f);
    fill_bf16<<<2048, 256>>>(w, kVocab * kHidden, 2, 0.05f);
    fill_inputs<<<(kTokens + 255) / 256, 256>>>(targets, old, ref, adv, tw);
    corl::cuda::check_launch("fill");
  }
  ~Buffers() {
    cudaFree(x);
    cudaFree(w);
    cudaFree(dx);
    cudaFree(dw);
    cudaFree(old);
    cudaFree(ref);
    cudaFree(targets);
    cudaFree(adv);
    cudaFree(tw);
  }
};

double measure_gemm_rate(const Buffers& b) {
  // logits^T [V, N] = W [V, H] x^T [H, N] into a scratch of N x V bf16 (the biggest of the three GEMM shapes).
  __nv_bfloat16* out = nullptr;
  corl::cuda::check_cuda(cudaMalloc(&out, kTokens * kVocab * 2), "cudaMalloc gemm out");
  const float one = 1.0f, zero = 0.0f;
  auto gemm = [&] {
    corl::cuda::check_cublas(cublasGemmEx(g_handle, CUBLAS_OP_T, CUBLAS_OP_N, kVocab, kTokens, kHidden, &one, b.w,
                                          CUDA_R_16BF, kHidden, b.x, CUDA_R_16BF, kHidden, &zero, out, CUDA_R_16BF,
                                          kVocab, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                             "gemm");
  };
  gemm();
  const float ms = time_ms(gemm, 10);
  cudaFree(out);
  return 2.0 * kTokens * kHidden * kVocab / (static_cast<double>(ms) * 1e-3);
}

void bench_fused(benchmark::State& state) {
  static Buffers* buffers = new Buffers();  // shared by the variants, released at exit
  const Buffers& b = *buffers;
  corl::cuda::FusedLmHeadArgs a;
  a.hidden = b.x;
  a.weight = b.w;
  a.sequences = kSeqs;
  a.seq_len = kSeqLen;
  a.hidden_size = kHidden;
  a.vocab = kVocab;
  a.targets = b.targets;
  a.logp_old = b.old;
  a.logp_ref = b.ref;
  a.advantages = b.adv;
  a.token_weight = b.tw;
  a.kl_coef = 0.02f;
  a.dhidden = b.dx;
  a.dweight = b.dw;
  a.chunk_sequences = state.range(0) / kSeqLen;
  const std::size_t bytes = corl::cuda::fused_lm_head_loss_scratch_bytes(a);
  void* scratch = nullptr;
  corl::cuda::check_cuda(cudaMalloc(&scratch, bytes), "cudaMalloc scratch");
  const corl::PpoClip policy{};
  const corl::K3 kl{};
  (void)corl::cuda::fused_lm_head_grpo_loss(a, policy, kl, g_handle, scratch, bytes);  // warm-up
  for (auto _ : state) {
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    cudaEventRecord(start);
    (void)corl::cuda::fused_lm_head_grpo_loss(a, policy, kl, g_handle, scratch, bytes);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  cudaFree(scratch);
  const double flops = 6.0 * kTokens * kHidden * kVocab;
  state.counters["TFLOPs"] = benchmark::Counter(flops * 1e-12 * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
  state.counters["gemm_TFLOPs"] = g_gemm_flops_per_s * 1e-12;
  state.counters["x_gemm_rate"] = benchmark::Counter(flops / g_gemm_flops_per_s * static_cast<double>(state.iterations()),
                                                     benchmark::Counter::kIsRate);
  state.counters["extra_MiB"] = static_cast<double>(bytes) / (1024.0 * 1024.0);
}

}  // namespace

int main(int argc, char** argv) {
  if (corl_bench::skip_without_device()) return 0;
  corl::cuda::check_cublas(cublasCreate(&g_handle), "cublasCreate");
  {
    Buffers b;
    g_gemm_flops_per_s = measure_gemm_rate(b);
  }
  std::printf("bf16 cuBLAS GEMM (N %lld x V %lld x H %lld): %.1f TFLOP/s\n", static_cast<long long>(kTokens),
              static_cast<long long>(kVocab), static_cast<long long>(kHidden), g_gemm_flops_per_s * 1e-12);
  benchmark::RegisterBenchmark("fused_lm_head_grpo/N8192_H2048_V102400_bf16/chunk_rows", bench_fused)
      ->Arg(2048)->Arg(4096)->Arg(8192)->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  cublasDestroy(g_handle);
  return 0;
}

// Batched R_TIM on the GPU at CoRL shapes: 16 prompts x G = 8 samples = 128 (stage 1) and 16 x 16 = 256 (stage 2), 576
// image tokens, 64 text tokens, hidden size 2048 (Janus-Pro-1B); float and bf16 hidden states. No hardware floor is
// claimed (the kernel is a small fp32 batched GEMM with maxima): counters give FLOP/s (2 I K D per sample) and the
// bytes/s of reading the hidden states once. Manual time from CUDA events, scratch clear included.
#include <benchmark/benchmark.h>

#include <vector>

#include <corl/cuda/text_image_matching.cuh>

#include "bench_main.cuh"

namespace {

template <class T>
void bench_tim(benchmark::State& state) {
  const auto samples = static_cast<corl::index_t>(state.range(0));
  const corl::index_t rows = 576, text_rows = 64, dim = 2048;
  std::vector<corl::index_t> io(static_cast<std::size_t>(samples + 1)), to(io.size());
  for (corl::index_t b = 0; b <= samples; ++b) {
    io[static_cast<std::size_t>(b)] = b * rows;
    to[static_cast<std::size_t>(b)] = b * text_rows;
  }
  const corl::cuda::TimShape shape{samples, dim, samples * rows, samples * text_rows, rows};
  T *image = nullptr, *text = nullptr;
  corl::index_t *d_io = nullptr, *d_to = nullptr;
  float* rewards = nullptr;
  void* scratch = nullptr;
  const std::size_t scratch_bytes = corl::cuda::text_image_matching_scratch_bytes(shape);
  corl::cuda::check_cuda(cudaMalloc(&image, sizeof(T) * static_cast<std::size_t>(shape.total_image_rows * dim)), "m");
  corl::cuda::check_cuda(cudaMalloc(&text, sizeof(T) * static_cast<std::size_t>(shape.total_text_rows * dim)), "m");
  corl::cuda::check_cuda(cudaMemset(image, 0x3c, sizeof(T) * static_cast<std::size_t>(shape.total_image_rows * dim)),
                         "init");
  corl::cuda::check_cuda(cudaMemset(text, 0x3d, sizeof(T) * static_cast<std::size_t>(shape.total_text_rows * dim)),
                         "init");
  corl::cuda::check_cuda(cudaMalloc(&d_io, sizeof(corl::index_t) * io.size()), "m");
  corl::cuda::check_cuda(cudaMalloc(&d_to, sizeof(corl::index_t) * to.size()), "m");
  corl::cuda::check_cuda(cudaMemcpy(d_io, io.data(), sizeof(corl::index_t) * io.size(), cudaMemcpyHostToDevice), "u");
  corl::cuda::check_cuda(cudaMemcpy(d_to, to.data(), sizeof(corl::index_t) * to.size(), cudaMemcpyHostToDevice), "u");
  corl::cuda::check_cuda(cudaMalloc(&rewards, sizeof(float) * static_cast<std::size_t>(samples)), "m");
  corl::cuda::check_cuda(cudaMalloc(&scratch, scratch_bytes), "m");
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (int w = 0; w < 3; ++w) {
    corl::cuda::text_image_matching<T>(image, d_io, text, d_to, shape, rewards, scratch, scratch_bytes);
  }
  for (auto _ : state) {
    cudaEventRecord(start);
    corl::cuda::text_image_matching<T>(image, d_io, text, d_to, shape, rewards, scratch, scratch_bytes);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  const double it = static_cast<double>(state.iterations());
  const double flops = 2.0 * static_cast<double>(samples * rows * text_rows * dim);
  const double bytes = static_cast<double>((shape.total_image_rows + shape.total_text_rows) * dim) * sizeof(T);
  state.counters["flop_per_second"] = benchmark::Counter(flops * it, benchmark::Counter::kIsRate);
  state.counters["bytes_per_second"] = benchmark::Counter(bytes * it, benchmark::Counter::kIsRate);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(image);
  cudaFree(text);
  cudaFree(d_io);
  cudaFree(d_to);
  cudaFree(rewards);
  cudaFree(scratch);
}

void tim_f32(benchmark::State& s) { bench_tim<float>(s); }
void tim_bf16(benchmark::State& s) { bench_tim<__nv_bfloat16>(s); }

}  // namespace

BENCHMARK(tim_f32)->Arg(128)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.3);
BENCHMARK(tim_bf16)->Arg(128)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.3);

int main(int argc, char** argv) {
  if (corl_bench::skip_without_device()) return 0;
  return corl_bench::run_benchmarks(argc, argv);
}

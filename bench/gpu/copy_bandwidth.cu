// bench/gpu/copy_bandwidth.cu — device-to-device copy bandwidth (bytes read + written per second): the floor that the
// memory-bound kernels (grpo_loss, logprobs, sampling, adamw) are compared with. CUDA-event timing of each copy.
#include <benchmark/benchmark.h>

#include <cuda_runtime.h>

#include <corl/cuda/check.cuh>

#include "bench_main.cuh"

namespace {

void BM_CopyD2D(benchmark::State& state) {
  using corl::cuda::check_cuda;
  const auto bytes = static_cast<std::size_t>(state.range(0)) << 20;
  void* a = nullptr;
  void* b = nullptr;
  check_cuda(cudaMalloc(&a, bytes), "cudaMalloc");
  check_cuda(cudaMalloc(&b, bytes), "cudaMalloc");
  check_cuda(cudaMemset(a, 1, bytes), "cudaMemset");
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  check_cuda(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "warm-up copy");
  for (auto _ : state) {
    check_cuda(cudaEventRecord(start), "record");
    check_cuda(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice), "copy");
    check_cuda(cudaEventRecord(stop), "record");
    check_cuda(cudaEventSynchronize(stop), "sync");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "elapsed");
    state.SetIterationTime(ms * 1e-3);
  }
  state.SetBytesProcessed(static_cast<long long>(state.iterations()) * 2 * static_cast<long long>(bytes));
  state.counters["MiB_each_way"] = static_cast<double>(state.range(0));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
}

}  // namespace

BENCHMARK(BM_CopyD2D)->Arg(64)->Arg(512)->Arg(2048)->UseManualTime()->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  if (corl_bench::skip_without_device()) return 0;
  return corl_bench::run_benchmarks(argc, argv);
}

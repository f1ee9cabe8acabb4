// bench/gpu/grpo_loss.cu — fused GRPO loss forward + backward from bf16 logits (corl/cuda/grpo_loss.cuh) against its
// memory floor, 2 N V bytes / copy bandwidth, with the copy bandwidth measured in this same process at startup.
// Problems (DESIGN.md section 5): B32 T512 V102400 (text, floor 1.59 ms at 4.23 TB/s) and B32 T576 V16384 (image
// tokens, 0.29 ms). Also: the sequence-level path (GSPO, three launches: floor 3 N V bytes) and the forward-only
// log-probs (floor N V bytes). CUDA-event timing of 5 back-to-back launches per iteration (UseManualTime). Counters: bytes_per_second (the bytes
// the floor counts), floor_ms, floor_fraction = floor_ms / measured ms (target >= 0.8), copy_TBps.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <corl/cuda/check.cuh>
#include <corl/cuda/grpo_loss.cuh>
#include <corl/cuda/logprobs.cuh>
#include <corl/loss/gspo.hpp>
#include <corl/loss/kl.hpp>
#include <corl/loss/ppo_clip.hpp>

#include "copy_floor.cuh"

#include "bench_main.cuh"

namespace {

using corl::cuda::check_cuda;

double g_copy_bytes_per_second = 0;  // measured in main() before the benchmarks run

__device__ std::uint32_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<std::uint32_t>(x);
}

__global__ void fill_logits(__nv_bfloat16* x, long long n) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    x[i] = __float2bfloat16(static_cast<float>(mix(static_cast<std::uint64_t>(i)) >> 8) * (8.0f / 16777216.0f) - 4.0f);
}

struct Problem {
  long long B, T, V, rows;
  __nv_bfloat16* logits = nullptr;
  __nv_bfloat16* dlogits = nullptr;
  std::int32_t* targets = nullptr;
  std::uint8_t* mask = nullptr;
  float *old = nullptr, *ref = nullptr, *adv = nullptr, *weight = nullptr, *logp = nullptr;
  corl::cuda::GrpoLossResult* result = nullptr;
  void* scratch = nullptr;
  std::size_t scratch_bytes = 0;

  Problem(long long b, long long t, long long v) : B(b), T(t), V(v), rows(b * t) {
    const auto n = static_cast<std::size_t>(rows * V);
    check_cuda(cudaMalloc(&logits, n * sizeof(__nv_bfloat16)), "bench cudaMalloc logits");
    check_cuda(cudaMalloc(&dlogits, n * sizeof(__nv_bfloat16)), "bench cudaMalloc dlogits");
    fill_logits<<<1024, 256>>>(logits, static_cast<long long>(n));
    check_cuda(cudaGetLastError(), "fill_logits");
    std::vector<std::int32_t> h_targets(static_cast<std::size_t>(rows));
    std::vector<std::uint8_t> h_mask(static_cast<std::size_t>(rows), 1);
    std::vector<float> h_old(static_cast<std::size_t>(rows)), h_ref(static_cast<std::size_t>(rows));
    for (long long i = 0; i < rows; ++i) {
      h_targets[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 7919) % V);
      h_old[static_cast<std::size_t>(i)] = -11.0f + 0.001f * static_cast<float>(i % 97);
      h_ref[static_cast<std::size_t>(i)] = -11.0f - 0.002f * static_cast<float>(i % 89);
      // no padding: every row is read and written, so the 2 N V bytes of the floor are really moved
    }
    std::vector<float> h_adv(static_cast<std::size_t>(B)), h_w(static_cast<std::size_t>(B), 1.0f / static_cast<float>(rows));
    for (long long b2 = 0; b2 < B; ++b2) h_adv[static_cast<std::size_t>(b2)] = (b2 % 3 == 0) ? 1.0f : -0.5f;
    auto up = [](auto*& dst, const auto& host, const char* what) {
      check_cuda(cudaMalloc(&dst, host.size() * sizeof(host[0])), what);
      check_cuda(cudaMemcpy(dst, host.data(), host.size() * sizeof(host[0]), cudaMemcpyHostToDevice), what);
    };
    up(targets, h_targets, "bench targets");
    up(mask, h_mask, "bench mask");
    up(old, h_old, "bench old");
    up(ref, h_ref, "bench ref");
    up(adv, h_adv, "bench adv");
    up(weight, h_w, "bench weight");
    check_cuda(cudaMalloc(&logp, static_cast<std::size_t>(rows) * sizeof(float)), "bench logp");
    check_cuda(cudaMalloc(&result, sizeof(corl::cuda::GrpoLossResult)), "bench result");
    scratch_bytes = corl::cuda::grpo_loss_scratch_bytes(rows, B);
    check_cuda(cudaMalloc(&scratch, scratch_bytes), "bench scratch");
  }
  Problem(const Problem&) = delete;
  Problem& operator=(const Problem&) = delete;
  ~Problem() {
    for (void* p : {static_cast<void*>(logits), static_cast<void*>(dlogits), static_cast<void*>(targets),
                    static_cast<void*>(mask), static_cast<void*>(old), static_cast<void*>(ref),
                    static_cast<void*>(adv), static_cast<void*>(weight), static_cast<void*>(logp),
                    static_cast<void*>(result), scratch})
      cudaFree(p);
  }
  corl::cuda::GrpoLossArgs<__nv_bfloat16> args() const {
    corl::cuda::GrpoLossArgs<__nv_bfloat16> a;
    a.logits = logits;
    a.dlogits = dlogits;
    a.sequences = B;
    a.seq_len = T;
    a.vocab = V;
    a.targets = targets;
    a.mask = mask;
    a.logp_old = old;
    a.logp_ref = ref;
    a.advantages = adv;
    a.token_weight = weight;
    a.kl_coef = 0.04f;
    a.logp_out = logp;
    a.result = result;
    a.synchronous_check = false;
    return a;
  }
};

template <class Launch>
void time_loop(benchmark::State& state, const Problem& p, double floor_bytes, Launch&& launch) {
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  launch();  // warm-up (and the smem attribute calls)
  check_cuda(cudaDeviceSynchronize(), "warm-up");
  // kInner back-to-back launches per timed iteration: the host's enqueue cost of one launch (memset, attribute calls,
  // three launches: ~10-20 us) overlaps the previous launch's GPU work instead of showing up as an idle gap.
  constexpr int kInner = 5;
  for (auto _ : state) {
    check_cuda(cudaEventRecord(start), "record");
    for (int k = 0; k < kInner; ++k) launch();
    check_cuda(cudaEventRecord(stop), "record");
    check_cuda(cudaEventSynchronize(stop), "sync");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "elapsed");
    state.SetIterationTime(ms * 1e-3 / kInner);
  }
  (void)corl::cuda::read_grpo_loss_result(p.result, p.V, p.targets, 0);  // throws if any row was rejected
  const double floor_s = floor_bytes / g_copy_bytes_per_second;
  state.counters["floor_ms"] = floor_s * 1e3;
  state.counters["floor_fraction"] =
      benchmark::Counter(floor_s * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["bytes_per_second"] =
      benchmark::Counter(floor_bytes * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["copy_TBps"] = g_copy_bytes_per_second * 1e-12;
  state.counters["tokens"] = static_cast<double>(p.rows);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

// PPO clip (0.2 / 0.28) + K3 on the state's problem, after `tweak(args, problem)` adjusts the arguments; 2 N V bytes.
template <class Tweak>
void time_fused_ppo(benchmark::State& state, Tweak&& tweak) {
  Problem p(state.range(0), state.range(1), state.range(2));
  auto a = p.args();
  tweak(a, p);
  const double bytes = 2.0 * static_cast<double>(p.rows) * static_cast<double>(p.V) * 2.0;  // read + write, bf16
  time_loop(state, p, bytes, [&] {
    corl::cuda::grpo_loss_from_logits(a, corl::PpoClip{0.2, 0.28}, corl::K3{}, p.scratch, p.scratch_bytes);
  });
}

using LossArgs = corl::cuda::GrpoLossArgs<__nv_bfloat16>;

void BM_GrpoLossFusedBf16(benchmark::State& state) {
  time_fused_ppo(state, [](LossArgs&, const Problem&) {});
}

// Other row layouts, timed in the same run as the default (which splits a V = 102400 bf16 row over a cluster of four
// blocks of 256 threads, four blocks per SM): GrpoLossArgs::max_row_split = range(3), 1 = one block per row (the
// layout before clusters), 2 = two blocks of 512 threads, two per SM.
void BM_GrpoLossFusedBf16MaxSplit(benchmark::State& state) {
  time_fused_ppo(state, [&](LossArgs& a, const Problem&) { a.max_row_split = static_cast<int>(state.range(3)); });
}

// The bulk-copy pass 1 (GrpoLossArgs::bulk_copy, sm_90), same layout otherwise, timed in the same run.
void BM_GrpoLossFusedBf16Bulk(benchmark::State& state) {
  time_fused_ppo(state, [](LossArgs& a, const Problem&) { a.bulk_copy = true; });
}

// The gradient overwrites the logits; values drift but stay finite (|grad| <= 1).
void BM_GrpoLossFusedBf16InPlace(benchmark::State& state) {
  time_fused_ppo(state, [](LossArgs& a, const Problem& p) { a.dlogits = p.logits; });
}

void BM_GrpoLossGspoBf16(benchmark::State& state) {
  Problem p(state.range(0), state.range(1), state.range(2));
  const auto a = p.args();
  const double bytes = 3.0 * static_cast<double>(p.rows) * static_cast<double>(p.V) * 2.0;  // read, read + write
  time_loop(state, p, bytes, [&] {
    corl::cuda::grpo_loss_from_logits(a, corl::Gspo{0.2, 0.2}, corl::K3{}, p.scratch, p.scratch_bytes);
  });
}

void BM_LogprobsForwardBf16(benchmark::State& state) {
  Problem p(state.range(0), state.range(1), state.range(2));
  corl::cuda::LogprobsArgs<__nv_bfloat16> a;
  a.logits = p.logits;
  a.rows = p.rows;
  a.vocab = p.V;
  a.targets = p.targets;
  a.logp = p.logp;
  a.synchronous_check = false;
  const double bytes = static_cast<double>(p.rows) * static_cast<double>(p.V) * 2.0;  // one read
  check_cuda(cudaMemsetAsync(&p.result->error_word, 0xff, 8), "memset");
  time_loop(state, p, bytes, [&] { corl::cuda::logprobs_from_logits(a, p.scratch, p.scratch_bytes); });
}

}  // namespace

BENCHMARK(BM_GrpoLossFusedBf16)
    ->Args({32, 512, 102400})
    ->Args({32, 576, 16384})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GrpoLossFusedBf16MaxSplit)
    ->Args({32, 512, 102400, 1})
    ->Args({32, 512, 102400, 2})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GrpoLossFusedBf16Bulk)
    ->Args({32, 512, 102400})
    ->Args({32, 576, 16384})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GrpoLossFusedBf16InPlace)->Args({32, 512, 102400})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GrpoLossGspoBf16)
    ->Args({32, 512, 102400})
    ->Args({32, 576, 16384})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LogprobsForwardBf16)->Args({32, 512, 102400})->UseManualTime()->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  if (corl_bench::skip_without_device()) return 0;
  const corl_bench::CopyFloor floor = corl_bench::measure_copy_floor();
  g_copy_bytes_per_second = floor.best_bytes_per_second;
  std::printf("copy floor: best %.3f TB/s, median %.3f TB/s (read + write, %zu MiB each way)\n",
              floor.best_bytes_per_second * 1e-12, floor.median_bytes_per_second * 1e-12, floor.bytes >> 20);
  benchmark::AddCustomContext("copy_TBps_best", std::to_string(floor.best_bytes_per_second * 1e-12));
  benchmark::AddCustomContext("copy_TBps_median", std::to_string(floor.median_bytes_per_second * 1e-12));
  return corl_bench::run_benchmarks(argc, argv);
}

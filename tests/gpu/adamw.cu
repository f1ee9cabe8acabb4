// Fused multi-tensor AdamW vs the CPU reference (corl/optim/adamw.hpp): tensors of awkward sizes (1, 3, chunk - 1,
// chunk, chunk + 1, ~100k), one deliberately misaligned (scalar path), bf16 copies on some; three steps with random
// gradients (recorded seeds); outputs poisoned before the first step. Tolerance: p, m, v within 2 ulp of the CPU
// (the device uses non-fused _rn intrinsics, so on a host that does not contract FMAs they are identical — the test
// prints how many differ); bf16 copy = the GPU's own fp32 result rounded to nearest even, exactly. Two runs from the
// same start give identical bits.
#include "gpu_test_main.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <corl/core/half_types.hpp>
#include <corl/core/rng.hpp>
#include <corl/cuda/adamw.cuh>
#include <corl/optim/adamw.hpp>

namespace {

std::int64_t ulp_distance(float a, float b) {
  std::int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if (ia < 0) ia = std::int32_t(0x80000000u) - ia;
  if (ib < 0) ib = std::int32_t(0x80000000u) - ib;
  return std::llabs(static_cast<long long>(ia) - static_cast<long long>(ib));
}

struct Run {
  std::vector<std::vector<float>> p, m, v;
  std::vector<std::vector<std::uint16_t>> bf16;
};

const std::vector<corl::index_t> kSizes{1, 3, corl::cuda::kAdamWChunk - 1, corl::cuda::kAdamWChunk,
                                        corl::cuda::kAdamWChunk + 1, 100003, 7, 65536};
constexpr std::size_t kMisaligned = 5;  // tensor 5 starts one float past an aligned address
const corl::AdamWConfig kConfig{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.05};

float init_value(std::size_t k, std::size_t i) { return static_cast<float>(corl::uniform01<double>(5, k, 0, i) - 0.5); }
float grad_value(int step, std::size_t k, std::size_t i) {
  return static_cast<float>((corl::uniform01<double>(6, static_cast<std::uint64_t>(step), k, i) - 0.5) * 0.2);
}

Run run_gpu() {
  const std::size_t nt = kSizes.size();
  std::vector<float*> base(nt), grad(nt), m(nt), v(nt);
  std::vector<__nv_bfloat16*> bf(nt, nullptr);
  std::vector<corl::cuda::AdamWTensor> tensors(nt);
  for (std::size_t k = 0; k < nt; ++k) {
    const auto n = static_cast<std::size_t>(kSizes[k]);
    const std::size_t shift = k == kMisaligned ? 1 : 0;
    corl::cuda::check_cuda(cudaMalloc(&base[k], (n + shift) * 4), "malloc p");
    corl::cuda::check_cuda(cudaMalloc(&grad[k], n * 4), "malloc g");
    corl::cuda::check_cuda(cudaMalloc(&m[k], n * 4), "malloc m");
    corl::cuda::check_cuda(cudaMalloc(&v[k], n * 4), "malloc v");
    if (k % 2 == 0) corl::cuda::check_cuda(cudaMalloc(&bf[k], n * 2), "malloc bf16");
    std::vector<float> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = init_value(k, i);
    corl::cuda::check_cuda(cudaMemcpy(base[k] + shift, h.data(), n * 4, cudaMemcpyHostToDevice), "init p");
    corl::cuda::check_cuda(cudaMemset(m[k], 0, n * 4), "zero m");
    corl::cuda::check_cuda(cudaMemset(v[k], 0, n * 4), "zero v");
    if (bf[k] != nullptr) corl::cuda::check_cuda(cudaMemset(bf[k], 0xff, n * 2), "poison bf16");
    tensors[k] = corl::cuda::AdamWTensor{base[k] + shift, grad[k], m[k], v[k], bf[k], kSizes[k], 0};
  }
  const corl::cuda::AdamWPlan plan(tensors);
  CHECK(plan.tensors()[kMisaligned].vectorized == 0);
  CHECK(plan.tensors()[0].vectorized == 1);
  for (int step = 1; step <= 3; ++step) {
    for (std::size_t k = 0; k < nt; ++k) {
      const auto n = static_cast<std::size_t>(kSizes[k]);
      std::vector<float> g(n);
      for (std::size_t i = 0; i < n; ++i) g[i] = grad_value(step, k, i);
      corl::cuda::check_cuda(cudaMemcpy(grad[k], g.data(), n * 4, cudaMemcpyHostToDevice), "upload g");
    }
    plan.step(kConfig, step);
  }
  corl::cuda::check_cuda(cudaDeviceSynchronize(), "sync");
  Run out;
  for (std::size_t k = 0; k < nt; ++k) {
    const auto n = static_cast<std::size_t>(kSizes[k]);
    const std::size_t shift = k == kMisaligned ? 1 : 0;
    std::vector<float> hp(n), hm(n), hv(n);
    std::vector<std::uint16_t> hb;
    corl::cuda::check_cuda(cudaMemcpy(hp.data(), base[k] + shift, n * 4, cudaMemcpyDeviceToHost), "p");
    corl::cuda::check_cuda(cudaMemcpy(hm.data(), m[k], n * 4, cudaMemcpyDeviceToHost), "m");
    corl::cuda::check_cuda(cudaMemcpy(hv.data(), v[k], n * 4, cudaMemcpyDeviceToHost), "v");
    if (bf[k] != nullptr) {
      hb.resize(n);
      corl::cuda::check_cuda(cudaMemcpy(hb.data(), bf[k], n * 2, cudaMemcpyDeviceToHost), "bf16");
    }
    out.p.push_back(hp);
    out.m.push_back(hm);
    out.v.push_back(hv);
    out.bf16.push_back(hb);
    cudaFree(base[k]);
    cudaFree(grad[k]);
    cudaFree(m[k]);
    cudaFree(v[k]);
    cudaFree(bf[k]);
  }
  return out;
}

}  // namespace

TEST_CASE("multi-tensor AdamW matches the CPU reference and is deterministic") {
  const Run gpu = run_gpu();
  std::int64_t max_ulp = 0, differing = 0, total = 0;
  for (std::size_t k = 0; k < kSizes.size(); ++k) {
    const auto n = static_cast<std::size_t>(kSizes[k]);
    std::vector<float> p(n), m(n, 0.f), v(n, 0.f), g(n);
    for (std::size_t i = 0; i < n; ++i) p[i] = init_value(k, i);
    for (int step = 1; step <= 3; ++step) {
      for (std::size_t i = 0; i < n; ++i) g[i] = grad_value(step, k, i);
      corl::adamw_update<float>(p, g, m, v, corl::adamw_scalars<float>(kConfig, step));
    }
    for (std::size_t i = 0; i < n; ++i) {
      const std::int64_t d = std::max({ulp_distance(p[i], gpu.p[k][i]), ulp_distance(m[i], gpu.m[k][i]),
                                       ulp_distance(v[i], gpu.v[k][i])});
      max_ulp = std::max(max_ulp, d);
      differing += d > 0 ? 1 : 0;
      ++total;
      if (!gpu.bf16[k].empty()) {
        const corl::bfloat16 expect(gpu.p[k][i]);
        if (gpu.bf16[k][i] != expect.bits) {
          FAIL_CHECK("tensor " << k << " index " << i << ": bf16 copy " << gpu.bf16[k][i] << " expected "
                               << expect.bits);
        }
      }
    }
  }
  MESSAGE("AdamW GPU vs CPU: max ulp difference " << max_ulp << ", " << differing << " of " << total
                                                  << " elements not bit-identical");
  CHECK(max_ulp <= 2);
  const Run again = run_gpu();
  for (std::size_t k = 0; k < kSizes.size(); ++k) {
    CHECK(again.p[k] == gpu.p[k]);
    CHECK(again.m[k] == gpu.m[k]);
    CHECK(again.v[k] == gpu.v[k]);
    CHECK(again.bf16[k] == gpu.bf16[k]);
  }
}

TEST_CASE("host-side errors") {
  float* d = nullptr;
  corl::cuda::check_cuda(cudaMalloc(&d, 16), "malloc");
  CHECK_THROWS_WITH_AS(corl::cuda::AdamWPlan({corl::cuda::AdamWTensor{d, nullptr, d, d, nullptr, 4, 0}}),
                       doctest::Contains("corl::cuda::AdamWPlan: tensors[0] has a null param / grad"), corl::Error);
  CHECK_THROWS_WITH_AS(corl::cuda::AdamWPlan({corl::cuda::AdamWTensor{d, d, d, d, nullptr, 0, 0}}),
                       "corl::cuda::AdamWPlan: tensors[0].size = 0, expected >= 1", corl::Error);
  CHECK_THROWS_WITH_AS(corl::cuda::AdamWPlan(std::vector<corl::cuda::AdamWTensor>{}),
                       "corl::cuda::AdamWPlan: tensors is empty, expected at least one tensor", corl::Error);
  const corl::cuda::AdamWPlan plan({corl::cuda::AdamWTensor{d, d, d, d, nullptr, 4, 0}});
  CHECK_THROWS_WITH_AS(plan.step(kConfig, 0), "adamw_scalars: step = 0, expected >= 1 (the first update is step 1)",
                       corl::Error);
  cudaFree(d);
}

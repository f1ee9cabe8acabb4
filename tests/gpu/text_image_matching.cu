// GPU R_TIM vs the CPU reference (corl/reward/text_image_matching.hpp): random batches (recorded seeds) with 1..100
// image rows and 1..70 text rows per sample, D from 1 to 200 (tile edges 31/32/33 included), zero vectors, float and
// bf16 inputs (the CPU gets the bf16 values widened exactly), rewards poisoned with NaN before each run; one CoRL-sized
// case (16 samples, 576 image rows, 40 text rows, D = 2048). Tolerance: |gpu - cpu| <= 2e-5 (fp32 accumulation vs
// double). Two runs give identical bits. A sample with more image rows than max_image_rows sets the status word.
#include "gpu_test_main.cuh"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <corl/core/half_types.hpp>
#include <corl/core/rng.hpp>
#include <corl/cuda/text_image_matching.cuh>
#include <corl/reward/text_image_matching.hpp>

namespace {

template <class T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  corl::cuda::check_cuda(cudaMalloc(&d, sizeof(T) * (h.empty() ? 1 : h.size())), "cudaMalloc");
  corl::cuda::check_cuda(cudaMemcpy(d, h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice), "upload");
  return d;
}

struct Problem {
  std::vector<float> image, text;
  std::vector<corl::index_t> io{0}, to{0};
  corl::index_t dim = 0, max_rows = 0;
};

Problem make_problem(std::uint64_t seed, corl::index_t samples, corl::index_t max_i, corl::index_t max_k,
                     corl::index_t dim) {
  corl::CounterRng rng(seed, 3);
  Problem p;
  p.dim = dim;
  for (corl::index_t b = 0; b < samples; ++b) {
    const auto ni = 1 + static_cast<corl::index_t>(rng.below(static_cast<std::uint64_t>(max_i)));
    const auto nk = 1 + static_cast<corl::index_t>(rng.below(static_cast<std::uint64_t>(max_k)));
    p.max_rows = std::max(p.max_rows, ni);
    // a shared direction makes the maxima meaningful (cosines near the top of [-1, 1]), plus noise
    std::vector<double> common(static_cast<std::size_t>(dim));
    for (double& c : common) c = rng.normal();
    for (corl::index_t r = 0; r < ni; ++r) {
      const bool zero = rng.uniform() < 0.03;
      for (corl::index_t d = 0; d < dim; ++d) {
        p.image.push_back(zero ? 0.0f : static_cast<float>(common[static_cast<std::size_t>(d)] + 1.5 * rng.normal()));
      }
    }
    for (corl::index_t r = 0; r < nk; ++r) {
      for (corl::index_t d = 0; d < dim; ++d) {
        p.text.push_back(static_cast<float>(common[static_cast<std::size_t>(d)] + 1.5 * rng.normal()));
      }
    }
    p.io.push_back(p.io.back() + ni);
    p.to.push_back(p.to.back() + nk);
  }
  return p;
}

template <class T>
void check_problem(const Problem& p, std::uint64_t seed) {
  const auto samples = static_cast<corl::index_t>(p.io.size() - 1);
  INFO("seed " << seed << ", samples " << samples << ", dim " << p.dim << ", bf16 " << (sizeof(T) == 2));
  std::vector<T> image(p.image.size()), text(p.text.size());
  std::vector<float> image_ref(p.image.size()), text_ref(p.text.size());
  for (std::size_t i = 0; i < p.image.size(); ++i) {
    if constexpr (sizeof(T) == 2) {
      const corl::bfloat16 h(p.image[i]);
      std::memcpy(static_cast<void*>(&image[i]), &h, 2);
      image_ref[i] = corl::to_real<float>(h);
    } else {
      image[i] = p.image[i];
      image_ref[i] = p.image[i];
    }
  }
  for (std::size_t i = 0; i < p.text.size(); ++i) {
    if constexpr (sizeof(T) == 2) {
      const corl::bfloat16 h(p.text[i]);
      std::memcpy(static_cast<void*>(&text[i]), &h, 2);
      text_ref[i] = corl::to_real<float>(h);
    } else {
      text[i] = p.text[i];
      text_ref[i] = p.text[i];
    }
  }
  std::vector<float> cpu(static_cast<std::size_t>(samples));
  corl::text_image_matching<float>({image_ref, p.io, text_ref, p.to, p.dim}, std::span<float>(cpu));

  T* d_image = to_device(image);
  T* d_text = to_device(text);
  corl::index_t* d_io = to_device(p.io);
  corl::index_t* d_to = to_device(p.to);
  float* d_rewards = nullptr;
  corl::cuda::check_cuda(cudaMalloc(&d_rewards, sizeof(float) * cpu.size()), "malloc rewards");
  const corl::cuda::TimShape shape{samples, p.dim, p.io.back(), p.to.back(), p.max_rows};
  const std::size_t scratch_bytes = corl::cuda::text_image_matching_scratch_bytes(shape);
  void* scratch = nullptr;
  corl::cuda::check_cuda(cudaMalloc(&scratch, scratch_bytes), "malloc scratch");
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    corl::cuda::check_cuda(cudaMemset(d_rewards, 0xff, sizeof(float) * cpu.size()), "poison");
    corl::cuda::check_cuda(cudaMemset(scratch, 0xff, scratch_bytes), "poison scratch");
    corl::cuda::text_image_matching<T>(d_image, d_io, d_text, d_to, shape, d_rewards, scratch, scratch_bytes);
    CHECK(corl::cuda::text_image_matching_status(scratch, shape) == 0u);
    std::vector<float> gpu(cpu.size());
    corl::cuda::check_cuda(cudaMemcpy(gpu.data(), d_rewards, sizeof(float) * gpu.size(), cudaMemcpyDeviceToHost),
                           "download");
    if (run == 0) {
      for (std::size_t b = 0; b < gpu.size(); ++b) {
        REQUIRE(std::isfinite(gpu[b]));
        CHECK_MESSAGE(std::abs(gpu[b] - cpu[b]) <= 2e-5f, "sample ", b, ": gpu ", gpu[b], " cpu ", cpu[b]);
      }
      first = gpu;
    } else {
      CHECK(std::memcmp(first.data(), gpu.data(), sizeof(float) * gpu.size()) == 0);
    }
  }
  cudaFree(d_image);
  cudaFree(d_text);
  cudaFree(d_io);
  cudaFree(d_to);
  cudaFree(d_rewards);
  cudaFree(scratch);
}

}  // namespace

TEST_CASE("R_TIM matches the CPU reference on random batches, float and bf16") {
  const corl::index_t dims[] = {1, 5, 31, 32, 33, 64, 200};
  for (std::uint64_t seed = 1; seed <= 14; ++seed) {
    corl::CounterRng rng(seed, 0);
    const auto samples = 1 + static_cast<corl::index_t>(rng.below(40));
    const Problem p = make_problem(seed, samples, 100, 70, dims[seed % 7]);
    check_problem<float>(p, seed);
    check_problem<__nv_bfloat16>(p, seed);
  }
}

TEST_CASE("R_TIM at the CoRL shape: 16 samples, 576 image rows, 40 text rows, D = 2048") {
  const Problem p = make_problem(99, 16, 576, 40, 2048);
  check_problem<float>(p, 99);
}

TEST_CASE("status word: a sample with more image rows than max_image_rows, host-side errors") {
  // sample 0: 40 image rows, sample 1: 1; with max_image_rows = 32 the grid covers only 32 rows per sample
  Problem p;
  p.dim = 4;
  p.io = {0, 40, 41};
  p.to = {0, 2, 3};
  p.image.assign(41 * 4, 1.0f);
  p.text.assign(3 * 4, 1.0f);
  float* d_image = to_device(p.image);
  float* d_text = to_device(p.text);
  corl::index_t* d_io = to_device(p.io);
  corl::index_t* d_to = to_device(p.to);
  float* d_rewards = nullptr;
  corl::cuda::check_cuda(cudaMalloc(&d_rewards, sizeof(float) * 2), "malloc");
  corl::cuda::check_cuda(cudaMemset(d_rewards, 0xff, sizeof(float) * 2), "poison");
  const corl::cuda::TimShape shape{2, 4, 41, 3, 32};
  const std::size_t bytes = corl::cuda::text_image_matching_scratch_bytes(shape);
  void* scratch = nullptr;
  corl::cuda::check_cuda(cudaMalloc(&scratch, bytes), "malloc");
  corl::cuda::text_image_matching<float>(d_image, d_io, d_text, d_to, shape, d_rewards, scratch, bytes);
  CHECK(corl::cuda::text_image_matching_status(scratch, shape) == 1u);
  std::vector<float> r(2);
  corl::cuda::check_cuda(cudaMemcpy(r.data(), d_rewards, 8, cudaMemcpyDeviceToHost), "download");
  CHECK(r[0] == 0.0f);                           // the uncovered sample: 0, no NaN
  CHECK(r[1] == doctest::Approx(1.0).epsilon(1e-6));  // identical directions: cos 1
  CHECK_THROWS_WITH_AS(corl::cuda::text_image_matching<float>(d_image, d_io, d_text, d_to, shape, d_rewards, scratch,
                                                              bytes - 4),
                       doctest::Contains("corl::cuda::text_image_matching: scratch has"), corl::Error);
  CHECK_THROWS_WITH_AS(corl::cuda::text_image_matching<float>(d_image, d_io, d_text, d_to,
                                                              corl::cuda::TimShape{2, 0, 41, 3, 32}, d_rewards,
                                                              scratch, bytes),
                       "corl::cuda::text_image_matching: shape.dim = 0, expected >= 1", corl::Error);
  cudaFree(d_image);
  cudaFree(d_text);
  cudaFree(d_io);
  cudaFree(d_to);
  cudaFree(d_rewards);
  cudaFree(scratch);
}

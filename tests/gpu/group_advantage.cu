// GPU group advantages vs the CPU estimators: random batches (recorded seeds; groups of 0..17 members incl. groups of
// one, NaN rewards, zero-variance groups), outputs poisoned with NaN before each run, float and double, all four kinds;
// two runs give identical bits; bad offsets are reported; host-side input errors throw.
// Tolerances: double |gpu - cpu| <= 1e-12 max(1, |cpu|); float <= 2e-6 max(1, |cpu|) (both sum in double; the
// difference is the order of the sums and the final rounding to float).
#include "gpu_test_main.cuh"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <corl/advantage/advantage.hpp>
#include <corl/core/rng.hpp>
#include <corl/cuda/group_advantage.cuh>

namespace {

template <class T>
struct DeviceArray {
  T* ptr = nullptr;
  std::size_t n = 0;
  explicit DeviceArray(std::size_t count) : n(count) {
    corl::cuda::check_cuda(cudaMalloc(&ptr, sizeof(T) * (count > 0 ? count : 1)), "cudaMalloc");
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr); }
  void upload(const std::vector<T>& h) {
    corl::cuda::check_cuda(cudaMemcpy(ptr, h.data(), sizeof(T) * n, cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
    corl::cuda::check_cuda(cudaMemcpy(h.data(), ptr, sizeof(T) * n, cudaMemcpyDeviceToHost), "download");
    return h;
  }
  void poison() { corl::cuda::check_cuda(cudaMemset(ptr, 0xff, sizeof(T) * n), "poison"); }  // all-ones = NaN
};

struct HostBatch {
  std::vector<double> rewards;
  std::vector<corl::index_t> offsets, group;
};

HostBatch make_batch(std::uint64_t seed, corl::index_t num_groups, corl::index_t max_size) {
  corl::CounterRng rng(seed, 1);
  HostBatch b;
  b.offsets.push_back(0);
  for (corl::index_t g = 0; g < num_groups; ++g) {
    const auto size = static_cast<corl::index_t>(rng.below(static_cast<std::uint64_t>(max_size) + 1));
    const bool binary = rng.uniform() < 0.5;
    const bool constant = rng.uniform() < 0.15;
    const double c = rng.uniform();
    for (corl::index_t j = 0; j < size; ++j) {
      double r = constant ? c : (binary ? static_cast<double>(rng.below(2)) : rng.normal());
      if (rng.uniform() < 0.1) r = std::numeric_limits<double>::quiet_NaN();
      b.rewards.push_back(r);
      b.group.push_back(g);
    }
    b.offsets.push_back(static_cast<corl::index_t>(b.rewards.size()));
  }
  if (b.rewards.empty()) {  // keep at least one sequence
    b.rewards.push_back(1.0);
    b.group.push_back(0);
    for (std::size_t g = 1; g < b.offsets.size(); ++g) b.offsets[g] = 1;
  }
  return b;
}

template <class Real, class Estimator>
void check_against_cpu(const Estimator& est, const HostBatch& hb, std::uint64_t seed) {
  INFO("seed " << seed << ", estimator " << Estimator::name << ", sizeof(Real) " << sizeof(Real) << ", num_seqs "
               << hb.rewards.size());
  const std::size_t n = hb.rewards.size();
  const auto num_groups = static_cast<corl::index_t>(hb.offsets.size() - 1);
  const std::vector<Real> rewards(hb.rewards.begin(), hb.rewards.end());
  std::vector<Real> cpu(n);
  const corl::AdvantageStats cpu_stats =
      est.compute(corl::RewardBatch<Real>{rewards, hb.group, num_groups}, std::span<Real>(cpu));

  DeviceArray<Real> d_rewards(n), d_adv(n);
  DeviceArray<corl::index_t> d_offsets(hb.offsets.size());
  DeviceArray<corl::cuda::GroupAdvantageDeviceStats> d_stats(1);
  d_rewards.upload(rewards);
  d_offsets.upload(hb.offsets);
  const auto params = corl::cuda::GroupAdvantageParams::from(est);
  std::vector<Real> first;
  for (int run = 0; run < 2; ++run) {
    d_adv.poison();
    corl::cuda::group_advantage<Real>(d_rewards.ptr, d_offsets.ptr, num_groups, static_cast<corl::index_t>(n),
                                      d_adv.ptr, params, d_stats.ptr);
    corl::cuda::check_cuda(cudaDeviceSynchronize(), "sync");
    const std::vector<Real> gpu = d_adv.download();
    if (run == 0) {
      first = gpu;
      const double tol = sizeof(Real) == 8 ? 1e-12 : 2e-6;
      for (std::size_t i = 0; i < n; ++i) {
        REQUIRE(std::isfinite(static_cast<double>(gpu[i])));
        const double c = static_cast<double>(cpu[i]), g = static_cast<double>(gpu[i]);
        CHECK_MESSAGE(std::abs(g - c) <= tol * std::max(1.0, std::abs(c)), "index ", i, ": gpu ", g, " cpu ", c);
        if (c == 0.0) CHECK(g == 0.0);  // NaN rewards and degenerate groups: exactly 0 on both sides
      }
      const auto s = d_stats.download()[0];
      CHECK(s.bad_offsets == 0);
      CHECK(s.num_valid == cpu_stats.num_valid);
      CHECK(s.num_groups == cpu_stats.num_groups);
      CHECK(s.zero_std_groups == cpu_stats.zero_std_groups);
    } else {
      CHECK(std::memcmp(first.data(), gpu.data(), n * sizeof(Real)) == 0);  // identical bits
    }
  }
}

}  // namespace

TEST_CASE("group_advantage matches the CPU estimators on random batches") {
  for (std::uint64_t seed = 1; seed <= 24; ++seed) {
    corl::CounterRng rng(seed, 0);
    const auto num_groups = 1 + static_cast<corl::index_t>(rng.below(seed % 4 == 0 ? 3000 : 300));
    const auto max_size = static_cast<corl::index_t>(1 + rng.below(seed % 3 == 0 ? 70 : 17));
    const HostBatch hb = make_batch(seed, num_groups, max_size);
    check_against_cpu<float>(corl::GroupZScore{}, hb, seed);
    check_against_cpu<double>(corl::GroupZScore{.eps = 1e-6, .unbiased = false, .std_floor = 0.05}, hb, seed);
    check_against_cpu<float>(corl::GroupMean{}, hb, seed);
    check_against_cpu<double>(corl::GroupMean{}, hb, seed);
    check_against_cpu<float>(corl::GroupMeanBatchStd{}, hb, seed);
    check_against_cpu<double>(corl::GroupMeanBatchStd{.unbiased = false}, hb, seed);
    check_against_cpu<float>(corl::Rloo{}, hb, seed);
    check_against_cpu<double>(corl::Rloo{}, hb, seed);
  }
}

TEST_CASE("the benchmark shape: 128 groups of 8") {
  HostBatch hb;
  corl::CounterRng rng(77, 0);
  for (corl::index_t g = 0; g <= 128; ++g) hb.offsets.push_back(8 * g);
  for (int i = 0; i < 1024; ++i) {
    hb.rewards.push_back(static_cast<double>(rng.below(2)));
    hb.group.push_back(i / 8);
  }
  check_against_cpu<float>(corl::GroupZScore{}, hb, 77);
  check_against_cpu<float>(corl::GroupMeanBatchStd{}, hb, 77);
}

TEST_CASE("bad offsets: zeros everywhere and the flag set, host-side errors throw") {
  const std::vector<float> r{1, 0, 1, 0};
  const std::vector<corl::index_t> bad{0, 3, 2, 4};  // decreasing
  DeviceArray<float> d_r(4), d_a(4);
  DeviceArray<corl::index_t> d_o(4);
  DeviceArray<corl::cuda::GroupAdvantageDeviceStats> d_s(1);
  d_r.upload(r);
  d_o.upload(bad);
  d_a.poison();
  corl::cuda::group_advantage<float>(d_r.ptr, d_o.ptr, 3, 4, d_a.ptr, {}, d_s.ptr);
  corl::cuda::check_cuda(cudaDeviceSynchronize(), "sync");
  for (float a : d_a.download()) CHECK(a == 0.0f);
  CHECK(d_s.download()[0].bad_offsets == 1);
  CHECK_THROWS_WITH_AS(corl::cuda::group_advantage<float>(nullptr, d_o.ptr, 3, 4, d_a.ptr, {}, nullptr),
                       "corl::cuda::group_advantage: rewards is null, expected a device pointer", corl::Error);
  CHECK_THROWS_WITH_AS(corl::cuda::group_advantage<float>(d_r.ptr, d_o.ptr, 0, 4, d_a.ptr, {}, nullptr),
                       "corl::cuda::group_advantage: num_groups = 0, expected >= 1", corl::Error);
}

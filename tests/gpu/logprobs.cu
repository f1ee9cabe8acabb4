// GPU tests of corl/cuda/logprobs.cuh against a DOUBLE-precision CPU reference (corl/logprob/from_logits.hpp with
// Real = double), and of the host half types (corl/core/half_types.hpp) against the device conversions.
//
// Why double. The float CPU reference sums a row left to right: s = sum exp(z - m) over V terms is one recursive sum,
// whose error grows like V u (u = 2^-24). At V = 102400 it is off by ~1e-4 in lse / logp and ~2e-4 in entropy
// (measured: tests/unit/logprob_precision.cpp), MORE than the kernel, whose threads each fold only ~V / 1024 terms
// before a 10-level merge tree. The first H200 run failed exactly there (row 0: kernel logp -25.8918 / entropy
// 3.06461 / lse 21.4126, float reference -25.8917 / 3.06446 / 21.4125, double reference -25.89176 / 3.064609 /
// 21.41259: the kernel agreed with double to < 1e-6).
//
// Tolerance: the worst-case error of the kernel's fp32 arithmetic, per row (row_error_bound, shared with
// tests/gpu/grpo_loss.cu in tests/common/logprob_bounds.hpp). One thread folds n = ceil(V / (N threads)) N terms (N
// logits per 16-byte vector, one rescale per vector), then log2(threads) merge levels; each add, ex2 (2 ulp) or
// rescale costs a few u of relative error in s and in u = sum 2^d d, so
//   gamma = (n + 3 n / N + 4 log2(threads) + 4) u                    relative error of s (and of u: 2 gamma + 2 u)
//   |d lse|     <= gamma + 8 u (|m| + |lse| + 1)                       (scale log2(e) / T rounded, m + log2 s, x ln 2)
//   |d logp|    <= |d lse| + 8 u (|z_t| + |m| + |logp|)
//   |d entropy| <= gamma (1 + 2 |ln s - H|) + 8 u (|H| + |ln s - H| + E_p[(z - m)^2] + 1)   (H = ln s - u / s)
// with m = max z, ln s = lse - m, all from the double reference. For V = 102400 on 1024 threads that is ~1e-5 for
// lse, against the observed ~1e-6. The double reference itself is checked against a long double two-pass sum to 1e-9.
// The checks can fail: a wrong target (off by one column) moves logp by |z_t - z_t'| ~ 4 (logits ~ N(0, 16)); a
// forgotten temperature (cases with T = 0.7 / 0.9 / 1.3 / 0.6) moves lse by ~10% of ~20; a lost row leaves the NaN
// poison; a wrong mask leaves a nonzero value where 0 is required (masked rows are compared exactly).
#include "gpu_test_main.cuh"
#include "common/logprob_bounds.hpp"
#include "device_array.cuh"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <corl/core/half_types.hpp>
#include <corl/cuda/check.cuh>
#include <corl/cuda/logprobs.cuh>
#include <corl/logprob/from_logits.hpp>

namespace {

// DeviceArray, small_shapes_only (device_array.cuh); RowExact, exact_row, row_error_bound (common/logprob_bounds.hpp)
using namespace corl_test;

template <class Host>
struct DeviceType;
template <>
struct DeviceType<float> {
  using type = float;
};
template <>
struct DeviceType<corl::bfloat16> {
  using type = __nv_bfloat16;
};
template <>
struct DeviceType<corl::float16> {
  using type = __half;
};

__global__ void convert_kernel(const float* in, unsigned short* bf, unsigned short* hf, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  const __nv_bfloat16 b = __float2bfloat16(in[i]);
  const __half h = __float2half(in[i]);
  bf[i] = *reinterpret_cast<const unsigned short*>(&b);
  hf[i] = *reinterpret_cast<const unsigned short*>(&h);
}

template <class Host>
void check_parity(corl::index_t rows, corl::index_t vocab, float temperature, unsigned seed, bool with_mask) {
  using Device = typename DeviceType<Host>::type;
  if (small_shapes_only() && vocab > 16384) return;  // under compute-sanitizer (scripts/gpu-check)
  CAPTURE(rows);
  CAPTURE(vocab);
  CAPTURE(temperature);
  CAPTURE(seed);
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::uniform_int_distribution<std::int32_t> token(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<Host> logits(static_cast<std::size_t>(rows * vocab));
  for (auto& x : logits) x = corl::from_real<Host>(normal(gen));
  std::vector<std::int32_t> targets(static_cast<std::size_t>(rows));
  for (auto& y : targets) y = token(gen);
  targets[0] = static_cast<std::int32_t>(vocab - 1);  // the last column (vector tail) is a target at least once
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(rows), 1);
  if (with_mask)
    for (std::size_t i = 1; i < mask.size(); i += 3) mask[i] = 0;

  std::vector<double> ref_logp(targets.size()), ref_ent(targets.size()), ref_lse(targets.size());
  corl::logprobs_from_logits<double>(std::span<const Host>(logits), vocab, std::span<const std::int32_t>(targets),
                                     static_cast<double>(temperature), std::span<double>(ref_logp),
                                     std::span<double>(ref_ent), std::span<double>(ref_lse));
  // the kernel's block size and vector width decide its summation order (corl/cuda/logprobs.cuh, softmax_row.cuh)
  const int threads = corl::cuda::row_block_threads(vocab * static_cast<corl::index_t>(sizeof(Host)));
  const bool vectorized = vocab % corl::cuda::LogitTraits<Device>::kPerVector == 0;
  const int per_vector = vectorized ? corl::cuda::LogitTraits<Device>::kPerVector : 1;
  std::vector<RowErrorBound> bound(targets.size());
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const RowExact ex = exact_row(logits.data() + static_cast<corl::index_t>(i) * vocab, vocab, targets[i],
                                  static_cast<double>(temperature));
    // the double reference is exact for this purpose: its error is ~V 1e-16, below 1e-9
    CHECK(std::abs(ref_logp[i] - ex.logp) <= 1e-9 * (1 + std::abs(ex.logp)));
    CHECK(std::abs(ref_ent[i] - ex.entropy) <= 1e-9 * (1 + std::abs(ex.entropy)));
    CHECK(std::abs(ref_lse[i] - ex.lse) <= 1e-9 * (1 + std::abs(ex.lse)));
    bound[i] = row_error_bound(vocab, threads, per_vector, ex);
  }

  DeviceArray<Device> d_logits(logits.size());
  d_logits.upload(logits);
  DeviceArray<std::int32_t> d_targets(targets.size());
  d_targets.upload(targets);
  DeviceArray<std::uint8_t> d_mask(mask.size());
  d_mask.upload(mask);
  DeviceArray<float> d_logp(targets.size()), d_ent(targets.size()), d_lse(targets.size());
  DeviceArray<char> scratch(corl::cuda::logprobs_scratch_bytes());
  corl::cuda::LogprobsArgs<Device> args;
  args.logits = d_logits.ptr;
  args.rows = rows;
  args.vocab = vocab;
  args.targets = d_targets.ptr;
  args.mask = with_mask ? d_mask.ptr : nullptr;
  args.temperature = temperature;
  args.logp = d_logp.ptr;
  args.entropy = d_ent.ptr;
  args.lse = d_lse.ptr;

  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    d_logp.poison();
    d_ent.poison();
    d_lse.poison();
    corl::cuda::logprobs_from_logits(args, scratch.ptr, corl::cuda::logprobs_scratch_bytes());
    const auto logp = d_logp.download<float>(), ent = d_ent.download<float>(), lse = d_lse.download<float>();
    int bad = 0;
    for (std::size_t i = 0; i < targets.size(); ++i) {
      if (mask[i] == 0 && with_mask) {
        bad += (logp[i] != 0.0f || ent[i] != 0.0f || lse[i] != 0.0f);
        continue;
      }
      const bool ok = std::abs(logp[i] - ref_logp[i]) <= bound[i].logp &&
                      std::abs(ent[i] - ref_ent[i]) <= bound[i].entropy &&
                      std::abs(lse[i] - ref_lse[i]) <= bound[i].lse;  // false for NaN (a row left poisoned)
      if (!ok && bad < 5) {
        MESSAGE("row " << i << ": logp " << logp[i] << " vs " << ref_logp[i] << " (bound "
                       << bound[i].logp << "), entropy " << ent[i] << " vs " << ref_ent[i] << " (bound "
                       << bound[i].entropy << "), lse " << lse[i] << " vs " << ref_lse[i] << " (bound "
                       << bound[i].lse << ")");
      }
      bad += ok ? 0 : 1;
    }
    CHECK(bad == 0);
    std::vector<float> all = logp;
    all.insert(all.end(), ent.begin(), ent.end());
    all.insert(all.end(), lse.begin(), lse.end());
    if (run == 0) {
      first = all;
    } else {
      CHECK(std::memcmp(first.data(), all.data(), all.size() * sizeof(float)) == 0);  // determinism: same bits
    }
  }
}

}  // namespace

TEST_CASE("host bf16 / fp16 conversions match __float2bfloat16 / __float2half on the device, bit for bit") {
  std::mt19937 gen(31337);
  std::vector<float> values;
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 1 << 20; ++i) values.push_back(std::bit_cast<float>(bits(gen)));  // every exponent, NaN, inf
  std::normal_distribution<float> normal(0.0f, 10.0f);
  for (int i = 0; i < 1 << 18; ++i) values.push_back(normal(gen));
  const int n = static_cast<int>(values.size());
  DeviceArray<float> in(values.size());
  in.upload(values);
  DeviceArray<unsigned short> bf(values.size()), hf(values.size());
  convert_kernel<<<corl::cuda::blocks_for(n, 256), 256>>>(in.ptr, bf.ptr, hf.ptr, n);
  corl::cuda::check_launch("convert_kernel");
  const auto b = bf.download<unsigned short>(), h = hf.download<unsigned short>();
  int bad_b = 0, bad_h = 0;
  for (int i = 0; i < n; ++i) {
    const float f = values[static_cast<std::size_t>(i)];
    if (std::isnan(f)) {  // any NaN encoding is acceptable; both must be NaN
      bad_b += std::isnan(static_cast<float>(corl::bfloat16::from_bits(b[static_cast<std::size_t>(i)]))) ? 0 : 1;
      bad_h += std::isnan(static_cast<float>(corl::float16::from_bits(h[static_cast<std::size_t>(i)]))) ? 0 : 1;
      continue;
    }
    bad_b += corl::bfloat16(f).bits == b[static_cast<std::size_t>(i)] ? 0 : 1;
    bad_h += corl::float16(f).bits == h[static_cast<std::size_t>(i)] ? 0 : 1;
  }
  CHECK(bad_b == 0);
  CHECK(bad_h == 0);
}

TEST_CASE("log-probs match the CPU reference: fp32, bf16, fp16, odd and even V, temperature, masks, determinism") {
  check_parity<float>(7, 1001, 1.0f, 1, false);  // odd V: scalar path
  check_parity<float>(9, 4096, 0.7f, 2, true);   // vector path
  check_parity<corl::bfloat16>(11, 1001, 1.3f, 3, true);
  check_parity<corl::bfloat16>(6, 16384, 1.0f, 4, false);
  check_parity<corl::bfloat16>(4, 102400, 0.9f, 5, true);  // 1024-thread blocks
  check_parity<corl::float16>(5, 333, 0.6f, 6, false);
  check_parity<corl::float16>(8, 8192, 1.0f, 7, true);
  check_parity<float>(3, 1, 1.0f, 8, false);  // V = 1: logp = 0, entropy = 0
}

TEST_CASE("a target out of range or a non-finite logit is reported as corl::Error naming the row") {
  const corl::index_t rows = 4, vocab = 40;
  std::vector<float> logits(static_cast<std::size_t>(rows * vocab), 0.5f);
  std::vector<std::int32_t> targets{0, 1, 40, 3};
  DeviceArray<float> d_logits(logits.size());
  d_logits.upload(logits);
  DeviceArray<std::int32_t> d_targets(targets.size());
  d_targets.upload(targets);
  DeviceArray<float> d_logp(4);
  DeviceArray<char> scratch(corl::cuda::logprobs_scratch_bytes());
  corl::cuda::LogprobsArgs<float> args;
  args.logits = d_logits.ptr;
  args.rows = rows;
  args.vocab = vocab;
  args.targets = d_targets.ptr;
  args.logp = d_logp.ptr;
  std::string message;
  try {
    corl::cuda::logprobs_from_logits(args, scratch.ptr, corl::cuda::logprobs_scratch_bytes());
  } catch (const corl::Error& e) {
    message = e.what();
  }
  CHECK(message == "logprobs_from_logits: targets[2] = 40, expected in [0, vocab = 40)");
  targets[2] = 2;
  d_targets.upload(targets);
  logits[1 * vocab + 7] = std::nanf("");
  logits[3 * vocab + 0] = INFINITY;
  d_logits.upload(logits);
  message.clear();
  try {
    corl::cuda::logprobs_from_logits(args, scratch.ptr, corl::cuda::logprobs_scratch_bytes());
  } catch (const corl::Error& e) {
    message = e.what();
  }
  CHECK(message.find("logits row 1 holds a non-finite value") != std::string::npos);
  // the rows that were fine still got their values; the bad rows got 0, never NaN
  const auto logp = d_logp.download<float>();
  CHECK(logp[0] == doctest::Approx(-std::log(40.0f)).epsilon(1e-5));
  CHECK(logp[1] == 0.0f);
  CHECK(logp[3] == 0.0f);
  // host-side checks
  args.temperature = 0.0f;
  CHECK_THROWS_WITH_AS(corl::cuda::logprobs_from_logits(args, scratch.ptr, corl::cuda::logprobs_scratch_bytes()),
                       "logprobs_from_logits: temperature = 0, expected a finite value > 0", corl::Error);
}

// GPU tests of corl/cuda/grpo_loss.cuh against the CPU reference corl/logprob/grpo_from_logits.hpp.
//
// Tolerances. Both sides evaluate the same CORL_HD token terms in float; they differ in the softmax sums (thread
// order, hardware ex2: see tests/gpu/logprobs.cu, ~1e-5 absolute on logp) and in how the gradient is rounded:
//  * dlogits in fp32: |gpu - cpu| <= 1e-4 |cpu| + 1e-6 max|cpu|. p_v = exp(y - lse) inherits the ~1e-5 absolute error
//    of lse as a ~1e-5 RELATIVE error; the factor 10 covers exp's own error. The absolute floor covers entries that
//    cancel (g (1 - p) near the target).
//  * dlogits in bf16 / fp16: the CPU rounds its float result to the storage type too; a ~1e-5 relative difference
//    before rounding can flip the rounding by one ulp, which is at most 2^-7 of the value (bf16) or 2^-10 (fp16), or
//    the subnormal spacing 2^-24 for tiny fp16 values. We allow 1.01 such ulp plus the same absolute floor.
//  * loss and metric sums: relative 1e-4, or 2e-5 absolute when the sum cancels to near zero (per-token terms differ
//    by ~1e-6). Clip counts: within one token + 2% (a ratio within ~1e-5 of a bound may land on either side).
// Every output is poisoned (all-ones bits = NaN) before each run, so a row the kernel forgets to write fails.
#include "gpu_test_main.cuh"

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
#include <corl/cuda/grpo_loss.cuh>
#include <corl/logprob/grpo_from_logits.hpp>
#include <corl/loss/gspo.hpp>
#include <corl/loss/kl.hpp>
#include <corl/loss/ppo_clip.hpp>

namespace {

using corl::cuda::check_cuda;

/// scripts/gpu-check sets CORL_GPU_TEST_SMALL=1 when it runs the tests under compute-sanitizer (10-100x slower).
bool small_shapes_only() { return std::getenv("CORL_GPU_TEST_SMALL") != nullptr; }

template <class T>
struct DeviceArray {
  T* ptr = nullptr;
  std::size_t n = 0;
  explicit DeviceArray(std::size_t count) : n(count) {
    check_cuda(cudaMalloc(&ptr, sizeof(T) * (count ? count : 1)), "test cudaMalloc");
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr); }
  template <class H>
  void upload(const std::vector<H>& host) {
    static_assert(sizeof(H) == sizeof(T), "host and device element sizes must match");
    check_cuda(cudaMemcpy(ptr, host.data(), sizeof(T) * host.size(), cudaMemcpyHostToDevice), "test upload");
  }
  template <class H>
  std::vector<H> download() const {
    static_assert(sizeof(H) == sizeof(T), "host and device element sizes must match");
    std::vector<H> host(n);
    check_cuda(cudaMemcpy(host.data(), ptr, sizeof(T) * n, cudaMemcpyDeviceToHost), "test download");
    return host;
  }
  void poison() { check_cuda(cudaMemset(ptr, 0xff, sizeof(T) * n), "test poison"); }
};

template <class Host>
struct DeviceType;
template <>
struct DeviceType<float> {
  using type = float;
  static constexpr double ulp = 0.0;
  static constexpr double min_ulp = 0.0;
};
template <>
struct DeviceType<corl::bfloat16> {
  using type = __nv_bfloat16;
  static constexpr double ulp = 1.0 / 128;  // one ulp is at most 2^-7 of the value (8 significant bits)
  static constexpr double min_ulp = 0.0;
};
template <>
struct DeviceType<corl::float16> {
  using type = __half;
  static constexpr double ulp = 1.0 / 1024;  // at most 2^-10 of a normal value
  static constexpr double min_ulp = 1.0 / (1 << 24);  // the subnormal spacing: tiny gradients are fp16 subnormals
};

/// Sums of per-token terms: relative 1e-4, or 2e-5 absolute for sums that cancel to near zero. The per-token values
/// differ by ~1e-6 (they inherit logp's difference, see above), and the sums are weighted means of them.
bool rel_close(double got, double want, double rel) {
  return std::abs(got - want) <= rel * std::abs(want) || std::abs(got - want) <= 2e-5;
}

struct Case {
  corl::index_t B, T, V;
  float temperature, kl_coef, entropy_coef;
  bool mask, old, in_place;
  unsigned seed;
};

template <class Host, class Policy, class Kl>
void check_case(const Case& c, const Policy& policy, const Kl& kl) {
  using Device = typename DeviceType<Host>::type;
  if (small_shapes_only() && c.V > 16384) return;  // under compute-sanitizer (scripts/gpu-check)
  CAPTURE(c.B);
  CAPTURE(c.T);
  CAPTURE(c.V);
  CAPTURE(c.seed);
  CAPTURE(c.in_place);
  const corl::index_t rows = c.B * c.T;
  std::mt19937 gen(c.seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<std::int32_t> token(0, static_cast<std::int32_t>(c.V - 1));
  std::uniform_real_distribution<float> offset(-0.3f, 0.3f);
  std::vector<Host> logits(static_cast<std::size_t>(rows * c.V));
  for (auto& x : logits) x = corl::from_real<Host>(normal(gen));
  std::vector<std::int32_t> targets(static_cast<std::size_t>(rows));
  for (auto& y : targets) y = token(gen);
  targets[0] = static_cast<std::int32_t>(c.V - 1);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(rows), 1);
  if (c.mask)
    for (std::size_t i = 2; i < mask.size(); i += 5) mask[i] = 0;
  if (c.mask) targets[2] = 1 << 30;  // a masked row's target is never read or checked
  // current log-probs (CPU) so that logp_old / logp_ref sit near them: ratios both inside and outside the clip range
  std::vector<float> lp(targets.size());
  {
    auto safe = targets;
    for (auto& y : safe) y = y < c.V ? y : 0;
    corl::logprobs_from_logits<float>(std::span<const Host>(logits), c.V, std::span<const std::int32_t>(safe),
                                      c.temperature, std::span<float>(lp));
  }
  std::vector<float> old(targets.size()), ref(targets.size()), adv(static_cast<std::size_t>(c.B)),
      weight(static_cast<std::size_t>(c.B));
  for (std::size_t i = 0; i < targets.size(); ++i) {
    old[i] = lp[i] + offset(gen);
    ref[i] = lp[i] + 2 * offset(gen);
  }
  corl::index_t tokens = 0;
  for (auto m : mask) tokens += m;
  for (std::size_t b = 0; b < adv.size(); ++b) {
    adv[b] = normal(gen) / 3;
    weight[b] = 1.0f / static_cast<float>(tokens);
  }

  // CPU reference
  corl::GrpoLogitsBatch<Host, float> in;
  in.logits = std::span<const Host>(logits);
  in.sequences = c.B;
  in.seq_len = c.T;
  in.vocab = c.V;
  in.targets = std::span<const std::int32_t>(targets);
  if (c.mask) in.mask = std::span<const std::uint8_t>(mask);
  if (c.old) in.logp_old = std::span<const float>(old);
  if (c.kl_coef != 0.0f) in.logp_ref = std::span<const float>(ref);
  in.advantages = std::span<const float>(adv);
  in.token_weight = std::span<const float>(weight);
  in.temperature = c.temperature;
  in.kl_coef = c.kl_coef;
  in.entropy_coef = c.entropy_coef;
  std::vector<Host> ref_grad(logits.size());
  std::vector<float> ref_logp(targets.size()), ref_ent(targets.size());
  const corl::GrpoLossTotals want = corl::grpo_loss_from_logits<float>(
      in, policy, kl, std::span<Host>(ref_grad), std::span<float>(ref_logp), std::span<float>(ref_ent));

  // GPU
  DeviceArray<Device> d_logits(logits.size()), d_grad(logits.size());
  DeviceArray<std::int32_t> d_targets(targets.size());
  DeviceArray<std::uint8_t> d_mask(mask.size());
  DeviceArray<float> d_old(old.size()), d_ref(ref.size()), d_adv(adv.size()), d_w(weight.size()),
      d_logp(targets.size()), d_ent(targets.size());
  DeviceArray<corl::cuda::GrpoLossResult> d_result(1);
  d_targets.upload(targets);
  d_mask.upload(mask);
  d_old.upload(old);
  d_ref.upload(ref);
  d_adv.upload(adv);
  d_w.upload(weight);
  const std::size_t scratch_bytes = corl::cuda::grpo_loss_scratch_bytes(rows, c.B);
  DeviceArray<char> scratch(scratch_bytes);
  corl::cuda::GrpoLossArgs<Device> a;
  a.logits = d_logits.ptr;
  a.dlogits = c.in_place ? d_logits.ptr : d_grad.ptr;
  a.sequences = c.B;
  a.seq_len = c.T;
  a.vocab = c.V;
  a.targets = d_targets.ptr;
  a.mask = c.mask ? d_mask.ptr : nullptr;
  a.logp_old = c.old ? d_old.ptr : nullptr;
  a.logp_ref = c.kl_coef != 0.0f ? d_ref.ptr : nullptr;
  a.advantages = d_adv.ptr;
  a.token_weight = d_w.ptr;
  a.temperature = c.temperature;
  a.kl_coef = c.kl_coef;
  a.entropy_coef = c.entropy_coef;
  a.logp_out = d_logp.ptr;
  a.entropy_out = d_ent.ptr;
  a.result = d_result.ptr;

  std::vector<Host> first_grad;
  corl::GrpoLossTotals first{};
  for (int run = 0; run < 2; ++run) {
    d_logits.template upload<Host>(logits);
    if (!c.in_place) d_grad.poison();
    d_logp.poison();
    d_ent.poison();
    d_result.poison();
    check_cuda(cudaMemset(scratch.ptr, 0xff, scratch_bytes), "test poison scratch");
    corl::cuda::grpo_loss_from_logits(a, policy, kl, scratch.ptr, scratch_bytes);
    const corl::GrpoLossTotals got = corl::cuda::read_grpo_loss_result(d_result.ptr, c.V, d_targets.ptr, 0);
    const auto grad = c.in_place ? d_logits.template download<Host>() : d_grad.template download<Host>();
    const auto logp = d_logp.download<float>(), ent = d_ent.download<float>();

    CHECK(got.tokens == want.tokens);
    // a ratio within ~1e-5 of a clip bound may fall on either side: allow one token plus 2%
    const double clipped_got = static_cast<double>(got.clipped_low + got.clipped_high);
    const double clipped_want = static_cast<double>(want.clipped_low + want.clipped_high);
    CHECK(std::abs(clipped_got - clipped_want) <= 1.0 + 0.02 * clipped_want);
    CHECK(rel_close(got.loss, want.loss, 1e-4));
    CHECK(rel_close(got.policy_loss, want.policy_loss, 1e-4));
    CHECK(rel_close(got.kl, want.kl, 1e-4));
    CHECK(rel_close(got.entropy_sum, want.entropy_sum, 1e-4));
    CHECK(rel_close(got.ratio_sum, want.ratio_sum, 1e-4));
    CHECK(std::isfinite(got.loss));

    double max_ref = 0;
    for (const auto& g : ref_grad) max_ref = std::max(max_ref, std::abs(corl::to_real<double>(g)));
    const double rel = DeviceType<Host>::ulp > 0 ? 1.01 * DeviceType<Host>::ulp : 1e-4;
    const double floor = 1e-6 * max_ref + 1.01 * DeviceType<Host>::min_ulp;
    int bad = 0;
    for (std::size_t k = 0; k < grad.size(); ++k) {
      const double g = corl::to_real<double>(grad[k]), r = corl::to_real<double>(ref_grad[k]);
      const bool ok = std::isfinite(g) && std::abs(g - r) <= rel * std::abs(r) + floor;
      if (!ok && bad < 5) MESSAGE("dlogits[" << k / c.V << ", " << k % c.V << "] = " << g << ", reference " << r);
      bad += ok ? 0 : 1;
    }
    CHECK(bad == 0);
    int bad_rows = 0;
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const bool ok = std::abs(logp[i] - ref_logp[i]) <= 5e-5f + 1e-5f * std::abs(ref_logp[i]) &&
                      std::abs(ent[i] - ref_ent[i]) <= 5e-5f + 1e-5f * std::abs(ref_ent[i]);
      bad_rows += ok ? 0 : 1;
    }
    CHECK(bad_rows == 0);
    if (run == 0) {
      first_grad = grad;
      first = got;
    } else {  // determinism: identical bits
      CHECK(std::memcmp(&first.loss, &got.loss, sizeof(double)) == 0);
      CHECK(std::memcmp(first_grad.data(), grad.data(), grad.size() * sizeof(Host)) == 0);
    }
  }
}

}  // namespace

TEST_CASE("fused PPO-clip + K3 + entropy matches the CPU reference: bf16, odd T, masks, temperature, in place") {
  const corl::PpoClip ppo{0.2, 0.28};
  check_case<corl::bfloat16>({3, 7, 4096, 0.8f, 0.04f, 0.01f, true, true, false, 1}, ppo, corl::K3{});
  check_case<corl::bfloat16>({2, 5, 1001, 1.0f, 0.04f, 0.0f, true, true, false, 2}, ppo, corl::K3{});  // odd V
  check_case<corl::bfloat16>({2, 3, 16384, 1.0f, 0.0f, 0.0f, false, false, false, 3}, ppo, corl::NoKl{});
  check_case<corl::bfloat16>({2, 3, 102400, 0.9f, 0.04f, 0.001f, true, true, false, 4}, ppo, corl::K3{});  // smem row
  check_case<corl::bfloat16>({1, 3, 131072, 1.0f, 0.04f, 0.0f, false, true, false, 5}, ppo, corl::K3{});  // L2 path
  check_case<corl::bfloat16>({3, 7, 4096, 0.8f, 0.04f, 0.01f, true, true, true, 6}, ppo, corl::K3{});     // in place
  check_case<corl::bfloat16>({1, 3, 131072, 1.0f, 0.04f, 0.0f, false, true, true, 7}, ppo, corl::K3{});   // L2 in place
}

TEST_CASE("fused loss matches the CPU reference in fp32 and fp16") {
  const corl::PpoClip ppo{};
  check_case<float>({3, 5, 999, 0.7f, 0.1f, 0.01f, true, true, false, 11}, ppo, corl::K3{});
  check_case<float>({2, 9, 32000, 1.0f, 0.1f, 0.0f, true, true, true, 12}, ppo, corl::K2{});
  check_case<float>({1, 2, 65536, 1.0f, 0.0f, 0.0f, false, true, false, 13}, ppo, corl::NoKl{});  // 256 KiB: L2
  check_case<corl::float16>({2, 7, 1003, 1.2f, 0.04f, 0.01f, true, true, false, 14}, ppo, corl::K3{});
  check_case<corl::float16>({3, 4, 8192, 1.0f, 0.04f, 0.0f, true, false, true, 15}, ppo, corl::K3{});
}

TEST_CASE("sequence-level loss (GSPO: three launches) matches the CPU reference") {
  const corl::Gspo gspo{0.2, 0.2};
  check_case<float>({3, 7, 777, 0.9f, 0.0f, 0.0f, true, true, false, 21}, gspo, corl::NoKl{});
  check_case<corl::bfloat16>({4, 9, 4096, 1.0f, 0.04f, 0.01f, true, true, true, 22}, gspo, corl::K3{});
}

TEST_CASE("bad input: out-of-range target in an active row throws corl::Error naming the row, and host checks") {
  const corl::index_t B = 1, T = 3, V = 64;
  std::vector<float> logits(static_cast<std::size_t>(B * T * V), 0.0f);
  std::vector<std::int32_t> targets{0, 64, 5};
  const std::vector<float> adv{1.0f}, w{1.0f / 3};
  DeviceArray<float> d_logits(logits.size()), d_grad(logits.size()), d_adv(1), d_w(1);
  DeviceArray<std::int32_t> d_targets(3);
  DeviceArray<corl::cuda::GrpoLossResult> d_result(1);
  d_logits.upload(logits);
  d_targets.upload(targets);
  d_adv.upload(adv);
  d_w.upload(w);
  const std::size_t scratch_bytes = corl::cuda::grpo_loss_scratch_bytes(B * T, B);
  DeviceArray<char> scratch(scratch_bytes);
  corl::cuda::GrpoLossArgs<float> a;
  a.logits = d_logits.ptr;
  a.dlogits = d_grad.ptr;
  a.sequences = B;
  a.seq_len = T;
  a.vocab = V;
  a.targets = d_targets.ptr;
  a.advantages = d_adv.ptr;
  a.token_weight = d_w.ptr;
  a.result = d_result.ptr;
  CHECK_THROWS_WITH_AS(corl::cuda::grpo_loss_from_logits(a, corl::PpoClip{}, corl::NoKl{}, scratch.ptr, scratch_bytes),
                       "grpo_loss_from_logits: targets[1] = 64, expected in [0, vocab = 64)", corl::Error);
  // the bad row was treated as masked: zero gradient, the loss of the two good rows only, no NaN
  d_grad.poison();
  a.synchronous_check = false;
  corl::cuda::grpo_loss_from_logits(a, corl::PpoClip{}, corl::NoKl{}, scratch.ptr, scratch_bytes);
  check_cuda(cudaDeviceSynchronize(), "sync");
  corl::cuda::GrpoLossResult host{};
  check_cuda(cudaMemcpy(&host, d_result.ptr, sizeof(host), cudaMemcpyDeviceToHost), "copy");
  CHECK(host.error_word == ((1ull << 2) | corl::cuda::kRowTargetOutOfRange));
  CHECK(host.totals.tokens == 2);
  CHECK(host.totals.loss == doctest::Approx(-2.0 / 3).epsilon(1e-6));  // on-policy: -w A per token
  const auto grad = d_grad.download<float>();
  for (corl::index_t v = 0; v < V; ++v) CHECK(grad[static_cast<std::size_t>(V + v)] == 0.0f);
  CHECK(grad[0] == doctest::Approx((1.0 / 3) * -(1.0 - 1.0 / 64)).epsilon(1e-5));  // -w A (1 - p), p = 1/64
  // host-side checks
  a.synchronous_check = true;
  a.kl_coef = 0.1f;
  CHECK_THROWS_WITH_AS(corl::cuda::grpo_loss_from_logits(a, corl::PpoClip{}, corl::K3{}, scratch.ptr, scratch_bytes),
                       "grpo_loss_from_logits: kl_coef = 0.1 but logp_ref is null, expected kl_coef == 0 without "
                       "reference log-probs",
                       corl::Error);
  a.kl_coef = 0.0f;
  a.dlogits = d_logits.ptr + 1;
  CHECK_THROWS_AS(corl::cuda::grpo_loss_from_logits(a, corl::PpoClip{}, corl::NoKl{}, scratch.ptr, scratch_bytes),
                  corl::Error);
  a.dlogits = d_grad.ptr;
  CHECK_THROWS_AS(corl::cuda::grpo_loss_from_logits(a, corl::PpoClip{}, corl::NoKl{}, scratch.ptr, 16), corl::Error);
}

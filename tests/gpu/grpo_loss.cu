// GPU tests of corl/cuda/grpo_loss.cuh against a DOUBLE-precision CPU reference (corl/logprob/grpo_from_logits.hpp
// with Real = double).
//
// Why double. The float CPU reference sums each softmax row left to right; at V = 102400 / 131072 its lse / logp are
// off by ~1e-4 and its entropy by ~2e-4 (tests/unit/logprob_precision.cpp), more than the kernel, which folds ~V / 1024
// terms per thread and merges in a 10-level tree. The first H200 run failed against the float reference at those V
// (and on fp32 dlogits at V = 65536, ~1.4e-4 relative: p = exp(z - lse) inherits the reference's lse error).
//
// Tolerances: worst-case bounds of the kernel's fp32 arithmetic, derived per row and per element, never a blanket
// relative figure (the formulas: row_error_bound in tests/common/logprob_bounds.hpp):
//  * logp / entropy per row: gamma = (n + 3 n / N + 4 log2(threads) + 4) u, u = 2^-24, n = logits one thread folds
//    (N per 16-byte vector), |d lse| <= gamma + 8 u (|m| + |lse| + 1), |d logp| <= |d lse| + 8 u (|z_t| + |m| +
//    |logp|), |d entropy| <= gamma (1 + 2 |ln s - H|) + 8 u (|H| + |ln s - H| + E_p[(z - m)^2] + 1).
//  * loss / metric totals: the totals are re-composed in double from per-row (logp, entropy) by the formulas of
//    grpo_from_logits.hpp (the composition is checked against the library's double totals to 1e-12); each row's logp
//    is moved by +-its bound (plus the rounding of logp - logp_old) and the largest change of each total is summed
//    over rows; entropy enters linearly (entropy_coef w |d entropy|); plus 32 u per row times the magnitudes the
//    float token math handles (|value|, |grad|, |ratio|, |logp_ref - logp|, 1).
//  * clip counts: exactly the reference's, except rows whose flags change under that same +-bound move.
//  * dlogits: dz_v = g [v == t] + p_v (A - h log p_v), A = -g - h H, h = -w entropy_coef, g = dL/dlogp from the
//    composition. p_v = exp(log p_v) carries the lse error (|d p_v| <= p_v (|d lse| + 8 u (|z_v| + |lse| + 1))), g its
//    logp's (the change of g under the +-bound move), A the entropy's; then the product, the 1 / T and the storage
//    rounding (half an ulp: 2^-8 bf16, 2^-11 fp16 plus half the fp16 subnormal spacing 2^-25, nothing for fp32).
// For V = 102400 the logp bound is ~2e-5 against an observed ~1e-6. The checks can fail: an off-by-one target moves
// logp by ~3 (logits ~ N(0, 9)) and the gradient's +g to another column (~|g|, far above the p_v-scaled bound); a
// forgotten temperature (T = 0.7 / 0.8 / 0.9 / 1.2 cases) moves lse by ~10%; a forgotten row leaves the NaN poison
// (all comparisons are written so that NaN fails); masked rows must be exactly 0.
#include "gpu_test_main.cuh"
#include "common/logprob_bounds.hpp"
#include "device_array.cuh"

#include <algorithm>
#include <cfloat>
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
// DeviceArray, small_shapes_only (device_array.cuh); RowExact, exact_row, row_error_bound (common/logprob_bounds.hpp)
using namespace corl_test;

template <class Host>
struct DeviceType;
template <>
struct DeviceType<float> {
  using type = float;
  static constexpr double half_ulp = 0.0;        // the kernel's float result is stored as is
  static constexpr double half_min_spacing = 0.0;
};
template <>
struct DeviceType<corl::bfloat16> {
  using type = __nv_bfloat16;
  static constexpr double half_ulp = 1.0 / 256;  // round to nearest with 8 significant bits
  static constexpr double half_min_spacing = 0.0;
};
template <>
struct DeviceType<corl::float16> {
  using type = __half;
  static constexpr double half_ulp = 1.0 / 2048;            // 11 significant bits
  static constexpr double half_min_spacing = 1.0 / (1 << 25);  // half the fp16 subnormal spacing 2^-24
};

/// Totals and per-row dL/dlogp composed in double from per-row logp / entropy, by the formulas of
/// corl/logprob/grpo_from_logits.hpp, so that the effect of a per-row error on every output can be probed.
struct Composed {
  double loss = 0, policy_loss = 0, kl = 0, entropy_sum = 0, ratio_sum = 0;
  long long clipped = 0;
  std::vector<double> dlogp;      ///< w (P.grad + kl_coef K.grad) per row
  std::vector<double> magnitude;  ///< what the float token math of the row handles (for its rounding)
};

template <class Policy, class Kl>
Composed compose(const Policy& policy, const Kl& kl, corl::index_t sequences, corl::index_t seq_len,
                 const std::vector<std::uint8_t>& mask, const std::vector<double>& old, bool has_old,
                 const std::vector<double>& ref, bool has_ref, const std::vector<double>& adv,
                 const std::vector<double>& weight, double kl_coef, double entropy_coef,
                 const std::vector<double>& logp, const std::vector<double>& entropy) {
  const std::size_t rows = logp.size();
  Composed out;
  out.dlogp.assign(rows, 0.0);
  out.magnitude.assign(rows, 0.0);
  auto old_of = [&](std::size_t i) { return has_old ? old[i] : logp[i]; };
  std::vector<double> seq_stat(static_cast<std::size_t>(sequences), 0.0);
  if constexpr (Policy::sequence_level) {
    for (corl::index_t b = 0; b < sequences; ++b) {
      double sum = 0;
      int count = 0;
      for (corl::index_t t = 0; t < seq_len; ++t) {
        const auto i = static_cast<std::size_t>(b * seq_len + t);
        if (mask[i] == 0) continue;
        sum += policy.template seq_stat_term<double>(logp[i], old_of(i), adv[static_cast<std::size_t>(b)]);
        ++count;
      }
      seq_stat[static_cast<std::size_t>(b)] = count > 0 ? sum / count : 0.0;
    }
  }
  for (std::size_t i = 0; i < rows; ++i) {
    if (mask[i] == 0) continue;
    const auto b = static_cast<std::size_t>(static_cast<corl::index_t>(i) / seq_len);
    const double w = weight[b];
    const corl::TokenTerm<double> p = policy.template token<double>(logp[i], old_of(i), adv[b], seq_stat[b]);
    corl::TokenTerm<double> q{};
    if (has_ref) q = kl.template token<double>(logp[i], ref[i], old_of(i));
    out.policy_loss += w * p.value;
    out.kl += w * q.value;
    out.loss += w * (p.value + kl_coef * q.value - entropy_coef * entropy[i]);
    out.entropy_sum += entropy[i];
    out.ratio_sum += p.ratio;
    out.clipped += ((p.flags & corl::kClippedLow) ? 1 : 0) + ((p.flags & corl::kClippedHigh) ? 1 : 0);
    out.dlogp[i] = w * (p.grad + kl_coef * q.grad);
    out.magnitude[i] = w * (std::abs(p.value) + std::abs(p.grad) + std::abs(p.ratio) + 1) +
                       w * kl_coef * (std::abs(q.value) + std::abs(q.grad) + (has_ref ? std::abs(ref[i] - logp[i]) : 0) + 2) +
                       w * entropy_coef * std::abs(entropy[i]) + std::abs(p.ratio);
  }
  return out;
}

struct Case {
  corl::index_t B, T, V;
  float temperature, kl_coef, entropy_coef;
  bool mask, old, in_place;
  unsigned seed;
  int max_row_split = 8;  // GrpoLossArgs::max_row_split (1: one block per row, the layout before clusters)
  bool bulk = false;      // the second run uses GrpoLossArgs::bulk_copy; both runs must give the same bits
};

template <class Host, class Policy, class Kl>
void check_case(const Case& c, const Policy& policy, const Kl& kl) {
  using Device = typename DeviceType<Host>::type;
  // under compute-sanitizer (scripts/gpu-check): small cases only, but including a row split over a cluster
  if (small_shapes_only() && c.B * c.T * c.V > 400000) return;
  CAPTURE(c.B);
  CAPTURE(c.T);
  CAPTURE(c.V);
  CAPTURE(c.seed);
  CAPTURE(c.in_place);
  CAPTURE(c.max_row_split);
  CAPTURE(c.bulk);
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

  // CPU reference, in double (inputs widened exactly: the kernel reads the same float values)
  const auto widen = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
  const std::vector<double> old_d = widen(old), ref_d = widen(ref), adv_d = widen(adv), weight_d = widen(weight);
  const bool has_ref = c.kl_coef != 0.0f;
  corl::GrpoLogitsBatch<Host, double> in;
  in.logits = std::span<const Host>(logits);
  in.sequences = c.B;
  in.seq_len = c.T;
  in.vocab = c.V;
  in.targets = std::span<const std::int32_t>(targets);
  if (c.mask) in.mask = std::span<const std::uint8_t>(mask);
  if (c.old) in.logp_old = std::span<const double>(old_d);
  if (has_ref) in.logp_ref = std::span<const double>(ref_d);
  in.advantages = std::span<const double>(adv_d);
  in.token_weight = std::span<const double>(weight_d);
  in.temperature = static_cast<double>(c.temperature);
  in.kl_coef = static_cast<double>(c.kl_coef);
  in.entropy_coef = static_cast<double>(c.entropy_coef);
  std::vector<double> ref_grad(logits.size());
  std::vector<double> ref_logp(targets.size()), ref_ent(targets.size());
  const corl::GrpoLossTotals want = corl::grpo_loss_from_logits<double>(
      in, policy, kl, std::span<double>(ref_grad), std::span<double>(ref_logp), std::span<double>(ref_ent));

  // the double reference is exact here (checked against long double), and our re-composition reproduces it
  const auto compose_at = [&](const std::vector<double>& lp_rows, const std::vector<double>& ent_rows) {
    return compose(policy, kl, c.B, c.T, mask, old_d, c.old, ref_d, has_ref, adv_d, weight_d,
                   static_cast<double>(c.kl_coef), static_cast<double>(c.entropy_coef), lp_rows, ent_rows);
  };
  const Composed base = compose_at(ref_logp, ref_ent);
  CHECK(std::abs(base.loss - want.loss) <= 1e-12 * (1 + std::abs(want.loss)));
  CHECK(std::abs(base.policy_loss - want.policy_loss) <= 1e-12 * (1 + std::abs(want.policy_loss)));
  CHECK(std::abs(base.kl - want.kl) <= 1e-12 * (1 + std::abs(want.kl)));
  CHECK(std::abs(base.ratio_sum - want.ratio_sum) <= 1e-12 * (1 + std::abs(want.ratio_sum)));
  CHECK(base.clipped == want.clipped_low + want.clipped_high);

  // per-row bounds of the kernel's softmax statistics (its layout and vector width fix its summation order)
  const int per_vector = c.V % corl::cuda::LogitTraits<Device>::kPerVector == 0
                             ? corl::cuda::LogitTraits<Device>::kPerVector
                             : 1;
  int threads = corl::cuda::row_block_threads(c.V * static_cast<corl::index_t>(sizeof(Host)));
  int parts = 1;
  if constexpr (!static_cast<bool>(Policy::sequence_level)) {
    const auto layout = corl::cuda::grpo_loss_row_layout<Device>(c.V, per_vector > 1, c.max_row_split);
    threads = layout.threads;
    parts = layout.parts;
    MESSAGE("V " << c.V << ": " << parts << " block(s) per row of " << threads << " threads, "
                 << layout.smem_bytes << " B of shared memory each");
  }
  const double u = kUnitRoundoff;
  std::vector<RowErrorBound> bound(targets.size());
  std::vector<RowExact> exact(targets.size());
  for (std::size_t i = 0; i < targets.size(); ++i) {
    if (mask[i] == 0) continue;
    exact[i] = exact_row(logits.data() + static_cast<corl::index_t>(i) * c.V, c.V, targets[i],
                         static_cast<double>(c.temperature));
    CHECK(std::abs(ref_logp[i] - exact[i].logp) <= 1e-9 * (1 + std::abs(exact[i].logp)));
    CHECK(std::abs(ref_ent[i] - exact[i].entropy) <= 1e-9 * (1 + std::abs(exact[i].entropy)));
    bound[i] = row_error_bound(c.V, threads, per_vector, exact[i], parts);
  }

  // totals: move each row's logp by +-(its bound + the rounding of logp - logp_old) and add up the largest changes
  double tol_loss = 0, tol_policy = 0, tol_kl = 0, tol_entropy = 0, tol_ratio = 0;
  long long clip_slack = 0;
  std::vector<double> dlogp_slack(targets.size(), 0.0);
  for (std::size_t i = 0; i < targets.size(); ++i) {
    if (mask[i] == 0) continue;
    const double move = bound[i].logp + 8 * u * (std::abs(ref_logp[i]) + std::abs(old_d[i]) + 1);
    double d_loss = 0, d_policy = 0, d_kl = 0, d_ratio = 0, d_dlogp = 0;
    long long d_clip = 0;
    for (const double sign : {-1.0, 1.0}) {
      std::vector<double> moved = ref_logp;
      moved[i] += sign * move;
      const Composed m = compose_at(moved, ref_ent);
      d_loss = std::max(d_loss, std::abs(m.loss - base.loss));
      d_policy = std::max(d_policy, std::abs(m.policy_loss - base.policy_loss));
      d_kl = std::max(d_kl, std::abs(m.kl - base.kl));
      d_ratio = std::max(d_ratio, std::abs(m.ratio_sum - base.ratio_sum));
      d_clip = std::max(d_clip, std::abs(m.clipped - base.clipped));
      for (std::size_t j = 0; j < targets.size(); ++j)  // sequence-level losses: a row moves its sequence's g
        dlogp_slack[j] = std::max(dlogp_slack[j], std::abs(m.dlogp[j] - base.dlogp[j]));
      d_dlogp = std::max(d_dlogp, std::abs(m.dlogp[i] - base.dlogp[i]));
    }
    const double w = weight_d[static_cast<std::size_t>(static_cast<corl::index_t>(i) / c.T)];
    const double rounding = 32 * u * base.magnitude[i];
    tol_loss += d_loss + w * static_cast<double>(c.entropy_coef) * bound[i].entropy + rounding;
    tol_policy += d_policy + rounding;
    tol_kl += d_kl + rounding;
    tol_ratio += d_ratio + rounding;
    tol_entropy += bound[i].entropy + 2 * u * std::abs(ref_ent[i]);
    clip_slack += d_clip;
    dlogp_slack[i] = std::max(dlogp_slack[i], d_dlogp);
  }
  // g of a row also carries the float rounding of its token math
  for (std::size_t i = 0; i < targets.size(); ++i) dlogp_slack[i] += 32 * u * base.magnitude[i];

  // dlogits: per-element bound (see the header comment)
  const double inv_t = 1.0 / static_cast<double>(c.temperature);
  std::vector<double> grad_bound(logits.size(), 0.0);  // masked rows: exactly 0
  for (std::size_t i = 0; i < targets.size(); ++i) {
    if (mask[i] == 0) continue;
    const double w = weight_d[static_cast<std::size_t>(static_cast<corl::index_t>(i) / c.T)];
    const double h = -w * static_cast<double>(c.entropy_coef), g = base.dlogp[i];
    const double big_a = -g - h * ref_ent[i];
    const double d_big_a = dlogp_slack[i] + std::abs(h) * bound[i].entropy + 4 * u * (std::abs(g) + std::abs(h * ref_ent[i]));
    const double lse = exact[i].lse;
    for (corl::index_t v = 0; v < c.V; ++v) {
      const auto k = static_cast<std::size_t>(static_cast<corl::index_t>(i) * c.V + v);
      const double z = corl::to_real<double>(logits[k]) * inv_t;
      const double logp_v = z - lse, p = std::exp(logp_v);
      const double d_logp_v = bound[i].lse + 8 * u * (std::abs(z) + std::abs(lse) + 1);
      double err = p * (d_logp_v * (std::abs(big_a) + std::abs(h * logp_v)) + d_big_a + std::abs(h) * d_logp_v);
      if (v == targets[i]) err += dlogp_slack[i];
      // + the smallest normal float (ex2 may flush a subnormal p_v to 0; irrelevant for any value that matters)
      err = err * inv_t + 4 * u * std::abs(ref_grad[k]) + 2 * static_cast<double>(FLT_MIN) * inv_t;
      grad_bound[k] = err + DeviceType<Host>::half_ulp * (std::abs(ref_grad[k]) + err) +
                      DeviceType<Host>::half_min_spacing;
    }
  }

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
  a.max_row_split = c.max_row_split;

  std::vector<Host> first_grad;
  corl::GrpoLossTotals first{};
  for (int run = 0; run < 2; ++run) {
    a.bulk_copy = c.bulk && run == 1;
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
    // a ratio within its row's bound of a clip bound may land on either side: exactly those rows may differ
    CHECK(std::abs(got.clipped_low + got.clipped_high - want.clipped_low - want.clipped_high) <= clip_slack);
    // written so that NaN fails
    CHECK(std::abs(got.loss - want.loss) <= tol_loss);
    CHECK(std::abs(got.policy_loss - want.policy_loss) <= tol_policy);
    CHECK(std::abs(got.kl - want.kl) <= tol_kl);
    CHECK(std::abs(got.entropy_sum - want.entropy_sum) <= tol_entropy);
    CHECK(std::abs(got.ratio_sum - want.ratio_sum) <= tol_ratio);
    MESSAGE("loss " << got.loss - want.loss << " (bound " << tol_loss << "), entropy_sum "
                                 << got.entropy_sum - want.entropy_sum << " (bound " << tol_entropy << ")");

    int bad = 0;
    double worst = 0;  // largest |gpu - reference| / bound over the elements
    for (std::size_t k = 0; k < grad.size(); ++k) {
      const double g = corl::to_real<double>(grad[k]), r = ref_grad[k];
      const double diff = std::abs(g - r);
      const bool ok = diff <= grad_bound[k];  // NaN fails; masked rows: bound 0, so exactly 0
      if (grad_bound[k] > 0) worst = std::max(worst, diff / grad_bound[k]);
      if (!ok && bad < 5)
        MESSAGE("dlogits[" << k / static_cast<std::size_t>(c.V) << ", "
                                     << k % static_cast<std::size_t>(c.V) << "] = " << g << ", reference " << r
                                     << ", bound " << grad_bound[k]);
      bad += ok ? 0 : 1;
    }
    CHECK(bad == 0);
    MESSAGE("dlogits: largest difference / bound = " << worst);
    int bad_rows = 0;
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const bool ok = mask[i] == 0 ? (logp[i] == 0.0f && ent[i] == 0.0f)
                                   : std::abs(logp[i] - ref_logp[i]) <= bound[i].logp &&
                                         std::abs(ent[i] - ref_ent[i]) <= bound[i].entropy;
      if (!ok && bad_rows < 5)
        MESSAGE("row " << i << ": logp " << logp[i] << " vs " << ref_logp[i] << " (bound "
                                     << bound[i].logp << "), entropy " << ent[i] << " vs " << ref_ent[i]
                                     << " (bound " << bound[i].entropy << ")");
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
  check_case<corl::bfloat16>({2, 3, 102400, 0.9f, 0.04f, 0.001f, true, true, false, 4}, ppo, corl::K3{});  // cluster
  check_case<corl::bfloat16>({2, 3, 102400, 0.9f, 0.04f, 0.001f, true, true, false, 4, 1}, ppo,
                             corl::K3{});  // the same inputs, one block per row, row in shared memory
  check_case<corl::bfloat16>({2, 3, 102400, 0.9f, 0.04f, 0.001f, true, true, false, 4, 2}, ppo,
                             corl::K3{});  // the same inputs, two blocks of 512 threads per row
  check_case<corl::bfloat16>({1, 3, 131072, 1.0f, 0.04f, 0.0f, false, true, false, 9, 3}, ppo,
                             corl::K3{});  // three uneven chunks of 512 threads
  check_case<corl::bfloat16>({1, 3, 131072, 1.0f, 0.04f, 0.0f, false, true, false, 5}, ppo, corl::K3{});  // cluster
  check_case<corl::bfloat16>({1, 3, 131072, 1.0f, 0.04f, 0.0f, false, true, false, 5, 1}, ppo,
                             corl::K3{});  // one block per row: the L2 path
  check_case<corl::bfloat16>({3, 7, 4096, 0.8f, 0.04f, 0.01f, true, true, true, 6}, ppo, corl::K3{});     // in place
  check_case<corl::bfloat16>({1, 3, 131072, 1.0f, 0.04f, 0.0f, false, true, true, 7}, ppo, corl::K3{});   // in place
  check_case<corl::bfloat16>({1, 3, 131072, 1.0f, 0.04f, 0.0f, false, true, true, 7, 1}, ppo, corl::K3{});  // L2
  check_case<corl::bfloat16>({2, 4, 60008, 1.1f, 0.04f, 0.01f, true, true, false, 8}, ppo,
                             corl::K3{});  // 120016 B: just over two rows per SM, uneven chunks
}

TEST_CASE("the bulk-copy pass 1 (sm_90) gives the same bits as the strided loads: clusters, one block, in place") {
  int device = 0, major = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
  if (major < 9) {
    MESSAGE("compute capability " << major << ".x: no bulk-copy engine, the option falls back to the strided path");
  }
  const corl::PpoClip ppo{0.2, 0.28};
  // run 0 strided, run 1 bulk: each checked against the double reference, and bit for bit against each other
  check_case<corl::bfloat16>({2, 3, 102400, 0.9f, 0.04f, 0.001f, true, true, false, 31, 8, true}, ppo, corl::K3{});
  check_case<corl::bfloat16>({2, 5, 16384, 1.0f, 0.04f, 0.01f, true, true, false, 32, 8, true}, ppo, corl::K3{});
  check_case<corl::bfloat16>({2, 4, 60008, 1.1f, 0.04f, 0.01f, true, true, true, 33, 8, true}, ppo, corl::K3{});
  check_case<corl::bfloat16>({3, 7, 1000, 0.8f, 0.04f, 0.01f, true, true, false, 34, 8, true}, ppo, corl::K3{});
  check_case<float>({1, 3, 102400, 0.9f, 0.04f, 0.01f, true, true, true, 35, 8, true}, ppo, corl::K3{});
  check_case<float>({2, 3, 4093, 1.0f, 0.04f, 0.0f, true, true, false, 36, 8, true}, ppo,
                    corl::K3{});  // odd V: not vectorizable, the option is ignored
}

TEST_CASE("fused loss matches the CPU reference in fp32 and fp16") {
  const corl::PpoClip ppo{};
  check_case<float>({3, 5, 999, 0.7f, 0.1f, 0.01f, true, true, false, 11}, ppo, corl::K3{});
  check_case<float>({2, 9, 32000, 1.0f, 0.1f, 0.0f, true, true, true, 12}, ppo, corl::K2{});
  check_case<float>({1, 2, 65536, 1.0f, 0.0f, 0.0f, false, true, false, 13}, ppo, corl::NoKl{});  // 256 KiB: 5 parts
  check_case<float>({1, 2, 65536, 1.0f, 0.0f, 0.0f, false, true, false, 13, 1}, ppo, corl::NoKl{});  // L2
  check_case<float>({1, 3, 102400, 0.9f, 0.04f, 0.01f, true, true, true, 16}, ppo, corl::K3{});  // 8 parts, in place
  check_case<float>({1, 2, 250000, 1.0f, 0.04f, 0.0f, false, true, false, 17}, ppo, corl::K3{});  // 1 MB: L2
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

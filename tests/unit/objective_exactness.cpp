// Exactness of the objective for every Loss x KL x Aggregation combination:
//   1. finite differences (double) of the loss reproduce dL/dlogp and dL/dentropy at every token;
//   2. random splits into micro-batches (gradient accumulation) and simulated data-parallel ranks give the full-batch
//      loss, gradient and metrics to 1e-12 (double).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <corl/loss/aggregate.hpp>
#include <corl/loss/cispo.hpp>
#include <corl/loss/delta_clip.hpp>
#include <corl/loss/dual_clip.hpp>
#include <corl/loss/entropy_mask.hpp>
#include <corl/loss/gmpo.hpp>
#include <corl/loss/gspo.hpp>
#include <corl/loss/kl.hpp>
#include <corl/loss/objective.hpp>
#include <corl/loss/ppo_clip.hpp>
#include <corl/loss/reinforce.hpp>
#include <corl/loss/sapo.hpp>
#include <random>
#include <string>
#include <tuple>

TYPE_TO_STRING(corl::PpoClip);
TYPE_TO_STRING(corl::DualClipPpo);
TYPE_TO_STRING(corl::DeltaClip);
TYPE_TO_STRING(corl::Gspo);
TYPE_TO_STRING(corl::Gmpo);
TYPE_TO_STRING(corl::Cispo);
TYPE_TO_STRING(corl::Sapo);
TYPE_TO_STRING(corl::Reinforce);

namespace {

// Loss parameters chosen so that the random ratios below (|log r| <= 0.3) exercise every branch of each loss.
template <class Loss>
Loss test_loss() {
  return Loss{};
}
template <>
corl::PpoClip test_loss<corl::PpoClip>() {
  return corl::PpoClip{0.1, 0.15};
}
template <>
corl::DualClipPpo test_loss<corl::DualClipPpo>() {
  return corl::DualClipPpo{0.1, 0.1, 1.2};
}
template <>
corl::DeltaClip test_loss<corl::DeltaClip>() {
  return corl::DeltaClip{0.1, 0.1, 1.2};
}
template <>
corl::Gspo test_loss<corl::Gspo>() {
  return corl::Gspo{0.05, 0.05};
}
template <>
corl::Gmpo test_loss<corl::Gmpo>() {
  return corl::Gmpo{0.2, 0.2};
}
template <>
corl::Cispo test_loss<corl::Cispo>() {
  return corl::Cispo{0.15, 0.1};
}

// A random batch: B sequences in groups of 4, random lengths (some 0), holes in the mask, per-sequence advantages
// (some groups all-zero), every optional array present.
corl::Batch<double> random_batch(std::uint64_t seed, corl::index_t batch, corl::index_t max_len) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  corl::Batch<double> b(batch, max_len);
  b.logp_old.resize(b.logp.size());
  b.logp_ref.resize(b.logp.size());
  b.logp_sampler.resize(b.logp.size());
  b.entropy.resize(b.logp.size());
  b.truncated.assign(static_cast<std::size_t>(batch), 0);
  for (corl::index_t s = 0; s < batch; ++s) {
    const auto len = static_cast<corl::index_t>(u(rng) * static_cast<double>(max_len + 1)) % (max_len + 1);
    b.set_length(s, len);
    for (corl::index_t t = 0; t < len; ++t)
      if (u(rng) < 0.15) b.mask[static_cast<std::size_t>(s * max_len + t)] = 0;
    b.group[static_cast<std::size_t>(s)] = s / 4;
    b.advantages[static_cast<std::size_t>(s)] = (s / 4) % 3 == 2 ? 0.0 : 4.0 * u(rng) - 2.0;
    b.truncated[static_cast<std::size_t>(s)] = u(rng) < 0.2 ? 1 : 0;
  }
  for (std::size_t i = 0; i < b.logp.size(); ++i) {
    b.logp[i] = -0.1 - 3.0 * u(rng);
    b.logp_old[i] = b.logp[i] + 0.6 * u(rng) - 0.3;
    b.logp_ref[i] = b.logp[i] + 2.0 * u(rng) - 1.0;
    b.logp_sampler[i] = b.logp_old[i] + 0.8 * u(rng) - 0.4;
    b.entropy[i] = 3.0 * u(rng);
  }
  return b;
}

// Token-level importance weights for token-level losses; sequence-level weights for GSPO / GMPO, whose gradient is the
// exact derivative only when the weight is constant over the sequence (with token-level weights it is the GSPO-token
// gradient by definition; see objective.hpp).
template <class Loss>
corl::ObjectiveConfig fd_config() {
  corl::ObjectiveConfig c;
  c.beta = 0.1;
  c.entropy_coef = 0.01;
  c.importance.level = Loss::sequence_level ? corl::ImportanceLevel::sequence : corl::ImportanceLevel::token;
  c.importance.mode = corl::ImportanceMode::truncate;
  c.importance.upper = 1.2;
  return c;
}

template <class Obj>
corl::Normalizers normalizers_of(const Obj& obj, const corl::Batch<double>& b) {
  corl::Normalizers z = obj.count_normalizers(b.view());
  z.constant_divisor = static_cast<double>(b.max_len);
  return z;
}

// Largest |analytic - finite difference| / (1e-7 + 1e-6 |fd|) over every token of a random batch: <= 1 passes.
struct FdResult {
  double worst = 0;  ///< <= 1 means every token is within tolerance
  int loss_tokens = 0;
};

template <class Loss, class Kl, class Agg>
FdResult finite_difference_error(std::uint64_t seed) {
  using Obj = corl::Objective<Loss, Kl, Agg>;
  const Obj obj(test_loss<Loss>(), Kl{}, Agg{}, fd_config<Loss>());
  auto b = random_batch(seed, 8, 6);
  const corl::Normalizers z = normalizers_of(obj, b);
  const auto r = obj.evaluate(b.view(), z);
  const double h = 1e-6;
  const auto loss_at = [&](std::vector<double>& arr, std::size_t i, double delta) {
    const double keep = arr[i];
    arr[i] = keep + delta;
    const double l = obj.evaluate(b.view(), z).loss;
    arr[i] = keep;
    return l;
  };
  FdResult out;
  for (corl::index_t s = 0; s < b.batch; ++s) {
    for (corl::index_t t = 0; t < b.max_len; ++t) {
      const auto i = static_cast<std::size_t>(s * b.max_len + t);
      const double fd = (loss_at(b.logp, i, h) - loss_at(b.logp, i, -h)) / (2 * h);
      const double fd_h = (loss_at(b.entropy, i, h) - loss_at(b.entropy, i, -h)) / (2 * h);
      const double e1 = std::abs(r.grad_logp(s, t) - fd) / (1e-7 + 1e-6 * std::abs(fd));
      const double e2 = std::abs(r.grad_entropy(s, t) - fd_h) / (1e-7 + 1e-6 * std::abs(fd_h));
      out.worst = std::max({out.worst, e1, e2});
      out.loss_tokens += b.mask[i];
    }
  }
  return out;
}

template <class Loss, class Kl>
void fd_over_aggregations(std::uint64_t seed, const char* kl_name) {
  const FdResult res[4] = {finite_difference_error<Loss, Kl, corl::TokenMean>(seed),
                           finite_difference_error<Loss, Kl, corl::SeqMeanTokenMean>(seed + 1),
                           finite_difference_error<Loss, Kl, corl::SeqMeanTokenSum>(seed + 2),
                           finite_difference_error<Loss, Kl, corl::SeqMeanTokenSumNorm>(seed + 3)};
  const char* names[4] = {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"};
  for (int k = 0; k < 4; ++k) {
    INFO("KL = ", std::string(kl_name), ", aggregation = ", std::string(names[k]));
    CHECK(res[k].worst <= 1.0);
    CHECK(res[k].loss_tokens >= 8);
  }
}

// ---- invariance under micro-batching and data parallelism ----

corl::ObjectiveConfig split_config(const corl::Batch<double>& full, int variant) {
  corl::ObjectiveConfig c;
  c.beta = 0.05;
  c.entropy_coef = 0.003;
  if (variant == 1) {
    c.mask_truncated = true;
    c.entropy_threshold = corl::top_entropy_threshold(full.view(), 0.6);  // global: computed on the full step
    c.importance.level = corl::ImportanceLevel::sequence;
    c.importance.mode = corl::ImportanceMode::mask;
    c.importance.lower = 0.3;
    c.importance.upper = 3.0;
  } else if (variant == 2) {
    c.importance.level = corl::ImportanceLevel::token;
    c.importance.mode = corl::ImportanceMode::truncate;
    c.importance.upper = 1.1;
  }
  return c;
}

// Largest deviation of the split results from the full batch, and whether the merged counts agree exactly.
struct SplitResult {
  double loss_err = 0;     ///< |sum of micro-batch losses - full loss| (and the DP-averaged variant)
  double grad_err = 0;     ///< max |micro-batch gradient - full gradient| (dL/dlogp, DP-averaged, dL/dentropy)
  double metric_err = 0;   ///< max deviation of the merged mean metrics
  bool counts_equal = true;  ///< normalisers, token counts, clip counts, ratio min / max agree exactly
  int micro_batches = 0;
};

template <class Loss, class Kl, class Agg>
SplitResult split_error(std::uint64_t seed, int variant) {
  using Obj = corl::Objective<Loss, Kl, Agg>;
  const auto full = random_batch(seed, 24, 7);
  const Obj obj(test_loss<Loss>(), Kl{}, Agg{}, split_config(full, variant));
  const corl::Normalizers z_full = normalizers_of(obj, full);
  const auto ref = obj.evaluate(full.view(), z_full);
  SplitResult out;
  const auto dev = [](double& acc, double a, double b) { acc = std::max(acc, std::abs(a - b)); };

  std::mt19937_64 rng(seed * 7 + 1);
  for (int trial = 0; trial < 3; ++trial) {
    // Random contiguous micro-batches over 2 simulated ranks.
    const int ranks = 2;
    std::vector<corl::Batch<double>> micro;
    corl::index_t first = 0;
    while (first < full.batch) {
      const corl::index_t n = std::min<corl::index_t>(1 + static_cast<corl::index_t>(rng() % 7), full.batch - first);
      micro.push_back(full.rows(first, n));
      first += n;
    }
    out.micro_batches += static_cast<int>(micro.size());
    // Global normalisers: the sum of the micro-batch counts (the all-reduce).
    corl::Normalizers z;
    for (const auto& m : micro) z += obj.count_normalizers(m.view());
    z.constant_divisor = z_full.constant_divisor;
    out.counts_equal = out.counts_equal && z.total_tokens == z_full.total_tokens &&
                       z.total_sequences == z_full.total_sequences;

    // (a) Frameworks that sum: losses and gradients of the micro-batches add up to the full batch.
    // (b) Frameworks that average gradients over ranks (DDP): scale by world_size, then average the rank gradients.
    corl::Normalizers z_dp = z;
    z_dp.world_size = ranks;
    z_dp.ranks_average_gradients = true;
    double loss_sum = 0, loss_dp = 0;
    corl::ObjectiveMetrics merged;
    corl::index_t row = 0;
    for (const auto& m : micro) {
      const auto r = obj.evaluate(m.view(), z);
      const auto rd = obj.evaluate(m.view(), z_dp);
      loss_sum += r.loss;
      loss_dp += rd.loss / ranks;
      merged += r.metrics;
      for (corl::index_t s = 0; s < m.batch; ++s)
        for (corl::index_t t = 0; t < full.max_len; ++t) {
          dev(out.grad_err, r.grad_logp(s, t), ref.grad_logp(row + s, t));
          dev(out.grad_err, rd.grad_logp(s, t) / ranks, ref.grad_logp(row + s, t));
          dev(out.grad_err, r.grad_entropy(s, t), ref.grad_entropy(row + s, t));
        }
      row += m.batch;
    }
    dev(out.loss_err, loss_sum, ref.loss);
    dev(out.loss_err, loss_dp, ref.loss);
    dev(out.loss_err, merged.policy_loss + merged.kl_loss + merged.entropy_loss, ref.loss);
    const auto& rm = ref.metrics;
    out.counts_equal = out.counts_equal && merged.tokens == rm.tokens && merged.clipped_low == rm.clipped_low &&
                       merged.clipped_high == rm.clipped_high && merged.dual_clipped == rm.dual_clipped &&
                       merged.ratio_min == rm.ratio_min && merged.ratio_max == rm.ratio_max &&
                       merged.sequences == rm.sequences;
    dev(out.metric_err, merged.ratio_mean(), rm.ratio_mean());
    dev(out.metric_err, merged.kl_mean(), rm.kl_mean());
    dev(out.metric_err, merged.entropy_mean(), rm.entropy_mean());
    dev(out.metric_err, merged.importance_weight_mean(), rm.importance_weight_mean());
    dev(out.metric_err, merged.advantage_mean(), rm.advantage_mean());
    dev(out.metric_err, merged.advantage_std(), rm.advantage_std());
  }
  return out;
}

template <class Loss, class Kl>
void split_over_aggregations(std::uint64_t seed, const char* kl_name) {
  for (int variant = 0; variant < 3; ++variant) {
    const SplitResult res[4] = {split_error<Loss, Kl, corl::TokenMean>(seed, variant),
                                split_error<Loss, Kl, corl::SeqMeanTokenMean>(seed + 1, variant),
                                split_error<Loss, Kl, corl::SeqMeanTokenSum>(seed + 2, variant),
                                split_error<Loss, Kl, corl::SeqMeanTokenSumNorm>(seed + 3, variant)};
    const char* names[4] = {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"};
    for (int k = 0; k < 4; ++k) {
      INFO("KL = ", std::string(kl_name), ", aggregation = ", std::string(names[k]), ", config variant ", variant);
      CHECK(res[k].loss_err <= 1e-12);
      CHECK(res[k].grad_err <= 1e-12);
      CHECK(res[k].metric_err <= 1e-12);
      CHECK(res[k].counts_equal);
      CHECK(res[k].micro_batches > 3);
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE("finite differences reproduce dL/dlogp and dL/dentropy for every KL and aggregation", Loss,
                   corl::PpoClip, corl::DualClipPpo, corl::DeltaClip, corl::Gspo, corl::Gmpo, corl::Cispo, corl::Sapo,
                   corl::Reinforce) {
  fd_over_aggregations<Loss, corl::NoKl>(100, "none");
  fd_over_aggregations<Loss, corl::K1>(200, "k1");
  fd_over_aggregations<Loss, corl::AbsKl>(300, "abs");
  fd_over_aggregations<Loss, corl::K2>(400, "k2");
  fd_over_aggregations<Loss, corl::K3>(500, "k3");
}

TEST_CASE_TEMPLATE("micro-batches and data-parallel ranks sum to the full batch exactly", Loss, corl::PpoClip,
                   corl::DualClipPpo, corl::DeltaClip, corl::Gspo, corl::Gmpo, corl::Cispo, corl::Sapo,
                   corl::Reinforce) {
  split_over_aggregations<Loss, corl::NoKl>(11, "none");
  split_over_aggregations<Loss, corl::K3>(21, "k3");
  split_over_aggregations<Loss, corl::K3Plus>(31, "k3+");
  split_over_aggregations<Loss, corl::BiasCorrected<corl::K3>>(41, "bias-corrected k3");
}

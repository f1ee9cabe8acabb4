// corl/loss/objective.hpp — the GRPO-family objective on per-token log-probs: loss, exact dL/dlogp, dL/dentropy and
// mergeable metrics. This is the CPU reference that the CUDA kernels and the trainers are checked against.
//
// For a batch (corl/core/batch.hpp) with effective mask m_bt = mask_bt * [not (mask_truncated and truncated_b)] *
// [entropy_bt >= entropy_threshold, when set], n_b = sum_t m_bt and w_b = Aggregation::sequence_weight(n_b, Z):
//   loss = sum_b w_b sum_t m_bt ( c_bt policy_bt + beta kl_bt - entropy_coef H_bt )
//   dL/dlogp_bt    = w_b m_bt ( c_bt d policy_bt/dlogp + beta d kl_bt/dlogp )
//   dL/dentropy_bt = -w_b m_bt entropy_coef          (chain it through dH/dlogits in the from-logits path)
// policy_bt = Loss::token(logp, logp_old, A_bt, s_b).value, with s_b = (1/n_b) sum_t m_bt Loss::seq_stat_term(...) for
// sequence-level losses (GSPO, GMPO: the sequence pass, then the token pass); kl_bt = Kl::token(logp, logp_ref,
// logp_old).value; c_bt the constant sampler/trainer importance weight (importance_correction.hpp). A batch without
// logp_old is on-policy: logp_old = logp (ratio 1). Z = the GLOBAL normalisers of the optimizer step: count each
// micro-batch with count_normalizers(), add them (all-reduce across ranks), then evaluate every micro-batch with the
// total; the micro-batch losses and gradients then sum to the full-batch ones exactly (aggregate.hpp).
// Loss and metric sums are accumulated in double for both Real = float and Real = double.
// Exactness: dL/dlogp is the derivative of the loss except where a source defines a stop-gradient (straight-through
// and bias-corrected KL), and for sequence-level losses combined with per-token advantages or TOKEN-level importance
// weights: those get the GSPO-token gradient c_bt L'(s_b) s_b, while the derivative would use the sequence mean of
// c_bt (use sequence-level importance correction with GSPO / GMPO, as verl recommends).
// Sources: Shao et al. 2024 (GRPO, DeepSeekMath); TRL GRPOTrainer (`beta`, `loss_type`, `epsilon`, `epsilon_high`,
// `mask_truncated_completions`, `top_entropy_quantile`); verl actor (`loss_agg_mode`, `use_kl_loss`, `kl_loss_coef`,
// `kl_loss_type`, `entropy_coeff`, `clip_ratio_*`).
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "corl/concepts/aggregation.hpp"
#include "corl/concepts/kl_estimator.hpp"
#include "corl/concepts/policy_loss.hpp"
#include "corl/core/batch.hpp"
#include "corl/core/error.hpp"
#include "corl/loss/aggregate.hpp"
#include "corl/loss/importance_correction.hpp"
#include "corl/loss/kl.hpp"
#include "corl/loss/token_term.hpp"

namespace corl {

/// Everything of the objective that is not the choice of Loss / KL / Aggregation.
struct ObjectiveConfig {
  double beta = 0.0;          ///< KL coefficient (TRL `beta`, verl `kl_loss_coef`); see kl_controller.hpp to adapt it
  double entropy_coef = 0.0;  ///< entropy bonus: the loss gets -entropy_coef * H per token (verl `entropy_coeff`)
  bool mask_truncated = false;  ///< drop completions with truncated = 1 (TRL `mask_truncated_completions`, DAPO)
  /// Keep only tokens with entropy >= this threshold (top_entropy_threshold over the whole step; entropy_mask.hpp).
  std::optional<double> entropy_threshold;
  ImportanceCorrection importance{};  ///< sampler/trainer correction (needs logp_sampler when level != none)
};

/// Sums and counts, so that micro-batch metrics merge exactly with +=. Ratios and fractions are over loss tokens.
struct ObjectiveMetrics {
  double tokens = 0;        ///< loss tokens
  double clipped_low = 0;   ///< tokens flagged kClippedLow
  double clipped_high = 0;  ///< tokens flagged kClippedHigh
  double dual_clipped = 0;  ///< tokens flagged kDualClipped
  double ratio_sum = 0;
  double ratio_min = std::numeric_limits<double>::infinity();
  double ratio_max = -std::numeric_limits<double>::infinity();
  double kl_sum = 0;             ///< sum of the KL estimator's value (when logp_ref is present)
  double kl_tokens = 0;
  double entropy_sum = 0;        ///< sum of entropy over loss tokens (when entropy is present)
  double entropy_tokens = 0;
  double importance_weight_sum = 0;  ///< sum of c_bt over loss tokens
  double sequences = 0;          ///< rows of the batch
  double advantage_sum = 0;      ///< over rows (per-sequence advantages)
  double advantage_sq_sum = 0;
  double groups = 0;             ///< distinct group indices (exact to merge when a group is not split across batches)
  double zero_std_groups = 0;    ///< groups whose advantages are all equal (no learning signal)
  double policy_loss = 0;        ///< weighted parts of the loss: loss = policy_loss + kl_loss + entropy_loss
  double kl_loss = 0;
  double entropy_loss = 0;

  ObjectiveMetrics& operator+=(const ObjectiveMetrics& o) {
    tokens += o.tokens;
    clipped_low += o.clipped_low;
    clipped_high += o.clipped_high;
    dual_clipped += o.dual_clipped;
    ratio_sum += o.ratio_sum;
    ratio_min = ratio_min < o.ratio_min ? ratio_min : o.ratio_min;
    ratio_max = ratio_max > o.ratio_max ? ratio_max : o.ratio_max;
    kl_sum += o.kl_sum;
    kl_tokens += o.kl_tokens;
    entropy_sum += o.entropy_sum;
    entropy_tokens += o.entropy_tokens;
    importance_weight_sum += o.importance_weight_sum;
    sequences += o.sequences;
    advantage_sum += o.advantage_sum;
    advantage_sq_sum += o.advantage_sq_sum;
    groups += o.groups;
    zero_std_groups += o.zero_std_groups;
    policy_loss += o.policy_loss;
    kl_loss += o.kl_loss;
    entropy_loss += o.entropy_loss;
    return *this;
  }
  [[nodiscard]] static double ratio_of(double num, double den) { return den > 0 ? num / den : 0.0; }
  [[nodiscard]] double clip_fraction_low() const { return ratio_of(clipped_low, tokens); }
  [[nodiscard]] double clip_fraction_high() const { return ratio_of(clipped_high, tokens); }
  [[nodiscard]] double dual_clip_fraction() const { return ratio_of(dual_clipped, tokens); }
  [[nodiscard]] double ratio_mean() const { return ratio_of(ratio_sum, tokens); }
  [[nodiscard]] double kl_mean() const { return ratio_of(kl_sum, kl_tokens); }
  [[nodiscard]] double entropy_mean() const { return ratio_of(entropy_sum, entropy_tokens); }
  [[nodiscard]] double importance_weight_mean() const { return ratio_of(importance_weight_sum, tokens); }
  [[nodiscard]] double advantage_mean() const { return ratio_of(advantage_sum, sequences); }
  /// Population standard deviation of the per-sequence advantages.
  [[nodiscard]] double advantage_std() const {
    const double m = advantage_mean();
    const double v = ratio_of(advantage_sq_sum, sequences) - m * m;
    return v > 0 ? std::sqrt(v) : 0.0;
  }
  [[nodiscard]] double zero_std_group_fraction() const { return ratio_of(zero_std_groups, groups); }
};

/// What Objective::evaluate returns. grad_entropy is empty (0 x 0) when the entropy bonus is off.
template <class Real>
struct ObjectiveResult {
  using Matrix = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  double loss = 0;
  Matrix grad_logp;     ///< dL/dlogp [B, T]
  Matrix grad_entropy;  ///< dL/dentropy [B, T]
  ObjectiveMetrics metrics;
};

/// The GRPO-family objective: Loss (policy surrogate) + beta KL + entropy bonus, aggregated by Aggregation.
template <policy_loss Loss, kl_estimator Kl = NoKl, aggregation Aggregation = TokenMean>
class Objective {
 public:
  Loss loss{};
  Kl kl{};
  Aggregation aggregation{};
  ObjectiveConfig config{};

  Objective() = default;
  Objective(Loss loss_, Kl kl_, Aggregation aggregation_, ObjectiveConfig config_)
      : loss(loss_), kl(kl_), aggregation(aggregation_), config(config_) {}

  /// m_bt: whether token (b, t) enters the loss (mask, truncation mask, entropy mask).
  template <class Real>
  [[nodiscard]] bool effective(const BatchView<Real>& v, index_t b, index_t t) const {
    const auto i = static_cast<std::size_t>(b * v.max_len + t);
    if (!v.mask[i]) return false;
    if (config.mask_truncated && v.has_truncated() && v.truncated[static_cast<std::size_t>(b)]) return false;
    if (config.entropy_threshold && !(static_cast<double>(v.entropy[i]) >= *config.entropy_threshold)) return false;
    return true;
  }

  /// n_b, the number of loss tokens of sequence b.
  template <class Real>
  [[nodiscard]] index_t loss_tokens(const BatchView<Real>& v, index_t b) const {
    index_t n = 0;
    for (index_t t = 0; t < v.max_len; ++t) n += effective(v, b, t) ? 1 : 0;
    return n;
  }

  /// This micro-batch's share of the normalisers (tokens and sequences); add the shares of all micro-batches and
  /// ranks, then set world_size / grad_accum_steps / constant_divisor.
  template <class Real>
  [[nodiscard]] Normalizers count_normalizers(const BatchView<Real>& v) const {
    validate(v, "Objective::count_normalizers");
    check_config(v, "Objective::count_normalizers");
    Normalizers z;
    for (index_t b = 0; b < v.batch; ++b) {
      const index_t n = loss_tokens(v, b);
      z.total_tokens += static_cast<double>(n);
      z.total_sequences += n > 0 ? 1.0 : 0.0;
    }
    return z;
  }

  /// The per-sequence weights w_b [B] (what the CUDA loss kernel consumes; Weight may differ from Real, e.g. float).
  template <class Real, class Weight>
  void sequence_weights(const BatchView<Real>& v, const Normalizers& z, std::span<Weight> out) const {
    require(static_cast<index_t>(out.size()) == v.batch, "Objective::sequence_weights: out has ", out.size(),
            " elements, expected batch = ", v.batch);
    validate(v, "Objective::sequence_weights");
    validate(z, "Objective::sequence_weights");
    check_config(v, "Objective::sequence_weights");
    for (index_t b = 0; b < v.batch; ++b)
      out[static_cast<std::size_t>(b)] = static_cast<Weight>(aggregation.sequence_weight(loss_tokens(v, b), z));
  }

  /// Loss, gradients and metrics of one micro-batch under the global normalisers `z`.
  template <class Real>
  [[nodiscard]] ObjectiveResult<Real> evaluate(const BatchView<Real>& v, const Normalizers& z) const {
    ObjectiveResult<Real> r;
    r.grad_logp.resize(v.batch, v.max_len);
    if (config.entropy_coef != 0.0) r.grad_entropy.resize(v.batch, v.max_len);
    r.metrics = evaluate_into(v, z, std::span<Real>(r.grad_logp.data(), static_cast<std::size_t>(r.grad_logp.size())),
                              std::span<Real>(r.grad_entropy.data(), static_cast<std::size_t>(r.grad_entropy.size())),
                              &r.loss);
    return r;
  }

  /// Allocation-free form: writes dL/dlogp into grad_logp [B*T] and, when entropy_coef != 0, dL/dentropy into
  /// grad_entropy [B*T] (may be empty otherwise); stores the loss in *loss_out; returns the metrics.
  template <class Real>
  ObjectiveMetrics evaluate_into(const BatchView<Real>& v, const Normalizers& z, std::span<Real> grad_logp,
                                 std::span<Real> grad_entropy, double* loss_out) const {
    constexpr const char* where = "Objective::evaluate";
    validate(v, where);
    validate(z, where);
    check_config(v, where);
    require(loss_out != nullptr, where, ": loss_out is null, expected a pointer to the loss");
    require(static_cast<index_t>(grad_logp.size()) == v.tokens(), where, ": grad_logp has ", grad_logp.size(),
            " elements, expected batch * max_len = ", v.tokens());
    const bool use_entropy = config.entropy_coef != 0.0;
    if (use_entropy)
      require(static_cast<index_t>(grad_entropy.size()) == v.tokens(), where, ": grad_entropy has ",
              grad_entropy.size(), " elements, expected batch * max_len = ", v.tokens());

    const bool compute_kl = Kl::uses_reference && v.has_logp_ref();
    const bool apply_kl = config.beta != 0.0 && Kl::uses_reference;
    const Real beta = static_cast<Real>(config.beta);
    const Real ent_coef = static_cast<Real>(config.entropy_coef);
    const ImportanceCorrection& is = config.importance;
    ObjectiveMetrics mt;
    double total = 0;

    for (index_t b = 0; b < v.batch; ++b) {
      const index_t n = loss_tokens(v, b);
      const double w_d = aggregation.sequence_weight(n, z);
      const Real w = static_cast<Real>(w_d);
      const index_t row = b * v.max_len;
      // Sequence pass: the statistic of sequence-level losses, and the sequence-level importance ratio.
      Real seq_stat = Real(0);
      Real seq_is = Real(1);
      if (n > 0 && (Loss::sequence_level || is.level == ImportanceLevel::sequence)) {
        double stat_sum = 0, log_rho_sum = 0;
        for (index_t t = 0; t < v.max_len; ++t) {
          if (!effective(v, b, t)) continue;
          const auto i = static_cast<std::size_t>(row + t);
          const Real lp = v.logp[i];
          const Real lo = v.has_logp_old() ? v.logp_old[i] : lp;
          if constexpr (Loss::sequence_level)
            stat_sum += static_cast<double>(loss.template seq_stat_term<Real>(lp, lo, v.advantage(b, t)));
          if (is.level == ImportanceLevel::sequence) log_rho_sum += static_cast<double>(lo - v.logp_sampler[i]);
        }
        seq_stat = static_cast<Real>(stat_sum / static_cast<double>(n));
        if (is.level == ImportanceLevel::sequence) seq_is = is.template weight<Real>(static_cast<Real>(log_rho_sum));
      }
      // Token pass.
      for (index_t t = 0; t < v.max_len; ++t) {
        const auto i = static_cast<std::size_t>(row + t);
        if (!effective(v, b, t)) {
          grad_logp[i] = Real(0);
          if (use_entropy) grad_entropy[i] = Real(0);
          continue;
        }
        const Real lp = v.logp[i];
        const Real lo = v.has_logp_old() ? v.logp_old[i] : lp;
        const TokenTerm<Real> pt = loss.template token<Real>(lp, lo, v.advantage(b, t), seq_stat);
        Real c = Real(1);
        if (is.level == ImportanceLevel::token) c = is.template weight<Real>(lo - v.logp_sampler[i]);
        else if (is.level == ImportanceLevel::sequence) c = seq_is;
        Real grad = c * pt.grad;
        const double pol = static_cast<double>(c * pt.value);
        double kl_term = 0;
        if (compute_kl) {
          const TokenTerm<Real> kt = kl.template token<Real>(lp, v.logp_ref[i], lo);
          mt.kl_sum += static_cast<double>(kt.value);
          mt.kl_tokens += 1;
          if (apply_kl) {
            kl_term = static_cast<double>(beta * kt.value);
            grad += beta * kt.grad;
          }
        }
        double ent_term = 0;
        if (v.has_entropy()) {
          mt.entropy_sum += static_cast<double>(v.entropy[i]);
          mt.entropy_tokens += 1;
        }
        if (use_entropy) {
          ent_term = -static_cast<double>(ent_coef * v.entropy[i]);
          grad_entropy[i] = -w * ent_coef;
        }
        grad_logp[i] = w * grad;
        mt.policy_loss += w_d * pol;
        mt.kl_loss += w_d * kl_term;
        mt.entropy_loss += w_d * ent_term;
        total += w_d * (pol + kl_term + ent_term);
        mt.tokens += 1;
        mt.clipped_low += (pt.flags & kClippedLow) ? 1 : 0;
        mt.clipped_high += (pt.flags & kClippedHigh) ? 1 : 0;
        mt.dual_clipped += (pt.flags & kDualClipped) ? 1 : 0;
        const double ratio = static_cast<double>(pt.ratio);
        mt.ratio_sum += ratio;
        mt.ratio_min = ratio < mt.ratio_min ? ratio : mt.ratio_min;
        mt.ratio_max = ratio > mt.ratio_max ? ratio : mt.ratio_max;
        mt.importance_weight_sum += static_cast<double>(c);
      }
    }
    advantage_metrics(v, mt);
    require(std::isfinite(total), where, ": the loss is ", total,
            ", expected a finite value (inputs were finite; please report this as a corl bug)");
    *loss_out = total;
    return mt;
  }

 private:
  template <class Real>
  void check_config(const BatchView<Real>& v, const char* where) const {
    require(config.beta >= 0.0 && std::isfinite(static_cast<Real>(config.beta)), where, ": config.beta = ",
            config.beta, ", expected >= 0 and finite in the objective's floating-point type");
    require(std::isfinite(static_cast<Real>(config.entropy_coef)), where, ": config.entropy_coef = ",
            config.entropy_coef, ", expected a finite value in the objective's floating-point type");
    if (config.entropy_threshold)
      require(std::isfinite(*config.entropy_threshold), where, ": config.entropy_threshold = ",
              *config.entropy_threshold, ", expected a finite value");
    detail::validate_component(loss, where);
    detail::validate_component(kl, where);
    if (config.beta != 0.0 && Kl::uses_reference)
      require(v.has_logp_ref(), where, ": logp_ref is absent, expected [batch, max_len] since beta = ", config.beta);
    if (config.entropy_coef != 0.0)
      require(v.has_entropy(), where, ": entropy is absent, expected [batch, max_len] since entropy_coef = ",
              config.entropy_coef);
    if (config.entropy_threshold)
      require(v.has_entropy(), where, ": entropy is absent, expected [batch, max_len] since entropy_threshold is set");
    if (config.mask_truncated)
      require(v.has_truncated(), where, ": truncated is absent, expected [batch] since mask_truncated = true");
    if (config.importance.level != ImportanceLevel::none) {
      require(v.has_logp_sampler(), where,
              ": logp_sampler is absent, expected [batch, max_len] since importance correction is on");
      require(config.importance.upper > 0 && config.importance.lower >= 0 &&
                  config.importance.lower <= config.importance.upper,
              where, ": importance bounds lower = ", config.importance.lower, ", upper = ", config.importance.upper,
              ", expected 0 <= lower <= upper, upper > 0");
    }
  }

  template <class Real>
  static void advantage_metrics(const BatchView<Real>& v, ObjectiveMetrics& mt) {
    struct Range {
      double lo, hi;
    };
    std::unordered_map<index_t, Range> groups;
    for (index_t b = 0; b < v.batch; ++b) {
      const double a = static_cast<double>(v.advantages[static_cast<std::size_t>(b)]);
      mt.sequences += 1;
      mt.advantage_sum += a;
      mt.advantage_sq_sum += a * a;
      auto [it, inserted] = groups.try_emplace(v.group[static_cast<std::size_t>(b)], Range{a, a});
      if (!inserted) {
        it->second.lo = a < it->second.lo ? a : it->second.lo;
        it->second.hi = a > it->second.hi ? a : it->second.hi;
      }
    }
    mt.groups += static_cast<double>(groups.size());
    for (const auto& kv : groups) mt.zero_std_groups += kv.second.lo == kv.second.hi ? 1 : 0;
  }
};

/// Deduction guide: Objective(PpoClip{}, K3{}, TokenMean{}, config).
template <class Loss, class Kl, class Aggregation>
Objective(Loss, Kl, Aggregation, ObjectiveConfig) -> Objective<Loss, Kl, Aggregation>;

}  // namespace corl

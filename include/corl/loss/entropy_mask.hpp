// corl/loss/entropy_mask.hpp — keep only the high-entropy "forking" tokens in the policy gradient.
//   threshold = the k-th largest entropy among the loss tokens, k = ceil(rho * N_tok);  keep tokens with H >= threshold
// (ties at the threshold are all kept). The threshold is a property of the whole optimizer step: compute it once over
// all micro-batches (gather across ranks) and pass it in ObjectiveConfig::entropy_threshold, so that a split into
// micro-batches keeps exactly the tokens the full batch keeps. Kept tokens are the only ones counted by the
// normalisers (corl::count_normalizers).
// Source: Wang et al. 2025, "Beyond the 80/20 Rule: High-Entropy Minority Tokens Drive Effective RL for LLM
// Reasoning" (rho = 0.2); verl `actor.entropy_top_ratio`-style options in forks.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "corl/core/batch.hpp"
#include "corl/core/error.hpp"

namespace corl {

/// Entropy threshold keeping the top `rho` fraction (0 < rho <= 1) of the tokens with mask = 1 in `batches`.
/// Returns -inf when there is no loss token (nothing to cut).
template <class Real>
double top_entropy_threshold(std::span<const BatchView<Real>> batches, double rho) {
  require(rho > 0.0 && rho <= 1.0, "top_entropy_threshold: rho = ", rho, ", expected 0 < rho <= 1");
  std::vector<double> values;
  for (std::size_t k = 0; k < batches.size(); ++k) {
    const BatchView<Real>& v = batches[k];
    require(v.has_entropy(), "top_entropy_threshold: batches[", k, "].entropy is absent, expected [batch, max_len]");
    require(v.entropy.size() == v.mask.size(), "top_entropy_threshold: batches[", k, "].entropy has ",
            v.entropy.size(), " elements, expected ", v.mask.size(), " (as mask)");
    for (std::size_t i = 0; i < v.mask.size(); ++i) {
      if (!v.mask[i]) continue;
      require(std::isfinite(v.entropy[i]), "top_entropy_threshold: batches[", k, "].entropy[", i, "] = ",
              v.entropy[i], ", expected a finite value");
      values.push_back(static_cast<double>(v.entropy[i]));
    }
  }
  if (values.empty()) return -INFINITY;
  const auto keep = static_cast<std::size_t>(std::ceil(rho * static_cast<double>(values.size()) - 1e-9));
  const std::size_t kth = (keep == 0 ? 1 : keep) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(kth), values.end(),
                   [](double a, double b) { return a > b; });
  return values[kth];
}

/// Convenience overload for one batch.
template <class Real>
double top_entropy_threshold(const BatchView<Real>& batch, double rho) {
  return top_entropy_threshold<Real>(std::span<const BatchView<Real>>(&batch, 1), rho);
}

}  // namespace corl

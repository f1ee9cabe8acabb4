// corl/reward/tim_reward.hpp — R_TIM as a reward: text-image matching on the policy's own hidden states, with the
// image and text positions given by the caller (never hard-coded, unlike the reference code).
//
//   tim_reward(hidden, dim, image_rows, text_rows) = (1 + TIM) / 2  in [0, 1]
//   TIM = 0.5 (mean_i max_k cos(h_img_i, h_txt_k) + mean_k max_i cos(h_img_i, h_txt_k))   in [-1, 1]
// where hidden is one sequence's states, row-major [T x dim], image_rows / text_rows index its rows. The similarity
// itself is corl::text_image_matching (corl/reward/text_image_matching.hpp); the affine map to [0, 1] puts R_TIM on
// the same scale as the other parts of CoRL's reward (DESIGN.md section 1: the reference summed unnormalised scales).
// TimReward<Extract> is the policy-aware reward: extract(policy, sample) runs the policy and returns TimInputs.
// Source: arXiv 2505.17534 Sec. 3.2 (R_TIM).
#pragma once

#include <span>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/reward/text_image_matching.hpp"

namespace corl {

/// One sequence's hidden states and which rows are image and which are text.
struct TimInputs {
  std::vector<double> hidden;        ///< [T x dim] row-major
  index_t dim = 0;
  std::vector<index_t> image_rows;   ///< rows of `hidden` that are image positions
  std::vector<index_t> text_rows;    ///< rows of `hidden` that are text positions
};

/// (1 + TIM) / 2 of the selected rows (see the header comment). Throws corl::Error for empty or out-of-range rows.
template <class Real>
double tim_reward(std::span<const Real> hidden, index_t dim, std::span<const index_t> image_rows,
                  std::span<const index_t> text_rows) {
  constexpr const char* where = "corl::tim_reward";
  require(dim >= 1, where, ": dim = ", dim, ", expected >= 1");
  require(hidden.size() % static_cast<std::size_t>(dim) == 0, where, ": hidden has ", hidden.size(),
          " values, expected a multiple of dim = ", dim);
  const auto rows = static_cast<index_t>(hidden.size()) / dim;
  require(!image_rows.empty(), where, ": image_rows is empty, expected at least one image position");
  require(!text_rows.empty(), where, ": text_rows is empty, expected at least one text position");
  auto gather = [&](std::span<const index_t> idx, const char* name) {
    std::vector<Real> out;
    out.reserve(idx.size() * static_cast<std::size_t>(dim));
    for (std::size_t i = 0; i < idx.size(); ++i) {
      require(idx[i] >= 0 && idx[i] < rows, where, ": ", name, "[", i, "] = ", idx[i], ", expected 0 <= row < ", rows);
      const auto first = hidden.begin() + idx[i] * dim;
      out.insert(out.end(), first, first + dim);
    }
    return out;
  };
  const std::vector<Real> img = gather(image_rows, "image_rows"), txt = gather(text_rows, "text_rows");
  const double tim = static_cast<double>(text_image_matching<Real>(img, txt, dim));
  return 0.5 * (1.0 + tim);
}

inline double tim_reward(const TimInputs& in) {
  return tim_reward<double>(in.hidden, in.dim, in.image_rows, in.text_rows);
}

/// Policy-aware R_TIM: `extract(policy, sample)` returns the TimInputs (it runs the policy on prompt + image).
template <class Extract>
struct TimReward {
  Extract extract;
  template <class Policy, class Sample>
    requires requires(const Extract& e, const Policy& p, const Sample& s) {
      { e(p, s) } -> std::convertible_to<TimInputs>;
    }
  double operator()(const Policy& p, const Sample& s) const {
    return tim_reward(extract(p, s));
  }
};

template <class Extract>
TimReward(Extract) -> TimReward<Extract>;

}  // namespace corl

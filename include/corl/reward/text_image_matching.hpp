// corl/reward/text_image_matching.hpp — the CoRL text-image matching reward R_TIM (CPU reference of
// corl/cuda/text_image_matching.cuh).
// For one sample with image hidden states h_img[0..I) and text hidden states h_txt[0..K), all of dimension D:
//   c_ik = cos(h_img_i, h_txt_k) = <a, b> / (max(|a|, eps) max(|b|, eps))        (a zero vector has cos 0)
//   R_TIM = 0.5 ( (1/I) sum_i max_k c_ik  +  (1/K) sum_k max_i c_ik )                in [-1, 1]
// Batched form: the image states of all samples are stacked row-major in image[total_I x D] with image_offsets[B + 1]
// (sample b owns rows image_offsets[b] .. image_offsets[b+1]), and likewise text / text_offsets. Every sample needs at
// least one image and one text row; hidden states must be finite. Dots and norms accumulate in double.
// Source: Jiang et al. 2025 "Co-Reinforcement Learning for Unified Multimodal Understanding and Generation" (CoRL /
// ULM-R1, arXiv 2505.17534), the text-image matching reward; the token positions come from the caller (the reference
// code hard-coded them).
#pragma once

#include <cmath>
#include <span>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"

namespace corl {

/// Views of the stacked hidden states of a batch (see the header comment).
template <class Real>
struct HiddenStateSets {
  std::span<const Real> image;                ///< [image_offsets.back() x dim], row-major
  std::span<const index_t> image_offsets;     ///< [num_samples + 1], starts at 0, strictly increasing
  std::span<const Real> text;                 ///< [text_offsets.back() x dim], row-major
  std::span<const index_t> text_offsets;      ///< [num_samples + 1], starts at 0, strictly increasing
  index_t dim = 0;                            ///< D >= 1
  index_t num_samples() const { return static_cast<index_t>(image_offsets.size()) - 1; }
};

inline constexpr double kTimNormEps = 1e-8;
/// Largest |hidden state| the CPU reference accepts: D squares of it stay far below the double range.
inline constexpr double kTimMaxAbs = 1e150;

namespace detail {
inline void validate_offsets(const char* where, const char* name, std::span<const index_t> offsets,
                             std::size_t data_size, index_t dim, index_t num_samples) {
  require(static_cast<index_t>(offsets.size()) == num_samples + 1, where, ": ", name, " has ", offsets.size(),
          " entries, expected num_samples + 1 = ", num_samples + 1);
  require(offsets[0] == 0, where, ": ", name, "[0] = ", offsets[0], ", expected 0");
  for (std::size_t b = 1; b < offsets.size(); ++b) {
    require(offsets[b] > offsets[b - 1], where, ": ", name, "[", b, "] = ", offsets[b], ", expected > ", name, "[",
            b - 1, "] = ", offsets[b - 1], " (every sample needs at least one row)");
  }
  require(static_cast<index_t>(data_size) == offsets.back() * dim, where, ": the hidden states for ", name, " have ",
          data_size, " values, expected ", name, ".back() * dim = ", offsets.back() * dim);
}
}  // namespace detail

/// Checks shapes, offsets and finiteness; throws corl::Error naming `where`, the array, the index and the condition.
template <class Real>
void validate_hidden_state_sets(const char* where, const HiddenStateSets<Real>& sets) {
  require(sets.dim >= 1, where, ": dim = ", sets.dim, ", expected >= 1");
  require(sets.image_offsets.size() >= 2, where, ": image_offsets has ", sets.image_offsets.size(),
          " entries, expected num_samples + 1 >= 2");
  const index_t b = sets.num_samples();
  detail::validate_offsets(where, "image_offsets", sets.image_offsets, sets.image.size(), sets.dim, b);
  detail::validate_offsets(where, "text_offsets", sets.text_offsets, sets.text.size(), sets.dim, b);
  // finite, and small enough that a double sum of D squares cannot overflow (|x| <= 1e150; every float passes)
  for (std::size_t i = 0; i < sets.image.size(); ++i) {
    require(std::isfinite(sets.image[i]) && std::abs(static_cast<double>(sets.image[i])) <= kTimMaxAbs, where,
            ": image[", i, "] = ", sets.image[i], ", expected a finite value with |x| <= ", kTimMaxAbs);
  }
  for (std::size_t i = 0; i < sets.text.size(); ++i) {
    require(std::isfinite(sets.text[i]) && std::abs(static_cast<double>(sets.text[i])) <= kTimMaxAbs, where,
            ": text[", i, "] = ", sets.text[i], ", expected a finite value with |x| <= ", kTimMaxAbs);
  }
}

/// R_TIM of one sample: `image` holds num_image rows of `dim`, `text` num_text rows (no validation; see below).
template <class Real>
double text_image_matching_score(const Real* image, index_t num_image, const Real* text, index_t num_text,
                                 index_t dim) {
  const auto inv_norms = [dim](const Real* rows, index_t count) {
    std::vector<double> inv(static_cast<std::size_t>(count));
    for (index_t r = 0; r < count; ++r) {
      double sq = 0.0;
      for (index_t d = 0; d < dim; ++d) {
        const double x = static_cast<double>(rows[r * dim + d]);
        sq += x * x;
      }
      const double norm = std::sqrt(sq);
      inv[static_cast<std::size_t>(r)] = 1.0 / (norm > kTimNormEps ? norm : kTimNormEps);
    }
    return inv;
  };
  const std::vector<double> inv_img = inv_norms(image, num_image), inv_txt = inv_norms(text, num_text);
  std::vector<double> row_max(static_cast<std::size_t>(num_image), -2.0), col_max(static_cast<std::size_t>(num_text), -2.0);
  for (index_t i = 0; i < num_image; ++i) {
    for (index_t k = 0; k < num_text; ++k) {
      double dot = 0.0;
      for (index_t d = 0; d < dim; ++d) {
        dot += static_cast<double>(image[i * dim + d]) * static_cast<double>(text[k * dim + d]);
      }
      const double c = dot * inv_img[static_cast<std::size_t>(i)] * inv_txt[static_cast<std::size_t>(k)];
      auto& rm = row_max[static_cast<std::size_t>(i)];
      auto& cm = col_max[static_cast<std::size_t>(k)];
      rm = c > rm ? c : rm;
      cm = c > cm ? c : cm;
    }
  }
  double sum_rows = 0.0, sum_cols = 0.0;
  for (double x : row_max) sum_rows += x;
  for (double x : col_max) sum_cols += x;
  return 0.5 * (sum_rows / static_cast<double>(num_image) + sum_cols / static_cast<double>(num_text));
}

/// R_TIM for every sample of the batch: rewards[b] for b in [0, num_samples).
template <class Real>
void text_image_matching(const HiddenStateSets<Real>& sets, std::span<Real> rewards) {
  constexpr const char* where = "text_image_matching";
  validate_hidden_state_sets(where, sets);
  require(static_cast<index_t>(rewards.size()) == sets.num_samples(), where, ": rewards has ", rewards.size(),
          " entries, expected num_samples = ", sets.num_samples());
  for (index_t b = 0; b < sets.num_samples(); ++b) {
    const auto ib = static_cast<std::size_t>(b);
    const index_t i0 = sets.image_offsets[ib], i1 = sets.image_offsets[ib + 1];
    const index_t t0 = sets.text_offsets[ib], t1 = sets.text_offsets[ib + 1];
    rewards[ib] = static_cast<Real>(text_image_matching_score(sets.image.data() + i0 * sets.dim, i1 - i0,
                                                              sets.text.data() + t0 * sets.dim, t1 - t0, sets.dim));
  }
}

/// R_TIM of a single sample given row-major [num_image x dim] and [num_text x dim] buffers (validated).
template <class Real>
Real text_image_matching(std::span<const Real> image, std::span<const Real> text, index_t dim) {
  require(dim >= 1, "text_image_matching: dim = ", dim, ", expected >= 1");
  const index_t io[2] = {0, static_cast<index_t>(image.size()) / dim};
  const index_t to[2] = {0, static_cast<index_t>(text.size()) / dim};
  Real out[1];
  text_image_matching<Real>(HiddenStateSets<Real>{image, io, text, to, dim}, std::span<Real>(out));
  return out[0];
}

}  // namespace corl

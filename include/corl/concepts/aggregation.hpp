// corl/concepts/aggregation.hpp — what corl calls a loss aggregation mode (how per-token terms become one scalar).
//
// Every aggregation in corl is a per-sequence token weight: loss = sum_b w_b sum_t mask_bt term_bt, with
// w_b = a.sequence_weight(n_b, normalizers), n_b = the number of loss tokens of sequence b and `normalizers` the
// GLOBAL totals of the optimizer step (corl::Normalizers, corl/core/batch.hpp). Because w_b depends only on the
// sequence itself and on global constants, splitting a batch into micro-batches and ranks and summing gives the
// full-batch loss and gradient exactly. The CUDA kernels take the same weights as an array [B].
//
// T satisfies aggregation if:
//   1. T is copyable and `T::name` converts to std::string_view (the verl `loss_agg_mode` spelling);
//   2. `t.sequence_weight(n, normalizers)` is valid for index_t n and const Normalizers& and converts to double;
//   3. (semantic) the weight is finite and >= 0 for valid normalisers, and 0 when n == 0.
#pragma once

#include <concepts>
#include <string_view>

#include "corl/core/batch.hpp"

namespace corl {

template <class T>
concept aggregation = std::copy_constructible<T> && requires(const T& a, index_t n, const Normalizers& z) {
  { T::name } -> std::convertible_to<std::string_view>;
  { a.sequence_weight(n, z) } -> std::convertible_to<double>;
};

}  // namespace corl

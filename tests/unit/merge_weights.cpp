#include <doctest/doctest.h>

#include <corl/pipeline/merge.hpp>

#include <cmath>
#include <vector>

#include "unit/pipeline_toy_policy.hpp"

TEST_CASE("linear merge by hand") {
  const std::vector<double> a = {0.0, 2.0, -4.0}, b = {1.0, 4.0, 4.0};
  std::vector<double> out(3);
  corl::merge_linear<double>(a, b, 0.25, out);
  CHECK(out == std::vector<double>{0.25, 2.5, -2.0});
  corl::merge_linear<double>(a, b, 0.0, out);
  CHECK(out == a);
  CHECK_THROWS_WITH_AS(corl::merge_linear<double>(a, b, 1.5, out), doctest::Contains("alpha = 1.5"), corl::Error);
  std::vector<double> short_out(2);
  CHECK_THROWS_WITH_AS(corl::merge_linear<double>(a, b, 0.5, short_out), doctest::Contains("out = 2"), corl::Error);
}

TEST_CASE("task arithmetic by hand: base + sum w_k (t_k - base)") {
  const std::vector<float> base = {1.0f, 1.0f}, mc = {3.0f, 1.0f}, oe = {1.0f, -1.0f};
  std::vector<float> out(2);
  corl::merge_task_arithmetic<float>(base, {mc, oe}, {1.0, 1.0}, out);  // both task vectors in full
  CHECK(out == std::vector<float>{3.0f, -1.0f});
  corl::merge_task_arithmetic<float>(base, {mc, oe}, {0.5, 0.5}, out);  // = linear average
  CHECK(out == std::vector<float>{2.0f, 0.0f});
  CHECK_THROWS_WITH_AS(corl::merge_task_arithmetic<float>(base, {mc, oe}, {1.0}, out),
                       doctest::Contains("2 tuned models but 1 weights"), corl::Error);
}

TEST_CASE("precision-weighted (Gaussian product) merge by hand") {
  const std::vector<double> a = {0.0, 10.0, 1.0}, pa = {1.0, 3.0, 0.0};
  const std::vector<double> b = {4.0, 2.0, 3.0}, pb = {1.0, 1.0, 0.0};
  std::vector<double> out(3);
  corl::merge_precision_weighted<double>(a, pa, b, pb, out);
  CHECK(out[0] == 2.0);                        // equal precisions: the average
  CHECK(out[1] == doctest::Approx(8.0));       // (3*10 + 1*2) / 4
  CHECK(out[2] == 2.0);                        // no information on either side: the average
  const std::vector<double> bad = {1.0, -1.0, 1.0};
  CHECK_THROWS_WITH_AS(corl::merge_precision_weighted<double>(a, bad, b, pb, out),
                       doctest::Contains("precision_a[1] = -1"), corl::Error);
}

TEST_CASE("merging two policies gives a new policy and leaves the inputs alone") {
  toy::Policy a, b;
  for (auto& x : b.parameters()) x = 2.0;
  const toy::Policy m = corl::merge_policies_linear(a, b, 0.5);
  for (const double x : m.parameters()) CHECK(x == 1.0);
  for (const double x : a.parameters()) CHECK(x == 0.0);
  CHECK(m.prob(0, 0, 0) == doctest::Approx(0.25));
}

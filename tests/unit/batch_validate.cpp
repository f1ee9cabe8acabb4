// Batch validation: every malformed input is a corl::Error naming the function, the array, the index and the rule.
#include <doctest/doctest.h>

#include <cmath>
#include <corl/core/batch.hpp>
#include <corl/core/error.hpp>
#include <limits>

namespace {
corl::Batch<double> good() {
  corl::Batch<double> b(2, 3);
  b.set_length(0, 2);
  b.set_length(1, 3);
  b.advantages = {0.5, -0.5};
  b.group = {0, 0};
  for (auto& x : b.logp) x = -1.0;
  return b;
}
void expect_error(const corl::Batch<double>& b, const char* text) {
  CHECK_THROWS_WITH_AS(corl::validate(b.view(), "test_fn"), doctest::Contains(text), corl::Error);
}
}  // namespace

TEST_CASE("a well-formed batch validates, in float and double") {
  CHECK_NOTHROW(corl::validate(good().view(), "test_fn"));
  corl::Batch<float> f(3, 4);
  f.set_length(1, 4);
  CHECK_NOTHROW(corl::validate(f.view(), "test_fn"));
  CHECK_NOTHROW(corl::validate(corl::Batch<double>(0, 0).view(), "test_fn"));
}

TEST_CASE("shape mismatches name the array and the expected size") {
  auto b = good();
  b.logp.pop_back();
  expect_error(b, "test_fn: logp has 5 elements, expected 6 ([batch, max_len])");
  b = good();
  b.advantages.push_back(1.0);
  expect_error(b, "advantages has 3 elements, expected 2 ([batch])");
  b = good();
  b.logp_ref.assign(4, 0.0);
  expect_error(b, "logp_ref has 4 elements, expected 6");
  b = good();
  b.truncated.assign(1, 0);
  expect_error(b, "truncated has 1 elements, expected 2");
}

TEST_CASE("lengths, mask and group out of range") {
  auto b = good();
  b.lengths[1] = 4;
  expect_error(b, "lengths[1] = 4, expected 0 <= length <= max_len = 3");
  b = good();
  b.lengths[0] = 1;  // mask still has 2 tokens
  expect_error(b, "mask[0, 1] = 1 beyond lengths[0] = 1");
  b = good();
  b.mask[2] = 2;
  expect_error(b, "mask[0, 2] = 2, expected 0 or 1");
  b = good();
  b.group[1] = -3;
  expect_error(b, "group[1] = -3, expected a group index >= 0");
}

TEST_CASE("NaN / inf at masked-in tokens and in advantages are errors, padding may hold anything") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  auto b = good();
  b.at(b.logp, 1, 2) = nan;
  expect_error(b, "test_fn: logp[1, 2] = nan, expected a finite value");
  b = good();
  b.logp_old.assign(6, -1.0);
  b.at(b.logp_old, 0, 1) = -inf;
  expect_error(b, "logp_old[0, 1] = -inf");
  b = good();
  b.advantages[1] = inf;
  expect_error(b, "advantages[1] = inf");
  b = good();
  b.entropy.assign(6, 1.0);
  b.at(b.entropy, 1, 0) = nan;
  expect_error(b, "entropy[1, 0] = nan");
  b = good();
  b.token_advantages.assign(6, 0.0);
  b.at(b.token_advantages, 0, 0) = nan;
  expect_error(b, "token_advantages[0, 0]");
  b = good();
  b.at(b.logp, 0, 2) = -inf;  // padding (t >= length): allowed
  CHECK_NOTHROW(corl::validate(b.view(), "test_fn"));
}

TEST_CASE("Normalizers validation and addition") {
  corl::Normalizers z;
  z.total_tokens = 10;
  z.total_sequences = 2;
  corl::Normalizers other = z;
  z += other;
  CHECK(z.total_tokens == 20);
  CHECK(z.total_sequences == 4);
  CHECK(z.framework_scale() == 1.0);
  z.world_size = 0;
  CHECK_THROWS_WITH_AS(corl::validate(z, "f"), doctest::Contains("f: Normalizers.world_size = 0, expected >= 1"),
                       corl::Error);
  z.world_size = 1;
  z.total_tokens = std::nan("");
  CHECK_THROWS_WITH_AS(corl::validate(z, "f"), doctest::Contains("Normalizers.total_tokens"), corl::Error);
}

TEST_CASE("Batch::rows copies a contiguous slice of every present array") {
  auto b = good();
  b.logp_ref = {0, 1, 2, 3, 4, 5};
  b.truncated = {0, 1};
  const auto s = b.rows(1, 1);
  CHECK(s.batch == 1);
  CHECK(s.logp_ref == std::vector<double>{3, 4, 5});
  CHECK(s.truncated == std::vector<std::uint8_t>{1});
  CHECK(s.lengths[0] == 3);
  CHECK(s.logp_old.empty());
  CHECK_THROWS_AS((void)b.rows(1, 2), corl::Error);
}

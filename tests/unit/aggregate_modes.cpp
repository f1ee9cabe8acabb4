// Aggregation modes: hand-computed per-sequence weights and whole-batch losses for each mode.
#include <doctest/doctest.h>

#include <corl/core/error.hpp>
#include <corl/loss/aggregate.hpp>
#include <corl/loss/objective.hpp>
#include <corl/loss/reinforce.hpp>

namespace {
using doctest::Approx;

// Two sequences, T = 4: lengths 2 and 4, advantages +1 and -2. REINFORCE on-policy: each token's term is -A, so
// sequence 0 has terms (-1, -1) and sequence 1 has terms (2, 2, 2, 2).
corl::Batch<double> two_sequences() {
  corl::Batch<double> b(2, 4);
  b.set_length(0, 2);
  b.set_length(1, 4);
  b.advantages = {1.0, -2.0};
  b.group = {0, 0};
  for (auto& x : b.logp) x = -0.5;
  return b;
}

template <class Agg>
corl::ObjectiveResult<double> run(const corl::Batch<double>& b, double divisor = 0.0) {
  corl::Objective<corl::Reinforce, corl::NoKl, Agg> obj;
  corl::Normalizers z = obj.count_normalizers(b.view());
  z.constant_divisor = divisor;
  return obj.evaluate(b.view(), z);
}
}  // namespace

TEST_CASE("sequence weights: token-mean 1/N_tok, seq-mean-token-mean 1/(n N_seq), seq-mean-token-sum 1/N_seq, "
          "seq-mean-token-sum-norm 1/(C N_seq)") {
  corl::Normalizers z;
  z.total_tokens = 6;
  z.total_sequences = 2;
  z.constant_divisor = 4;
  CHECK(corl::TokenMean{}.sequence_weight(2, z) == Approx(1.0 / 6.0));
  CHECK(corl::SeqMeanTokenMean{}.sequence_weight(2, z) == Approx(0.25));
  CHECK(corl::SeqMeanTokenMean{}.sequence_weight(4, z) == Approx(0.125));
  CHECK(corl::SeqMeanTokenSum{}.sequence_weight(4, z) == Approx(0.5));
  CHECK(corl::SeqMeanTokenSumNorm{}.sequence_weight(4, z) == Approx(0.125));
  for (double w : {corl::TokenMean{}.sequence_weight(0, z), corl::SeqMeanTokenMean{}.sequence_weight(0, z),
                   corl::SeqMeanTokenSum{}.sequence_weight(0, z), corl::SeqMeanTokenSumNorm{}.sequence_weight(0, z)})
    CHECK(w == 0.0);
  // Frameworks that average gradients over 4 ranks and divide by 2 accumulation steps: weights x 8.
  z.world_size = 4;
  z.grad_accum_steps = 2;
  z.ranks_average_gradients = true;
  z.framework_divides_by_accum_steps = true;
  CHECK(corl::TokenMean{}.sequence_weight(2, z) == Approx(8.0 / 6.0));
  CHECK(corl::TokenMean::name == "token-mean");
  CHECK(corl::SeqMeanTokenSumNorm::name == "seq-mean-token-sum-norm");
}

TEST_CASE("token-mean loss of the two-sequence batch is (-2 + 8) / 6 = 1") {
  const auto r = run<corl::TokenMean>(two_sequences());
  CHECK(r.loss == Approx(1.0));
  CHECK(r.grad_logp(0, 0) == Approx(-1.0 / 6.0));  // -A w
  CHECK(r.grad_logp(1, 3) == Approx(2.0 / 6.0));
}

TEST_CASE("seq-mean-token-mean loss is (-1 + 2) / 2 = 0.5") {
  const auto r = run<corl::SeqMeanTokenMean>(two_sequences());
  CHECK(r.loss == Approx(0.5));
  CHECK(r.grad_logp(0, 1) == Approx(-0.25));
  CHECK(r.grad_logp(1, 0) == Approx(0.25));
}

TEST_CASE("seq-mean-token-sum loss is (-2 + 8) / 2 = 3") {
  const auto r = run<corl::SeqMeanTokenSum>(two_sequences());
  CHECK(r.loss == Approx(3.0));
  CHECK(r.grad_logp(1, 2) == Approx(1.0));
}

TEST_CASE("seq-mean-token-sum-norm loss with C = 4 is (-2 + 8) / (2 * 4) = 0.75") {
  const auto r = run<corl::SeqMeanTokenSumNorm>(two_sequences(), 4.0);
  CHECK(r.loss == Approx(0.75));
  CHECK(r.grad_logp(0, 0) == Approx(-0.125));
  CHECK_THROWS_WITH_AS(run<corl::SeqMeanTokenSumNorm>(two_sequences(), 0.0),
                       doctest::Contains("constant_divisor = 0"), corl::Error);
}

TEST_CASE("padding and masked-out tokens get zero gradient, and an all-masked sequence contributes nothing") {
  auto b = two_sequences();
  b.at(b.logp, 0, 3) = -1e30;  // padding may hold anything finite or not
  auto r = run<corl::SeqMeanTokenMean>(b);
  CHECK(r.grad_logp(0, 2) == 0.0);
  CHECK(r.grad_logp(0, 3) == 0.0);
  b.set_length(0, 0);  // sequence 0 now has no tokens: N_seq = 1 and the loss is sequence 1's mean, 2
  r = run<corl::SeqMeanTokenMean>(b);
  CHECK(r.loss == Approx(2.0));
  CHECK(r.grad_logp.row(0).isZero());
  const auto t = run<corl::TokenMean>(b);
  CHECK(t.loss == Approx(2.0));
}

TEST_CASE("a sequence with tokens but zero global totals is an error, not a NaN") {
  const auto b = two_sequences();
  corl::Objective<corl::Reinforce, corl::NoKl, corl::TokenMean> obj;
  corl::Normalizers z;  // all zero
  CHECK_THROWS_WITH_AS((void)obj.evaluate(b.view(), z), doctest::Contains("total_tokens = 0"), corl::Error);
}

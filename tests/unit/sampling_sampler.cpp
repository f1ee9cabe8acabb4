// Tests of the CPU reference sampler (corl/sampling/sampler.hpp): goodness of fit against the exact truncated
// distribution for every mode, edge cases, log-prob parity, determinism.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <corl/core/error.hpp>
#include <corl/core/half_types.hpp>
#include <corl/core/rng.hpp>
#include <corl/sampling/sampler.hpp>

namespace {

using corl::index_t;
using corl::sampling::RngKey;
using corl::sampling::SamplingParams;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

corl::sampling::Sample<double> sample_d(std::span<const double> cond, std::span<const double> uncond,
                                        const SamplingParams& p, RngKey key, std::uint32_t row) {
  return corl::sampling::sample_row<double, double>(cond, uncond, p, key, row);
}
corl::sampling::Sample<double> sample_d(std::span<const double> cond, const SamplingParams& p, RngKey key,
                                        std::uint32_t row) {
  return corl::sampling::sample_row<double, double>(cond, p, key, row);
}
double logprob_d(std::span<const double> cond, std::span<const double> uncond, index_t token, const SamplingParams& p) {
  return corl::sampling::sampling_logprob<double, double>(cond, uncond, token, p);
}
double logprob_d(std::span<const double> cond, index_t token, const SamplingParams& p) {
  return corl::sampling::sampling_logprob<double, double>(cond, token, p);
}

// Independent, sort-based reference of the distribution the sampler must draw from (the HF order: CFG, temperature,
// top-k, then top-p on the top-k distribution, then min-p; ties at a threshold are kept).
std::vector<double> reference_distribution(const std::vector<double>& cond, const std::vector<double>& uncond,
                                           const SamplingParams& p) {
  const std::size_t v = cond.size();
  std::vector<double> z(v);
  for (std::size_t i = 0; i < v; ++i) {
    double m = cond[i];
    if (!uncond.empty()) {
      m = (cond[i] == kNegInf || uncond[i] == kNegInf) ? kNegInf : uncond[i] + p.cfg_weight * (cond[i] - uncond[i]);
    }
    z[i] = m / p.temperature;
  }
  std::vector<std::size_t> order(v);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return z[a] > z[b]; });
  const double zmax = z[order[0]];
  std::vector<bool> keep(v, true);
  for (std::size_t i = 0; i < v; ++i) keep[i] = z[i] != kNegInf;
  if (p.top_k > 0 && p.top_k < static_cast<index_t>(v)) {
    const double kth = z[order[static_cast<std::size_t>(p.top_k - 1)]];
    for (std::size_t i = 0; i < v; ++i) keep[i] = keep[i] && z[i] >= kth;
  }
  if (p.top_p < 1.0) {
    double total = 0;
    for (std::size_t i = 0; i < v; ++i) total += keep[i] ? std::exp(z[i] - zmax) : 0.0;
    double cum = 0;
    double threshold = zmax;
    for (const std::size_t i : order) {
      if (!keep[i]) continue;
      cum += std::exp(z[i] - zmax);
      threshold = z[i];
      if (cum >= p.top_p * total) break;
    }
    for (std::size_t i = 0; i < v; ++i) keep[i] = keep[i] && z[i] >= threshold;
  }
  if (p.min_p > 0.0) {
    for (std::size_t i = 0; i < v; ++i) keep[i] = keep[i] && std::exp(z[i] - zmax) >= p.min_p;
  }
  std::vector<double> prob(v, 0.0);
  double total = 0;
  for (std::size_t i = 0; i < v; ++i) total += keep[i] ? std::exp(z[i] - zmax) : 0.0;
  for (std::size_t i = 0; i < v; ++i) prob[i] = keep[i] ? std::exp(z[i] - zmax) / total : 0.0;
  return prob;
}

// Upper 0.1% quantile of chi-square with df degrees of freedom (Wilson-Hilferty; accurate to ~1% for df >= 2).
double chi2_critical_001(int df) {
  if (df == 1) return 10.828;
  const double d = df, z = 3.0902;
  const double t = 1.0 - 2.0 / (9.0 * d) + z * std::sqrt(2.0 / (9.0 * d));
  return d * t * t * t;
}

// Pearson chi-square of observed counts against probabilities; cells with probability 0 must have no draws.
double chi2(const std::vector<long>& counts, const std::vector<double>& prob, long n, int* df, long* impossible) {
  double stat = 0;
  *df = -1;
  *impossible = 0;
  for (std::size_t i = 0; i < prob.size(); ++i) {
    if (prob[i] == 0.0) {
      *impossible += counts[i];
      continue;
    }
    const double e = prob[i] * static_cast<double>(n);
    stat += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
    ++*df;
  }
  return stat;
}

std::vector<long> draw_counts(const std::vector<double>& cond, const std::vector<double>& uncond,
                              const SamplingParams& p, long n, std::uint64_t seed) {
  std::vector<long> counts(cond.size(), 0);
  for (long k = 0; k < n; ++k) {
    const auto s = sample_d(cond, uncond, p, RngKey{seed, static_cast<std::uint64_t>(k)}, 5);
    REQUIRE(s.token >= 0);
    ++counts[static_cast<std::size_t>(s.token)];
  }
  return counts;
}

const std::vector<double> kLogits = {2.0, 1.5, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0, -3.0, kNegInf, 0.25};
const std::vector<double> kUncond = {1.0, 1.6, 0.2, 1.1, 0.0, 0.3, -0.2, -2.0, -1.0, -1.0, 0.0, kNegInf};

struct Mode {
  const char* name;
  SamplingParams params;
  bool guided;
};

}  // namespace

TEST_CASE("hand-computed top-p example: probs .1 .2 .3 .4 with p = 0.6 keep the top two, renormalised 3/7 and 4/7") {
  const std::vector<double> logits = {std::log(1.0), std::log(2.0), std::log(3.0), std::log(4.0)};
  SamplingParams p;
  p.top_p = 0.6;
  CHECK(logprob_d(logits, 3, p) == doctest::Approx(std::log(4.0 / 7.0)).epsilon(1e-12));
  CHECK(logprob_d(logits, 2, p) == doctest::Approx(std::log(3.0 / 7.0)).epsilon(1e-12));
  CHECK(logprob_d(logits, 1, p) == kNegInf);
  CHECK(logprob_d(logits, 0, p) == kNegInf);
  // p = 0.7 is reached exactly by {4, 3}; p = 0.71 needs the 0.2 token as well: probs 4/9, 3/9, 2/9.
  p.top_p = 0.71;
  CHECK(logprob_d(logits, 1, p) == doctest::Approx(std::log(2.0 / 9.0)).epsilon(1e-12));
  // top-k 2 then top-p 0.5 on the renormalised {4/7, 3/7}: 4/7 >= 0.5, only the top token.
  p.top_k = 2;
  p.top_p = 0.5;
  CHECK(logprob_d(logits, 3, p) == 0.0);
  // min-p 0.5: p_i >= 0.5 * 0.4 = 0.2 keeps {.2, .3, .4} -> 2/9, 3/9, 4/9.
  SamplingParams m;
  m.min_p = 0.5;
  CHECK(logprob_d(logits, 1, m) == doctest::Approx(std::log(2.0 / 9.0)).epsilon(1e-12));
  CHECK(logprob_d(logits, 0, m) == kNegInf);
  // CFG w = 2 with uncond = 0: z = 2 log(1..4) -> probs 1, 4, 9, 16 over 30.
  const std::vector<double> zeros(4, 0.0);
  SamplingParams g;
  g.cfg_weight = 2.0;
  CHECK(logprob_d(logits, zeros, 2, g) == doctest::Approx(std::log(9.0 / 30.0)).epsilon(1e-12));
  // temperature 0.5 is the same distribution as CFG 2 here.
  SamplingParams t;
  t.temperature = 0.5;
  CHECK(logprob_d(logits, 2, t) == doctest::Approx(std::log(9.0 / 30.0)).epsilon(1e-12));
}

TEST_CASE("chi-square goodness of fit of 20000 draws against the exact truncated distribution, for every mode") {
  std::vector<Mode> modes;
  modes.push_back({"plain T=1", {}, false});
  {
    SamplingParams p;
    p.temperature = 0.7;
    modes.push_back({"temperature 0.7", p, false});
  }
  {
    SamplingParams p;
    p.top_k = 4;  // ties 1.5/1.5 inside
    modes.push_back({"top-k 4", p, false});
  }
  {
    SamplingParams p;
    p.top_p = 0.8;
    modes.push_back({"top-p 0.8", p, false});
  }
  {
    SamplingParams p;
    p.min_p = 0.2;
    modes.push_back({"min-p 0.2", p, false});
  }
  {
    SamplingParams p;
    p.cfg_weight = 3.0;
    modes.push_back({"CFG w=3", p, true});
  }
  {
    SamplingParams p;
    p.cfg_weight = 2.0;
    p.temperature = 1.3;
    p.top_k = 6;
    p.top_p = 0.9;
    p.min_p = 0.05;
    modes.push_back({"CFG 2 + T 1.3 + top-k 6 + top-p 0.9 + min-p 0.05", p, true});
  }
  {
    SamplingParams p;
    p.top_k = 3;
    p.top_p = 0.7;
    modes.push_back({"top-k 3 + top-p 0.7", p, false});
  }
  constexpr long n = 20000;
  std::uint64_t seed = 1000;
  for (const Mode& mode : modes) {
    CAPTURE(mode.name);
    const std::vector<double> uncond = mode.guided ? kUncond : std::vector<double>{};
    const auto prob = reference_distribution(kLogits, uncond, mode.params);
    const auto counts = draw_counts(kLogits, uncond, mode.params, n, seed++);
    int df = 0;
    long impossible = 0;
    const double stat = chi2(counts, prob, n, &df, &impossible);
    CAPTURE(stat);
    CAPTURE(df);
    CHECK(impossible == 0);  // never a truncated-away token
    if (df >= 1) {
      CHECK(stat < chi2_critical_001(df));
    }
    // Power: the same draws against the untruncated, unguided distribution fail wherever that differs enough.
    SamplingParams plain;
    const auto wrong = reference_distribution(kLogits, {}, plain);
    double max_diff = 0;
    for (std::size_t i = 0; i < prob.size(); ++i) max_diff = std::max(max_diff, std::abs(prob[i] - wrong[i]));
    if (max_diff > 0.02) {
      int df_wrong = 0;
      long impossible_wrong = 0;
      const double stat_wrong = chi2(counts, wrong, n, &df_wrong, &impossible_wrong);
      CHECK((impossible_wrong > 0 || stat_wrong > chi2_critical_001(df_wrong)));
    }
  }
}

TEST_CASE("the sampler's logp equals sampling_logprob of the drawn token, and the kept distribution sums to one") {
  corl::CounterRng rng(7, 0);
  for (int trial = 0; trial < 200; ++trial) {
    const index_t v = 1 + static_cast<index_t>(rng.below(60));
    std::vector<double> cond(static_cast<std::size_t>(v)), uncond(static_cast<std::size_t>(v));
    for (auto& x : cond) x = 3.0 * rng.normal();
    for (auto& x : uncond) x = 3.0 * rng.normal();
    SamplingParams p;
    p.temperature = 0.3 + 2.0 * rng.uniform();
    p.top_k = static_cast<index_t>(rng.below(8));
    p.top_p = rng.uniform() < 0.5 ? 1.0 : 0.05 + 0.95 * rng.uniform();
    p.min_p = rng.uniform() < 0.5 ? 0.0 : 0.3 * rng.uniform();
    p.cfg_weight = 1.0 + 4.0 * rng.uniform();
    const bool guided = trial % 2 == 0;
    const std::vector<double> u = guided ? uncond : std::vector<double>{};
    const auto s = sample_d(cond, u, p, RngKey{99, static_cast<std::uint64_t>(trial)}, 0);
    CAPTURE(trial);
    CHECK(s.logp == logprob_d(cond, u, s.token, p));
    CHECK(s.logp <= 0.0);
    double total = 0;
    for (index_t t = 0; t < v; ++t) total += std::exp(logprob_d(cond, u, t, p));
    CHECK(total == doctest::Approx(1.0).epsilon(1e-12));
    // And the probabilities match the sort-based reference.
    const auto prob = reference_distribution(cond, u, p);
    CHECK(std::exp(s.logp) == doctest::Approx(prob[static_cast<std::size_t>(s.token)]).epsilon(1e-9));
  }
}

TEST_CASE("edge cases: one finite logit, greedy, top-k 1, tiny top-p, ties, masked tokens under CFG") {
  const double inf = std::numeric_limits<double>::infinity();
  SamplingParams p;
  {
    const std::vector<double> row = {-inf, -inf, 3.5, -inf};
    for (std::uint64_t k = 0; k < 20; ++k) {
      const auto s = sample_d(row, p, RngKey{1, k}, 0);
      CHECK(s.token == 2);
      CHECK(s.logp == 0.0);
    }
  }
  const std::vector<double> row = {0.1, 2.0, -1.0, 2.0, 1.9};
  SamplingParams greedy;
  greedy.temperature = 0.0;
  const auto g = sample_d(row, greedy, RngKey{1, 0}, 0);
  CHECK(g.token == 1);  // first of the tied maxima
  CHECK(g.logp == 0.0);
  CHECK(logprob_d(row, 1, greedy) == 0.0);
  CHECK(logprob_d(row, 3, greedy) == -inf);

  const std::vector<double> unique = {0.1, 2.0, -1.0, 2.5, 1.9};
  SamplingParams k1;
  k1.top_k = 1;
  SamplingParams tiny_p;
  tiny_p.top_p = 1e-9;
  for (std::uint64_t k = 0; k < 50; ++k) {
    const auto a = sample_d(unique, k1, RngKey{3, k}, 0);
    const auto b = sample_d(unique, tiny_p, RngKey{3, k}, 0);
    const auto c = sample_d(unique, greedy, RngKey{3, k}, 0);
    CHECK(a.token == 3);
    CHECK(b.token == 3);
    CHECK(c.token == 3);
    CHECK(a.logp == 0.0);
    CHECK(b.logp == 0.0);
  }
  // top-k 1 with a tie keeps both tied maxima (ties at the threshold are kept): each has probability 1/2.
  CHECK(logprob_d(row, 3, k1) == doctest::Approx(std::log(0.5)));

  // A token masked in either CFG branch stays masked (no NaN from -inf - -inf).
  const std::vector<double> cond = {1.0, -inf, 0.5, -inf};
  const std::vector<double> uncond = {0.0, 0.0, -inf, -inf};
  SamplingParams cfg;
  cfg.cfg_weight = 5.0;
  for (std::uint64_t k = 0; k < 20; ++k) {
    const auto s = sample_d(cond, uncond, cfg, RngKey{5, k}, 0);
    CHECK(s.token == 0);
    CHECK(s.logp == 0.0);
  }
}

TEST_CASE("bad input throws corl::Error naming the function, the row, the array and the index") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> data(5 * 4, 0.5);
  data[3 * 4 + 2] = nan;
  std::vector<index_t> tokens(5);
  std::vector<double> logps(5);
  const corl::sampling::LogitRows<double> rows{data.data(), 5, 4, 4};
  try {
    corl::sampling::sample_rows<double, double>(rows, {}, SamplingParams{}, RngKey{}, tokens, logps);
    FAIL("expected corl::Error");
  } catch (const corl::Error& e) {
    const std::string what = e.what();
    CHECK(what.find("sample_rows") != std::string::npos);
    CHECK(what.find("row 3") != std::string::npos);
    CHECK(what.find("cond[2]") != std::string::npos);
  }
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> all_masked = {-inf, -inf};
  CHECK_THROWS_WITH_AS(sample_d(all_masked, SamplingParams{}, RngKey{}, 2),
                       doctest::Contains("row 2 has no finite logit"), corl::Error);
  const std::vector<double> plus_inf = {0.0, inf};
  CHECK_THROWS_WITH_AS(sample_d(plus_inf, SamplingParams{}, RngKey{}, 0),
                       doctest::Contains("cond[1] = inf"), corl::Error);
  const std::vector<double> ok = {0.0, 1.0};
  const std::vector<double> short_uncond = {0.0};
  CHECK_THROWS_WITH_AS(sample_d(ok, short_uncond, SamplingParams{}, RngKey{}, 0),
                       doctest::Contains("uncond has 1 logits"), corl::Error);
  SamplingParams bad;
  bad.top_p = 0.0;
  CHECK_THROWS_WITH_AS(sample_d(ok, bad, RngKey{}, 0), doctest::Contains("params.top_p"),
                       corl::Error);
  bad = {};
  bad.temperature = -1.0;
  CHECK_THROWS_WITH_AS(sample_d(ok, bad, RngKey{}, 0),
                       doctest::Contains("params.temperature"), corl::Error);
  // The cap keeps 1 / T a positive normal float (far above it, 1 / T rounds to 0 in float and -inf / T would become
  // NaN): 1e31 is rejected, 1e30 itself accepted.
  bad.temperature = 1e31;
  CHECK_THROWS_WITH_AS(sample_d(ok, bad, RngKey{}, 0),
                       doctest::Contains("params.temperature = 1e+31, expected in [0, 1e30]"), corl::Error);
  bad.temperature = corl::sampling::kMaxTemperature;
  const std::vector<double> masked = {-inf, 0.0, 1.0};
  CHECK(sample_d(masked, bad, RngKey{}, 0).token >= 1);
  bad = {};
  bad.min_p = 1.5;
  CHECK_THROWS_WITH_AS(sample_d(ok, bad, RngKey{}, 0), doctest::Contains("params.min_p"),
                       corl::Error);
  bad = {};
  bad.top_k = -1;
  CHECK_THROWS_WITH_AS(sample_d(ok, bad, RngKey{}, 0), doctest::Contains("params.top_k"),
                       corl::Error);
  CHECK_THROWS_WITH_AS(logprob_d(ok, 2, SamplingParams{}),
                       doctest::Contains("token = 2"), corl::Error);
  // Overflow of the guided logit is reported, not turned into inf/NaN.
  const std::vector<double> huge = {1e308, -1e308};
  const std::vector<double> zero = {0.0, 0.0};
  SamplingParams strong;
  strong.cfg_weight = 10.0;
  CHECK_THROWS_WITH_AS(sample_d(huge, zero, strong, RngKey{}, 0),
                       doctest::Contains("overflows"), corl::Error);
}

TEST_CASE("determinism: the draw is a pure function of (seed, offset, row), and batched rows equal single rows") {
  corl::CounterRng rng(11, 0);
  constexpr index_t rows = 16, vocab = 300;
  std::vector<float> cond(rows * vocab), uncond(rows * vocab);
  for (auto& x : cond) x = static_cast<float>(2.0 * rng.normal());
  for (auto& x : uncond) x = static_cast<float>(2.0 * rng.normal());
  SamplingParams p;
  p.cfg_weight = 5.0;
  p.top_p = 0.95;
  const corl::sampling::LogitRows<float> c{cond.data(), rows, vocab, vocab}, u{uncond.data(), rows, vocab, vocab};
  std::vector<index_t> t1(rows), t2(rows);
  std::vector<float> l1(rows), l2(rows);
  corl::sampling::sample_rows<float, float>(c, u, p, RngKey{42, 7}, t1, l1);
  corl::sampling::sample_rows<float, float>(c, u, p, RngKey{42, 7}, t2, l2);
  CHECK(t1 == t2);
  CHECK(l1 == l2);
  for (index_t r = 0; r < rows; ++r) {
    const auto s = corl::sampling::sample_row<float, float>(c.row(r), u.row(r), p, RngKey{42, 7}, static_cast<std::uint32_t>(r));
    CHECK(s.token == t1[static_cast<std::size_t>(r)]);
    CHECK(s.logp == l1[static_cast<std::size_t>(r)]);
  }
  // Another offset or seed changes the draws (a flat-ish 300-way row: equal in all 16 rows with probability ~0).
  corl::sampling::sample_rows<float, float>(c, u, p, RngKey{42, 8}, t2, l2);
  CHECK(t1 != t2);
  corl::sampling::sample_rows<float, float>(c, u, p, RngKey{43, 7}, t2, l2);
  CHECK(t1 != t2);
  // Batched log-probs reproduce the sampler's.
  std::vector<float> l3(rows);
  corl::sampling::sampling_logprobs<float, float>(c, u, t1, p, l3);
  CHECK(l3 == l1);
}

TEST_CASE("float and double references pick the same tokens on random rows, and bf16 rows sample like their float values") {
  corl::CounterRng rng(21, 0);
  constexpr index_t vocab = 1000;
  int same = 0;
  constexpr int trials = 200;
  for (int trial = 0; trial < trials; ++trial) {
    std::vector<float> f(vocab);
    std::vector<double> d(vocab);
    std::vector<corl::bfloat16> b(vocab);
    for (index_t i = 0; i < vocab; ++i) {
      b[static_cast<std::size_t>(i)] = corl::bfloat16(static_cast<float>(2.0 * rng.normal()));
      f[static_cast<std::size_t>(i)] = static_cast<float>(b[static_cast<std::size_t>(i)]);
      d[static_cast<std::size_t>(i)] = f[static_cast<std::size_t>(i)];
    }
    SamplingParams p;
    p.top_k = trial % 3 == 0 ? 50 : 0;
    const RngKey key{5, static_cast<std::uint64_t>(trial)};
    const auto sf = corl::sampling::sample_row<float, float>(f, p, key, 1);
    const auto sd = sample_d(d, p, key, 1);
    const auto sb = corl::sampling::sample_row<float, corl::bfloat16>(b, p, key, 1);
    CHECK(sb.token == sf.token);
    CHECK(sb.logp == sf.logp);
    if (sf.token == sd.token) {
      ++same;
      CHECK(static_cast<double>(sf.logp) == doctest::Approx(sd.logp).epsilon(1e-5));
    }
  }
  // Float and double keys differ by rounding only: a swap needs two keys within ~1e-6 of each other.
  CHECK(same >= trials - 2);
}

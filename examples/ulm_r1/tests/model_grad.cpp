// Whole-model gradient checks in double: the hand-written backward of Model::score (text rows, image rows under CFG
// and temperature, an understanding-image prompt) against central finite differences of every parameter.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "corl/core/error.hpp"
#include "corl/core/rng.hpp"
#include "model.hpp"

using namespace ulm;
using corl::index_t;

namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.text_vocab = 12;
  c.image_vocab = 7;
  c.image_tokens = 3;
  c.d_model = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 12;
  c.d_code = 4;
  c.max_seq = 16;
  return c;
}

Sequence text(std::initializer_list<int> ids) { return text_sequence(std::vector<int>(ids)); }

std::vector<ScoreRow> mixed_rows(Modality image_modality_in_prompt = Modality::image_in) {
  std::vector<ScoreRow> rows;
  // QA-like: <bos> <image> codes </image> question -> text answer
  ScoreRow qa;
  qa.prompt = text({1, 3});
  for (int code : {2, 5, 0}) qa.prompt.push_back(Token{code, image_modality_in_prompt});
  for (int id : {4, 9, 10}) qa.prompt.push_back(Token{id, Modality::text});
  qa.completion = text({5, 11, 6, 2});
  rows.push_back(qa);
  // text-to-image: <bos> prompt <image> -> codes
  for (int k = 0; k < 2; ++k) {
    ScoreRow t2i;
    t2i.prompt = text({1, 9 + k, 10, 3});
    t2i.completion = image_sequence(std::vector<int>{1 + k, 6, 3}, Modality::image_out);
    rows.push_back(t2i);
  }
  return rows;
}

std::vector<std::vector<double>> weights_for(const std::vector<ScoreRow>& rows, std::uint64_t seed = 7) {
  corl::CounterRng rng(seed, 0);
  std::vector<std::vector<double>> w(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t t = 0; t < rows[r].completion.size(); ++t) w[r].push_back(rng.uniform() - 0.3);
  return w;
}

/// sum w logp (+ sum u H when u is given): the function whose gradient backward computes.
double weighted_logp(const Model<double>& m, const std::vector<ScoreRow>& rows, const ScoreOptions& o,
                     const std::vector<std::vector<double>>& w,
                     const std::vector<std::vector<double>>* u = nullptr) {
  const auto s = m.score(rows, o);
  const auto h = u ? m.entropy(s) : std::vector<std::vector<double>>{};
  double total = 0;
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t t = 0; t < s.logp[r].size(); ++t)
      total += w[r][t] * s.logp[r][t] + (u ? (*u)[r][t] * h[r][t] : 0.0);
  return total;
}

/// `grad_before`: the gradient buffer starts at this value (backward accumulates) and it is subtracted again.
void check_all_parameters(const ScoreOptions& options, bool with_entropy = false,
                          const ModelConfig& config = tiny_config(), double grad_before = 0.0) {
  Model<double> m(config, 11);
  const auto rows = mixed_rows();
  const auto w = weights_for(rows);
  const auto u_values = weights_for(rows, 23);
  const auto* u = with_entropy ? &u_values : nullptr;
  std::vector<double> grad(static_cast<std::size_t>(m.num_parameters()), grad_before);
  const auto s = m.score(rows, options);
  if (with_entropy) {
    m.backward(s, w, u_values, grad);
  } else {
    m.backward(s, w, grad);
  }
  for (double& g : grad) g -= grad_before;
  auto params = m.parameters();
  double max_err = 0;
  index_t checked = 0;
  for (const ParamInfo& p : m.layout()) {
    for (index_t i = 0; i < p.size; ++i) {
      double& x = params[static_cast<std::size_t>(p.offset + i)];
      const double x0 = x, h = 1e-5;
      x = x0 + h;
      const double fp = weighted_logp(m, rows, options, w, u);
      x = x0 - h;
      const double fm = weighted_logp(m, rows, options, w, u);
      x = x0;
      const double numeric = (fp - fm) / (2 * h);
      const double analytic = grad[static_cast<std::size_t>(p.offset + i)];
      const double err = std::abs(numeric - analytic) / (1e-6 + std::abs(numeric) + std::abs(analytic));
      if (err > 1e-5) {
        INFO(p.name << "[" << i << "]: analytic " << analytic << ", numeric " << numeric);
        CHECK(err <= 1e-5);
      }
      max_err = std::max(max_err, err);
      ++checked;
    }
  }
  CHECK(checked == m.num_parameters());
  MESSAGE("checked " << checked << " parameters, max relative error " << max_err);
  CHECK(max_err < 1e-5);
}

}  // namespace

TEST_CASE("model gradient: every parameter, T = 1, no CFG, against finite differences") {
  check_all_parameters(ScoreOptions{1.0, 1.0});
}

TEST_CASE("model gradient: every parameter, T = 0.7, CFG weight 3 on image rows") {
  check_all_parameters(ScoreOptions{0.7, 3.0});
}

TEST_CASE("factored image codes: every parameter (colour and shape tables too), T = 0.7, CFG 3, accumulating") {
  ModelConfig c = tiny_config();
  c.code_colours = 2;  // image_vocab 7 = 1 + 2 x 3
  c.code_shapes = 3;
  const Model<double> m(c, 11);
  REQUIRE(m.layout().size() == Model<double>(tiny_config(), 11).layout().size() + 3);
  CHECK(m.layout().back().name == "image_factors.gen_head.weight");
  CHECK(m.layout().back().shape == std::vector<index_t>{5, 8});
  check_all_parameters(ScoreOptions{0.7, 3.0}, false, c, 0.25);
  check_all_parameters(ScoreOptions{1.0, 1.0}, true, c);
  // a bad dL/dlogits is an error that leaves the caller's accumulated gradient as it was
  const auto rows = mixed_rows();
  const auto s = m.score(rows, ScoreOptions{});
  std::vector<layers::Mat<double>> dlogits;
  for (const auto& z : s.logits) dlogits.push_back(layers::Mat<double>::Ones(z.rows(), z.cols()));
  dlogits.back() = layers::Mat<double>::Ones(3, 1);
  std::vector<double> grad(static_cast<std::size_t>(m.num_parameters()), 0.5);
  CHECK_THROWS_WITH_AS(m.backward_logits(s, dlogits, grad), doctest::Contains("dlogits[2] is 3 x 1"), corl::Error);
  CHECK(std::all_of(grad.begin(), grad.end(), [](double g) { return g == 0.5; }));
}

TEST_CASE("factored image codes: code k reads table[k] + colour[(k-1)/S] + shape[(k-1)%S], and bad configs") {
  ModelConfig c = tiny_config();
  c.code_colours = 2;
  c.code_shapes = 3;
  Model<double> m(c, 5);
  Model<double> by_hand(tiny_config(), 5);
  // the plain layout is a prefix of the factored one, initialised alike
  const auto plain = by_hand.parameters();
  const auto all = m.parameters();
  REQUIRE(all.size() == plain.size() + 5 * (4 + 8 + 8));
  CHECK(std::equal(plain.begin(), plain.end(), all.begin()));
  // one non-zero factor entry per table, added by hand to the rows of the codes that have that colour or shape:
  // code k = 1 + colour * 3 + shape, so colour 1 = codes 4, 5, 6 and shape 2 = codes 3, 6
  for (const char* name : {"image_factors.und_embed.weight", "image_factors.gen_embed.weight",
                           "image_factors.gen_head.weight"}) {
    auto f = m.parameter(name);
    std::fill(f.begin(), f.end(), 0.0);
  }
  m.parameter("image_factors.gen_embed.weight")[1 * 8 + 0] = 1.0;        // colour 1, feature 0
  m.parameter("image_factors.und_embed.weight")[(2 + 2) * 4 + 3] = -2.0;  // shape 2, feature 3
  m.parameter("image_factors.gen_head.weight")[1 * 8 + 5] = 0.5;         // colour 1, feature 5
  m.parameter("image_factors.gen_head.weight")[(2 + 1) * 8 + 2] = 3.0;   // shape 1, feature 2
  auto gen = by_hand.parameter("gen_embed.weight");
  for (int k : {4, 5, 6}) gen[k * 8 + 0] += 1.0;
  auto und = by_hand.parameter("und_embed.weight");
  for (int k : {3, 6}) und[k * 4 + 3] -= 2.0;
  auto head = by_hand.parameter("gen_head.2.weight");
  for (int k : {4, 5, 6}) head[k * 8 + 5] += 0.5;
  for (int k : {2, 5}) head[k * 8 + 2] += 3.0;
  ScoreRow row;
  row.prompt = text({1, 3});
  for (int code : {6, 3, 4, 5, 0}) row.prompt.push_back(Token{code, Modality::image_out});
  for (int code : {3, 6, 1}) row.prompt.push_back(Token{code, Modality::image_in});
  row.completion = image_sequence(std::vector<int>{2, 4}, Modality::image_out);
  const auto a = m.score({row}, ScoreOptions{});
  const auto b = by_hand.score({row}, ScoreOptions{});
  CHECK(a.logp == b.logp);

  ModelConfig bad = tiny_config();
  bad.code_colours = 2;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("expected both 0 (plain image-code tables) or both > 0"),
                       corl::Error);
  bad.code_shapes = 2;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("image_vocab = 1 + code_colours * code_shapes = 5, got 7"),
                       corl::Error);
  bad.code_colours = bad.code_shapes = 1 << 20;  // the product does not fit an int: still a plain error
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("= 1099511627777, got 7"), corl::Error);
}

TEST_CASE("model gradient with an entropy term: every parameter, T = 0.7, CFG weight 3, against finite differences") {
  check_all_parameters(ScoreOptions{0.7, 3.0}, true);
}

TEST_CASE("entropy: hand-computed values, uniform and peaked rows, bounds") {
  // A model whose final logits are all equal gives the uniform distribution: H = log(vocab) at every token.
  Model<double> m(tiny_config(), 3);
  const auto rows = mixed_rows();
  auto s = m.score(rows, ScoreOptions{1.0, 1.0});
  for (auto& z : s.logits) z.setZero();
  auto h = m.entropy(s);
  CHECK(h[0].size() == 4);
  for (double x : h[0]) CHECK(x == doctest::Approx(std::log(12.0)));
  for (double x : h[1]) CHECK(x == doctest::Approx(std::log(7.0)));
  // two equal logits far above the rest: H -> log 2; one -inf logit contributes 0 (not NaN)
  s.logits[1].col(0).setConstant(-1e30);
  s.logits[1](2, 0) = 0;
  s.logits[1](5, 0) = 0;
  s.logits[1](0, 1) = -std::numeric_limits<double>::infinity();
  h = m.entropy(s);
  CHECK(h[1][0] == doctest::Approx(std::log(2.0)));
  CHECK(h[1][1] == doctest::Approx(std::log(6.0)));
  // real logits: 0 <= H <= log(vocab)
  const auto s2 = m.score(rows, ScoreOptions{0.7, 3.0});
  const auto h2 = m.entropy(s2);
  for (std::size_t r = 0; r < h2.size(); ++r)
    for (double x : h2[r]) {
      CHECK(x >= 0.0);
      CHECK(x <= std::log(r == 0 ? 12.0 : 7.0) + 1e-12);
    }
}

TEST_CASE("backward_logits with dL/dz = w (onehot - softmax) equals backward from dL/dlogp") {
  Model<double> m(tiny_config(), 3);
  const auto rows = mixed_rows();
  const auto w = weights_for(rows);
  const ScoreOptions o{0.9, 2.0};
  const auto s = m.score(rows, o);
  std::vector<double> g1(static_cast<std::size_t>(m.num_parameters()), 0.0), g2 = g1;
  m.backward(s, w, g1);
  std::vector<layers::Mat<double>> dz(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    dz[r] = layers::Mat<double>::Zero(s.logits[r].rows(), s.logits[r].cols());
    for (index_t t = 0; t < s.logits[r].cols(); ++t) {
      const layers::Vec<double> p = layers::log_softmax<double>(s.logits[r].col(t)).array().exp();
      dz[r].col(t) = -w[r][static_cast<std::size_t>(t)] * p;
      dz[r](rows[r].completion[static_cast<std::size_t>(t)].id, t) += w[r][static_cast<std::size_t>(t)];
      // the logits are the distribution: logp equals log_softmax(z)[token]
      CHECK(s.logp[r][static_cast<std::size_t>(t)] ==
            doctest::Approx(layers::log_softmax<double>(s.logits[r].col(t))(
                rows[r].completion[static_cast<std::size_t>(t)].id)));
    }
  }
  m.backward_logits(s, dz, g2);
  double diff = 0;
  for (std::size_t i = 0; i < g1.size(); ++i) diff = std::max(diff, std::abs(g1[i] - g2[i]));
  CHECK(diff < 1e-12);
}

TEST_CASE("cross_entropy: value is the mean negative log-prob, gradient matches finite differences") {
  Model<double> m(tiny_config(), 5);
  const auto rows = mixed_rows();
  std::vector<double> grad(static_cast<std::size_t>(m.num_parameters()), 0.0);
  const double loss = m.cross_entropy(rows, grad);
  const auto s = m.score(rows, ScoreOptions{});
  double sum = 0;
  int n = 0;
  for (const auto& r : s.logp)
    for (double lp : r) {
      sum -= lp;
      ++n;
    }
  CHECK(loss == doctest::Approx(sum / n).epsilon(1e-12));
  // spot-check a few parameters of every tensor
  auto params = m.parameters();
  std::vector<double> scratch(grad.size());
  for (const ParamInfo& p : m.layout()) {
    for (index_t i : {index_t{0}, p.size / 2, p.size - 1}) {
      double& x = params[static_cast<std::size_t>(p.offset + i)];
      const double x0 = x;
      x = x0 + 1e-5;
      const double fp = m.cross_entropy(rows, scratch);
      x = x0 - 1e-5;
      const double fm = m.cross_entropy(rows, scratch);
      x = x0;
      INFO(p.name << "[" << i << "]");
      CHECK(grad[static_cast<std::size_t>(p.offset + i)] == doctest::Approx((fp - fm) / 2e-5).epsilon(1e-6));
    }
  }
}

TEST_CASE("float and double models agree on log-probs") {
  Model<double> md(tiny_config(), 9);
  Model<float> mf(tiny_config(), 9);
  auto pf = mf.parameters();
  auto pd = md.parameters();
  for (std::size_t i = 0; i < pd.size(); ++i) pd[i] = static_cast<double>(pf[i]);
  const auto rows = mixed_rows();
  const auto sd = md.score(rows, ScoreOptions{0.8, 4.0});
  const auto sf = mf.score(rows, ScoreOptions{0.8, 4.0});
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t t = 0; t < sd.logp[r].size(); ++t)
      CHECK(static_cast<double>(sf.logp[r][t]) == doctest::Approx(sd.logp[r][t]).epsilon(1e-4));
}

TEST_CASE("clip_grad_norm: global norm, scaling, and NaN rejection") {
  std::vector<double> g = {3.0, 4.0};
  CHECK(clip_grad_norm<double>(g, 10.0) == doctest::Approx(5.0));
  CHECK(g[0] == 3.0);
  CHECK(clip_grad_norm<double>(g, 1.0) == doctest::Approx(5.0));
  CHECK(g[0] == doctest::Approx(0.6));
  CHECK(g[1] == doctest::Approx(0.8));
  std::vector<float> bad = {1.0f, std::nanf("")};
  CHECK_THROWS_WITH_AS(clip_grad_norm<float>(bad, 1.0), doctest::Contains("grad[1]"), corl::Error);
}

TEST_CASE("bad input: out-of-range token, empty prompt, wrong dlogp shape, bad config") {
  Model<double> m(tiny_config(), 1);
  std::vector<ScoreRow> rows = mixed_rows();
  rows[1].completion[1].id = 7;  // image vocab is 7
  CHECK_THROWS_WITH_AS(m.score(rows, {}), doctest::Contains("expected in [0, 7)"), corl::Error);
  rows = mixed_rows();
  rows[0].prompt.clear();
  CHECK_THROWS_WITH_AS(m.score(rows, {}), doctest::Contains("rows[0].prompt is empty"), corl::Error);
  rows = mixed_rows();
  const auto s = m.score(rows, {});
  std::vector<double> grad(static_cast<std::size_t>(m.num_parameters()));
  std::vector<std::vector<double>> dlogp(rows.size(), std::vector<double>(1, 1.0));
  CHECK_THROWS_WITH_AS(m.backward(s, dlogp, grad), doctest::Contains("dlogp[0] has 1 entries, expected 4"),
                       corl::Error);
  ModelConfig bad = tiny_config();
  bad.n_heads = 3;
  CHECK_THROWS_WITH_AS(Model<double>(bad, 1), doctest::Contains("not divisible by n_heads"), corl::Error);
}

TEST_CASE("hidden_states equal the trunk output used for scoring, the copy is independent") {
  Model<double> m(tiny_config(), 2);
  Sequence seq = text({1, 9, 10, 3});
  const auto h = m.hidden_states(seq);
  CHECK(h.rows() == 8);
  CHECK(h.cols() == 4);
  // RMSNorm output with weight 1: every column has mean square ~1
  for (index_t j = 0; j < 4; ++j) CHECK(h.col(j).squaredNorm() / 8 == doctest::Approx(1.0).epsilon(1e-4));
  Model<double> ref = m.copy();
  m.parameters()[0] += 1.0;
  CHECK(ref.parameters()[0] == doctest::Approx(m.parameters()[0] - 1.0));
}

// Layer-by-layer checks of layers.hpp in double: hand-computed values and central finite differences of every
// backward (loss = <R, y> for a fixed random R, so dL/dy = R).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "corl/core/rng.hpp"
#include "layers.hpp"

using namespace ulm::layers;
using corl::index_t;
using M = Mat<double>;
using V = Vec<double>;

namespace {

M random_mat(index_t r, index_t c, std::uint32_t stream, double scale = 1.0) {
  corl::CounterRng rng(42, stream);
  M m(r, c);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = scale * rng.normal();
  return m;
}

/// Central difference of f at x(i), step h.
double fd(const std::function<double()>& f, double& xi, double h = 1e-6) {
  const double x0 = xi;
  xi = x0 + h;
  const double fp = f();
  xi = x0 - h;
  const double fm = f();
  xi = x0;
  return (fp - fm) / (2 * h);
}

}  // namespace

TEST_CASE("rmsnorm: hand value and finite differences") {
  // x = (3, 4): mean square 12.5, inv = 1/sqrt(12.5 + eps); w = (1, 2)
  M x(2, 1);
  x << 3, 4;
  V wv(2);
  wv << 1, 2;
  ConstVecMap<double> w(wv.data(), 2);
  M y;
  V inv;
  rmsnorm_forward<double>(x, w, 0.0, y, inv);
  CHECK(y(0, 0) == doctest::Approx(3 / std::sqrt(12.5)).epsilon(1e-14));
  CHECK(y(1, 0) == doctest::Approx(8 / std::sqrt(12.5)).epsilon(1e-14));

  M xs = random_mat(5, 3, 1);
  V ws = random_mat(5, 1, 2);
  const M R = random_mat(5, 3, 3);
  auto loss = [&]() {
    M yy;
    V ii;
    rmsnorm_forward<double>(xs, ConstVecMap<double>(ws.data(), 5), 1e-5, yy, ii);
    return (yy.array() * R.array()).sum();
  };
  M yy, dx;
  V ii, dw = V::Zero(5);
  rmsnorm_forward<double>(xs, ConstVecMap<double>(ws.data(), 5), 1e-5, yy, ii);
  VecMap<double> dwm(dw.data(), 5);
  rmsnorm_backward<double>(xs, ConstVecMap<double>(ws.data(), 5), ii, R, dx, dwm);
  for (index_t i = 0; i < xs.size(); ++i) CHECK(dx.data()[i] == doctest::Approx(fd(loss, xs.data()[i])).epsilon(1e-7));
  for (index_t i = 0; i < ws.size(); ++i) CHECK(dw(i) == doctest::Approx(fd(loss, ws.data()[i])).epsilon(1e-7));
}

TEST_CASE("rope: position 0 is the identity, a quarter turn by hand, and the inverse undoes it") {
  // head size 4, one head: pair (0, 2) turns by pos * 1, pair (1, 3) by pos * theta^(-1/2)
  M x(4, 2);
  x << 1, 1, 2, 2, 3, 3, 4, 4;
  const double theta = 10000.0;
  M y = x;
  rope_apply<double>(y, 4, {0, 1}, theta, false);
  CHECK((y.col(0) - x.col(0)).norm() == doctest::Approx(0.0));
  const double a0 = 1.0, a1 = std::pow(theta, -0.5);
  CHECK(y(0, 1) == doctest::Approx(1 * std::cos(a0) - 3 * std::sin(a0)));
  CHECK(y(2, 1) == doctest::Approx(3 * std::cos(a0) + 1 * std::sin(a0)));
  CHECK(y(1, 1) == doctest::Approx(2 * std::cos(a1) - 4 * std::sin(a1)));
  CHECK(y(3, 1) == doctest::Approx(4 * std::cos(a1) + 2 * std::sin(a1)));
  // inverse = transpose (rotation), which is what the backward uses
  M z = random_mat(8, 3, 5);
  M r = z;
  rope_apply<double>(r, 4, {3, 7, 11}, theta, false);
  CHECK(r.col(1).norm() == doctest::Approx(z.col(1).norm()));
  rope_apply<double>(r, 4, {3, 7, 11}, theta, true);
  CHECK((r - z).norm() < 1e-12);
  // <R, rope(x)> = <rope^-1(R), x>: the backward is the inverse rotation
  M R = random_mat(8, 3, 6);
  M rx = z;
  rope_apply<double>(rx, 4, {3, 7, 11}, theta, false);
  M rinv = R;
  rope_apply<double>(rinv, 4, {3, 7, 11}, theta, true);
  CHECK((rx.array() * R.array()).sum() == doctest::Approx((z.array() * rinv.array()).sum()).epsilon(1e-12));
}

TEST_CASE("swiglu and gelu: values and finite differences") {
  M g(1, 1), u(1, 1);
  g << 0.0;
  u << 3.0;
  CHECK(swiglu_forward<double>(g, u)(0, 0) == doctest::Approx(0.0));  // silu(0) = 0
  g << 2.0;
  CHECK(swiglu_forward<double>(g, u)(0, 0) == doctest::Approx(3.0 * 2.0 / (1.0 + std::exp(-2.0))));
  CHECK(gelu(0.0) == 0.0);
  CHECK(gelu(1.0) == doctest::Approx(0.8413447460685429));  // Phi(1) = 0.8413447460685429
  for (double x : {-2.0, -0.3, 0.0, 0.7, 3.0}) {
    double xx = x;
    CHECK(gelu_grad(x) == doctest::Approx(fd([&]() { return gelu(xx); }, xx)).epsilon(1e-7));
  }
  M gs = random_mat(4, 3, 7), us = random_mat(4, 3, 8);
  const M R = random_mat(4, 3, 9);
  auto loss = [&]() { return (swiglu_forward<double>(gs, us).array() * R.array()).sum(); };
  M dg, du;
  swiglu_backward<double>(gs, us, R, dg, du);
  for (index_t i = 0; i < gs.size(); ++i) {
    CHECK(dg.data()[i] == doctest::Approx(fd(loss, gs.data()[i])).epsilon(1e-7));
    CHECK(du.data()[i] == doctest::Approx(fd(loss, us.data()[i])).epsilon(1e-7));
  }
}

TEST_CASE("causal attention: first query sees only itself, finite differences of q, k, v") {
  M q = random_mat(4, 5, 10), k = random_mat(4, 5, 11), v = random_mat(4, 5, 12);
  M out, p;
  attention_head_forward<double>(q, k, v, 0, out, p);
  CHECK((out.col(0) - v.col(0)).norm() < 1e-14);  // a single visible key: weight 1
  for (index_t i = 0; i < 5; ++i) {
    CHECK(p.col(i).sum() == doctest::Approx(1.0));
    for (index_t r = i + 1; r < 5; ++r) CHECK(p(r, i) == 0.0);
  }
  // with an offset (KV cache), the last 2 queries of 5 keys give the same output as the full causal pass
  M out2, p2;
  attention_head_forward<double>(M(q.rightCols(2)), k, v, 3, out2, p2);
  CHECK((out2 - out.rightCols(2)).norm() < 1e-13);

  const M R = random_mat(4, 5, 13);
  auto loss = [&]() {
    M o, pp;
    attention_head_forward<double>(q, k, v, 0, o, pp);
    return (o.array() * R.array()).sum();
  };
  M dq, dk, dv;
  attention_head_backward<double>(q, k, v, p, R, dq, dk, dv);
  for (index_t i = 0; i < q.size(); ++i) {
    CHECK(dq.data()[i] == doctest::Approx(fd(loss, q.data()[i])).epsilon(1e-7));
    CHECK(dk.data()[i] == doctest::Approx(fd(loss, k.data()[i])).epsilon(1e-7));
    CHECK(dv.data()[i] == doctest::Approx(fd(loss, v.data()[i])).epsilon(1e-7));
  }
}

TEST_CASE("log_softmax: hand value and shift invariance") {
  V z(3);
  z << 0, std::log(2.0), std::log(5.0);  // softmax = (1, 2, 5) / 8
  const V ls = log_softmax<double>(z);
  CHECK(std::exp(ls(0)) == doctest::Approx(1.0 / 8));
  CHECK(std::exp(ls(2)) == doctest::Approx(5.0 / 8));
  V big = z.array() + 1000.0;
  CHECK((log_softmax<double>(big) - ls).norm() < 1e-12);
}

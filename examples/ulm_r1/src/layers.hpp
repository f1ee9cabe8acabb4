// layers.hpp — the building blocks of the bundled transformer, forward and backward by hand, templated on the scalar.
//
// Activations are column-major Eigen matrices with one column per token (features x tokens). Weights are stored as in
// PyTorch / Hugging Face: a Linear(in -> out) weight is row-major [out, in] and computes y = W x (+ b); an embedding
// table is row-major [vocab, dim]. Formulas (Llama: Touvron et al. 2023; Janus-Pro: Chen et al. 2025):
//   RMSNorm      y = w * x / sqrt(mean(x^2) + eps)
//   RoPE         for i < h/2, angle = pos * theta^(-2i/h):  (x_i, x_{i+h/2}) -> (x_i c - x_{i+h/2} s, x_{i+h/2} c + x_i s)
//                (Hugging Face "rotate_half" convention, per head of size h)
//   SwiGLU       y = W_down (silu(W_gate x) * (W_up x)),  silu(g) = g sigmoid(g)
//   GELU         gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))   (exact form, torch.nn.GELU())
//   attention    softmax(K^T Q / sqrt(h)) with a causal mask, per head
// Each backward takes the upstream gradient and returns / accumulates the input and weight gradients; tests compare
// every one with central finite differences in double (tests/model_layers.cpp).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "corl/core/hd.hpp"

namespace ulm::layers {

template <class Real>
using Mat = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic>;
template <class Real>
using Vec = Eigen::Matrix<Real, Eigen::Dynamic, 1>;
template <class Real>
using RowMat = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Real>
using WeightMap = Eigen::Map<RowMat<Real>>;
template <class Real>
using ConstWeightMap = Eigen::Map<const RowMat<Real>>;
template <class Real>
using VecMap = Eigen::Map<Vec<Real>>;
template <class Real>
using ConstVecMap = Eigen::Map<const Vec<Real>>;
/// A read-only view of a matrix or of a block of one (e.g. one head's rows of Q, or the filled part of a KV cache)
/// without a copy.
template <class Real>
using ConstMatRef = Eigen::Ref<const Mat<Real>>;

// ---- RMSNorm -------------------------------------------------------------------------------------------------------

/// y = w * x * inv_rms per column; stores inv_rms (one per column) for the backward.
template <class Real>
void rmsnorm_forward(const Mat<Real>& x, const ConstVecMap<Real>& w, Real eps, Mat<Real>& y, Vec<Real>& inv_rms) {
  const corl::index_t d = x.rows(), n = x.cols();
  inv_rms.resize(n);
  y.resize(d, n);
  for (corl::index_t j = 0; j < n; ++j) {
    const Real ms = x.col(j).squaredNorm() / static_cast<Real>(d);
    inv_rms(j) = Real(1) / std::sqrt(ms + eps);
    y.col(j) = (x.col(j) * inv_rms(j)).cwiseProduct(w);
  }
}

/// dx = inv (g - xhat mean(g xhat)), g = dy * w;  dw += sum_j dy_j * xhat_j.
template <class Real>
void rmsnorm_backward(const Mat<Real>& x, const ConstVecMap<Real>& w, const Vec<Real>& inv_rms, const Mat<Real>& dy,
                      Mat<Real>& dx, VecMap<Real>& dw) {
  const corl::index_t d = x.rows(), n = x.cols();
  dx.resize(d, n);
  for (corl::index_t j = 0; j < n; ++j) {
    const Vec<Real> xhat = x.col(j) * inv_rms(j);
    const Vec<Real> g = dy.col(j).cwiseProduct(w);
    dw += dy.col(j).cwiseProduct(xhat);
    const Real m = g.dot(xhat) / static_cast<Real>(d);
    dx.col(j) = inv_rms(j) * (g - xhat * m);
  }
}

// ---- rotary positions ----------------------------------------------------------------------------------------------

/// cos and sin of the rotary angles pos * theta^(-2i/h) for positions 0..positions-1 and i < h/2, computed in double
/// and rounded to Real once (a Model builds its table for max_seq positions when it is constructed).
template <class Real>
struct RopeTable {
  RopeTable() = default;
  RopeTable(double theta, corl::index_t head_dim, corl::index_t num_positions)
      : half(head_dim / 2), positions(num_positions) {
    cos.resize(static_cast<std::size_t>(positions * half));
    sin.resize(static_cast<std::size_t>(positions * half));
    for (corl::index_t i = 0; i < half; ++i) {
      const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
      for (corl::index_t p = 0; p < positions; ++p) {
        const double angle = static_cast<double>(p) * freq;
        cos[static_cast<std::size_t>(p * half + i)] = static_cast<Real>(std::cos(angle));
        sin[static_cast<std::size_t>(p * half + i)] = static_cast<Real>(std::sin(angle));
      }
    }
  }
  corl::index_t half = 0, positions = 0;
  std::vector<Real> cos, sin;  ///< [pos * half + i]
};

/// Rotates every head (rows [h*hd, (h+1)*hd)) of column j by position pos[j] (< table.positions, for head size
/// 2 table.half); inverse = true rotates by -angle (the backward of the rotation, which is orthogonal).
template <class Real>
void rope_apply(Mat<Real>& x, corl::index_t head_dim, const std::vector<corl::index_t>& pos,
                const RopeTable<Real>& table, bool inverse) {
  const corl::index_t half = head_dim / 2, heads = x.rows() / head_dim;
  for (corl::index_t j = 0; j < x.cols(); ++j) {
    const std::size_t row = static_cast<std::size_t>(pos[static_cast<std::size_t>(j)] * half);
    for (corl::index_t i = 0; i < half; ++i) {
      const Real c = table.cos[row + static_cast<std::size_t>(i)];
      const Real sin_i = table.sin[row + static_cast<std::size_t>(i)];
      const Real s = inverse ? -sin_i : sin_i;
      for (corl::index_t h = 0; h < heads; ++h) {
        Real& a = x(h * head_dim + i, j);
        Real& b = x(h * head_dim + i + half, j);
        const Real a0 = a, b0 = b;
        a = a0 * c - b0 * s;
        b = b0 * c + a0 * s;
      }
    }
  }
}

/// The same for a one-off call: builds the table for the positions in `pos`.
template <class Real>
void rope_apply(Mat<Real>& x, corl::index_t head_dim, const std::vector<corl::index_t>& pos, double theta,
                bool inverse) {
  const corl::index_t max_pos = pos.empty() ? 0 : *std::max_element(pos.begin(), pos.end());
  rope_apply<Real>(x, head_dim, pos, RopeTable<Real>(theta, head_dim, max_pos + 1), inverse);
}

// ---- activations ---------------------------------------------------------------------------------------------------

template <class Real>
Real sigmoid(Real x) {
  return x >= Real(0) ? Real(1) / (Real(1) + std::exp(-x)) : std::exp(x) / (Real(1) + std::exp(x));
}

/// act = silu(g) * u.
template <class Real>
Mat<Real> swiglu_forward(const Mat<Real>& g, const Mat<Real>& u) {
  Mat<Real> a(g.rows(), g.cols());
  for (corl::index_t k = 0; k < g.size(); ++k) a.data()[k] = g.data()[k] * sigmoid(g.data()[k]) * u.data()[k];
  return a;
}

/// dg = da * u * silu'(g), du = da * silu(g), silu'(g) = s (1 + g (1 - s)).
template <class Real>
void swiglu_backward(const Mat<Real>& g, const Mat<Real>& u, const Mat<Real>& da, Mat<Real>& dg, Mat<Real>& du) {
  dg.resize(g.rows(), g.cols());
  du.resize(g.rows(), g.cols());
  for (corl::index_t k = 0; k < g.size(); ++k) {
    const Real x = g.data()[k], s = sigmoid(x);
    du.data()[k] = da.data()[k] * x * s;
    dg.data()[k] = da.data()[k] * u.data()[k] * s * (Real(1) + x * (Real(1) - s));
  }
}

template <class Real>
Real gelu(Real x) {
  return Real(0.5) * x * (Real(1) + std::erf(x * Real(0.70710678118654752440)));
}
template <class Real>
Real gelu_grad(Real x) {
  return Real(0.5) * (Real(1) + std::erf(x * Real(0.70710678118654752440))) +
         x * Real(0.39894228040143267794) * std::exp(Real(-0.5) * x * x);
}

// ---- causal attention ----------------------------------------------------------------------------------------------

/// One head, one sequence: q (hd x nq), k, v (hd x nk), query i sits at key position offset + i and sees keys
/// 0..offset+i. Returns the output (hd x nq) and the probabilities p (nk x nq, zero above the diagonal).
template <class Real>
void attention_head_forward(const ConstMatRef<Real>& q, const ConstMatRef<Real>& k, const ConstMatRef<Real>& v,
                            corl::index_t offset, Mat<Real>& out, Mat<Real>& p) {
  const corl::index_t nq = q.cols(), nk = k.cols();
  const Real scale = Real(1) / std::sqrt(static_cast<Real>(q.rows()));
  p.noalias() = (k.transpose() * q) * scale;
  for (corl::index_t i = 0; i < nq; ++i) {
    const corl::index_t visible = offset + i + 1;
    const Real m = p.col(i).head(visible).maxCoeff();
    Real sum = 0;
    for (corl::index_t r = 0; r < visible; ++r) {
      p(r, i) = std::exp(p(r, i) - m);
      sum += p(r, i);
    }
    p.col(i).head(visible) /= sum;
    if (visible < nk) p.col(i).tail(nk - visible).setZero();
  }
  out.noalias() = v * p;
}

/// Backward of attention_head_forward with offset 0: accumulates into dq, dk, dv (same shapes as q, k, v).
template <class Real>
void attention_head_backward(const ConstMatRef<Real>& q, const ConstMatRef<Real>& k, const ConstMatRef<Real>& v,
                             const Mat<Real>& p, const ConstMatRef<Real>& dout, Mat<Real>& dq, Mat<Real>& dk,
                             Mat<Real>& dv) {
  const Real scale = Real(1) / std::sqrt(static_cast<Real>(q.rows()));
  dv.noalias() = dout * p.transpose();
  Mat<Real> dp = v.transpose() * dout;  // nk x nq
  Mat<Real> ds = p.cwiseProduct(dp);
  for (corl::index_t i = 0; i < ds.cols(); ++i) ds.col(i) -= p.col(i) * ds.col(i).sum();
  ds *= scale;
  dq.noalias() = k * ds;
  dk.noalias() = q * ds.transpose();
}

// ---- softmax helpers -----------------------------------------------------------------------------------------------

/// log-softmax of one column.
template <class Real>
Vec<Real> log_softmax(const Vec<Real>& z) {
  const Real m = z.maxCoeff();
  const Real lse = m + std::log((z.array() - m).exp().sum());
  return z.array() - lse;
}

}  // namespace ulm::layers

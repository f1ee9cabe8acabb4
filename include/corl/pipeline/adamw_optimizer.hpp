// corl/pipeline/adamw_optimizer.hpp — corl::AdamW (corl/optim/adamw.hpp) as a stage_optimizer: one flat parameter
// buffer, the stage's learning rate, and a byte-exact state() / load_state() so a resumed stage steps identically.
//
// State layout (host byte order): "ADAMW1" i64 steps u64 n  m[n] v[n]  (Real values). load_state before the first
// step is kept and applied when the parameter buffer is registered (the pipeline restores a checkpoint first).
// The parameter span must stay the same buffer for the optimizer's lifetime (one stage).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/optim/adamw.hpp"

namespace corl {

template <class Real>
class StageAdamW {
 public:
  explicit StageAdamW(AdamWConfig config) : adam_(config) {}

  void step(std::span<Real> params, std::span<const Real> grads, double lr) {
    if (!registered_) {
      adam_.add_parameter(params);
      data_ = params.data();
      registered_ = true;
      if (pending_) apply(*pending_);
      pending_.reset();
    }
    require(params.data() == data_ && params.size() == adam_.first_moment(0).size(),
            "corl::StageAdamW::step: the parameter buffer changed, expected the one of the first step");
    adam_.set_lr(lr);
    const std::vector<std::span<const Real>> g = {grads};
    adam_.step(g);
  }

  std::string state() const {
    std::string s = "ADAMW1";
    const std::int64_t steps = adam_.steps_taken();
    append(s, &steps, sizeof steps);
    if (!registered_) {
      const std::uint64_t n = 0;
      append(s, &n, sizeof n);
      return s;
    }
    const std::span<const Real> m = adam_.first_moment(0), v = adam_.second_moment(0);
    const std::uint64_t n = m.size();
    append(s, &n, sizeof n);
    append(s, m.data(), n * sizeof(Real));
    append(s, v.data(), n * sizeof(Real));
    return s;
  }

  void load_state(const std::string& s) {
    require(s.size() >= 6 + 16 && s.compare(0, 6, "ADAMW1") == 0,
            "corl::StageAdamW::load_state: not an AdamW state (bad tag or too short)");
    if (registered_) {
      apply(s);
    } else {
      pending_ = s;
    }
  }

  std::int64_t steps_taken() const { return adam_.steps_taken(); }

 private:
  static void append(std::string& s, const void* p, std::size_t n) { s.append(static_cast<const char*>(p), n); }

  void apply(const std::string& s) {
    std::int64_t steps = 0;
    std::uint64_t n = 0;
    std::memcpy(&steps, s.data() + 6, sizeof steps);
    std::memcpy(&n, s.data() + 14, sizeof n);
    const auto m = adam_.first_moment(0), v = adam_.second_moment(0);
    if (n == 0) {  // saved before any step
      require(steps == 0, "corl::StageAdamW::load_state: state has ", steps, " steps but no moments");
      return;
    }
    require(n == m.size(), "corl::StageAdamW::load_state: state has ", n, " moments, the parameters ", m.size());
    require(s.size() == 22 + 2 * n * sizeof(Real), "corl::StageAdamW::load_state: state has ", s.size(),
            " bytes, expected ", 22 + 2 * n * sizeof(Real));
    require(steps >= 1, "corl::StageAdamW::load_state: state has ", steps, " steps with moments, expected >= 1");
    // Checked before anything is restored: first moments finite, second moments finite and >= 0.
    std::vector<Real> m_in(n), v_in(n);
    std::memcpy(m_in.data(), s.data() + 22, n * sizeof(Real));
    std::memcpy(v_in.data(), s.data() + 22 + n * sizeof(Real), n * sizeof(Real));
    for (std::size_t i = 0; i < n; ++i) {
      require(std::isfinite(m_in[i]), "corl::StageAdamW::load_state: first moment [", i, "] = ", m_in[i],
              ", expected finite");
      require(std::isfinite(v_in[i]) && v_in[i] >= Real(0), "corl::StageAdamW::load_state: second moment [", i,
              "] = ", v_in[i], ", expected finite and >= 0");
    }
    std::copy(m_in.begin(), m_in.end(), m.begin());
    std::copy(v_in.begin(), v_in.end(), v.begin());
    adam_.set_steps_taken(steps);
  }

  AdamW<Real> adam_;
  bool registered_ = false;
  const Real* data_ = nullptr;
  std::optional<std::string> pending_;
};

}  // namespace corl

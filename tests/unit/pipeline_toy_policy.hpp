// A tiny policy for the pipeline tests: completions are kLen tokens from a vocabulary of kVocab, each position an
// independent softmax over logits theta[task][pos][v]; the prompt says which task's table to use and carries the row's
// target token. Sampling is inverse-CDF on corl::uniform01(seed, offset, stream = row * G + g, index = pos).
#pragma once

#include <cmath>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <corl/concepts/policy.hpp>
#include <corl/core/rng.hpp>

namespace toy {

inline constexpr int kVocab = 4;
inline constexpr int kLen = 3;
inline constexpr int kTasks = 2;

struct Prompt {
  int task = 0;
  int target = 0;
};
struct Row {
  int target = 0;
};

struct Scored {
  std::vector<std::vector<double>> logp;
  std::vector<Prompt> prompts;
  std::vector<std::vector<int>> completions;
};

class Policy {
 public:
  using real_type = double;
  using prompt_type = Prompt;
  using completion_type = std::vector<int>;
  using scored_type = Scored;

  Policy() : theta_(kTasks * kLen * kVocab, 0.0) {}

  std::vector<corl::Rollout<completion_type, double>> sample(const std::vector<Prompt>& prompts, int group,
                                                             corl::SampleKey key) const {
    std::vector<corl::Rollout<completion_type, double>> out;
    for (std::size_t p = 0; p < prompts.size(); ++p) {
      for (int g = 0; g < group; ++g) {
        corl::Rollout<completion_type, double> r;
        const auto stream = static_cast<std::uint32_t>(p * static_cast<std::size_t>(group) + static_cast<std::size_t>(g));
        for (int t = 0; t < kLen; ++t) {
          const auto probs = softmax(prompts[p].task, t);
          const double u = corl::uniform01<double>(key.seed, key.offset, stream, static_cast<std::uint32_t>(t));
          int v = 0;
          double c = probs[0];
          while (u > c && v < kVocab - 1) c += probs[static_cast<std::size_t>(++v)];
          r.completion.push_back(v);
          r.logp.push_back(std::log(probs[static_cast<std::size_t>(v)]));
        }
        out.push_back(std::move(r));
      }
    }
    return out;
  }

  Scored score(const std::vector<Prompt>& prompts, const std::vector<completion_type>& completions) const {
    Scored s{{}, prompts, completions};
    for (std::size_t r = 0; r < prompts.size(); ++r) {
      std::vector<double> lp;
      for (int t = 0; t < static_cast<int>(completions[r].size()); ++t)
        lp.push_back(std::log(softmax(prompts[r].task, t)[static_cast<std::size_t>(completions[r][static_cast<std::size_t>(t)])]));
      s.logp.push_back(std::move(lp));
    }
    return s;
  }

  void backward(const Scored& s, const std::vector<std::vector<double>>& dlogp, std::span<double> grad) const {
    for (std::size_t r = 0; r < s.prompts.size(); ++r) {
      for (int t = 0; t < static_cast<int>(s.completions[r].size()); ++t) {
        const auto probs = softmax(s.prompts[r].task, t);
        const int v = s.completions[r][static_cast<std::size_t>(t)];
        const double d = dlogp[r][static_cast<std::size_t>(t)];
        for (int u = 0; u < kVocab; ++u)
          grad[index(s.prompts[r].task, t, u)] += d * ((u == v ? 1.0 : 0.0) - probs[static_cast<std::size_t>(u)]);
      }
    }
  }

  std::span<double> parameters() { return theta_; }
  std::span<const double> parameters() const { return theta_; }
  Policy snapshot() const { return *this; }

  /// Probability that task `task` emits `v` at position t.
  double prob(int task, int t, int v) const { return softmax(task, t)[static_cast<std::size_t>(v)]; }

 private:
  static std::size_t index(int task, int t, int v) {
    return static_cast<std::size_t>((task * kLen + t) * kVocab + v);
  }
  std::vector<double> softmax(int task, int t) const {
    std::vector<double> p(kVocab);
    double mx = -1e300, s = 0;
    for (int v = 0; v < kVocab; ++v) mx = std::max(mx, theta_[index(task, t, v)]);
    for (int v = 0; v < kVocab; ++v) s += (p[static_cast<std::size_t>(v)] = std::exp(theta_[index(task, t, v)] - mx));
    for (double& x : p) x /= s;
    return p;
  }
  std::vector<double> theta_;
};

/// The toy policy with its per-position entropy H = -sum_v p_v log p_v and dH/dtheta_u = -p_u (log p_u + H)
/// (corl::entropy_policy).
class EntropyPolicy : public Policy {
 public:
  EntropyPolicy snapshot() const { return *this; }

  std::vector<std::vector<double>> entropy(const Scored& s) const {
    std::vector<std::vector<double>> out;
    for (std::size_t r = 0; r < s.prompts.size(); ++r) {
      std::vector<double> h;
      for (int t = 0; t < static_cast<int>(s.completions[r].size()); ++t) h.push_back(entropy_at(s.prompts[r].task, t));
      out.push_back(std::move(h));
    }
    return out;
  }

  using Policy::backward;
  void backward(const Scored& s, const std::vector<std::vector<double>>& dlogp,
                const std::vector<std::vector<double>>& dentropy, std::span<double> grad) const {
    backward(s, dlogp, grad);
    for (std::size_t r = 0; r < s.prompts.size(); ++r) {
      for (int t = 0; t < static_cast<int>(s.completions[r].size()); ++t) {
        const int task = s.prompts[r].task;
        const double h = entropy_at(task, t), d = dentropy[r][static_cast<std::size_t>(t)];
        for (int u = 0; u < kVocab; ++u) {
          const double pu = prob(task, t, u);
          grad[static_cast<std::size_t>((task * kLen + t) * kVocab + u)] += d * (-pu * (std::log(pu) + h));
        }
      }
    }
  }

  double entropy_at(int task, int t) const {
    double h = 0;
    for (int v = 0; v < kVocab; ++v) h -= prob(task, t, v) * std::log(prob(task, t, v));
    return h;
  }
};

/// SGD with momentum: a stateful optimizer, so that resume must restore its state to reproduce the run.
struct MomentumSgd {
  double momentum = 0.9;
  std::vector<double> velocity;
  long steps = 0;

  void step(std::span<double> params, std::span<const double> grads, double lr) {
    if (velocity.empty()) velocity.assign(params.size(), 0.0);
    for (std::size_t i = 0; i < params.size(); ++i) {
      velocity[i] = momentum * velocity[i] + grads[i];
      params[i] -= lr * velocity[i];
    }
    ++steps;
  }
  std::string state() const {
    std::ostringstream os;
    os.precision(17);
    os << steps << ' ' << velocity.size();
    for (double v : velocity) os << ' ' << std::hexfloat << v << std::defaultfloat;
    return os.str();
  }
  void load_state(const std::string& s) {
    std::istringstream is(s);
    std::size_t n = 0;
    is >> steps >> n;
    velocity.assign(n, 0.0);
    for (double& v : velocity) {
      std::string tok;
      is >> tok;
      v = std::strtod(tok.c_str(), nullptr);
    }
  }
};

}  // namespace toy

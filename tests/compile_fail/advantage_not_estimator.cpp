// expect: advantage_estimator
// A type whose compute() returns the advantages instead of AdvantageStats is not an advantage estimator: using it
// with compute_advantages must fail to compile, and the diagnostic names the unsatisfied concept.
#include <span>
#include <vector>

#include <corl/advantage/advantage.hpp>

struct ReturnsVector {
  static constexpr const char* name = "returns_vector";
  template <class Real>
  std::vector<Real> compute(const corl::RewardBatch<Real>&, std::span<Real>) const {
    return {};
  }
};

int main() {
  const std::vector<double> r{1.0};
  const std::vector<corl::index_t> g{0};
  (void)corl::compute_advantages(ReturnsVector{}, corl::RewardBatch<double>{r, g, 1});
}

// expect: satisfaction of .*aggregation<Aggregation>
// An aggregation is a per-sequence token weight: a type that only averages a whole tensor does not satisfy
// corl::aggregation (it has no sequence_weight(n, normalizers)), so the global-normaliser guarantee cannot be broken.
#include <corl/loss/objective.hpp>
#include <corl/loss/ppo_clip.hpp>

struct LocalMean {
  static constexpr const char* name = "local-mean";
  double mean(const double* x, int n) const {
    double s = 0;
    for (int i = 0; i < n; ++i) s += x[i];
    return s / n;
  }
};

int main() {
  corl::Objective<corl::PpoClip, corl::NoKl, LocalMean> objective;
  (void)objective;
}

// The GPU sampler's radix selection (radix_select in corl/cuda/sampling.cuh) written out on the host, pass by pass:
// the three-read form (every digit histograms the row) and the candidate-list form (the first digit's chosen bin is
// listed, and the last two digits histogram the list). Both must give the same threshold key and the same weights above
// and at it, equal to a brute-force selection (sort, cumulate), for counts (top-k) and fixed-point mass (top-p), with
// ties, -inf entries and a lower key bound (top-p after top-k); and the list must never hold more than the count the
// first digit gave its bin, which is what sizes it in the kernel.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include <corl/core/rng.hpp>
#include <corl/sampling/sampling_math.hpp>
#include <corl/sampling/streaming_race.hpp>

namespace {

using corl::sampling::from_ordered_bits;
using corl::sampling::ordered_bits;

constexpr int kBins = 2048;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

using corl::sampling::fixed_point_mass;

struct Selection {
  std::uint32_t prefix = 0;
  std::uint64_t above_count = 0, above_mass = 0, equal_count = 0, equal_mass = 0;
  std::uint64_t target = 0, total = 0;
  bool listed = false;
  std::size_t list_size = 0;
};

/// radix_select, transcribed: `cap` = a.candidate_cap (0: never list, the three-read form).
Selection radix_select_host(const std::vector<float>& z, float m, std::uint32_t restrict_min, bool by_mass,
                            std::uint64_t count_target, float fraction, std::uint32_t cap) {
  Selection s;
  s.target = count_target;
  std::vector<std::uint32_t> list;
  // the kernel's for_each_element: inside the row, key >= restrict_min, z > -inf when by_mass
  auto for_each_element = [&](const std::function<void(std::uint32_t, float)>& weigh) {
    for (const float v : z) {
      if (by_mass && v == kNegInf) continue;
      const std::uint32_t key = ordered_bits(v);
      if (key < restrict_min) continue;
      weigh(key, v);
    }
  };
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = pass == 0 ? 21 : (pass == 1 ? 10 : 0);
    const std::uint32_t mask = pass == 0 ? 0u : (pass == 1 ? 0xffe00000u : 0xfffffc00u);
    std::vector<std::uint64_t> count(kBins, 0), mass(kBins, 0);
    const std::uint32_t prefix = s.prefix;
    const bool counting = !by_mass || pass == 0;
    auto weigh = [&](std::uint32_t key, float v) {
      if ((key & mask) != prefix) return;
      const auto bin = static_cast<int>((key >> shift) & (kBins - 1));
      if (counting) ++count[static_cast<std::size_t>(bin)];
      if (by_mass) mass[static_cast<std::size_t>(bin)] += fixed_point_mass(v, m);
    };
    if (s.listed) {
      for (const std::uint32_t key : list) weigh(key, from_ordered_bits(key));
    } else {
      for_each_element(weigh);
    }
    if (pass == 0 && by_mass) {
      for (int b = 0; b < kBins; ++b) s.total += mass[static_cast<std::size_t>(b)];
      const double t = std::ceil(static_cast<double>(fraction) * static_cast<double>(s.total));
      s.target = t < 1.0 ? 1 : static_cast<std::uint64_t>(t);
    }
    const std::uint64_t target = s.target;
    std::uint64_t cum_count = 0, cum_mass = 0;
    for (int b = kBins - 1; b >= 0; --b) {  // from the top bin down, as the block scan
      const auto i = static_cast<std::size_t>(b);
      const std::uint64_t before = by_mass ? cum_mass : cum_count;
      const std::uint64_t w = by_mass ? mass[i] : count[i];
      if (before < target && before + w >= target) {
        s.prefix = prefix | (static_cast<std::uint32_t>(b) << shift);
        s.target = target - before;
        s.above_count += cum_count;
        s.above_mass += cum_mass;
        s.equal_count = count[i];
        s.equal_mass = mass[i];
      }
      cum_count += count[i];
      cum_mass += mass[i];
    }
    if (pass == 0 && s.equal_count <= cap) {
      const std::uint32_t bin_prefix = s.prefix;
      for_each_element([&](std::uint32_t key, float) {
        if ((key & 0xffe00000u) == bin_prefix) list.push_back(key);
      });
      REQUIRE(list.size() == s.equal_count);  // the kernel's list holds cap >= equal_count keys
      s.listed = true;
      s.list_size = list.size();
    }
  }
  return s;
}

/// Brute force: sort the taking-part keys from the largest, cumulate, stop at the target.
Selection brute_force(const std::vector<float>& z, float m, std::uint32_t restrict_min, bool by_mass,
                      std::uint64_t count_target, float fraction) {
  std::vector<std::pair<std::uint32_t, std::uint64_t>> e;  // key, weight
  std::uint64_t total = 0;
  for (const float v : z) {
    if (by_mass && v == kNegInf) continue;
    const std::uint32_t key = ordered_bits(v);
    if (key < restrict_min) continue;
    const std::uint64_t w = by_mass ? fixed_point_mass(v, m) : 1;
    e.emplace_back(key, w);
    total += w;
  }
  std::sort(e.begin(), e.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  Selection s;
  std::uint64_t target = count_target;
  if (by_mass) {
    const double t = std::ceil(static_cast<double>(fraction) * static_cast<double>(total));
    target = t < 1.0 ? 1 : static_cast<std::uint64_t>(t);
  }
  std::uint64_t cum = 0;
  for (const auto& [key, w] : e) {
    cum += w;
    if (cum >= target) {
      s.prefix = key;
      break;
    }
  }
  for (const auto& [key, w] : e) {
    if (key > s.prefix) s.above_mass += w;
    if (key == s.prefix) s.equal_mass += w;
  }
  return s;
}

/// Logits with ties (values on a grid), -inf entries, and a spread `scale`.
std::vector<float> test_row(std::size_t n, double scale, double grid, std::uint64_t seed) {
  corl::CounterRng rng(seed, 0);
  std::vector<float> z(n);
  for (auto& v : z) {
    double x = scale * rng.normal();
    if (grid > 0) x = grid * std::round(x / grid);
    v = rng.uniform() < 0.02 ? kNegInf : static_cast<float>(x);
  }
  return z;
}

void check_forms_agree(const std::vector<float>& z, std::uint32_t restrict_min, bool by_mass, std::uint64_t k,
                       float fraction, std::uint32_t cap, int* listed_rows) {
  float m = kNegInf;
  for (const float v : z) m = std::max(m, v);
  const Selection three = radix_select_host(z, m, restrict_min, by_mass, k, fraction, 0);
  const Selection listed = radix_select_host(z, m, restrict_min, by_mass, k, fraction, cap);
  const Selection ref = brute_force(z, m, restrict_min, by_mass, k, fraction);
  CHECK(!three.listed);
  CHECK(listed.prefix == three.prefix);
  CHECK(listed.prefix == ref.prefix);
  CHECK(listed.above_mass == three.above_mass);
  CHECK(listed.equal_mass == three.equal_mass);
  CHECK(listed.target == three.target);
  CHECK(listed.total == three.total);
  CHECK(listed.above_count == three.above_count);
  CHECK(listed.equal_count == three.equal_count);
  if (by_mass) {
    CHECK(listed.above_mass == ref.above_mass);
    CHECK(listed.equal_mass == ref.equal_mass);
  }
  if (listed.listed) ++*listed_rows;
}

}  // namespace

TEST_CASE("radix selection: the candidate-list form equals the three-read form and a brute-force selection") {
  int listed = 0, rows = 0;
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    const std::size_t n = 1 + static_cast<std::size_t>((seed * 7919) % 6000);
    const double scale = seed % 3 == 0 ? 0.05 : 3.0;         // flat rows put everything in a few first-digit bins
    const double grid = seed % 4 == 0 ? 0.25 : 0.0;          // ties at the threshold
    const auto z = test_row(n, scale, grid, seed);
    const std::uint32_t cap = seed % 5 == 0 ? 16 : 8192;     // a small list overflows: the three reads
    CAPTURE(seed);
    CAPTURE(n);
    for (const std::uint64_t k : {std::uint64_t{1}, std::uint64_t{50}, std::uint64_t{n}}) {  // top-k by count
      check_forms_agree(z, 0u, false, k, 0.0f, cap, &listed);
      ++rows;
    }
    for (const float p : {0.5f, 0.9f, 0.999f}) {  // top-p by mass, alone and below a top-k threshold
      check_forms_agree(z, 0u, true, 0, p, cap, &listed);
      const Selection top_k = radix_select_host(z, 0.0f, 0u, false, std::min<std::uint64_t>(50, n), 0.0f, cap);
      check_forms_agree(z, top_k.prefix, true, 0, p, cap, &listed);
      rows += 2;
    }
  }
  // both forms were exercised: most rows list their bin, the small-cap and flat ones do not
  CHECK(listed > rows / 2);
  CHECK(listed < rows);
}

// geneval.cpp — world GenEval rules and tallies (geneval.hpp).
#include "geneval.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "corl/core/error.hpp"

namespace ulm {

namespace {

std::string describe(const ObjectSpec& o, const WorldConfig& config) {
  std::string s;
  if (o.colour >= 0) s += config.colours[static_cast<std::size_t>(o.colour)] + " ";
  return s + config.shapes[static_cast<std::size_t>(o.shape)];
}

int count_matching(const std::vector<Placed>& objects, const ObjectSpec& o) {
  return static_cast<int>(std::count_if(objects.begin(), objects.end(), [&](const Placed& p) {
    return p.shape == o.shape && (o.colour < 0 || p.colour == o.colour);
  }));
}

}  // namespace

PromptCheck check_prompt(const Grid& grid, const PromptSpec& spec, const WorldConfig& config) {
  config.validate();
  spec.validate(config);
  validate_grid(grid, config, "check_prompt: grid");
  const std::vector<Placed> objects = objects_in(grid, config);
  PromptCheck out;
  switch (spec.category) {
    case Category::single_object:
    case Category::colours:
    case Category::two_objects:
    case Category::colour_attribution: {
      out.satisfied = true;
      for (const ObjectSpec& o : spec.objects) {
        if (count_matching(objects, o) == 0) {
          out.satisfied = false;
          out.reason += (out.reason.empty() ? "" : "; ") + std::string("no ") + describe(o, config);
        }
      }
      if (out.satisfied) out.reason = "all objects found";
      break;
    }
    case Category::counting: {
      const ObjectSpec& o = spec.objects[0];
      const int found = count_matching(objects, o);
      out.satisfied = found == o.count;
      out.reason = "found " + std::to_string(found) + " " + config.plural(o.shape) + ", expected exactly " +
                   std::to_string(o.count);
      break;
    }
    case Category::position: {
      const ObjectSpec& a = spec.objects[0];
      const ObjectSpec& b = spec.objects[1];
      const int na = count_matching(objects, a), nb = count_matching(objects, b);
      if (na == 0 || nb == 0) {
        out.reason = na == 0 ? "no " + describe(a, config) : "no " + describe(b, config);
        break;
      }
      // GenEval (evaluate_images.py) requires EVERY detected instance of the first object to be in the relation
      // to EVERY instance of the target: one violating pair fails the prompt.
      out.satisfied = true;
      for (const Placed& pa : objects) {
        if (pa.shape != a.shape) continue;
        for (const Placed& pb : objects) {
          if (pb.shape != b.shape || relation_holds(spec.relation, pa.row, pa.col, pb.row, pb.col)) continue;
          if (out.satisfied)
            out.reason = "the " + describe(a, config) + " at (" + std::to_string(pa.row) + ", " +
                         std::to_string(pa.col) + ") is not " + std::string(relation_name(spec.relation)) + " the " +
                         describe(b, config) + " at (" + std::to_string(pb.row) + ", " + std::to_string(pb.col) + ")";
          out.satisfied = false;
        }
      }
      if (out.satisfied)
        out.reason = "every " + describe(a, config) + " is " + std::string(relation_name(spec.relation)) +
                     " every " + describe(b, config);
      break;
    }
  }
  return out;
}

void GenEvalTally::add(Category category, bool satisfied) {
  ++totals_[index(category)];
  if (satisfied) ++corrects_[index(category)];
}

double GenEvalTally::accuracy(Category category) const {
  const int n = total(category);
  return n > 0 ? static_cast<double>(correct(category)) / n : 0.0;
}

double GenEvalTally::overall() const {
  double sum = 0.0;
  int present = 0;
  for (const Category c : kAllCategories) {
    if (total(c) == 0) continue;
    sum += accuracy(c);
    ++present;
  }
  return present > 0 ? sum / present : 0.0;
}

double GenEvalTally::overall_standard_error() const {
  double variance = 0.0;
  int present = 0;
  for (const Category c : kAllCategories) {
    if (total(c) == 0) continue;
    const double a = accuracy(c);
    variance += a * (1.0 - a) / total(c);
    ++present;
  }
  return present > 0 ? std::sqrt(variance) / present : 0.0;
}

int GenEvalTally::total() const {
  int n = 0;
  for (const int t : totals_) n += t;
  return n;
}

Json GenEvalTally::to_json() const {
  Json categories = Json::object();
  for (const Category c : kAllCategories) {
    Json j = Json::object();
    j.set("correct", correct(c));
    j.set("total", total(c));
    j.set("accuracy", accuracy(c));
    categories.set(category_name(c), std::move(j));
  }
  Json out = Json::object();
  out.set("overall", overall());
  out.set("categories", std::move(categories));
  return out;
}

std::string GenEvalTally::table() const {
  std::string out;
  char line[96];
  for (const Category c : kAllCategories) {
    std::snprintf(line, sizeof line, "%-14s %5d / %-5d %.3f\n", std::string(category_name(c)).c_str(), correct(c),
                  total(c), accuracy(c));
    out += line;
  }
  std::snprintf(line, sizeof line, "%-14s %19.3f\n", "overall", overall());
  return out + line;
}

GenEvalTally evaluate_geneval(const std::vector<PromptSpec>& specs, const std::vector<Grid>& grids,
                              const WorldConfig& config) {
  corl::require(specs.size() == grids.size(), "evaluate_geneval: ", specs.size(), " specs but ", grids.size(),
                " grids, expected one grid per spec");
  GenEvalTally tally;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    try {
      tally.add(specs[i].category, satisfies(grids[i], specs[i], config));
    } catch (const corl::Error& e) {
      corl::fail("evaluate_geneval: item ", i, ": ", e.what());
    }
  }
  return tally;
}

}  // namespace ulm

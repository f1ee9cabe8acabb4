// plot_charts.cpp — see plot_charts.hpp.
#include "plot_charts.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "corl/core/error.hpp"
#include "geneval.hpp"
#include "png.hpp"
#include "sft.hpp"
#include "train_run.hpp"

namespace ulm {

namespace {

std::string fmt(double v, int digits = 2) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

constexpr Rgb kSeries[] = {{90, 90, 90}, {31, 119, 180}, {214, 39, 40}, {44, 160, 44}, {255, 127, 14}, {148, 103, 189},
                           {140, 86, 75}};

/// One line panel at (x0, y0) of size w x h: values per step, y range [lo, hi].
void line_panel(Canvas& c, int x0, int y0, int w, int h, const std::string& title, const std::vector<double>& ys,
                const std::vector<double>& lows, const std::vector<double>& highs) {
  c.draw_rect(x0, y0, w, h, kBlack);
  c.draw_text(x0 + 4, y0 + 4, title, kBlack, 2);
  if (ys.empty()) return;
  double lo = *std::min_element(lows.begin(), lows.end()), hi = *std::max_element(highs.begin(), highs.end());
  if (hi - lo < 1e-9) hi = lo + 1.0;
  const int px0 = x0 + 40, py0 = y0 + 22, pw = w - 50, ph = h - 36;
  c.draw_line(px0, py0 + ph, px0 + pw, py0 + ph, kBlack);
  c.draw_line(px0, py0, px0, py0 + ph, kBlack);
  c.draw_text(x0 + 2, py0, fmt(hi), kBlack, 1);
  c.draw_text(x0 + 2, py0 + ph - 5, fmt(lo), kBlack, 1);
  c.draw_text(px0 + pw - 30, py0 + ph + 4, "STEP " + std::to_string(ys.size()), kBlack, 1);
  auto X = [&](std::size_t i) {
    return px0 + (ys.size() == 1 ? pw / 2 : static_cast<int>(std::lround(pw * static_cast<double>(i) / (ys.size() - 1))));
  };
  auto Y = [&](double v) { return py0 + static_cast<int>(std::lround(ph * (hi - v) / (hi - lo))); };
  for (std::size_t i = 0; i < ys.size(); ++i) c.draw_line(X(i), Y(lows[i]), X(i), Y(highs[i]), kLightGrey, 1);
  for (std::size_t i = 0; i + 1 < ys.size(); ++i) c.draw_line(X(i), Y(ys[i]), X(i + 1), Y(ys[i + 1]), kSeries[1], 2);
  if (ys.size() == 1) c.fill_circle(X(0), Y(ys[0]), 3, kSeries[1]);
}

}  // namespace

void plot_reward_curves(const std::string& path, const TrainResult& result) {
  std::vector<const StageRecord*> panels;
  for (const auto& s : result.stages)
    if (s.run == "corl" && !s.steps_log.empty()) panels.push_back(&s);
  const int w = 360, h = 220, cols = 2;
  const int rows = std::max(1, static_cast<int>((panels.size() + cols - 1) / cols));
  Canvas c(cols * w + 30, rows * h + 50);
  c.draw_text(10, 8, "MEAN REWARD PER STEP (CORL RUN)", kBlack, 2);
  for (std::size_t p = 0; p < panels.size(); ++p) {
    std::vector<double> ys, lo, hi;
    for (const auto& r : panels[p]->steps_log) {
      ys.push_back(r.metrics.reward_mean);
      lo.push_back(r.metrics.reward_min);
      hi.push_back(r.metrics.reward_max);
    }
    line_panel(c, 10 + static_cast<int>(p % cols) * (w + 10), 34 + static_cast<int>(p / cols) * h, w, h - 10,
               panels[p]->name, ys, lo, hi);
  }
  write_png(c, path);
}

void plot_eval_bars(const std::string& path, const TrainResult& result) {
  std::vector<const EvalRecord*> models;
  for (const auto& e : result.evals) models.push_back(&e);
  std::vector<std::string> groups = {"OVERALL"};
  for (Category cat : kAllCategories) groups.emplace_back(category_name(cat));
  groups.emplace_back("QA MC");
  groups.emplace_back("QA OE");
  auto value = [&](const EvalRecord& e, std::size_t g) {
    if (g == 0) return e.result.geneval.overall();
    if (g <= kAllCategories.size()) return e.result.geneval.accuracy(kAllCategories[g - 1]);
    return g == kAllCategories.size() + 1 ? e.result.mc() : e.result.oe();
  };
  const int bar = 10, gap = 18, ph = 220;
  const int group_w = static_cast<int>(models.size()) * bar + gap;
  const int width = 60 + static_cast<int>(groups.size()) * group_w + 20;
  const int legend_h = 14 * static_cast<int>(models.size()) + 10;
  Canvas c(std::max(width, 420), ph + 110 + legend_h);
  c.draw_text(10, 8, "HELD-OUT EVALUATION (TEST SPLIT)", kBlack, 2);
  const int x0 = 50, y0 = 34;
  c.draw_line(x0, y0 + ph, x0 + static_cast<int>(groups.size()) * group_w, y0 + ph, kBlack);
  c.draw_line(x0, y0, x0, y0 + ph, kBlack);
  for (int t = 0; t <= 4; ++t) {
    const int y = y0 + ph - ph * t / 4;
    c.draw_line(x0 - 3, y, x0, y, kBlack);
    c.draw_text(x0 - 26, y - 2, fmt(t / 4.0), kBlack, 1);
  }
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const int gx = x0 + 8 + static_cast<int>(g) * group_w;
    for (std::size_t m = 0; m < models.size(); ++m) {
      const double v = std::clamp(value(*models[m], g), 0.0, 1.0);
      const int bh = static_cast<int>(std::lround(v * ph));
      c.fill_rect(gx + static_cast<int>(m) * bar, y0 + ph - bh, bar - 1, bh, kSeries[m % std::size(kSeries)]);
    }
    std::string label = groups[g];
    for (char& ch : label) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch == '_' ? ' ' : ch)));
    c.draw_text(gx, y0 + ph + 6 + static_cast<int>(g % 2) * 8, label.substr(0, 12), kBlack, 1);
  }
  for (std::size_t m = 0; m < models.size(); ++m) {
    const int ly = y0 + ph + 34 + static_cast<int>(m) * 14;
    c.fill_rect(x0, ly, 10, 10, kSeries[m % std::size(kSeries)]);
    std::string name = models[m]->name;
    for (char& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch == '_' ? ' ' : ch)));
    c.draw_text(x0 + 16, ly + 2, name, kBlack, 1);
  }
  write_png(c, path);
}

void write_before_after_sheet(const std::string& path, const Model<float>& before, const Model<float>& after,
                              const WorldConfig& world, const TrainConfig& config) {
  const Tokenizer tok(world);
  GeneratorOptions go;
  go.seed = config.eval_seed + 101;
  go.rows = config.sheet_prompts;
  go.split = Split::test;
  const auto rows = generate_rows(world, go);
  std::vector<Sequence> prompts;
  for (const auto& r : rows) prompts.push_back(t2i_prompt(tok, r.prompt));
  SampleOptions so;
  so.temperature = 1.0;
  so.cfg_weight = config.cfg_weight;
  so.seed = config.eval_seed;
  std::vector<Grid> grids;
  std::vector<Rgb> frames;
  std::vector<std::string> labels;
  for (const Model<float>* m : {&before, &after}) {
    const auto samples = m->sample(prompts, Modality::image_out, 1, so);
    for (std::size_t i = 0; i < samples.size(); ++i) {
      Grid g(samples[i].tokens.begin(), samples[i].tokens.end());
      const bool ok = satisfies(g, rows[i].spec, world);
      frames.push_back(ok ? Rgb{40, 170, 60} : Rgb{210, 40, 40});
      labels.push_back((m == &before ? "SFT " : "RL ") + std::to_string(i + 1));
      grids.push_back(std::move(g));
    }
  }
  SheetOptions sheet;
  sheet.columns = static_cast<int>(rows.size());
  sheet.cell_px = 14;
  sheet.frames = frames;
  sheet.labels = labels;
  Canvas body = render_sheet(grids, world, sheet);
  // prompts listed under the sheet, numbered like the labels
  const int line_h = 9;
  Canvas c(std::max(body.width(), 520), body.height() + 30 + line_h * static_cast<int>(rows.size()));
  c.draw_text(6, 4, "TOP: SFT  BOTTOM: CORL  (GREEN = PROMPT SATISFIED)", kBlack, 1);
  c.blit(body, 0, 14);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::string line = std::to_string(i + 1) + ": " + rows[i].prompt;
    for (char& ch : line) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    c.draw_text(6, body.height() + 20 + static_cast<int>(i) * line_h, line, kBlack, 1);
  }
  write_png(c, path);
}

}  // namespace ulm

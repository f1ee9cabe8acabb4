// png.cpp — canvas drawing, libpng I/O (simplified API: no setjmp), grid pictures (png.hpp).
#include "png.hpp"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "corl/core/error.hpp"

namespace ulm {

namespace {

constexpr double kPi = 3.14159265358979323846;

/// 3x5 glyphs, rows top to bottom, '1' = ink.
struct Glyph {
  char c;
  const char* rows;  // 15 characters
};
constexpr Glyph kFont[] = {
    {'0', "111101101101111"}, {'1', "010110010010111"}, {'2', "111001111100111"}, {'3', "111001111001111"},
    {'4', "101101111001001"}, {'5', "111100111001111"}, {'6', "111100111101111"}, {'7', "111001001001001"},
    {'8', "111101111101111"}, {'9', "111101111001111"}, {'A', "010101111101101"}, {'B', "110101110101110"},
    {'C', "011100100100011"}, {'D', "110101101101110"}, {'E', "111100110100111"}, {'F', "111100110100100"},
    {'G', "011100101101011"}, {'H', "101101111101101"}, {'I', "111010010010111"}, {'J', "001001001101010"},
    {'K', "101101110101101"}, {'L', "100100100100111"}, {'M', "101111111101101"}, {'N', "110101101101101"},
    {'O', "010101101101010"}, {'P', "110101110100100"}, {'Q', "010101101110011"}, {'R', "110101110101101"},
    {'S', "011100010001110"}, {'T', "111010010010010"}, {'U', "101101101101111"}, {'V', "101101101101010"},
    {'W', "101101111111101"}, {'X', "101101010101101"}, {'Y', "101101010010010"}, {'Z', "111001010100111"},
    {'.', "000000000000010"}, {',', "000000000010100"}, {':', "000010000010000"}, {'-', "000000111000000"},
    {'+', "000010111010000"}, {'/', "001001010100100"}, {'%', "101001010100101"}, {'=', "000111000111000"},
    {'(', "010100100100010"}, {')', "010001001001010"}, {'_', "000000000000111"}, {'?', "110001010000010"},
};

const char* glyph_rows(char c) {
  const char upper = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  for (const Glyph& g : kFont)
    if (g.c == upper) return g.rows;
  return nullptr;
}

}  // namespace

Canvas::Canvas(int width, int height, Rgb background) : width_(width), height_(height) {
  corl::require(width >= 1 && width <= 16384 && height >= 1 && height <= 16384, "Canvas: size ", width, "x", height,
                ", expected 1..16384 each");
  pixels_.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3);
  fill(background);
}

Rgb Canvas::at(int x, int y) const {
  corl::require(x >= 0 && x < width_ && y >= 0 && y < height_, "Canvas::at: (", x, ", ", y, ") outside ", width_, "x",
                height_);
  const std::size_t i = (static_cast<std::size_t>(y) * static_cast<std::size_t>(width_) + static_cast<std::size_t>(x)) *
                        3;
  return {pixels_[i], pixels_[i + 1], pixels_[i + 2]};
}

void Canvas::set(int x, int y, Rgb colour) {
  if (x < 0 || x >= width_ || y < 0 || y >= height_) return;
  const std::size_t i = (static_cast<std::size_t>(y) * static_cast<std::size_t>(width_) + static_cast<std::size_t>(x)) *
                        3;
  pixels_[i] = colour.r;
  pixels_[i + 1] = colour.g;
  pixels_[i + 2] = colour.b;
}

void Canvas::fill(Rgb colour) {
  for (std::size_t i = 0; i < pixels_.size(); i += 3) {
    pixels_[i] = colour.r;
    pixels_[i + 1] = colour.g;
    pixels_[i + 2] = colour.b;
  }
}

void Canvas::fill_rect(int x, int y, int w, int h, Rgb colour) {
  const int x0 = std::max(x, 0), y0 = std::max(y, 0), x1 = std::min(x + w, width_), y1 = std::min(y + h, height_);
  for (int yy = y0; yy < y1; ++yy)
    for (int xx = x0; xx < x1; ++xx) set(xx, yy, colour);
}

void Canvas::draw_rect(int x, int y, int w, int h, Rgb colour, int thickness) {
  fill_rect(x, y, w, thickness, colour);
  fill_rect(x, y + h - thickness, w, thickness, colour);
  fill_rect(x, y, thickness, h, colour);
  fill_rect(x + w - thickness, y, thickness, h, colour);
}

void Canvas::draw_line(int x0, int y0, int x1, int y1, Rgb colour, int thickness) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  const int lo = -(std::max(thickness, 1) - 1) / 2, hi = lo + std::max(thickness, 1);
  int err = dx + dy;
  while (true) {
    for (int oy = lo; oy < hi; ++oy)
      for (int ox = lo; ox < hi; ++ox) set(x0 + ox, y0 + oy, colour);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

void Canvas::fill_circle(double cx, double cy, double radius, Rgb colour) {
  const int x0 = static_cast<int>(std::floor(cx - radius)), x1 = static_cast<int>(std::ceil(cx + radius));
  const int y0 = static_cast<int>(std::floor(cy - radius)), y1 = static_cast<int>(std::ceil(cy + radius));
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      const double ddx = x + 0.5 - cx, ddy = y + 0.5 - cy;
      if (ddx * ddx + ddy * ddy <= radius * radius) set(x, y, colour);
    }
}

void Canvas::fill_polygon(const std::vector<std::pair<double, double>>& vertices, Rgb colour) {
  if (vertices.size() < 3) return;
  double ymin = vertices[0].second, ymax = ymin;
  for (const auto& v : vertices) {
    ymin = std::min(ymin, v.second);
    ymax = std::max(ymax, v.second);
  }
  const int y0 = std::max(0, static_cast<int>(std::floor(ymin)));
  const int y1 = std::min(height_ - 1, static_cast<int>(std::ceil(ymax)));
  std::vector<double> xs;
  for (int y = y0; y <= y1; ++y) {
    const double py = y + 0.5;
    xs.clear();
    for (std::size_t i = 0; i < vertices.size(); ++i) {
      const auto& [ax, ay] = vertices[i];
      const auto& [bx, by] = vertices[(i + 1) % vertices.size()];
      if ((ay <= py && by > py) || (by <= py && ay > py)) xs.push_back(ax + (py - ay) / (by - ay) * (bx - ax));
    }
    std::sort(xs.begin(), xs.end());
    for (std::size_t k = 0; k + 1 < xs.size(); k += 2) {
      // Pixel centres x + 0.5 within [xs[k], xs[k+1]).
      const int xa = static_cast<int>(std::ceil(xs[k] - 0.5)), xb = static_cast<int>(std::ceil(xs[k + 1] - 0.5));
      for (int x = xa; x < xb; ++x) set(x, y, colour);
    }
  }
}

int Canvas::text_width(std::string_view text, int scale) {
  return text.empty() ? 0 : static_cast<int>(text.size()) * 4 * scale - scale;
}

int Canvas::draw_text(int x, int y, std::string_view text, Rgb colour, int scale) {
  scale = std::max(scale, 1);
  int cx = x;
  for (const char c : text) {
    if (const char* rows = glyph_rows(c)) {
      for (int r = 0; r < 5; ++r)
        for (int k = 0; k < 3; ++k)
          if (rows[r * 3 + k] == '1') fill_rect(cx + k * scale, y + r * scale, scale, scale, colour);
    }
    cx += 4 * scale;
  }
  return text_width(text, scale);
}

void Canvas::blit(const Canvas& other, int x, int y) {
  for (int yy = 0; yy < other.height(); ++yy)
    for (int xx = 0; xx < other.width(); ++xx) set(x + xx, y + yy, other.at(xx, yy));
}

void write_png(const Canvas& canvas, const std::string& path) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(canvas.width());
  image.height = static_cast<png_uint_32>(canvas.height());
  image.format = PNG_FORMAT_RGB;
  const int ok = png_image_write_to_file(&image, path.c_str(), 0, canvas.pixels().data(), 0, nullptr);
  const std::string message = image.message;
  png_image_free(&image);
  corl::require(ok != 0, "write_png: cannot write '", path, "': ", message);
}

Canvas read_png(const std::string& path) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_file(&image, path.c_str()) == 0) {
    const std::string message = image.message;
    png_image_free(&image);
    corl::fail("read_png: cannot read '", path, "': ", message);
  }
  image.format = PNG_FORMAT_RGB;
  corl::require(image.width >= 1 && image.width <= 16384 && image.height >= 1 && image.height <= 16384, "read_png: '",
                path, "' is ", image.width, "x", image.height, ", expected 1..16384 each");
  std::vector<std::uint8_t> buffer(PNG_IMAGE_SIZE(image));
  png_color white{255, 255, 255};  // transparent pixels are composited onto white
  if (png_image_finish_read(&image, &white, buffer.data(), 0, nullptr) == 0) {
    const std::string message = image.message;
    png_image_free(&image);
    corl::fail("read_png: cannot decode '", path, "': ", message);
  }
  Canvas canvas(static_cast<int>(image.width), static_cast<int>(image.height));
  for (int y = 0; y < canvas.height(); ++y)
    for (int x = 0; x < canvas.width(); ++x) {
      const std::size_t i = (static_cast<std::size_t>(y) * image.width + static_cast<std::size_t>(x)) * 3;
      canvas.set(x, y, {buffer[i], buffer[i + 1], buffer[i + 2]});
    }
  return canvas;
}

Rgb colour_rgb(std::string_view name) {
  struct Named {
    const char* name;
    Rgb rgb;
  };
  static constexpr Named kNamed[] = {
      {"red", {220, 40, 40}},     {"green", {40, 170, 60}},   {"blue", {40, 80, 220}},    {"yellow", {235, 200, 30}},
      {"purple", {140, 60, 180}}, {"orange", {245, 130, 30}}, {"black", {20, 20, 20}},    {"white", {250, 250, 250}},
      {"grey", {128, 128, 128}},  {"gray", {128, 128, 128}},  {"pink", {240, 120, 170}},  {"brown", {130, 80, 40}},
      {"cyan", {30, 190, 200}},
  };
  for (const Named& n : kNamed)
    if (name == n.name) return n.rgb;
  // A stable hue from an FNV-1a hash of the name; saturation 0.7, value 0.85.
  std::uint32_t h = 2166136261u;
  for (const char c : name) h = (h ^ static_cast<std::uint8_t>(c)) * 16777619u;
  const double hue = (h % 360) / 60.0, s = 0.7, v = 0.85;
  const double c = v * s, x = c * (1.0 - std::fabs(std::fmod(hue, 2.0) - 1.0)), m = v - c;
  double r = 0, g = 0, b = 0;
  switch (static_cast<int>(hue)) {
    case 0: r = c; g = x; break;
    case 1: r = x; g = c; break;
    case 2: g = c; b = x; break;
    case 3: g = x; b = c; break;
    case 4: r = x; b = c; break;
    default: r = c; b = x; break;
  }
  auto byte = [](double u) { return static_cast<std::uint8_t>(std::lround(std::clamp(u, 0.0, 1.0) * 255.0)); };
  return {byte(r + m), byte(g + m), byte(b + m)};
}

namespace {

/// Draws shape kind 0 circle, 1 square, 2 triangle, 3 star, 4 diamond into the p x p cell at (x, y).
void draw_shape(Canvas& canvas, int kind, int x, int y, int p, Rgb colour) {
  const double m = std::max(1.0, 0.12 * p);
  const double cx = x + p / 2.0, cy = y + p / 2.0, r = p / 2.0 - m;
  switch (kind) {
    case 0: canvas.fill_circle(cx, cy, r, colour); break;
    case 1: {
      const int inset = static_cast<int>(std::lround(m + 0.08 * p));
      canvas.fill_rect(x + inset, y + inset, p - 2 * inset, p - 2 * inset, colour);
      break;
    }
    case 2: canvas.fill_polygon({{cx, y + m}, {x + p - m, y + p - m}, {x + m, y + p - m}}, colour); break;
    case 3: {
      std::vector<std::pair<double, double>> v;
      for (int k = 0; k < 10; ++k) {
        const double angle = -kPi / 2 + k * kPi / 5, radius = (k % 2 == 0) ? r : 0.45 * r;
        v.emplace_back(cx + radius * std::cos(angle), cy + 0.08 * p + radius * std::sin(angle));
      }
      canvas.fill_polygon(v, colour);
      break;
    }
    default: canvas.fill_polygon({{cx, y + m}, {x + p - m, cy}, {cx, y + p - m}, {x + m, cy}}, colour); break;
  }
}

int shape_kind(const std::string& name, int index) {
  if (name == "circle") return 0;
  if (name == "square") return 1;
  if (name == "triangle") return 2;
  if (name == "star") return 3;
  if (name == "diamond") return 4;
  return index % 5;
}

}  // namespace

Canvas render_grid(const Grid& grid, const WorldConfig& config, int cell_px) {
  config.validate();
  validate_grid(grid, config, "render_grid: grid");
  corl::require(cell_px >= 4 && cell_px <= 512, "render_grid: cell_px = ", cell_px, ", expected 4..512");
  const Rgb line{170, 170, 170}, cell{245, 245, 240};
  Canvas canvas(config.width * cell_px + 1, config.height * cell_px + 1, cell);
  for (int r = 0; r <= config.height; ++r) canvas.fill_rect(0, r * cell_px, canvas.width(), 1, line);
  for (int c = 0; c <= config.width; ++c) canvas.fill_rect(c * cell_px, 0, 1, canvas.height(), line);
  for (const Placed& p : objects_in(grid, config)) {
    const std::string& shape = config.shapes[static_cast<std::size_t>(p.shape)];
    draw_shape(canvas, shape_kind(shape, p.shape), p.col * cell_px + 1, p.row * cell_px + 1, cell_px - 1,
               colour_rgb(config.colours[static_cast<std::size_t>(p.colour)]));
  }
  return canvas;
}

Canvas render_sheet(const std::vector<Grid>& grids, const WorldConfig& config, const SheetOptions& options) {
  corl::require(!grids.empty(), "render_sheet: grids is empty, expected at least one grid");
  corl::require(options.columns >= 1, "render_sheet: columns = ", options.columns, ", expected >= 1");
  corl::require(options.margin >= 0 && options.margin <= 256, "render_sheet: margin = ", options.margin,
                ", expected 0..256");
  corl::require(options.frames.empty() || options.frames.size() == grids.size(), "render_sheet: frames has ",
                options.frames.size(), " entries, expected 0 or one per grid (", grids.size(), ")");
  corl::require(options.labels.empty() || options.labels.size() == grids.size(), "render_sheet: labels has ",
                options.labels.size(), " entries, expected 0 or one per grid (", grids.size(), ")");
  const int gw = config.width * options.cell_px + 1, gh = config.height * options.cell_px + 1;
  const int label_h = options.labels.empty() ? 0 : 8;
  const int cols = std::min<int>(options.columns, static_cast<int>(grids.size()));
  const int rows = (static_cast<int>(grids.size()) + cols - 1) / cols;
  const int step_x = gw + options.margin + 4, step_y = gh + options.margin + 4 + label_h;
  Canvas sheet(cols * step_x + options.margin, rows * step_y + options.margin, kWhite);
  for (std::size_t i = 0; i < grids.size(); ++i) {
    const int x = options.margin + 2 + static_cast<int>(i) % cols * step_x;
    const int y = options.margin + 2 + static_cast<int>(i) / cols * step_y;
    if (!options.frames.empty()) sheet.draw_rect(x - 2, y - 2, gw + 4, gh + 4, options.frames[i], 2);
    sheet.blit(render_grid(grids[i], config, options.cell_px), x, y);
    if (!options.labels.empty()) sheet.draw_text(x, y + gh + 3, options.labels[i], kBlack);
  }
  return sheet;
}

}  // namespace ulm

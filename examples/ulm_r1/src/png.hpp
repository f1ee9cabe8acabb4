// png.hpp — an RGB canvas with simple drawing, PNG read/write through libpng, and pictures of shapes-world grids.
//
// The canvas is the drawing surface the example uses for everything visual: grids drawn as coloured circles, squares,
// triangles and stars on cells (render_grid), sheets of several grids with optional coloured frames and labels
// (render_sheet), and the CORL helper's line plots and bar charts (draw_line, fill_rect, draw_text). Text uses a
// built-in 3x5 pixel font (digits, A-Z, a few signs; lower case is drawn as upper case) scaled by an integer factor.
// PNG: 8-bit RGB, no interlace (libpng, http://www.libpng.org/pub/png/libpng-manual.txt).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "world.hpp"

namespace ulm {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Rgb&, const Rgb&) = default;
};

inline constexpr Rgb kWhite{255, 255, 255};
inline constexpr Rgb kBlack{0, 0, 0};
inline constexpr Rgb kLightGrey{225, 225, 225};

class Canvas {
 public:
  /// width, height in 1..16384 (corl::Error otherwise).
  Canvas(int width, int height, Rgb background = kWhite);

  int width() const { return width_; }
  int height() const { return height_; }
  /// Pixel (x, y), x to the right, y down; throws outside the canvas.
  Rgb at(int x, int y) const;
  /// Sets a pixel; silently clipped outside the canvas (so shapes may cross the border).
  void set(int x, int y, Rgb colour);
  void fill(Rgb colour);
  void fill_rect(int x, int y, int w, int h, Rgb colour);
  void draw_rect(int x, int y, int w, int h, Rgb colour, int thickness = 1);
  /// A line from (x0, y0) to (x1, y1) (Bresenham), `thickness` pixels wide (a square pen).
  void draw_line(int x0, int y0, int x1, int y1, Rgb colour, int thickness = 1);
  /// Pixels whose centre lies within `radius` of (cx, cy).
  void fill_circle(double cx, double cy, double radius, Rgb colour);
  /// Even-odd fill of a polygon given by its vertices (pixel centres tested).
  void fill_polygon(const std::vector<std::pair<double, double>>& vertices, Rgb colour);
  /// Text in the 3x5 font, top-left at (x, y), each font pixel a scale x scale block, one blank column between
  /// glyphs; unknown characters are drawn as blanks. Returns the width drawn in pixels.
  int draw_text(int x, int y, std::string_view text, Rgb colour, int scale = 1);
  /// Width in pixels draw_text would use.
  static int text_width(std::string_view text, int scale = 1);
  /// Copies `other` with its top-left corner at (x, y), clipped.
  void blit(const Canvas& other, int x, int y);

  /// Row-major RGB bytes, 3 per pixel.
  const std::vector<std::uint8_t>& pixels() const { return pixels_; }

 private:
  int width_, height_;
  std::vector<std::uint8_t> pixels_;
};

/// Writes an 8-bit RGB PNG; throws corl::Error naming the path when it cannot.
void write_png(const Canvas& canvas, const std::string& path);
/// Reads any PNG libpng reads (palette, grey and 16-bit are converted to 8-bit RGB; alpha is composited onto white).
Canvas read_png(const std::string& path);

/// The RGB of a colour name: the default world's names (red, green, blue, yellow, purple, orange) plus a few common
/// ones; any other name gets a stable hue derived from its characters.
Rgb colour_rgb(std::string_view name);

/// One grid: light cells with thin grid lines; each object drawn in its colour by its shape (circle, square,
/// triangle, star; other shape names cycle through these four plus a diamond, by shape index).
Canvas render_grid(const Grid& grid, const WorldConfig& config, int cell_px = 24);

struct SheetOptions {
  int columns = 4;
  int cell_px = 16;
  int margin = 6;
  /// Optional frame colour per grid (e.g. green = prompt satisfied, red = violated); empty or one per grid.
  std::vector<Rgb> frames = {};
  /// Optional label per grid, drawn under it in the 3x5 font; empty or one per grid.
  std::vector<std::string> labels = {};
};
/// Grids laid out row by row, `columns` per row, with margins (and frames / labels when given).
Canvas render_sheet(const std::vector<Grid>& grids, const WorldConfig& config, const SheetOptions& options = {});

}  // namespace ulm

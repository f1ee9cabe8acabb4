// PNG: canvases written by write_png read back by libpng pixel for pixel; grid pictures put each shape's colour
// where it belongs; sheets have the documented size; drawing primitives hit the expected pixels; errors name paths.
#include <doctest/doctest.h>

#include <png.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "corl/core/error.hpp"
#include "png.hpp"
#include "world.hpp"

using namespace ulm;

namespace {
std::string data_path(const std::string& name) {
  std::filesystem::create_directories(ULM_R1_TEST_DATA_DIR);
  return std::string(ULM_R1_TEST_DATA_DIR) + "/" + name;
}
}  // namespace

TEST_CASE("png: write then read back with libpng, pixel for pixel") {
  Canvas canvas(37, 21, kWhite);
  for (int y = 0; y < 21; ++y)
    for (int x = 0; x < 37; ++x)
      canvas.set(x, y, Rgb{static_cast<std::uint8_t>(7 * x), static_cast<std::uint8_t>(11 * y),
                           static_cast<std::uint8_t>(x * y % 256)});
  const std::string path = data_path("world_png_roundtrip.png");
  write_png(canvas, path);
  // The file starts with the PNG signature and libpng's own reader accepts it.
  unsigned char signature[8] = {};
  std::FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  CHECK(std::fread(signature, 1, 8, f) == 8);
  std::fclose(f);
  CHECK(png_sig_cmp(signature, 0, 8) == 0);
  const Canvas back = read_png(path);
  REQUIRE(back.width() == 37);
  REQUIRE(back.height() == 21);
  CHECK(back.pixels() == canvas.pixels());
  CHECK(back.at(36, 20) == Rgb{252, 220, 720 % 256});
}

TEST_CASE("png: grey-alpha and RGBA files written by libpng itself are read as RGB, alpha onto white") {
  const std::string path = data_path("world_png_rgba.png");
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = 3;
  image.height = 1;
  image.format = PNG_FORMAT_RGBA;
  const std::uint8_t rgba[] = {255, 0, 0, 255, 0, 0, 255, 0, 10, 20, 30, 255};  // opaque red, transparent, opaque
  REQUIRE(png_image_write_to_file(&image, path.c_str(), 0, rgba, 0, nullptr) != 0);
  const Canvas c = read_png(path);
  REQUIRE(c.width() == 3);
  CHECK(c.at(0, 0) == Rgb{255, 0, 0});
  CHECK(c.at(1, 0) == kWhite);
  CHECK(c.at(2, 0) == Rgb{10, 20, 30});
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = 2;
  image.height = 1;
  image.format = PNG_FORMAT_GA;
  const std::uint8_t ga[] = {128, 255, 0, 255};
  REQUIRE(png_image_write_to_file(&image, path.c_str(), 0, ga, 0, nullptr) != 0);
  const Canvas grey = read_png(path);
  CHECK(grey.at(0, 0) == Rgb{128, 128, 128});
  CHECK(grey.at(1, 0) == kBlack);
}

TEST_CASE("png: errors name the path") {
  const std::string path = data_path("world_png_not_a_png.png");
  std::ofstream(path) << "hello";
  CHECK_THROWS_WITH_AS(read_png(path), doctest::Contains(path.c_str()), corl::Error);
  CHECK_THROWS_WITH_AS(read_png(data_path("missing.png")), doctest::Contains("missing.png"), corl::Error);
  CHECK_THROWS_WITH_AS(write_png(Canvas(2, 2), "/nonexistent-dir/x.png"), doctest::Contains("/nonexistent-dir/x.png"),
                       corl::Error);
  CHECK_THROWS_WITH_AS(Canvas(0, 5), doctest::Contains("size 0x5"), corl::Error);
}

TEST_CASE("canvas: primitives hit the expected pixels") {
  const Rgb red{255, 0, 0};
  Canvas c(20, 20, kWhite);
  c.draw_line(0, 0, 19, 19, red);
  for (int i = 0; i < 20; ++i) CHECK(c.at(i, i) == red);
  CHECK(c.at(1, 0) == kWhite);
  c.fill(kWhite);
  c.draw_line(2, 10, 17, 10, red, 3);
  CHECK(c.at(10, 9) == red);
  CHECK(c.at(10, 11) == red);
  CHECK(c.at(10, 12) == kWhite);
  c.fill(kWhite);
  c.fill_circle(10, 10, 4, red);
  CHECK(c.at(9, 9) == red);
  CHECK(c.at(10, 13) == red);
  CHECK(c.at(15, 10) == kWhite);
  CHECK(c.at(13, 13) == kWhite);  // corner of the bounding box is outside the circle
  c.fill(kWhite);
  c.fill_polygon({{0, 0}, {10, 0}, {0, 10}}, red);  // triangle below the anti-diagonal
  CHECK(c.at(1, 1) == red);
  CHECK(c.at(8, 8) == kWhite);
  c.fill(kWhite);
  c.fill_rect(-5, -5, 8, 8, red);  // clipped
  CHECK(c.at(2, 2) == red);
  CHECK(c.at(3, 3) == kWhite);
  c.fill(kWhite);
  CHECK(c.draw_text(1, 1, "10", red) == Canvas::text_width("10"));
  CHECK(Canvas::text_width("10") == 7);
  CHECK(c.at(2, 1) == red);   // '1' top row is 010
  CHECK(c.at(1, 1) == kWhite);
  CHECK(c.at(5, 3) == red);   // '0' left column
  CHECK(c.at(6, 3) == kWhite);  // '0' hollow middle
}

TEST_CASE("render_grid: each object in its colour at its cell - sheets sized by the layout") {
  const WorldConfig config;
  Grid g(16, 0);
  g[0] = config.code(0, 0);   // red circle at (0, 0)
  g[6] = config.code(2, 1);   // blue square at (1, 2)
  g[11] = config.code(3, 2);  // yellow triangle at (2, 3)
  g[12] = config.code(1, 3);  // green star at (3, 0)
  const int p = 24;
  const Canvas c = render_grid(g, config, p);
  CHECK(c.width() == 4 * p + 1);
  CHECK(c.height() == 4 * p + 1);
  auto centre = [&](int row, int col) { return c.at(col * p + p / 2, row * p + p / 2 + 2); };
  CHECK(centre(0, 0) == colour_rgb("red"));
  CHECK(centre(1, 2) == colour_rgb("blue"));
  CHECK(centre(2, 3) == colour_rgb("yellow"));
  CHECK(centre(3, 0) == colour_rgb("green"));
  CHECK(centre(0, 1) == Rgb{245, 245, 240});  // empty cell
  // The square fills its cell's corner region, the circle does not.
  CHECK(c.at(2 * p + 6, 1 * p + 6) == colour_rgb("blue"));
  CHECK(c.at(0 * p + 4, 0 * p + 4) != colour_rgb("red"));
  write_png(c, data_path("world_grid.png"));
  CHECK(read_png(data_path("world_grid.png")).pixels() == c.pixels());

  SheetOptions options;
  options.columns = 3;
  options.cell_px = 10;
  options.margin = 4;
  options.frames = {Rgb{0, 200, 0}, Rgb{200, 0, 0}, Rgb{0, 200, 0}, Rgb{200, 0, 0}};
  options.labels = {"A", "B", "C", "D"};
  const Canvas sheet = render_sheet({g, g, g, g}, config, options);
  // 3 columns x 2 rows; each step is (41 + 4 + 4) x (41 + 4 + 4 + 8).
  CHECK(sheet.width() == 3 * 49 + 4);
  CHECK(sheet.height() == 2 * 57 + 4);
  CHECK(sheet.at(4, 4) == Rgb{0, 200, 0});        // frame of grid 0
  CHECK(sheet.at(4 + 49, 4) == Rgb{200, 0, 0});   // frame of grid 1
  write_png(sheet, data_path("world_sheet.png"));
  options.frames.clear();
  options.labels = {"A"};
  CHECK_THROWS_WITH_AS(render_sheet({g, g}, config, options), doctest::Contains("labels has 1 entries"), corl::Error);
  CHECK(colour_rgb("teal") == colour_rgb("teal"));  // hashed hue is stable
  CHECK(colour_rgb("teal") != colour_rgb("gold"));
}

// YUV round trips against values computed by hand, and half / bfloat16 rounding against known bit
// patterns.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "qbench/common/errors.h"
#include "qbench/sysnoise/colour.h"
#include "qbench/sysnoise/precision.h"

using namespace qbench::sysnoise;

namespace {

Image pixel(uint8_t r, uint8_t g, uint8_t b) {
  Image img(1, 1, 3);
  img.pixels = {r, g, b};
  return img;
}

std::vector<uint8_t> trip(uint8_t r, uint8_t g, uint8_t b, YuvStandard s, YuvRange range) {
  return yuv_round_trip(pixel(r, g, b), s, range).pixels;
}

using V = std::vector<uint8_t>;

}  // namespace

TEST_CASE("sysnoise: YUV round trips of single pixels, computed by hand", "[sysnoise][colour]") {
  // BT.601 full, red: Y' = 0.299 * 255 = 76.245 -> Y 76; Cb = -76.245 / 1.772 = -43.03 -> U 85;
  // Cr = 178.755 / 1.402 = 127.5 -> 255.5 -> V 256, clipped to 255. Back: R = 76 + 1.402 * 127 =
  // 254.05 -> 254; B = 76 - 1.772 * 43 = -0.196 -> 0; G = (76 - 0.299 * 254.054 + 0.114 * 0.196) /
  // 0.587 = 0.10 -> 0.
  CHECK(trip(255, 0, 0, YuvStandard::kBt601, YuvRange::kFull) == V{254, 0, 0});
  // BT.601 limited, grey 4: Y = 16 + 4 * 219/255 = 19.435 -> 19, back (19 - 16) * 255/219 = 3.49 -> 3.
  CHECK(trip(4, 4, 4, YuvStandard::kBt601, YuvRange::kLimited) == V{3, 3, 3});
  // Grey 3: 16 + 2.576 = 18.576 -> 19 as well: 3 and 4 share a code, and 3 comes back as 3.
  CHECK(trip(3, 3, 3, YuvStandard::kBt601, YuvRange::kLimited) == V{3, 3, 3});
  // BT.709 full, blue: Y' = 0.0722 * 255 = 18.411 -> 18; Cb = 236.589 / 1.8556 = 127.5 -> 255.5 ->
  // U 255 (clipped); Cr = -18.411 / 1.5748 = -11.69 -> 116.31 -> V 116. Back: B = 18 + 1.8556 * 127 =
  // 253.66 -> 254; R = 18 - 1.5748 * 12 = -0.898 -> 0; G = (18 - 0.2126 * -0.898 - 0.0722 * 253.66) /
  // 0.7152 = (18 + 0.191 - 18.314) / 0.7152 = -0.17 -> 0.
  CHECK(trip(0, 0, 255, YuvStandard::kBt709, YuvRange::kFull) == V{0, 0, 254});
  // BT.709 limited, (200, 100, 50): Y' = 42.52 + 71.52 + 3.61 = 117.65 -> Y = 16 + 101.04 = 117.04
  // -> 117; U = 128 + (50 - 117.65) / 1.8556 * 0.8784 = 128 - 32.02 = 95.98 -> 96; V = 128 + (200 -
  // 117.65) / 1.5748 * 0.8784 = 128 + 45.93 = 173.93 -> 174. Back: Y' = 101 * 255/219 = 117.60;
  // Cb = -32 * 255/224 = -36.43, Cr = 46 * 255/224 = 52.37; R = 117.60 + 1.5748 * 52.37 = 200.07 -> 200;
  // B = 117.60 - 1.8556 * 36.43 = 50.00 -> 50; G = (117.60 - 0.2126 * 200.07 - 0.0722 * 50.00) / 0.7152
  // = 99.96 -> 100.
  CHECK(trip(200, 100, 50, YuvStandard::kBt709, YuvRange::kLimited) == V{200, 100, 50});
  // Black and white survive every variant.
  for (auto s : {YuvStandard::kBt601, YuvStandard::kBt709})
    for (auto r : {YuvRange::kFull, YuvRange::kLimited}) {
      CHECK(trip(0, 0, 0, s, r) == V{0, 0, 0});
      CHECK(trip(255, 255, 255, s, r) == V{255, 255, 255});
    }
}

TEST_CASE("sysnoise: grey replicated to RGB: unchanged by full range, changed by limited range", "[sysnoise][colour]") {
  Image grey(256, 1, 1);
  for (int v = 0; v < 256; ++v) grey.pixels[v] = static_cast<uint8_t>(v);
  const Image rgb = grey_to_rgb(grey);
  for (auto s : {YuvStandard::kBt601, YuvStandard::kBt709}) {
    CHECK(yuv_round_trip(rgb, s, YuvRange::kFull).pixels == rgb.pixels);
    const Image limited = yuv_round_trip(rgb, s, YuvRange::kLimited);
    std::set<uint8_t> levels;
    int changed = 0;
    for (int v = 0; v < 256; ++v) {
      const uint8_t r = limited.pixels[3 * v];
      CHECK(limited.pixels[3 * v + 1] == r);  // still grey
      CHECK(limited.pixels[3 * v + 2] == r);
      CHECK(std::abs(int(r) - v) <= 1);
      levels.insert(r);
      changed += r != v;
    }
    // 256 greys through 220 luma codes (16..235): at most 220 come back, so at least 36 change.
    CHECK(levels.size() <= 220);
    CHECK(changed >= 36);
  }
  CHECK_THROWS_AS(yuv_round_trip(grey, YuvStandard::kBt601, YuvRange::kFull), qbench::Error);
}

namespace {
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace

TEST_CASE("sysnoise: float to IEEE half: ties to even, overflow, subnormals, specials", "[sysnoise][precision]") {
  CHECK(float_to_half_bits(1.0f) == 0x3C00);
  CHECK(float_to_half_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);      // tie, down to even
  CHECK(float_to_half_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);  // tie, up to even
  CHECK(float_to_half_bits(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3C01);  // above the tie
  CHECK(float_to_half_bits(-2.0f) == 0xC000);
  CHECK(float_to_half_bits(65504.0f) == 0x7BFF);
  CHECK(float_to_half_bits(65519.996f) == 0x7BFF);
  CHECK(float_to_half_bits(65520.0f) == 0x7C00);  // the tie above the largest half goes to infinity
  CHECK(float_to_half_bits(-1e6f) == 0xFC00);
  CHECK(float_to_half_bits(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(float_to_half_bits(std::ldexp(1.0f, -14)) == 0x0400);   // smallest normal
  CHECK(float_to_half_bits(std::ldexp(1.0f, -24)) == 0x0001);   // smallest subnormal
  CHECK(float_to_half_bits(std::ldexp(1.0f, -25)) == 0x0000);   // tie between 0 and 2^-24: even
  CHECK(float_to_half_bits(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(float_to_half_bits(std::ldexp(3.0f, -25)) == 0x0002);   // 1.5 units: tie, up to even
  CHECK(float_to_half_bits(std::ldexp(5.0f, -25)) == 0x0002);   // 2.5 units: tie, down to even
  CHECK(float_to_half_bits(std::ldexp(1023.5f, -24)) == 0x0400);  // rounds up into the normals
  CHECK(float_to_half_bits(std::ldexp(1.0f, -30)) == 0x0000);
  CHECK(float_to_half_bits(from_bits(0x00000001)) == 0x0000);   // a float subnormal
  CHECK(float_to_half_bits(-0.0f) == 0x8000);
  CHECK(float_to_half_bits(-std::ldexp(1.0f, -24)) == 0x8001);
  const uint16_t nan = float_to_half_bits(std::numeric_limits<float>::quiet_NaN());
  CHECK((nan & 0x7C00) == 0x7C00);
  CHECK((nan & 0x03FF) != 0);
  CHECK(std::isnan(round_to_half(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(half_bits_to_float(float_to_half_bits(from_bits(0x7F800001)))));  // signalling NaN stays NaN

  CHECK(half_bits_to_float(0x3555) == 0.333251953125f);
  CHECK(half_bits_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(half_bits_to_float(0x03FF) == std::ldexp(1023.0f, -24));
  CHECK(half_bits_to_float(0x7BFF) == 65504.0f);
  CHECK(std::isinf(half_bits_to_float(0xFC00)));
  CHECK(round_to_half(0.1f) == 0.0999755859375f);
  CHECK(round_to_half(1.0f / 3) == 0.333251953125f);
  // Every half value round-trips exactly.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    if ((bits & 0x7C00) == 0x7C00 && (bits & 0x03FF)) continue;  // NaNs
    if (float_to_half_bits(half_bits_to_float(bits)) != bits) FAIL("half " << h << " did not round-trip");
  }
  float data[3] = {1.0f + std::ldexp(1.0f, -11), 65520.0f, std::ldexp(1.5f, -25)};
  round_to_half(data, 3);
  CHECK(data[0] == 1.0f);
  CHECK(std::isinf(data[1]));
  CHECK(data[2] == std::ldexp(1.0f, -24));
}

TEST_CASE("sysnoise: float to bfloat16: ties to even, overflow, NaN", "[sysnoise][precision]") {
  CHECK(float_to_bf16_bits(1.0f) == 0x3F80);
  CHECK(float_to_bf16_bits(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);      // tie, down to even
  CHECK(float_to_bf16_bits(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3F82);  // tie, up to even
  CHECK(float_to_bf16_bits(3.14159265f) == 0x4049);                      // 0x40490FDB: down
  CHECK(round_to_bf16(3.14159265f) == 3.140625f);
  CHECK(float_to_bf16_bits(1.0f / 3) == 0x3EAB);                         // 0x3EAAAAAB: up
  CHECK(round_to_bf16(1.0f / 3) == 0.333984375f);
  CHECK(float_to_bf16_bits(-0.0f) == 0x8000);
  CHECK(float_to_bf16_bits(std::numeric_limits<float>::max()) == 0x7F80);  // rounds to infinity
  CHECK(float_to_bf16_bits(from_bits(0x7F7F7FFF)) == 0x7F7F);            // the largest bf16 stays
  CHECK(float_to_bf16_bits(from_bits(0x00018000)) == 0x0002);            // a float subnormal, tie up to even
  CHECK(std::isnan(round_to_bf16(from_bits(0x7F800001))));               // NaN whose payload is in the low bits
  CHECK(std::isinf(bf16_bits_to_float(0xFF80)));
  float data[2] = {1.0f + std::ldexp(1.0f, -8), 1.0f / 3};
  round_to_bf16(data, 2);
  CHECK(data[0] == 1.0f);
  CHECK(data[1] == 0.333984375f);
}

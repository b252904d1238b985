// JPEG decoders against decodes made by other programs of the same committed bytes: Pillow
// (JDCT_ISLOW with fancy upsampling, its defaults) and libjpeg-turbo's djpeg (`-dct int|fast|float`,
// `-nosmooth`); the encoder's fixed settings; corrupt bytes refused by every decoder.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/sysnoise/jpeg.h"
#include "sysnoise_util.h"

using namespace qbench::sysnoise;
using sysnoise_test::diff;
using sysnoise_test::fixture;
using sysnoise_test::read_bytes;

namespace {

const Decoder kAll[] = {Decoder::kIslow, Decoder::kIfast, Decoder::kFloat, Decoder::kIslowNoFancy, Decoder::kOpencv};

// The fixture file (djpeg's output) for each libjpeg decoder.
std::string expected_name(Decoder d) {
  switch (d) {
    case Decoder::kIfast: return "ifast";
    case Decoder::kFloat: return "float";
    case Decoder::kIslowNoFancy: return "nofancy";
    default: return "islow";
  }
}

}  // namespace

TEST_CASE("sysnoise: libjpeg decoders reproduce djpeg's and Pillow's decodes of the same bytes", "[sysnoise][jpeg]") {
  for (const std::string image : {"rgb", "grey"}) {
    const auto bytes = read_bytes(fixture("jpeg_" + image + "_q90.jpg"));
    REQUIRE(bytes.size() > 100);
    for (Decoder d : {Decoder::kIslow, Decoder::kIfast, Decoder::kFloat, Decoder::kIslowNoFancy}) {
      INFO(image << " " << decoder_name(d));
      const Image got = decode_jpeg(bytes, d);
      const Image want = load_image(fixture("jpeg_" + image + "_" + expected_name(d) + ".png"));
      CHECK(got.channels == (image == "rgb" ? 3 : 1));
      const auto delta = diff(got, want);
      CHECK(delta.count == 0);
      CHECK(delta.max == 0);
    }
  }
}

TEST_CASE("sysnoise: ifast and float differ from islow on some values, by a few levels", "[sysnoise][jpeg]") {
  const auto bytes = read_bytes(fixture("jpeg_rgb_q90.jpg"));
  const Image islow = decode_jpeg(bytes, Decoder::kIslow);
  const auto ifast = diff(decode_jpeg(bytes, Decoder::kIfast), islow);
  const auto flt = diff(decode_jpeg(bytes, Decoder::kFloat), islow);
  const auto nofancy = diff(decode_jpeg(bytes, Decoder::kIslowNoFancy), islow);
  // Measured on the fixture (2304 values): ifast 1605 differ (max 6), float 100 (max 2),
  // nofancy 1200 (max 8). The bounds leave room, the counts must not be zero.
  CHECK(ifast.count > 100);
  CHECK(ifast.max <= 8);
  CHECK(flt.count > 0);
  CHECK(flt.max <= 4);
  CHECK(nofancy.count > 100);
  CHECK(nofancy.max <= 16);
}

TEST_CASE("sysnoise: fancy upsampling off changes nothing for a grey JPEG", "[sysnoise][jpeg]") {
  const auto bytes = read_bytes(fixture("jpeg_grey_q90.jpg"));
  CHECK(diff(decode_jpeg(bytes, Decoder::kIslowNoFancy), decode_jpeg(bytes, Decoder::kIslow)).count == 0);
}

TEST_CASE("sysnoise: decode-opencv against the ISLOW reference on this build", "[sysnoise][jpeg]") {
  for (const std::string image : {"rgb", "grey"}) {
    INFO(image);
    const auto bytes = read_bytes(fixture("jpeg_" + image + "_q90.jpg"));
    const Image cv = decode_jpeg(bytes, Decoder::kOpencv);
    const Image ref = decode_jpeg(bytes, Decoder::kIslow);
    REQUIRE(cv.channels == ref.channels);
    const auto delta = diff(cv, ref);
    // Debian 12's OpenCV 4.6 decodes through the system libjpeg-turbo with ISLOW and fancy
    // upsampling, so the "noise" is nil there; see the README.
    CHECK(delta.count == 0);
  }
}

TEST_CASE("sysnoise: encode_jpeg is deterministic, 4:2:0, and matches Pillow's encoder at the same quality", "[sysnoise][jpeg]") {
  const Image src = load_image(fixture("jpeg_rgb_src.png"));
  const auto a = encode_jpeg(src, 90);
  const auto b = encode_jpeg(src, 90);
  CHECK(a == b);
  // The baseline frame header (SOF0): per component id, sampling (h << 4 | v), table.
  std::size_t sof = 0;
  for (std::size_t i = 0; i + 1 < a.size(); ++i)
    if (a[i] == 0xFF && a[i + 1] == 0xC0) {
      sof = i;
      break;
    }
  REQUIRE(sof > 0);
  CHECK(a[sof + 9] == 3);       // components
  CHECK(a[sof + 11] == 0x22);   // Y 2x2
  CHECK(a[sof + 14] == 0x11);   // Cb 1x1
  CHECK(a[sof + 17] == 0x11);   // Cr 1x1
  // Same quantisation, sampling and forward DCT as Pillow's save(quality=90, subsampling="4:2:0"):
  // the same coefficients, so the same decoded pixels.
  const auto pillow = read_bytes(fixture("jpeg_rgb_q90.jpg"));
  CHECK(diff(decode_jpeg(a), decode_jpeg(pillow)).count == 0);
  const Image grey = load_image(fixture("jpeg_grey_src.png"));
  const Image grey_back = decode_jpeg(encode_jpeg(grey, 90));
  CHECK(grey_back.channels == 1);
  CHECK(diff(grey_back, decode_jpeg(read_bytes(fixture("jpeg_grey_q90.jpg")))).count == 0);
  CHECK(encode_jpeg(src, 50).size() < a.size());
  CHECK_THROWS_AS(encode_jpeg(src, 0), qbench::Error);
  CHECK_THROWS_AS(encode_jpeg(src, 101), qbench::Error);
}

TEST_CASE("sysnoise: corrupt JPEG bytes throw a DataError from every decoder", "[sysnoise][jpeg]") {
  const auto good = read_bytes(fixture("jpeg_rgb_q90.jpg"));
  std::vector<std::vector<uint8_t>> bad;
  bad.push_back({});                                                            // nothing
  bad.push_back(std::vector<uint8_t>(500, 0x5A));                               // not a JPEG
  bad.push_back(std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2));  // truncated
  auto no_sof = good;  // the frame header's marker overwritten: no image size before the scan
  for (std::size_t i = 0; i + 1 < no_sof.size(); ++i)
    if (no_sof[i] == 0xFF && no_sof[i + 1] == 0xC0) no_sof[i + 1] = 0xFE;  // now a comment
  bad.push_back(no_sof);
  for (std::size_t i = 0; i < bad.size(); ++i)
    for (Decoder d : kAll) {
      INFO("case " << i << " decoder " << decoder_name(d));
      try {
        decode_jpeg(bad[i], d);
        FAIL("decoded corrupt bytes");
      } catch (const qbench::DataError& e) {
        CHECK(std::string(e.what()).rfind("corrupt JPEG data: ", 0) == 0);
      }
    }
}

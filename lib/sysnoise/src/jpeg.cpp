// libjpeg-turbo through its classic API. libjpeg reports errors by calling error_exit, which must
// not return; the default one calls exit(). Ours longjmps back to the call site, which destroys
// the libjpeg object and throws. Only C frames (libjpeg's) are skipped by the longjmp: the C++
// objects that live across setjmp are declared before it and never touched by the callbacks.
#include "qbench/sysnoise/jpeg.h"

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <jpeglib.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "qbench/common/errors.h"
#include "internal.h"

namespace qbench::sysnoise {

namespace {

struct ErrorManager {
  jpeg_error_mgr mgr;  // first member: libjpeg hands us a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// msg_level -1 is a warning about corrupt data (libjpeg carries on and invents pixels): fatal here.
// Levels >= 0 are trace messages: ignored.
void on_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0) on_error(cinfo);
}

ErrorManager* install_errors(j_common_ptr cinfo, ErrorManager& em) {
  cinfo->err = jpeg_std_error(&em.mgr);
  em.mgr.error_exit = on_error;
  em.mgr.emit_message = on_message;
  em.message[0] = '\0';
  return &em;
}

}  // namespace

const char* decoder_name(Decoder decoder) {
  switch (decoder) {
    case Decoder::kIslow: return "islow";
    case Decoder::kIfast: return "ifast";
    case Decoder::kFloat: return "float";
    case Decoder::kIslowNoFancy: return "islow-nofancy";
    case Decoder::kOpencv: return "opencv";
  }
  return "?";
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  check_image(image, "encode_jpeg");
  if (quality < 1 || quality > 100) throw Error("encode_jpeg: quality must be 1..100, got " + std::to_string(quality));
  jpeg_compress_struct cinfo;
  ErrorManager em;
  install_errors(reinterpret_cast<j_common_ptr>(&cinfo), em);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  if (setjmp(em.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::free(buffer);
    throw Error(std::string("encode_jpeg: ") + em.message);
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(image.width);
  cinfo.image_height = static_cast<JDIMENSION>(image.height);
  cinfo.input_components = image.channels;
  cinfo.in_color_space = image.channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&cinfo);  // YCbCr for RGB, JFIF header, standard Huffman tables
  jpeg_set_quality(&cinfo, quality, TRUE);
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.optimize_coding = FALSE;
  if (image.channels == 3) {  // 4:2:0, stated rather than left to the library's default
    cinfo.comp_info[0].h_samp_factor = 2;
    cinfo.comp_info[0].v_samp_factor = 2;
    for (int c = 1; c < 3; ++c) cinfo.comp_info[c].h_samp_factor = cinfo.comp_info[c].v_samp_factor = 1;
  }
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    auto* row = const_cast<JSAMPLE*>(image.pixels.data() + cinfo.next_scanline * image.row_bytes());
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> out(buffer, buffer + size);
  std::free(buffer);
  return out;
}

namespace {

Image decode_libjpeg(const std::vector<uint8_t>& bytes, J_DCT_METHOD dct, bool fancy) {
  if (bytes.empty()) throw DataError("corrupt JPEG data: no bytes");
  jpeg_decompress_struct cinfo;
  ErrorManager em;
  install_errors(reinterpret_cast<j_common_ptr>(&cinfo), em);
  Image out;
  if (setjmp(em.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw DataError(std::string("corrupt JPEG data: ") + em.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  const int components = cinfo.num_components;
  if (components != 1 && components != 3) {
    jpeg_destroy_decompress(&cinfo);
    throw DataError("corrupt JPEG data: " + std::to_string(components) +
                    " components (only grey and YCbCr/RGB JPEGs are supported)");
  }
  cinfo.out_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
  cinfo.dct_method = dct;
  cinfo.do_fancy_upsampling = fancy ? TRUE : FALSE;
  jpeg_start_decompress(&cinfo);
  out = Image(static_cast<int>(cinfo.output_width), static_cast<int>(cinfo.output_height), components);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.pixels.data() + cinfo.output_scanline * out.row_bytes();
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return out;
}

Image decode_opencv(const std::vector<uint8_t>& bytes) {
  // The same strictness as the libjpeg decoders (OpenCV prints libjpeg's warnings and carries on).
  const Image reference = decode_libjpeg(bytes, JDCT_ISLOW, true);
  const cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<uint8_t*>(bytes.data()));
  // IMREAD_GRAYSCALE / IMREAD_COLOR ask libjpeg for the file's own colour space; without
  // IMREAD_IGNORE_ORIENTATION an EXIF orientation would be applied, as a deployment would.
  cv::Mat decoded = cv::imdecode(raw, reference.channels == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
  if (decoded.empty()) throw DataError("corrupt JPEG data: cv::imdecode could not decode it");
  if (decoded.channels() == 3) cv::cvtColor(decoded, decoded, cv::COLOR_BGR2RGB);
  return detail::from_mat(decoded);
}

}  // namespace

Image decode_jpeg(const std::vector<uint8_t>& bytes, Decoder decoder) {
  switch (decoder) {
    case Decoder::kIslow: return decode_libjpeg(bytes, JDCT_ISLOW, true);
    case Decoder::kIfast: return decode_libjpeg(bytes, JDCT_IFAST, true);
    case Decoder::kFloat: return decode_libjpeg(bytes, JDCT_FLOAT, true);
    case Decoder::kIslowNoFancy: return decode_libjpeg(bytes, JDCT_ISLOW, false);
    case Decoder::kOpencv: return decode_opencv(bytes);
  }
  throw Error("decode_jpeg: unknown decoder");
}

}  // namespace qbench::sysnoise

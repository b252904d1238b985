#include "qbench/data/idx.h"

#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>
#include <memory>

#include "qbench/common/errors.h"

namespace qbench::data {
namespace {

struct GzCloser {
  void operator()(gzFile f) const {
    if (f) gzclose(f);
  }
};
using GzPtr = std::unique_ptr<gzFile_s, GzCloser>;

// gzread reads plain files transparently, so one path serves .gz and uncompressed IDX files.
std::size_t read_exact(gzFile f, uint8_t* dst, std::size_t n, const std::string& path) {
  std::size_t got = 0;
  while (got < n) {
    unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 30));
    int r = gzread(f, dst + got, chunk);
    if (r < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      throw DataError(path + ": read error: " + (msg ? msg : "unknown zlib error"));
    }
    if (r == 0) {
      // The end of the input; inside a gzip member zlib reports it as Z_BUF_ERROR, not as an error.
      int errnum = Z_OK;
      gzerror(f, &errnum);
      if (errnum == Z_BUF_ERROR) throw DataError(path + ": truncated gzip stream (unexpected end of file)");
      break;
    }
    got += static_cast<std::size_t>(r);
  }
  return got;
}

// Reads and checks the magic, element type and dimensions (the file positioned after them).
IdxHeader read_header(gzFile f, const std::string& path) {
  uint8_t header[4];
  if (read_exact(f, header, 4, path) != 4) throw DataError(path + ": truncated IDX header");
  if (header[0] != 0 || header[1] != 0)
    throw DataError(path + ": bad IDX magic number (expected 0x0000 in the first two bytes)");
  if (header[2] != 0x08)
    throw DataError(path + ": unsupported IDX element type 0x" + std::to_string(header[2]) +
                    " (only unsigned bytes, 0x08, are supported)");
  const int ndims = header[3];
  if (ndims < 1 || ndims > 4) throw DataError(path + ": bad IDX dimension count " + std::to_string(ndims));
  IdxHeader h;
  h.header_bytes = 4 + 4 * ndims;
  int64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    uint8_t d[4];
    if (read_exact(f, d, 4, path) != 4) throw DataError(path + ": truncated IDX header");
    int64_t dim = (int64_t(d[0]) << 24) | (int64_t(d[1]) << 16) | (int64_t(d[2]) << 8) | int64_t(d[3]);
    if (dim <= 0 || dim > (1 << 28))
      throw DataError(path + ": implausible IDX dimension " + std::to_string(dim) + " (dimension " +
                      std::to_string(i + 1) + " of " + std::to_string(ndims) + ")");
    h.dims.push_back(dim);
    total *= dim;
    if (total > (int64_t(1) << 34))
      throw DataError(path + ": implausible IDX size: the dimensions multiply to more than 2^34 bytes");
  }
  h.payload_bytes = total;
  return h;
}

std::string payload_problem(const std::string& path, int64_t want, int64_t got) {
  if (got < want)
    return path + ": truncated IDX payload: header says " + std::to_string(want) + " bytes, file has " +
           std::to_string(got);
  return path + ": IDX payload longer than its header says (" + std::to_string(want) + " bytes, file has " +
         std::to_string(got) + ")";
}

}  // namespace

IdxHeader check_idx(const std::string& path) {
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  if (ec) throw DataError(path + ": cannot open file (" + ec.message() + ")");
  GzPtr f(gzopen(path.c_str(), "rb"));
  if (!f) throw DataError(path + ": cannot open file");
  IdxHeader h = read_header(f.get(), path);
  h.gzip = gzdirect(f.get()) == 0;
  if (!h.gzip) {
    const int64_t got = static_cast<int64_t>(file_size) - h.header_bytes;
    if (got != h.payload_bytes) throw DataError(payload_problem(path, h.payload_bytes, got));
    return h;
  }
  // gzip: the last four bytes are the uncompressed length modulo 2^32.
  uint32_t isize = 0;
  bool trailer = false;
  if (file_size >= 18) {
    std::ifstream raw(path, std::ios::binary);
    raw.seekg(-4, std::ios::end);
    unsigned char t[4];
    if (raw.read(reinterpret_cast<char*>(t), 4)) {
      isize = uint32_t(t[0]) | (uint32_t(t[1]) << 8) | (uint32_t(t[2]) << 16) | (uint32_t(t[3]) << 24);
      trailer = true;
    }
  }
  const uint32_t want = static_cast<uint32_t>(static_cast<uint64_t>(h.header_bytes + h.payload_bytes) & 0xffffffffu);
  if (trailer && isize == want) return h;
  // Disagreement (a truncated or padded stream, or several members): count the real length.
  std::vector<uint8_t> buf(1 << 20);
  int64_t got = 0;
  try {
    for (;;) {
      const std::size_t n = read_exact(f.get(), buf.data(), buf.size(), path);  // throws on a damaged stream
      got += static_cast<int64_t>(n);
      if (n < buf.size()) break;
    }
  } catch (const DataError& e) {
    throw DataError(std::string(e.what()) + " (a truncated or damaged gzip file; header says " +
                    std::to_string(h.payload_bytes) + " payload bytes)");
  }
  if (got != h.payload_bytes) throw DataError(payload_problem(path, h.payload_bytes, got));
  return h;
}

IdxArray read_idx(const std::string& path) {
  GzPtr f(gzopen(path.c_str(), "rb"));
  if (!f) throw DataError(path + ": cannot open file");
  const IdxHeader h = read_header(f.get(), path);
  IdxArray out;
  out.dims = h.dims;
  const auto total = static_cast<std::size_t>(h.payload_bytes);
  out.bytes.resize(total);
  std::size_t got = read_exact(f.get(), out.bytes.data(), total, path);
  if (got != total)
    throw DataError(path + ": truncated IDX payload: header says " + std::to_string(total) + " bytes, file has " +
                    std::to_string(got));
  uint8_t extra;
  if (read_exact(f.get(), &extra, 1, path) != 0)
    throw DataError(path + ": IDX payload longer than its header says (" + std::to_string(total) + " bytes)");
  return out;
}

void write_idx(const std::string& path, const std::vector<int64_t>& dims, const std::vector<uint8_t>& bytes) {
  std::vector<uint8_t> buf = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (int64_t d : dims)
    for (int s = 24; s >= 0; s -= 8) buf.push_back(static_cast<uint8_t>((d >> s) & 0xff));
  buf.insert(buf.end(), bytes.begin(), bytes.end());
  const bool gz = path.size() > 3 && path.substr(path.size() - 3) == ".gz";
  if (gz) {
    GzPtr f(gzopen(path.c_str(), "wb"));
    if (!f) throw DataError(path + ": cannot write file");
    if (gzwrite(f.get(), buf.data(), static_cast<unsigned>(buf.size())) != static_cast<int>(buf.size()))
      throw DataError(path + ": write failed");
  } else {
    std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
    if (!f) throw DataError(path + ": cannot write file");
    if (std::fwrite(buf.data(), 1, buf.size(), f.get()) != buf.size()) throw DataError(path + ": write failed");
  }
}

}  // namespace qbench::data

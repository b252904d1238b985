#include "qbench/data/idx.h"

#include <zlib.h>

#include <cstdio>
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
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return got;
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  GzPtr f(gzopen(path.c_str(), "rb"));
  if (!f) throw DataError(path + ": cannot open file");
  uint8_t header[4];
  if (read_exact(f.get(), header, 4, path) != 4) throw DataError(path + ": truncated IDX header");
  if (header[0] != 0 || header[1] != 0)
    throw DataError(path + ": bad IDX magic number (expected 0x0000 in the first two bytes)");
  if (header[2] != 0x08)
    throw DataError(path + ": unsupported IDX element type 0x" + std::to_string(header[2]) +
                    " (only unsigned bytes, 0x08, are supported)");
  const int ndims = header[3];
  if (ndims < 1 || ndims > 4) throw DataError(path + ": bad IDX dimension count " + std::to_string(ndims));
  IdxArray out;
  std::size_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    uint8_t d[4];
    if (read_exact(f.get(), d, 4, path) != 4) throw DataError(path + ": truncated IDX header");
    int64_t dim = (int64_t(d[0]) << 24) | (int64_t(d[1]) << 16) | (int64_t(d[2]) << 8) | int64_t(d[3]);
    if (dim <= 0 || dim > (1 << 28)) throw DataError(path + ": implausible IDX dimension " + std::to_string(dim));
    out.dims.push_back(dim);
    total *= static_cast<std::size_t>(dim);
  }
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

#pragma once
// Reader for the IDX format (LeCun's MNIST files): gzip-compressed or plain. Torch-free.
#include <cstdint>
#include <string>
#include <vector>

namespace qbench::data {

struct IdxArray {
  std::vector<int64_t> dims;   ///< e.g. {60000, 28, 28}
  std::vector<uint8_t> bytes;  ///< row-major unsigned bytes (type code 0x08)
};

/// Reads an IDX file of unsigned bytes. Files ending in .gz (or starting with the gzip magic)
/// are inflated with zlib. Throws DataError naming the file on a missing file, a bad magic
/// number, an unsupported element type, or a payload shorter or longer than the header says.
IdxArray read_idx(const std::string& path);

/// What check_idx found: the dimensions and where the payload is.
struct IdxHeader {
  std::vector<int64_t> dims;
  int64_t header_bytes = 0;   ///< 4 + 4 x dimensions
  int64_t payload_bytes = 0;  ///< product of the dimensions
  bool gzip = false;
};

/// Checks an IDX file without reading its payload: the header as read_idx checks it (magic,
/// element type, dimension count, every dimension in 1..2^28, their product at most 2^34 bytes),
/// then the payload's length: from the file size for a plain file; for a gzip file from the
/// trailer's uncompressed length (ISIZE, modulo 2^32), inflating the whole stream only when that
/// disagrees (which also reads multi-member files right). Throws DataError naming the file for a
/// missing or unreadable file, a bad header, or a payload shorter or longer than the header says.
/// A gzip stream damaged inside with its length intact passes; read_idx's CRC check catches it.
IdxHeader check_idx(const std::string& path);

/// Writes an IDX ubyte file (gzip when the path ends in .gz). For tests and fixtures.
void write_idx(const std::string& path, const std::vector<int64_t>& dims, const std::vector<uint8_t>& bytes);

}  // namespace qbench::data

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

/// Writes an IDX ubyte file (gzip when the path ends in .gz). For tests and fixtures.
void write_idx(const std::string& path, const std::vector<int64_t>& dims, const std::vector<uint8_t>& bytes);

}  // namespace qbench::data

#pragma once
// A reader for the .npy files the fixture scripts write (numpy's format 1.0/2.0, little-endian
// float32 or int64, C order): the test's only way in, no numpy needed at run time.
#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace qbench::test {

inline at::Tensor read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string b = ss.str();
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) throw std::runtime_error(path + ": not a .npy file");
  const int major = static_cast<unsigned char>(b[6]);
  size_t hlen = 0, off = 0;
  if (major == 1) {
    hlen = static_cast<unsigned char>(b[8]) | (static_cast<size_t>(static_cast<unsigned char>(b[9])) << 8);
    off = 10;
  } else {
    uint32_t l = 0;
    std::memcpy(&l, b.data() + 8, 4);
    hlen = l;
    off = 12;
  }
  const std::string h = b.substr(off, hlen);
  const bool f4 = h.find("'<f4'") != std::string::npos, i8 = h.find("'<i8'") != std::string::npos;
  if ((!f4 && !i8) || h.find("'fortran_order': False") == std::string::npos)
    throw std::runtime_error(path + ": want little-endian float32/int64 in C order, header " + h);
  std::vector<int64_t> shape;
  const auto p = h.find("'shape': (");
  std::string dims = h.substr(p + 10, h.find(')', p) - p - 10);
  std::stringstream ds(dims);
  std::string tok;
  while (std::getline(ds, tok, ','))
    if (tok.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(tok));
  auto t = at::empty(shape, f4 ? at::kFloat : at::kLong);
  const size_t bytes = static_cast<size_t>(t.numel()) * (f4 ? 4 : 8);
  if (b.size() != off + hlen + bytes) throw std::runtime_error(path + ": size does not match the header");
  std::memcpy(t.data_ptr(), b.data() + off + hlen, bytes);
  return t;
}

}  // namespace qbench::test

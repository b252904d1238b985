#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace qbench {

/// Levenshtein distance, for "did you mean" suggestions.
int edit_distance(const std::string& a, const std::string& b);

/// Up to `max` candidates closest to `name` (distance <= max(2, len/3)), best first.
std::vector<std::string> closest_names(const std::string& name, const std::vector<std::string>& candidates,
                                       std::size_t max = 3);

/// "unknown algorithm 'lqs' (did you mean: lsq, lsq+?)" style suffix; empty when no candidate.
std::string did_you_mean(const std::string& name, const std::vector<std::string>& candidates);

std::string join(const std::vector<std::string>& parts, const std::string& sep);

/// SHA-256 of `data` as 64 lowercase hex characters (FIPS 180-4).
std::string sha256_hex(const std::string& data);

/// Incremental SHA-256: update() with the bytes in order, then hex_digest() (which resets it), so
/// large files and tensor payloads hash without one contiguous copy. Same digest as sha256_hex.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t n);
  std::string hex_digest();

 private:
  void reset();
  uint32_t h_[8];
  uint64_t total_ = 0;
  unsigned char buf_[64];
  std::size_t fill_ = 0;
};

/// ISO-8601 UTC timestamp with milliseconds, e.g. 2026-11-23T10:32:23.123Z
std::string utc_now_iso();

/// Host name of this machine.
std::string host_name();

}  // namespace qbench

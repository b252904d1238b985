#pragma once
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

/// ISO-8601 UTC timestamp with milliseconds, e.g. 2026-11-23T10:32:23.123Z
std::string utc_now_iso();

/// Host name of this machine.
std::string host_name();

}  // namespace qbench

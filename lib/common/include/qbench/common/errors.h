#pragma once
// One exception hierarchy for the project; apps/qbench/main.cpp is the only place that catches
// everything and maps these to exit codes (2 for configuration/usage, 1 for failed work).
#include <stdexcept>
#include <string>

namespace qbench {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

/// A problem in user input (matrix file, CLI flags, profile files). Exit code 2.
class ConfigError : public Error {
 public:
  /// file:line:column: key.path: message  (line/column 1-based; 0 = unknown)
  ConfigError(std::string file, int line, int column, std::string key_path, std::string message);
  explicit ConfigError(const std::string& message) : Error(message) {}
  const std::string& file() const { return file_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& key_path() const { return key_path_; }
  const std::string& message() const { return message_; }

 private:
  std::string file_, key_path_, message_;
  int line_ = 0, column_ = 0;
};

/// Unreadable, truncated or malformed data files.
class DataError : public Error {
 public:
  using Error::Error;
};

/// SQLite failures; carries the SQLite result code.
class StoreError : public Error {
 public:
  StoreError(const std::string& msg, int code = 0) : Error(msg), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

/// A name that is not in a registry; the message lists the closest candidates.
class UnknownNameError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

/// Thrown when SIGINT/SIGTERM asked the run to stop; nothing half-written is committed.
class Interrupted : public Error {
 public:
  Interrupted() : Error("interrupted") {}
};

}  // namespace qbench

#include "qbench/common/errors.h"

#include <sstream>

namespace qbench {

static std::string format_config_error(const std::string& file, int line, int column,
                                       const std::string& key_path, const std::string& message) {
  std::ostringstream os;
  os << file;
  if (line > 0) {
    os << ":" << line;
    if (column > 0) os << ":" << column;
  }
  os << ": ";
  if (!key_path.empty()) os << key_path << ": ";
  os << message;
  return os.str();
}

ConfigError::ConfigError(std::string file, int line, int column, std::string key_path,
                         std::string message)
    : Error(format_config_error(file, line, column, key_path, message)),
      file_(std::move(file)),
      key_path_(std::move(key_path)),
      message_(std::move(message)),
      line_(line),
      column_(column) {}

}  // namespace qbench

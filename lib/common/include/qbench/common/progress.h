#pragma once
// Progress on stderr: a single self-overwriting line on a TTY; on a pipe or file, quiet unless
// forced on, then one line every few seconds. Results never go here.
#include <atomic>
#include <chrono>
#include <string>

namespace qbench {

class Progress {
 public:
  enum class Mode { Auto, On, Off };
  static Progress& global();
  void set_mode(Mode m);
  bool enabled() const { return enabled_; }
  /// Replaces the current status line (throttled).
  void update(const std::string& text, bool force = false);
  /// Prints a permanent line (clearing the status line first).
  void note(const std::string& text);
  void clear();

 private:
  bool enabled_ = false, tty_ = false, dirty_ = false;
  std::chrono::steady_clock::time_point last_{};
};

/// "1m23s" / "45s" / "2h05m".
std::string format_duration(double seconds);

/// Set by the SIGINT/SIGTERM handler; long loops poll it between batches and throw Interrupted.
std::atomic<bool>& interrupt_flag();
void install_interrupt_handler();
/// Throws qbench::Interrupted when an interrupt was requested.
void check_interrupt();

}  // namespace qbench

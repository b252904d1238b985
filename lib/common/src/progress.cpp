#include "qbench/common/progress.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "qbench/common/errors.h"

namespace qbench {

Progress& Progress::global() {
  static Progress p;
  return p;
}

void Progress::set_mode(Mode m) {
  tty_ = isatty(fileno(stderr)) != 0;
  enabled_ = m == Mode::On || (m == Mode::Auto && tty_);
}

void Progress::update(const std::string& text, bool force) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  const auto min_gap = tty_ ? std::chrono::milliseconds(200) : std::chrono::milliseconds(5000);
  if (!force && dirty_ && now - last_ < min_gap) return;
  last_ = now;
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", text.c_str());
    dirty_ = true;
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
    dirty_ = true;
  }
  std::fflush(stderr);
}

void Progress::note(const std::string& text) {
  clear();
  std::fprintf(stderr, "%s\n", text.c_str());
  std::fflush(stderr);
}

void Progress::clear() {
  if (tty_ && dirty_) std::fprintf(stderr, "\r\033[K");
  dirty_ = false;
}

std::string format_duration(double seconds) {
  if (seconds < 0 || seconds != seconds) return "?";
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

std::atomic<bool>& interrupt_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

namespace {
extern "C" void on_signal(int sig) {
  // A second signal ends the process at once.
  if (interrupt_flag().load()) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  interrupt_flag().store(true);
}
}  // namespace

void install_interrupt_handler() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

void check_interrupt() {
  if (interrupt_flag().load()) throw Interrupted();
}

}  // namespace qbench

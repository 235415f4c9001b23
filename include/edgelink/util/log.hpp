#pragma once
// Levelled logging to stderr (journald reads it; under systemd each line carries its
// syslog priority as "<N>"). Repeated messages can be rate-limited by key so a
// misbehaving app or broker cannot flood the journal.

#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>

#include "edgelink/config/config.hpp"

namespace edgelink::log {

void set_level(LogLevel level);
LogLevel level();
inline bool enabled(LogLevel l) { return static_cast<int>(l) >= static_cast<int>(level()); }
void write(LogLevel level, std::string_view component, std::string_view message);

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <class... Args>
void at(LogLevel l, std::string_view component, const Args&... args) {
  if (enabled(l)) write(l, component, concat(args...));
}
template <class... Args> void trace(std::string_view c, const Args&... a) { at(LogLevel::Trace, c, a...); }
template <class... Args> void debug(std::string_view c, const Args&... a) { at(LogLevel::Debug, c, a...); }
template <class... Args> void info(std::string_view c, const Args&... a) { at(LogLevel::Info, c, a...); }
template <class... Args> void warn(std::string_view c, const Args&... a) { at(LogLevel::Warn, c, a...); }
template <class... Args> void error(std::string_view c, const Args&... a) { at(LogLevel::Error, c, a...); }

// Lets through `burst` messages per key in each `window`; at the next message after a
// window with suppressions it says how many were suppressed.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  RateLimiter(int burst = 5, std::chrono::seconds window = std::chrono::seconds(10))
      : burst_(burst), window_(window) {}
  // Returns the number of messages suppressed since the last one let through, or -1
  // when this one must be suppressed.
  int64_t admit(const std::string& key, Clock::time_point now = Clock::now());

 private:
  struct Slot {
    Clock::time_point window_start;
    int count = 0;
    int64_t suppressed = 0;
  };
  int burst_;
  std::chrono::seconds window_;
  std::unordered_map<std::string, Slot> slots_;
};

// Rate-limited log by key: at most a few lines per key and window.
template <class... Args>
void limited(RateLimiter& limiter, const std::string& key, LogLevel l, std::string_view component,
             const Args&... args) {
  if (!enabled(l)) return;
  int64_t suppressed = limiter.admit(key);
  if (suppressed < 0) return;
  if (suppressed > 0)
    write(l, component, concat(args..., " (", suppressed, " similar messages suppressed)"));
  else
    write(l, component, concat(args...));
}

}  // namespace edgelink::log

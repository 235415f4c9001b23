#include "edgelink/util/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace edgelink::log {
namespace {
std::atomic<LogLevel> g_level{LogLevel::Info};

// journald sets JOURNAL_STREAM when stderr is connected to it; then "<N>" prefixes
// carry the priority and timestamps are redundant.
bool to_journal() {
  static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  return journal;
}

int syslog_priority(LogLevel l) {
  switch (l) {
    case LogLevel::Trace:
    case LogLevel::Debug: return 7;
    case LogLevel::Info: return 6;
    case LogLevel::Warn: return 4;
    case LogLevel::Error: return 3;
  }
  return 6;
}
}  // namespace

void set_level(LogLevel level) { g_level = level; }
LogLevel level() { return g_level; }

void write(LogLevel l, std::string_view component, std::string_view message) {
  std::string line;
  line.reserve(message.size() + component.size() + 48);
  if (to_journal()) {
    line += '<';
    line += static_cast<char>('0' + syslog_priority(l));
    line += '>';
  } else {
    char stamp[32];
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm t{};
    gmtime_r(&ts.tv_sec, &t);
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &t);
    snprintf(stamp + n, sizeof stamp - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    line += stamp;
  }
  line += to_string(l);
  line += ' ';
  line += component;
  line += ": ";
  line += message;
  line += '\n';
  // One write() per line keeps lines whole when several processes share stderr.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

int64_t RateLimiter::admit(const std::string& key, Clock::time_point now) {
  Slot& slot = slots_[key];
  if (slot.count == 0 || now - slot.window_start >= window_) {
    slot.window_start = now;
    slot.count = 0;
  }
  if (slot.count >= burst_) {
    ++slot.suppressed;
    return -1;
  }
  ++slot.count;
  int64_t suppressed = slot.suppressed;
  slot.suppressed = 0;
  return suppressed;
}

}  // namespace edgelink::log

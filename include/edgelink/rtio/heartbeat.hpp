#pragma once
// An RTIO device's heartbeat (spec/http-api.md §6.2 item 4): the connection is cut
// when nothing arrives for 1.5 × the interval. The interval starts at 300 s; a ping
// may set it (30..43200 s); every message from the verified device restarts the
// wait. Pure: time is passed in, so the cut-off is tested without waiting.

#include <chrono>

namespace edgelink::rtio {

class Heartbeat {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  static constexpr std::chrono::seconds kDefaultInterval{300};

  explicit Heartbeat(TimePoint now, std::chrono::seconds interval = kDefaultInterval)
      : last_(now), interval_(interval) {}

  // A message arrived.
  void seen(TimePoint now) { last_ = now; }
  // A ping set a new interval (already range-checked by the codec).
  void set_interval(std::chrono::seconds interval) { interval_ = interval; }
  std::chrono::seconds interval() const { return interval_; }
  // 1.5 × interval after the last message.
  TimePoint deadline() const {
    return last_ + std::chrono::duration_cast<Clock::duration>(interval_) * 3 / 2;
  }
  bool expired(TimePoint now) const { return now > deadline(); }

 private:
  TimePoint last_;
  std::chrono::seconds interval_;
};

}  // namespace edgelink::rtio

#pragma once
// One steady timer serving many deadlines: armed for the earliest one; arming for a
// later time while an earlier one is pending changes nothing.

#include <chrono>
#include <functional>
#include <optional>

#include <asio.hpp>

namespace edgelink {

class DeadlineTimer {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  DeadlineTimer(asio::io_context& io, std::function<void()> on_due) : timer_(io), on_due_(std::move(on_due)) {}

  void arm(std::optional<TimePoint> deadline) {
    if (!deadline || (armed_ && *armed_ <= *deadline)) return;
    armed_ = deadline;
    timer_.expires_at(*deadline);  // cancels a later wait, whose handler sees operation_aborted
    timer_.async_wait([this](asio::error_code ec) {
      if (ec) return;
      armed_.reset();
      on_due_();
    });
  }

  void cancel() {
    armed_.reset();
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  std::function<void()> on_due_;
  std::optional<TimePoint> armed_;
};

}  // namespace edgelink

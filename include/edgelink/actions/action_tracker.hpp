#pragma once
// Actions in flight and their deadlines. Pure: the caller passes the time, so
// timeout logic is tested without sleeping.

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace edgelink {

struct TrackedAction {
  std::string id;
  std::string name;
  std::string app;
  std::chrono::steady_clock::time_point deadline;
  // A cancel_action: the id of the action it cancels (not persisted across restarts).
  std::string cancels;
};

struct ActionCounters {
  uint64_t received = 0;      // accepted for routing
  uint64_t duplicates = 0;    // redelivered while in flight: ignored
  uint64_t unknown_name = 0;  // no app lists the name: Failed
  uint64_t invalid = 0;       // malformed action payloads
  uint64_t completed = 0;     // terminal Completed from the app
  uint64_t failed = 0;        // terminal Failed from the app
  uint64_t timed_out = 0;     // deadline passed: Failed by edgelink
  uint64_t late_statuses = 0; // statuses after timeout or terminal state: dropped
  uint64_t statuses = 0;      // statuses forwarded from apps
  uint64_t restored = 0;      // in flight at the last stop, tracked again at start
  uint64_t cancels_refused = 0;  // cancel_action for an action not in flight (or unreadable): Failed
};

// Per app, the action states edgelink counts (edgelink_actions_total{app,state}):
// received: routed to the app and acknowledged to the cloud (Received); completed,
// failed: terminal statuses (the app's, or edgelink's outcome of a cancel_action the app
// left unanswered); timed_out: the deadline passed and edgelink reported Failed. The
// intermediate states an app may report are forwarded but not counted by state, and
// actions that reach no app (unknown name, invalid, duplicates) are counted only in
// ActionCounters. Actions restored at start were received in an earlier run.
struct ActionStateCounts {
  uint64_t received = 0;
  uint64_t completed = 0;
  uint64_t failed = 0;
  uint64_t timed_out = 0;
};

class ActionTracker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // Remembers this many finished ids, to recognise late statuses for them.
  explicit ActionTracker(size_t finished_memory = 4096) : finished_cap_(finished_memory) {}

  // False when an action with this id is already in flight (a redelivery).
  bool add(TrackedAction action);
  bool in_flight(std::string_view id) const { return active_.count(std::string(id)) > 0; }
  // nullptr when `id` is not in flight.
  const TrackedAction* find(const std::string& id) const;

  enum class Verdict {
    Forward,  // in flight, or never seen (an app may report on actions of its own)
    Late,     // timed out or already terminal: drop and count
  };
  // A status from an app; a terminal one ends the action.
  Verdict on_status(const std::string& id, bool terminal);

  // Removes and returns the actions whose deadline is at or before `now`.
  std::vector<TrackedAction> expire(TimePoint now);
  // Removes and returns the cancel_actions in flight for `target` (it has ended).
  std::vector<TrackedAction> take_cancellations(const std::string& target);
  std::optional<TimePoint> next_deadline() const;
  size_t size() const { return active_.size(); }
  // Every action in flight (for persisting them).
  std::vector<TrackedAction> active() const;

 private:
  void finish(const std::string& id);

  std::unordered_map<std::string, TrackedAction> active_;
  std::set<std::pair<TimePoint, std::string>> deadlines_;
  size_t finished_cap_;
  std::deque<std::string> finished_order_;
  std::unordered_set<std::string> finished_;
};

}  // namespace edgelink

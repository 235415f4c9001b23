#pragma once
// Actions from the cloud: parse, route by name to the app that lists it, and the JSON
// shapes edgelink writes (the action line for the app, the status payload for the
// broker). spec/mqtt.md, spec/app-protocol.md.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "edgelink/actions/action_tracker.hpp"
#include "edgelink/config/config.hpp"

namespace edgelink {

// Larger action messages are refused as invalid: an app line is not a file transfer.
inline constexpr size_t kMaxActionBytes = 1 << 20;

struct CloudAction {
  std::string id;
  std::string name;
  std::string payload;  // passed through unchanged (a non-string payload as its JSON text)
};

struct InvalidAction {
  std::string id;   // empty when none could be read
  std::string why;  // for "Invalid action: <why>"
};

std::variant<CloudAction, InvalidAction> parse_action(std::string_view message);

// {"action_id":..,"name":..,"payload":..} plus '\n': the line an uplink app expects.
std::string action_line(const CloudAction& action);

// [{"sequence":..,"timestamp":..,"action_id":..,"state":..,"progress":..,"errors":[..]}]
std::string status_payload(uint32_t sequence, uint64_t timestamp_ms, std::string_view action_id,
                           std::string_view state, int progress, const std::vector<std::string>& errors);

// uplink's built-in action for cancelling another: its payload names the target,
// {"action_id": "842", "name": "update_firmware"}. It goes, unchanged, to the app that runs
// the target, which answers with statuses for the cancel_action's own id.
inline constexpr const char* kCancelActionName = "cancel_action";
// A cancel_action the app does not answer ends with its target, so it is tracked until
// just after the target's deadline: the target's end decides its outcome first.
inline constexpr std::chrono::milliseconds kCancelGrace{1000};

struct CancelRoute {
  std::string app;     // the app running the target
  std::string target;  // the target's action id
  std::chrono::steady_clock::time_point deadline;
};
// Where a cancel_action goes, or why it fails (the error its Failed status carries).
std::variant<CancelRoute, std::string> route_cancel(const CloudAction& cancel, const ActionTracker& tracker);

class ActionRouter {
 public:
  struct Route {
    std::string app;
    Millis timeout;
  };
  explicit ActionRouter(const Config& config);
  // nullptr when no app lists `name`.
  const Route* route(const std::string& name) const;

 private:
  std::unordered_map<std::string, Route> routes_;
};

}  // namespace edgelink

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

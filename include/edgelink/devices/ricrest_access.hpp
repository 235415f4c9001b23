#pragma once
// The RICREST side of the HTTP API's device requests (spec/http-api.md §5) as pure
// functions: what a copost becomes on the wire (§5.1), what the device's reply becomes
// for the client (§5.2), and what an obget names and asks for (§5.3, §5.4). DeviceHub
// carries them to the device; these are the kind-specific checks of §4.3 row 11.

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "edgelink/devices/device_link.hpp"
#include "edgelink/devices/device_subscriptions.hpp"
#include "edgelink/http/device_access.hpp"

namespace edgelink::devices {

// A copost as a device request.
struct CopostRequest {
  RequestKind kind = RequestKind::Url;
  std::string text;  // URL text (path and query), or COMMAND_FRAME JSON; no 0x00
};

// §5.1. `uri` starts with '/' and holds only bytes 0x21..0x7E, with a non-empty path;
// `data` (decoded) is empty (URL element: the path as given, query kept) or a JSON
// object for a path without '?' and without its own "cmdName" (COMMAND_FRAME
// {"cmdName":"<path>",<the object's members, in order>}). Otherwise BadRequest.
// Reserved: a first path segment "subscription" (any case) is MethodNotAllowed; a
// command frame whose path starts with "uf" or "df" (any case) is BadRequest.
std::variant<CopostRequest, http::Code> translate_copost(std::string_view uri, std::string_view data);

// §5.2: the client's reply for a request's outcome: the device's JSON with OK,
// NOT_FOUND (failUnknownAPI) or INTERNAL_SERVER_ERROR (other fail, or not JSON: the
// bytes as they came); REQUEST_TIMEOUT when the link gave up; DEVICEID_OFFLINE when the
// request was failed by the link going down or by a device restart (DeviceReset);
// TOO_MANY_REQUESTS / BAD_REQUEST when the link refused it.
http::Frame copost_reply(const RequestResult& result);

// What an obget uri names: /pub/<topic> or /rtstreams/<name>.
struct ObgetTarget {
  enum class Kind { Publish, RtStream };
  Kind kind = Kind::Publish;
  std::string name;
};
// NotFound for any other uri; BadRequest for /pub/ with a topic outside
// 1..64 of [A-Za-z0-9._-]. Whether the rtstream exists is the caller's business.
std::variant<ObgetTarget, http::Code> parse_obget_uri(std::string_view uri);

// 1..64 bytes of [A-Za-z0-9._-] (a StatePublisher topic as edgelink accepts it).
bool valid_topic(std::string_view topic);

// §5.3 obget data: "" (defaults) or a JSON object with any of rateHz (number,
// 0 < r <= 1000), minMs (integer >= 0) and trigger (string of printable ASCII, at most
// 64 bytes); anything else is BadRequest.
std::variant<SubscriptionAsk, http::Code> parse_publish_options(std::string_view data);

inline constexpr double kMaxPublishRateHz = 1000.0;

}  // namespace edgelink::devices

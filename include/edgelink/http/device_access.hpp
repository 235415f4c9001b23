#pragma once
// The one interface between the HTTP API and the devices behind it (spec/http-api.md
// §4–§6). HttpApi validates a request (rows 1–9 of §4.3), enforces the per-device
// limits (row 12), runs copost_timeout / obget_establish_timeout itself and writes
// RTIO JSON; an implementation of DeviceAccess (RICREST devices in devices/, RTIO
// devices in rtio/) says what a device is, makes the kind-specific checks (row 11) and
// carries the request to the device. HttpApi never knows which kind it talks to.
//
// Threading: everything runs on the daemon's io_context thread. Callbacks are never
// called from inside copost()/obget() themselves (an implementation that fails at
// once posts the failure), so the caller can store the returned handle first.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace edgelink::http {

// RTIO's codes (§4.6), numbered as RTIO's enum. On the wire they are names.
enum class Code : uint8_t {
  InternalServerError = 0,
  Ok = 1,
  DeviceIdOffline = 2,
  DeviceIdTimeout = 3,
  Continue = 4,
  Terminate = 5,
  NotFound = 6,
  BadRequest = 7,
  MethodNotAllowed = 8,
  TooManyRequests = 9,
  TooManyObservers = 10,
  RequestTimeout = 11,
};
// "INTERNAL_SERVER_ERROR", "OK", "DEVICEID_OFFLINE", ...
const char* to_string(Code code);

enum class Method { Copost, Obget };

enum class DeviceKind { None, Ricrest, Rtio };

// One copost reply or one obget frame. `data` is raw bytes; HttpApi base64-encodes it.
struct Frame {
  Code code = Code::Ok;
  std::string data;
};

// A request in progress. Destroying it cancels: a copost's reply is then never
// delivered; an observation is removed and the device told as its kind requires
// (§5.3, §5.4, §6.4). Destroying it after its last callback is harmless.
class Pending {
 public:
  virtual ~Pending() = default;
};

struct ObserveCallbacks {
  // The observation stands: HttpApi sends the response headers. At most once, before
  // any frame.
  std::function<void()> established;
  // CONTINUE frames come only after `established`. Any other code is final: nothing
  // follows. A final frame without `established` before it is an establish failure
  // (§4.5: then it is the only frame).
  std::function<void(Frame)> frame;
};

class DeviceAccess {
 public:
  virtual ~DeviceAccess() = default;
  // What `device` (the first path segment) names; None when nothing configured does.
  virtual DeviceKind kind(std::string_view device) const = 0;
  // Row 10 of §4.3: the device is configured and its link is up.
  virtual bool link_up(std::string_view device) const = 0;
  // Row 11 of §4.3: the kind-specific checks of the request, before any limit is
  // counted; Code::Ok when it may go to the device. `data` is decoded (raw bytes).
  virtual Code check(std::string_view device, Method method, std::string_view uri,
                     std::string_view data) const = 0;
  // `done` runs exactly once (unless the handle is destroyed first) with the reply.
  virtual std::unique_ptr<Pending> copost(std::string_view device, std::string_view uri, std::string_view data,
                                          std::function<void(Frame)> done) = 0;
  virtual std::unique_ptr<Pending> obget(std::string_view device, std::string_view uri, std::string_view data,
                                         ObserveCallbacks callbacks) = 0;
};

}  // namespace edgelink::http

#pragma once
// The local HTTP API (spec/http-api.md): one HTTP/1.1 listener on the daemon's
// io_context for /healthz, /status, /metrics and RTIO-style device requests
// (copost, obget) to whatever DeviceAccess reaches. RESTinio does the HTTP; it is
// confined to http_api.cpp, so this header knows nothing of it.
//
// Per request, in the order of §4.3: device id syntax (403), method (405, OPTIONS →
// 204), JWT (401), body size and JSON (400), then RTIO JSON codes: field checks, device
// known and up, the device kind's own checks, the per-device limits. copost_timeout and
// obget_establish_timeout run here, the same for every kind of device.
//
// obget streams: one NDJSON line per frame over chunked transfer. Each observer may
// have observer_queue_frames frames handed to the socket and not yet written; a frame
// for a full observer ends it with TERMINATE (counted "slow"), so a client that stops
// reading never holds up the device or anyone else. Every streaming connection keeps
// a read pending (RESTinio reads the next request while a response is going out), so a
// client that goes away is seen at once, and its observation is cancelled.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <asio.hpp>
#include <rapidjson/document.h>

#include "edgelink/config/config.hpp"
#include "edgelink/http/device_access.hpp"

namespace edgelink::http {

struct HttpHooks {
  std::function<std::string()> status_json;   // GET /status: the daemon's status document
  std::function<std::string()> metrics_text;  // GET /metrics: Prometheus text
  std::function<bool()> stopping;             // after SIGTERM /healthz answers 503
};

class HttpApi {
 public:
  HttpApi(asio::io_context& io, const HttpConfig& config, DeviceAccess& devices, HttpHooks hooks);
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  // Opens the listener (nothing when [http] is absent or disabled). Returns why it
  // cannot, e.g. "http: cannot listen on 127.0.0.1:17917: Address already in use".
  std::string start();
  // Closes the listener and ends every observer (DEVICEID_OFFLINE is not sent: the
  // daemon is going away; the responses end with their last chunk).
  void stop();
  // Limits, timeouts, CORS and the JWT key apply to new requests at once. A changed
  // bind or enabled flag needs a restart; returned as a message for the log.
  std::vector<std::string> reload(const HttpConfig& config);

  // Adds "http" to the status document (bind, jwt, request counts by kind and code,
  // per-device observers and results) and the HTTP statuses to counters.http_status.
  // Each device's own "coposts"/"observers" come from the device side.
  void write_status(rapidjson::Document& doc) const;

  bool listening() const;
  uint16_t port() const;  // the bound port (useful when bind asked for port 0)

  struct Impl;  // RESTinio's callbacks in http_api.cpp reach it; nothing else can

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace edgelink::http

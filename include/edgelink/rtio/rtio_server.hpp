#pragma once
// The RTIO device-access server (spec/http-api.md §6): devices running the RTIO device
// SDK connect over TCP, verify with their id and secret, keep a heartbeat, answer the
// HTTP API's coposts and obgets (it reaches them through DeviceAccess, like the
// RICREST devices), and post their own coposts, which edgelink publishes to MQTT.
//
// One session per TCP connection, all on the daemon's io_context:
//   accept ─▶ unverified (verify_timeout) ─▶ verified (heartbeat 1.5 × interval) ─▶ closed
// A verified session for an id that already has one replaces it (last connection
// wins): the old one's coposts end with DEVICEID_OFFLINE and its observers get a final
// DEVICEID_OFFLINE, exactly as when a device goes away.
//
// Notifies from the device are answered at once, whatever the HTTP side does with the
// frame (it never makes the device wait); a notify for an observer that is gone (client
// gone, ended as slow, never existed) is answered Terminate.
//
// Device coposts (§6.5): the CoReq's URI digest picks a [[rtio.device_services]] entry;
// its data is published to the entry's topic (QoS 1, through the outbox at
// action-status priority) and answered OK once the PUBACK came within
// service_timeout, InternalServerError when the broker is away (at once, nothing
// published) or the PUBACK is late, NotFound for an unknown digest.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <asio.hpp>
#include <rapidjson/document.h>

#include "edgelink/config/config.hpp"
#include "edgelink/http/device_access.hpp"
#include "edgelink/util/log.hpp"

namespace edgelink::rtio {

struct RtioCallbacks {
  std::function<bool()> broker_connected;
  // QoS 1 publish through the outbox; `acked` runs when its PUBACK came (maybe never).
  std::function<void(std::string topic, std::string payload, std::string device, std::function<void()> acked)>
      publish;
};

class Session;

class RtioServer : public http::DeviceAccess {
 public:
  RtioServer(asio::io_context& io, const Config& config, RtioCallbacks callbacks);
  ~RtioServer() override;
  RtioServer(const RtioServer&) = delete;
  RtioServer& operator=(const RtioServer&) = delete;

  // Opens the listener when [rtio] is present. Returns why it cannot.
  std::string start();
  // Closes the listener and every session.
  void stop();
  // Devices, secrets, services and timeouts apply at once (a device whose secret
  // changed or that was removed is disconnected); a changed bind needs a restart.
  std::vector<std::string> reload(const Config& config);

  // "rtio": {bind, listening, open_connections, connections{result}, device_copost{uri{status}}, ...}
  // and one entry per configured RTIO device in "devices".
  void write_status(rapidjson::Document& doc) const;

  uint16_t port() const;

  // http::DeviceAccess, for RTIO device ids.
  http::DeviceKind kind(std::string_view device) const override;
  bool link_up(std::string_view device) const override;
  http::Code check(std::string_view device, http::Method method, std::string_view uri,
                   std::string_view data) const override;
  std::unique_ptr<http::Pending> copost(std::string_view device, std::string_view uri, std::string_view data,
                                        std::function<void(http::Frame)> done) override;
  std::unique_ptr<http::Pending> obget(std::string_view device, std::string_view uri, std::string_view data,
                                       http::ObserveCallbacks callbacks) override;

  // Used by sessions.
  struct Shared;

 private:
  void accept();
  asio::io_context& io_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
};

}  // namespace edgelink::rtio

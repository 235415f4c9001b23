#pragma once
// Every configured MCU in the running daemon: for each [devices.X] a SerialTransport
// feeding a DeviceSessions (its DeviceLink and RtStreams) driven by one DeadlineTimer,
// and for each [rtstreams.Y] an RtStream on its device plus, as configured, an
// RtStreamBridge (the local TCP port) and the MQTT topics
//   .../rtstreams/Y/in   MQTT -> device (one message = one all-or-nothing write)
//   .../rtstreams/Y/out  device -> MQTT (raw bytes, coalesced, QoS 1 via the Outbox)
//
// When a session is open: a TCP client connecting or an MQTT message on /in opens it
// (ufStart); it is closed (ufEnd) once no client is connected and no MQTT input came
// for kQuietClose. The device only produces output on an open session, so an
// MQTT-only stream is woken by its /in topic.
//
// The HTTP API reaches the devices through http::DeviceAccess (http-api.md §5; see
// device_hub_access.cpp): coposts become device requests on the device's link; obget
// /pub/<topic> observers share the device's subscriptions (DeviceSubscriptions) with
// the configured [[devices.X.publish]] mappings, whose publishes become data points on
// their streams; obget /rtstreams/<name> observers use a bridge like its TCP client.
//
// What comes back to the daemon goes through two callbacks: `publish` (raw rtstream
// output; the daemon pushes it into the Outbox) and `point` (device log lines on the
// device's log_stream and up/down/reset news on the "device_status" stream, as data
// points for the StreamBatcher).
//
// Reload: a device is rebuilt (port closed and reopened, sessions reopened, bridges
// rebound) when its [devices.X] table or any [rtstreams.*] naming it changed; other
// devices are not touched. Simple and always correct; the price is a short break in a
// rebuilt device's streams (its TCP clients are disconnected).
//
// Lifetime: one io_context thread, like the rest of the daemon. Devices that are
// stopped (reload, stop()) are destroyed from a posted handler, after any completion
// of their timer that is already queued.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <asio.hpp>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "edgelink/apps/app_message.hpp"
#include "edgelink/config/config.hpp"
#include "edgelink/util/json_object.hpp"
#include "edgelink/http/device_access.hpp"
#include "edgelink/uploads/push_job.hpp"
#include "edgelink/util/log.hpp"

namespace edgelink::devices {

inline constexpr const char* kDeviceStatusStream = "device_status";

// An rtstream session with no TCP client and no MQTT input for this long is closed
// (ufEnd). Long enough that a console user reconnecting, or an MQTT REPL typing
// slowly, keeps the device's session (and its REPL state); short enough that an
// abandoned stream does not hold one of the device's 4 session slots for ever.
inline constexpr std::chrono::seconds kQuietClose{60};

// Device output for MQTT is gathered for this long after its first byte, or until
// kMqttChunkBytes, before it is published: a console prints in many small blocks and
// one message per block would multiply the broker traffic.
inline constexpr std::chrono::milliseconds kMqttCoalesce{5};
inline constexpr size_t kMqttChunkBytes = 4096;

// §6.1.3: how long an rtstream block waits for a complaint before it counts as
// accepted, for a device with `streams` rtstreams: the block's time on the wire (twice
// for OverAscii), once more for each other stream's block queued ahead of it, plus the
// device's turnaround. Throughput is one block per window.
std::chrono::milliseconds rtstream_block_window(const DeviceConfig& device, size_t streams);

// Device log text made fit for the daemon's log and a JSON string: terminal colour
// sequences removed, other control characters as spaces, invalid UTF-8 as U+FFFD.
std::string clean_log_text(std::string_view text);

struct DeviceHubCallbacks {
  // A QoS 1 publish of raw bytes (`stream` names the rtstream for counters and logs).
  std::function<void(std::string topic, std::string payload, const std::string& stream)> publish;
  // A data point (its head is the complete JSON object). False: refused (no room for
  // another stream); the hub counts it.
  std::function<bool(const DataPoint&)> point;
};

class DeviceHub : public http::DeviceAccess {
 public:
  // `quiet_close` is kQuietClose except in tests.
  DeviceHub(asio::io_context& io, const Config& config, DeviceHubCallbacks callbacks,
            std::chrono::milliseconds quiet_close = kQuietClose);
  ~DeviceHub() override;
  DeviceHub(const DeviceHub&) = delete;
  DeviceHub& operator=(const DeviceHub&) = delete;

  // Opens the bridges' listeners and the serial ports (a port that does not exist yet
  // is retried on a backoff; that is no error). Returns what stops the daemon from
  // running, e.g. "rtstream console: cannot listen on 127.0.0.1:7001: Address already
  // in use"; on errors nothing is left open.
  std::vector<std::string> start();
  // Closes every port, listener and session (ufEnd is not waited for).
  void stop();
  // Applies a new configuration (see the header comment). Returns errors (a bridge
  // port in use) for the log; the device concerned runs without that bridge.
  std::vector<std::string> reload(const Config& config);

  // True when `topic` is one of the rtstream /in topics (then it is handled here).
  bool on_mqtt_message(const std::string& topic, const std::string& payload);
  // The /in topics to subscribe (QoS 1).
  std::vector<std::string> subscriptions() const;

  // The status document's "devices" section: one member per device, keyed by name
  // (spec/http-api.md §3.1 plus the per-layer counters).
  void write_status(JsonObject& devices) const;
  // For the periodic stats line: "devices 1/2 up, 3 resets".
  std::string summary() const;

  size_t device_count() const { return devices_.size(); }

  // Pushes a stored upload to device `job.device` (xstream.md §7.3; device_hub_push.cpp).
  // nullptr when no such device is configured. Otherwise a handle: destroying it abandons
  // the push; else `done` runs once, never from inside this call (a device that is down
  // fails with "device NAME: offline").
  std::shared_ptr<void> push_file(const uploads::PushJob& job, uploads::PushCallbacks callbacks);
  size_t devices_up() const;

  // http::DeviceAccess for the configured [devices.NAME] (device_hub_access.cpp).
  // kind: Ricrest; link_up: while the port is open. check (row 11 of §4.3): copost as
  // translate_copost(); obget /pub/<topic> with parse_publish_options() data, or
  // /rtstreams/<name> of this device with empty data; otherwise NOT_FOUND/BAD_REQUEST.
  // Observers end with a final DEVICEID_OFFLINE when the port closes or the device is
  // stopped or rebuilt by a reload; a copost then gets DEVICEID_OFFLINE.
  http::DeviceKind kind(std::string_view device) const override;
  bool link_up(std::string_view device) const override;
  http::Code check(std::string_view device, http::Method method, std::string_view uri,
                   std::string_view data) const override;
  std::unique_ptr<http::Pending> copost(std::string_view device, std::string_view uri, std::string_view data,
                                        std::function<void(http::Frame)> done) override;
  std::unique_ptr<http::Pending> obget(std::string_view device, std::string_view uri, std::string_view data,
                                       http::ObserveCallbacks callbacks) override;

 private:
  struct Device;
  struct Stream;
  struct Observer;
  struct Mapping;
  struct CopostState;
  class CopostHandle;
  class ObserveHandle;

  std::shared_ptr<Device> build(const DeviceConfig& dc, const std::vector<RtStreamConfig>& streams);
  std::vector<std::string> open(Device& d);
  void shutdown(Device& d);
  void retire(std::shared_ptr<Device> d);
  void rearm(Device& d);
  void on_due(Device& d);
  void on_transport(Device& d, bool up, std::error_code ec);
  void on_log_line(Device& d, std::string_view line, bool truncated);
  void check_resets(Device& d);
  rapidjson::Value rtstream_status(const Stream& s, JsonObject::Allocator& a) const;
  void status_point(Device& d, const char* state, std::string_view detail);
  using PointWriter = rapidjson::Writer<rapidjson::StringBuffer>;
  void emit_point(const std::string& stream, const Device& d, uint64_t& dropped,
                  const std::function<void(PointWriter&)>& fields);
  void on_stream_data(Device& d, Stream& s, std::span<const uint8_t> bytes);
  void flush_mqtt(Stream& s);
  void touch(Device& d, Stream& s);
  std::vector<RtStreamConfig> streams_of(const Config& config, const std::string& device) const;

  // Subscriptions and publishes (device_hub_publish.cpp).
  void add_mappings(Device& d);
  void pump_subscriptions(Device& d);
  void take_subscription_events(Device& d);
  void on_publish(Device& d, std::span<const uint8_t> payload);
  void publish_point(Device& d, Mapping& m, std::span<const uint8_t> payload);
  Mapping* find_mapping(Device& d, uint64_t user);

  // Observers (device_hub_access.cpp).
  void finish_observer(Device& d, uint64_t id, http::Frame frame);
  void flush_notices(Device& d);
  void end_observer(Device& d, uint64_t id);
  void release_stream(Stream& s);
  void on_stream_opened(Device& d, Stream& s);
  void on_stream_open_failed(Device& d, Stream& s);
  void on_link_down(Device& d);
  void abandon_requests(Device& d);
  Stream* find_stream(const Device& d, std::string_view name) const;
  void end_push(Device& d, std::string_view why);

  asio::io_context& io_;
  Config config_;  // identity, topics and stream settings of the last start/reload
  DeviceHubCallbacks callbacks_;
  std::chrono::milliseconds quiet_close_;
  std::map<std::string, std::shared_ptr<Device>, std::less<>> devices_;
  std::map<std::string, uint32_t> sequences_;  // per point stream (log streams are shared)
  bool running_ = false;
  log::RateLimiter limiter_;
  log::RateLimiter log_lines_{20, std::chrono::seconds(10)};
  uint64_t next_id_ = 1;  // observers, mappings and coposts
  // Inside a call from HttpApi (copost, obget, a handle's destruction): its callbacks
  // must not run now, so what would call them is posted.
  int http_calls_ = 0;
  // Posted handlers and handles that may outlive the hub hold a weak copy.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace edgelink::devices

#pragma once
// DeviceHub's per-device and per-rtstream state, shared by device_hub.cpp (the work)
// and device_hub_status.cpp (status JSON and the stats line). Internal to src/devices.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "edgelink/devices/device_hub.hpp"
#include "edgelink/devices/device_push.hpp"
#include "edgelink/devices/device_sessions.hpp"
#include "edgelink/devices/device_subscriptions.hpp"
#include "edgelink/devices/rtstream.hpp"
#include "edgelink/devices/rtstream_bridge.hpp"
#include "edgelink/devices/serial_transport.hpp"
#include "edgelink/util/deadline_timer.hpp"

namespace edgelink::devices {

struct DeviceHub::Stream {
  RtStreamConfig config;
  RtStream* rt = nullptr;  // owned by the device's DeviceSessions
  std::unique_ptr<RtStreamBridge> bridge;
  std::string bridge_error;  // why the listener is not open
  std::string in_topic, out_topic;
  bool client = false;
  size_t observers = 0;  // HTTP obget observers using the session, like a TCP client
  // Someone wants the session open; otherwise it closes after the quiet period.
  bool in_use() const { return client || observers > 0; }
  std::chrono::steady_clock::time_point last_input{};  // the last MQTT input, or when the last TCP client left
  std::string out_buf;     // device output waiting to be published on out_topic
  std::optional<std::chrono::steady_clock::time_point> flush_at;
  uint64_t mqtt_in_messages = 0, mqtt_in_bytes = 0;
  uint64_t mqtt_in_dropped = 0, mqtt_in_dropped_bytes = 0;  // the stream's queue was full
  uint64_t mqtt_out_messages = 0, mqtt_out_bytes = 0;
  uint64_t quiet_closes = 0;
  uint64_t data_lost = 0;  // RtStreamEvent::DataLost reports
};

// An obget observer (http-api.md §5.3, §5.4).
struct DeviceHub::Observer {
  http::ObserveCallbacks callbacks;
  Stream* stream = nullptr;  // /rtstreams/<name>; nullptr: /pub/<topic> (a DeviceSubscriptions user)
  bool established = false;  // `established` was called
  bool ended = false;        // its final frame is queued; its use is released
};

// A [[devices.NAME.publish]] mapping: a persistent user of the device's subscriptions.
struct DeviceHub::Mapping {
  DevicePublishConfig config;
  uint64_t user = 0;
  bool subscribed = false;
  uint64_t points = 0, dropped = 0;  // data points made, and refused by the batcher
  uint64_t failures = 0;             // subscription updates that failed for it
  std::string last_error;
};

// A copost in flight, shared by its handle and the link's completion.
struct DeviceHub::CopostState {
  std::function<void(http::Frame)> done;
  uint8_t msg_num = 0;
  bool settled = false;  // the link no longer holds it (done ran or is posted)
  bool gone = false;     // the handle was destroyed: done must not run
};

struct DeviceHub::Device {
  std::weak_ptr<Device> self;  // for posted handlers
  DeviceConfig config;
  std::vector<RtStreamConfig> stream_configs;  // as configured, to see reload changes
  std::unique_ptr<DeviceTransport> transport;  // SerialTransport or BleTransport
  std::unique_ptr<DeviceSessions> sessions;
  std::unique_ptr<DeadlineTimer> timer;
  std::vector<std::unique_ptr<Stream>> streams;
  bool stopped = false;
  bool up = false;
  bool ticking = false;  // inside on_due (transport handlers then leave the rearm to it)
  uint64_t ups = 0, downs = 0, resets = 0;
  uint64_t log_lines = 0, log_points_dropped = 0, status_points_dropped = 0;
  uint64_t seen_reports = 0, seen_collisions = 0;  // DeviceSessions counters already reported
  std::string last_down;                           // why the port last closed
  std::optional<uint64_t> since_ms;                // Unix ms of the last up/down change; empty: none yet
  uint64_t seen_device_resets = 0;                 // DeviceSessionsCounters::device_resets acted on

  // HTTP device access and publishes.
  DeviceSubscriptions subs;
  std::vector<Mapping> mappings;
  std::map<uint64_t, Observer> observers;
  // For observers, in order: nullopt = `established`, a frame = the final one.
  std::deque<std::pair<uint64_t, std::optional<http::Frame>>> notices;
  bool flush_posted = false;
  std::map<uint64_t, std::shared_ptr<CopostState>> coposts;
  uint64_t requests_ok = 0, requests_fail = 0, requests_timeout = 0, requests_offline = 0;

  // An x-stream upload being pushed to the device (device_hub_push.cpp).
  std::unique_ptr<DevicePush> push;
  uint64_t push_id = 0;
  uint64_t pushes_ok = 0, pushes_failed = 0, push_restarts = 0;
};

}  // namespace edgelink::devices

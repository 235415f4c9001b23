#pragma once
// DeviceHub's per-device and per-rtstream state, shared by device_hub.cpp (the work)
// and device_hub_status.cpp (status JSON and the stats line). Internal to src/devices.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "edgelink/devices/device_hub.hpp"
#include "edgelink/devices/device_sessions.hpp"
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
  std::chrono::steady_clock::time_point last_input{};  // the last MQTT input, or when the last TCP client left
  std::string out_buf;     // device output waiting to be published on out_topic
  std::optional<std::chrono::steady_clock::time_point> flush_at;
  uint64_t mqtt_in_messages = 0, mqtt_in_bytes = 0;
  uint64_t mqtt_in_dropped = 0, mqtt_in_dropped_bytes = 0;  // the stream's queue was full
  uint64_t mqtt_out_messages = 0, mqtt_out_bytes = 0;
  uint64_t quiet_closes = 0;
  uint64_t data_lost = 0;  // RtStreamEvent::DataLost reports
};

struct DeviceHub::Device {
  DeviceConfig config;
  std::vector<RtStreamConfig> stream_configs;  // as configured, to see reload changes
  std::unique_ptr<SerialTransport> transport;
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
};

}  // namespace edgelink::devices

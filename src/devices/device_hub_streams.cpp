// DeviceHub's rtstream data paths: device output to the TCP client, HTTP observers and
// MQTT (coalesced), and MQTT input to the device.

#include <utility>

#include "device_hub_state.hpp"

namespace edgelink::devices {
namespace {
constexpr char kLog[] = "devices";
using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
}  // namespace

void DeviceHub::on_stream_data(Device& d, Stream& s, std::span<const uint8_t> bytes) {
  if (d.stopped) return;
  if (s.bridge) s.bridge->from_device(bytes);
  if (s.observers > 0) {
    // One CONTINUE frame per device block (http-api.md §5.4). Ids first: a frame
    // callback may end its observer, or another.
    std::vector<uint64_t> ids;
    for (const auto& [id, o] : d.observers)
      if (o.stream == &s && o.established && !o.ended) ids.push_back(id);
    const std::string frame(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    for (uint64_t id : ids) {
      const auto it = d.observers.find(id);
      if (it == d.observers.end() || it->second.ended) continue;
      auto cb = it->second.callbacks.frame;  // a copy: the call may destroy the observer
      if (cb) cb({http::Code::Continue, frame});
    }
  }
  if (!s.config.mqtt) return;
  s.out_buf.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  while (s.out_buf.size() >= kMqttChunkBytes) {
    std::string chunk = s.out_buf.substr(0, kMqttChunkBytes);
    s.out_buf.erase(0, kMqttChunkBytes);
    ++s.mqtt_out_messages;
    s.mqtt_out_bytes += chunk.size();
    if (callbacks_.publish) callbacks_.publish(s.out_topic, std::move(chunk), s.config.name);
  }
  if (s.out_buf.empty())
    s.flush_at.reset();
  else if (!s.flush_at)
    s.flush_at = Clock::now() + kMqttCoalesce;
}

void DeviceHub::flush_mqtt(Stream& s) {
  s.flush_at.reset();
  if (s.out_buf.empty()) return;
  ++s.mqtt_out_messages;
  s.mqtt_out_bytes += s.out_buf.size();
  if (callbacks_.publish) callbacks_.publish(s.out_topic, std::exchange(s.out_buf, {}), s.config.name);
  s.out_buf.clear();
}

bool DeviceHub::on_mqtt_message(const std::string& topic, const std::string& payload) {
  for (auto& [name, d] : devices_) {
    for (auto& s : d->streams) {
      if (!s->config.mqtt || topic != s->in_topic) continue;
      if (d->stopped || !s->rt) return true;
      const TimePoint now = Clock::now();
      ++s->mqtt_in_messages;
      s->mqtt_in_bytes += payload.size();
      s->last_input = now;
      s->rt->open(now);
      const auto* bytes = reinterpret_cast<const uint8_t*>(payload.data());
      // All or nothing: half a message would be worse than none. MQTT cannot be
      // paused, so a full queue drops the message.
      if (!payload.empty() && !s->rt->write_all({bytes, payload.size()})) {
        ++s->mqtt_in_dropped;
        s->mqtt_in_dropped_bytes += payload.size();
        log::limited(limiter_, "mqtt-in-drop:" + s->config.name, LogLevel::Warn, kLog, name, "/", s->config.name,
                     ": input queue full (", s->rt->queued_bytes(), " bytes); dropped an MQTT message of ",
                     payload.size(), " bytes");
      }
      rearm(*d);
      return true;
    }
  }
  return false;
}

std::vector<std::string> DeviceHub::subscriptions() const {
  std::vector<std::string> out;
  for (const auto& [name, d] : devices_)
    for (const auto& s : d->streams)
      if (s->config.mqtt) out.push_back(s->in_topic);
  return out;
}

}  // namespace edgelink::devices

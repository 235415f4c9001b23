// DeviceHub's side of the device's StatePublisher subscriptions (ricrest.md §7.3–§7.4):
// sending what DeviceSubscriptions decides, telling its users, and routing publish
// frames to HTTP observers (CONTINUE frames) and to the [[devices.X.publish]] mappings
// (data points on their streams).

#include <rapidjson/document.h>

#include <utility>

#include "device_hub_state.hpp"
#include "edgelink/apps/app_message.hpp"

namespace edgelink::devices {
namespace {
constexpr char kLog[] = "devices";
using Clock = std::chrono::steady_clock;

std::string base64(std::span<const uint8_t> in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
    for (int shift : {18, 12, 6, 0}) out.push_back(kAlphabet[(v >> shift) & 0x3F]);
  }
  if (const size_t rest = in.size() - i; rest > 0) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (rest == 2 ? uint32_t{in[i + 1]} << 8 : 0);
    out.push_back(kAlphabet[(v >> 18) & 0x3F]);
    out.push_back(kAlphabet[(v >> 12) & 0x3F]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 0x3F] : '=');
    out.push_back('=');
  }
  return out;
}

// Why a mapping's subscription failed, for the log and the status.
std::string failure_text(http::Code code, const std::string& data) {
  switch (code) {
    case http::Code::NotFound: return "the device does not publish this topic";
    case http::Code::DeviceIdTimeout: return "no reply from the device";
    case http::Code::TooManyRequests: return "too many requests outstanding on the link";
    default: return "the device refused: " + clean_log_text(data);
  }
}

}  // namespace

void DeviceHub::add_mappings(Device& d) {
  for (const DevicePublishConfig& pc : d.config.publish) {
    Mapping m;
    m.config = pc;
    m.user = next_id_++;
    d.subs.add(m.user, pc.topic, SubscriptionAsk{pc.rate_hz, pc.min_ms, pc.trigger}, true);
    d.mappings.push_back(std::move(m));
  }
}

DeviceHub::Mapping* DeviceHub::find_mapping(Device& d, uint64_t user) {
  for (Mapping& m : d.mappings)
    if (m.user == user) return &m;
  return nullptr;
}

// Sends the updates the table wants, while the device can take them: the port open and
// no restart under way (an update sent to the old boot would be lost with it).
void DeviceHub::pump_subscriptions(Device& d) {
  if (!d.stopped && d.up && d.sessions->transport_up() && !d.sessions->device_restarting()) {
    while (auto u = d.subs.next_update()) {
      log::debug(kLog, d.config.name, ": subscription ", u->json);
      Device* raw = &d;
      const uint64_t token = u->token;
      const auto submitted = d.sessions->link().request(
          RequestKind::CommandFrame, u->json, true,
          [this, raw, token](const RequestResult& r) {
            raw->subs.on_update_result(token, r);
            pump_subscriptions(*raw);
          },
          Clock::now());
      if (!submitted) d.subs.on_update_refused(token, submitted.error);
    }
    if (!d.ticking) rearm(d);
  }
  take_subscription_events(d);
}

void DeviceHub::take_subscription_events(Device& d) {
  for (SubscriptionEvent& e : d.subs.take_events()) {
    if (Mapping* m = find_mapping(d, e.user)) {
      if (e.kind == SubscriptionEvent::Kind::Established) {
        m->subscribed = true;
        log::info(kLog, d.config.name, ": publish topic ", m->config.topic, " subscribed at ", m->config.rate_hz,
                  " Hz; its publishes go to stream ", m->config.stream);
      } else {
        m->subscribed = false;
        ++m->failures;
        m->last_error = failure_text(e.code, e.data);
        log::limited(limiter_, "publish:" + d.config.name + "/" + m->config.topic, LogLevel::Warn, kLog,
                     d.config.name, ": publish topic ", m->config.topic, " not subscribed: ", m->last_error,
                     " (asked again after the next reset or reconnect)");
      }
      continue;
    }
    switch (e.kind) {
      case SubscriptionEvent::Kind::Established: d.notices.emplace_back(e.user, std::nullopt); break;
      case SubscriptionEvent::Kind::Ended: finish_observer(d, e.user, {e.code, std::move(e.data)}); break;
      case SubscriptionEvent::Kind::Failed: break;  // persistent users are mappings
    }
  }
  flush_notices(d);
}

void DeviceHub::on_publish(Device& d, std::span<const uint8_t> payload) {
  if (d.stopped || payload.empty()) return;
  const std::vector<uint64_t> users = d.subs.route(payload);
  std::string frame;
  for (uint64_t user : users) {
    if (Mapping* m = find_mapping(d, user)) {
      publish_point(d, *m, payload);
      continue;
    }
    const auto it = d.observers.find(user);
    if (it == d.observers.end() || !it->second.established || it->second.ended) continue;
    if (frame.empty()) frame.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
    auto cb = it->second.callbacks.frame;  // a copy: the call may destroy the observer
    if (cb) cb({http::Code::Continue, frame});
  }
}

// One data point per publish: {"sequence","timestamp","device","topic","payload"} with the
// JSON object as it came (compacted), or "payload_b64" for a binary (devbin) payload.
void DeviceHub::publish_point(Device& d, Mapping& m, std::span<const uint8_t> payload) {
  const std::string_view text(reinterpret_cast<const char*>(payload.data()), payload.size());
  rapidjson::Document doc;
  // is_valid_json first: it bounds the nesting, and writing the DOM back out recurses.
  const bool json = text.front() == '{' && is_valid_json(text) &&
                    !doc.Parse(text.data(), text.size())  /* not full precision: see ricrest_access.cpp */.HasParseError() &&
                    doc.IsObject();
  const uint64_t dropped = m.dropped;
  emit_point(m.config.stream, d, m.dropped, [&](PointWriter& w) {
    w.Key("topic");
    w.String(m.config.topic);
    if (json) {
      w.Key("payload");
      doc.Accept(w);
    } else {
      w.Key("payload_b64");
      w.String(base64(payload));
    }
  });
  if (m.dropped == dropped) {
    ++m.points;
  } else {
    log::limited(limiter_, "publish-drop:" + d.config.name + "/" + m.config.topic, LogLevel::Warn, kLog,
                 d.config.name, ": publish topic ", m.config.topic, ": stream ", m.config.stream,
                 " refused the point (", m.dropped, " dropped so far)");
  }
}

}  // namespace edgelink::devices

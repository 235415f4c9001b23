// DeviceHub's view of itself: the `devices` section of the status document (edgelink
// status, /status and /metrics) and the periodic stats line.

#include <algorithm>

#include "device_hub_state.hpp"

namespace edgelink::devices {

size_t DeviceHub::devices_up() const {
  return static_cast<size_t>(std::count_if(devices_.begin(), devices_.end(),
                                           [](const auto& e) { return e.second->up && !e.second->stopped; }));
}

std::string DeviceHub::summary() const {
  uint64_t resets = 0, clients = 0, lost = 0, mappings = 0, points = 0, dropped = 0;
  for (const auto& [name, d] : devices_) {
    resets += d->resets;
    for (const auto& s : d->streams) {
      clients += s->client;
      lost += s->data_lost + s->mqtt_in_dropped;
    }
    for (const Mapping& m : d->mappings) {
      ++mappings;
      points += m.points;
      dropped += m.dropped;
    }
  }
  std::string out = log::concat("devices ", devices_up(), "/", devices_.size(), " up (", resets,
                                " resets), rtstream clients ", clients, ", rtstream losses ", lost);
  if (mappings > 0) out += log::concat(", publish points ", points, " (", dropped, " dropped)");
  return out;
}

void DeviceHub::write_status(JsonObject& devices) const {
  for (const auto& entry : devices_) {
    const std::string& name = entry.first;  // clang 14 cannot capture a structured binding
    const Device& d = *entry.second;
    devices.object(name, [&](JsonObject& o) {
      // The keys of spec/http-api.md §3.1. A RICREST link is up while its port is open.
      // coposts and observers: the HTTP API's requests in flight and open obget streams.
      o.str("kind", "ricrest")
          .str("transport", to_string(d.config.transport))
          .str("link", d.up && !d.stopped ? "up" : "down")
          .ms("since", d.since_ms)
          .u64("resets", d.resets)
          .u64("coposts", d.coposts.size())
          .u64("observers", static_cast<uint64_t>(std::count_if(
              d.observers.begin(), d.observers.end(), [](const auto& e) { return !e.second.ended; })));
      o.str("name", name);
      if (d.config.transport == edgelink::DeviceTransport::Serial) o.str("path", d.config.path).u64("baud", d.config.baud);
      o.str("framing", to_string(d.config.framing))
          .u64("max_frame_bytes", d.config.max_frame_bytes)
          .str("state", d.stopped ? "stopped" : d.up ? "up" : "down");
      const std::string te = d.transport->error_text();
      o.str("last_error", d.up ? std::string() : !te.empty() ? te : d.last_down)
          .u64("ups", d.ups)
          .u64("downs", d.downs)
          .u64("log_lines", d.log_lines)
          .u64("log_points_dropped", d.log_points_dropped)
          .u64("status_points_dropped", d.status_points_dropped);

      d.transport->write_status(o);

      // DeviceLink's counters; "link" itself is the up/down of the spec.
      o.object("link_counters", [&](JsonObject& j) {
        const DeviceLinkCounters& lc = d.sessions->link().counters();
        j.u64("requests", lc.requests)
            .u64("replies", lc.replies)
            .u64("retries", lc.retries)
            .u64("timeouts", lc.timeouts)
            .u64("stale_replies", lc.stale_replies)
            .u64("bad_frames", lc.bad_frames)
            .u64("oversize_frames", lc.oversize_frames)
            .u64("bad_messages", lc.bad_messages)
            .u64("send_refused", lc.send_refused)
            .u64("notices", lc.notices)
            .u64("file_blocks", lc.file_blocks)
            .u64("publishes", lc.publishes)
            .u64("reports", lc.reports)
            .u64("input_at_deadline", lc.input_at_deadline);
      });

      o.object("sessions", [&](JsonObject& j) {
        const DeviceSessionsCounters& sc = d.sessions->counters();
        j.u64("device_resets", sc.device_resets)
            .u64("reset_reports", sc.reset_reports)
            .u64("reset_reconnects", sc.reset_reconnects)
            .u64("id_collisions", sc.id_collisions)
            .boolean("restarting", d.sessions->device_restarting())
            .u64("notices_unrouted", sc.notices_unrouted)
            .u64("blocks_dropped", sc.blocks_dropped);
      });

      // HTTP device access (http-api.md §5): what is in flight now and how requests ended.
      o.object("http", [&](JsonObject& j) {
        j.u64("coposts", d.coposts.size())
            .u64("observers", static_cast<uint64_t>(std::count_if(d.observers.begin(), d.observers.end(),
                                                                   [](const auto& e) { return !e.second.ended; })))
            .u64("requests_ok", d.requests_ok)
            .u64("requests_fail", d.requests_fail)
            .u64("requests_timeout", d.requests_timeout)
            .u64("requests_offline", d.requests_offline);
      });
      // x-stream uploads pushed to the device (xstream.md §7.3).
      o.object("pushes", [&](JsonObject& j) {
        j.boolean("running", d.push != nullptr)
            .u64("ok", d.pushes_ok)
            .u64("failed", d.pushes_failed)
            .u64("restarts", d.push_restarts + (d.push ? d.push->restarts_used() : 0));
      });
      o.object("subscriptions", [&](JsonObject& j) {
        const DeviceSubscriptionsCounters& pc = d.subs.counters();
        j.u64("users", d.subs.user_count())
            .u64("updates", pc.updates)
            .u64("updates_ok", pc.updates_ok)
            .u64("not_found", pc.not_found)
            .u64("failed", pc.failed)
            .u64("timeouts", pc.timeouts)
            .u64("publishes_routed", pc.routed)
            .u64("publishes_unrouted", pc.unrouted);
      });
      rapidjson::Value publish(rapidjson::kArrayType);
      for (const Mapping& m : d.mappings) {
        rapidjson::Value v(rapidjson::kObjectType);
        JsonObject j(v, o.allocator());
        j.str("topic", m.config.topic)
            .str("stream", m.config.stream)
            .boolean("subscribed", m.subscribed)
            .u64("points", m.points)
            .u64("dropped", m.dropped)
            .u64("failures", m.failures)
            .str("last_error", m.last_error);
        publish.PushBack(std::move(v), o.allocator());
      }
      o.add("publish", std::move(publish));

      rapidjson::Value rtstreams(rapidjson::kArrayType);
      for (const auto& sp : d.streams)
        if (sp->rt) rtstreams.PushBack(rtstream_status(*sp, o.allocator()), o.allocator());
      o.add("rtstreams", std::move(rtstreams));
    });
  }
}

rapidjson::Value DeviceHub::rtstream_status(const Stream& s, JsonObject::Allocator& a) const {
  const RtStream& rt = *s.rt;
  const RtStreamCounters& c = rt.counters();
  rapidjson::Value out(rapidjson::kObjectType);
  JsonObject o(out, a);
  o.str("name", s.config.name)
      .str("endpoint", rt.endpoint())
      .str("file_name", rt.file_name())
      .str("state", rt.state_name())
      .u64("stream_id", rt.stream_id())
      .str("last_error", rt.last_error())
      .u64("queued_bytes", rt.queued_bytes())
      .u64("block_window_ms", static_cast<uint64_t>(rt.block_window().count()))
      .u64("turnaround_ms", static_cast<uint64_t>(rt.turnaround().count()))
      .u64("bytes_written", c.bytes_written)
      .u64("bytes_out", c.bytes_out)
      .u64("bytes_in", c.bytes_in)
      .u64("blocks_out", c.blocks_out)
      .u64("blocks_in", c.blocks_in)
      .u64("resends", c.resends)
      .u64("busy", c.busy)
      .u64("pos_mismatch", c.pos_mismatch)
      .u64("late_notices", c.late_notices)
      .u64("session_not_found", c.session_not_found)
      .u64("hard_failures", c.hard_failures)
      .u64("opens", c.opens)
      .u64("reopens", c.reopens)
      .u64("open_failures", c.open_failures)
      .u64("keepalives", c.keepalives)
      .u64("device_resets", c.device_resets)
      .u64("rx_gaps", c.rx_gaps)
      .u64("write_refused", c.write_refused)
      .u64("dropped_closed", c.dropped_closed)
      .u64("dropped_late", c.dropped_late)
      .u64("window_grown", c.window_grown)
      .u64("data_lost", s.data_lost)
      .u64("quiet_closes", s.quiet_closes)
      .u64("observers", s.observers);
  if (s.bridge) {
    o.object("tcp", [&](JsonObject& t) {
      const RtStreamBridgeStats& bs = s.bridge->stats();
      t.str("bind", s.config.bind)
          .u64("port", s.config.port)
          .boolean("listening", s.bridge->is_open())
          .str("error", s.bridge_error)
          .boolean("client", s.bridge->has_client())
          .boolean("paused", s.bridge->input_paused())
          .u64("clients_accepted", bs.clients_accepted)
          .u64("clients_rejected", bs.clients_rejected)
          .u64("accept_errors", bs.accept_errors)
          .u64("bytes_in", bs.bytes_in)
          .u64("bytes_out", bs.bytes_out)
          .u64("pauses", bs.pauses)
          .u64("slow_client_disconnects", bs.slow_client_disconnects)
          .u64("dropped", bs.dropped())
          .object("dropped_by", [&](JsonObject& r) {
            r.u64("no_client", bs.dropped_no_client)
                .u64("slow_client", bs.dropped_slow_client)
                .u64("disconnect", bs.dropped_disconnect)
                .u64("input", bs.dropped_input);
          });
    });
  } else {
    o.null("tcp");
  }
  if (s.config.mqtt) {
    o.object("mqtt", [&](JsonObject& m) {
      m.str("in_topic", s.in_topic)
          .str("out_topic", s.out_topic)
          .u64("messages_in", s.mqtt_in_messages)
          .u64("bytes_in", s.mqtt_in_bytes)
          .u64("dropped_in", s.mqtt_in_dropped)
          .u64("dropped_in_bytes", s.mqtt_in_dropped_bytes)
          .u64("messages_out", s.mqtt_out_messages)
          .u64("bytes_out", s.mqtt_out_bytes);
    });
  } else {
    o.null("mqtt");
  }
  return out;
}

}  // namespace edgelink::devices

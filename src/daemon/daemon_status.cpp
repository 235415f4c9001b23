// The status document behind `edgelink status`, GET /status and GET /metrics
// (spec/http-api.md §3.1). Sections are built from the components' own state; the
// `counters` section is then summed from those sections, so a drop shows the same
// number in its detail and in its total.
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <initializer_list>

#include "edgelink/daemon/daemon.hpp"
#include "edgelink/util/json_object.hpp"
#include "edgelink/util/wall_clock.hpp"

namespace edgelink {
namespace {

// The number at `path` below `v`; 0 when a step is missing or not an object (a
// rtstream without MQTT has "mqtt": null).
uint64_t at(const rapidjson::Value& v, std::initializer_list<const char*> path) {
  const rapidjson::Value* p = &v;
  for (const char* key : path) {
    if (!p->IsObject()) return 0;
    auto it = p->FindMember(key);
    if (it == p->MemberEnd()) return 0;
    p = &it->value;
  }
  return p->IsUint64() ? p->GetUint64() : 0;
}

// at(member, path) summed over the members of an object section (apps, devices).
uint64_t sum(const rapidjson::Value& section, std::initializer_list<const char*> path) {
  uint64_t n = 0;
  if (section.IsObject())
    for (const auto& m : section.GetObject()) n += at(m.value, path);
  return n;
}

// ... over every rtstream of every device.
uint64_t sum_rtstreams(const rapidjson::Value& devices, std::initializer_list<const char*> path) {
  uint64_t n = 0;
  if (!devices.IsObject()) return n;
  for (const auto& d : devices.GetObject()) {
    auto rs = d.value.FindMember("rtstreams");
    if (rs == d.value.MemberEnd() || !rs->value.IsArray()) continue;
    for (const auto& s : rs->value.GetArray()) n += at(s, path);
  }
  return n;
}

// Every drop and error counter of the daemon, by reason, from the sections already in
// `doc`. "dropped" counts items (batches, points, lines, frames, messages); byte counts
// are kept apart in "dropped_bytes" so that a sum over reasons means something.
void write_counters(JsonObject& top, const OutboxCounters& oc) {
  const rapidjson::Value& doc = top.value();
  const rapidjson::Value& apps = doc["apps"];
  const rapidjson::Value& devices = doc["devices"];
  const rapidjson::Value& actions = doc["actions"];
  top.object("counters", [&](JsonObject& c) {
    c.object("dropped", [&](JsonObject& d) {
      // The Outbox's reasons, always present so that the metric series exist from the start.
      std::map<std::string, uint64_t> outbox{{"spool_full", 0}, {"corrupt", 0}, {"unreadable", 0}};
      for (const auto& [key, n] : oc.dropped) outbox[key.second] += n;
      for (const auto& [reason, n] : outbox) d.u64(reason, n);
      d.u64("app_error_reports", sum(apps, {"reports_dropped"}))
          .u64("late_action_statuses", at(actions, {"late_statuses"}))
          .u64("device_log_points", sum(devices, {"log_points_dropped"}))
          .u64("device_status_points", sum(devices, {"status_points_dropped"}))
          .u64("device_oversize_frames", sum(devices, {"link_counters", "oversize_frames"}))
          .u64("device_stale_replies", sum(devices, {"link_counters", "stale_replies"}))
          .u64("device_unrouted_blocks", sum(devices, {"sessions", "blocks_dropped"}))
          .u64("device_unrouted_notices", sum(devices, {"sessions", "notices_unrouted"}))
          .u64("rtstream_mqtt_in", sum_rtstreams(devices, {"mqtt", "dropped_in"}))
          .u64("rtstream_data_lost", sum_rtstreams(devices, {"data_lost"}));
    });
    c.object("dropped_bytes", [&](JsonObject& d) {
      d.u64("serial_discarded", sum(devices, {"serial", "bytes_discarded"}))
          .u64("rtstream_write_refused", sum_rtstreams(devices, {"write_refused"}))
          .u64("rtstream_closed", sum_rtstreams(devices, {"dropped_closed"}))
          .u64("rtstream_late", sum_rtstreams(devices, {"dropped_late"}))
          .u64("rtstream_mqtt_in", sum_rtstreams(devices, {"mqtt", "dropped_in_bytes"}))
          .u64("bridge_no_client", sum_rtstreams(devices, {"tcp", "dropped_by", "no_client"}))
          .u64("bridge_slow_client", sum_rtstreams(devices, {"tcp", "dropped_by", "slow_client"}))
          .u64("bridge_disconnect", sum_rtstreams(devices, {"tcp", "dropped_by", "disconnect"}))
          .u64("bridge_input", sum_rtstreams(devices, {"tcp", "dropped_by", "input"}));
    });
    // Lines rejected, by code, over all apps (every code, zeros included).
    c.object("rejected_lines", [&](JsonObject& r) {
      for (size_t i = 0; i < std::tuple_size_v<decltype(AppCounters::errors)>; ++i) {
        const char* code = to_string(static_cast<AppErrorCode>(i));
        r.u64(code, sum(apps, {"errors", code}));
      }
    });
    c.object("http_status", [](JsonObject&) {});  // the HTTP API fills it (a status hook)
    c.object("errors", [&](JsonObject& e) {
      const rapidjson::Value& broker = doc["broker"];
      const rapidjson::Value& spool = doc["spool"];
      e.u64("broker_connect_failures", at(broker, {"connect_failures"}))
          .u64("broker_publish_failures", at(broker, {"publish_failures"}))
          .u64("spool_write_failures", at(spool, {"write_failures"}))
          .u64("spool_io_errors", at(spool, {"io_errors"}))
          .u64("spool_corrupt_records", at(spool, {"corrupt_records"}))
          .u64("spool_truncated_records", at(spool, {"truncated_records"}))
          .u64("spool_quarantined_segments", at(spool, {"quarantined_segments"}))
          .u64("app_bind_failures", sum(apps, {"bind_failures"}))
          .u64("actions_invalid", at(actions, {"invalid"}))
          .u64("actions_unknown_name", at(actions, {"unknown_name"}))
          .u64("actions_cancels_refused", at(actions, {"cancels_refused"}))
          .u64("device_open_failures", sum(devices, {"serial", "open_failures"}))
          .u64("device_bad_frames", sum(devices, {"link_counters", "bad_frames"}))
          .u64("device_bad_messages", sum(devices, {"link_counters", "bad_messages"}))
          .u64("device_request_timeouts", sum(devices, {"link_counters", "timeouts"}))
          .u64("device_send_refused", sum(devices, {"link_counters", "send_refused"}))
          .u64("rtstream_open_failures", sum_rtstreams(devices, {"open_failures"}))
          .u64("rtstream_hard_failures", sum_rtstreams(devices, {"hard_failures"}))
          .u64("bridge_accept_errors", sum_rtstreams(devices, {"tcp", "accept_errors"}));
    });
  });
}

}  // namespace

rapidjson::Document Daemon::status_document() const {
  rapidjson::Document doc(rapidjson::kObjectType);
  JsonObject top(doc, doc.GetAllocator());
  top.str("version", EDGELINK_VERSION)
      .u64("started", unix_ms(started_))
      .u64("uptime_s", static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                                 std::chrono::steady_clock::now() - started_steady_)
                                                 .count()))
      .str("project_id", config_.project_id)
      .str("device_id", config_.device_id)
      .str("state", stopping_ ? "stopping" : "running");

  top.object("broker", [&](JsonObject& b) {
    const LinkCounters& lc = link_.counters();
    b.str("state", link_.status_state())
        .str("host", link_.host())
        .u64("port", link_.port())
        .ms("since", link_.since_ms())
        .u64("reconnects", lc.connects > 0 ? lc.connects - 1 : 0)  // connections after the first
        .u64("inflight", outbox_.in_flight())                       // QoS 1 publishes awaiting PUBACK
        .str("uri", link_.server_uri())
        .str("server", link_.server_name())  // in use, or tried next: one of servers
        .u64("server_index", link_.server_index())
        .u64("server_changes", lc.server_changes)
        .str("last_error", link_.last_error())
        .u64("connects", lc.connects)
        .u64("connect_failures", lc.connect_failures)
        .u64("disconnects", lc.disconnects)
        .u64("published", lc.published)
        .u64("acked", lc.acked)
        .u64("publish_failures", lc.publish_failures)
        .u64("messages_in", lc.messages_in);
    rapidjson::Value servers(rapidjson::kArrayType);
    for (const std::string& name : link_.server_names())
      servers.PushBack(rapidjson::Value(name.c_str(), static_cast<rapidjson::SizeType>(name.size()), doc.GetAllocator()),
                       doc.GetAllocator());
    b.add("servers", std::move(servers));
  });

  const OutboxCounters& oc = outbox_.counters();
  top.object("outbox", [&](JsonObject& o) {
    o.u64("queued", outbox_.queued())
        .u64("in_flight", outbox_.in_flight())
        .u64("bytes", outbox_.bytes())
        .u64("max_bytes", outbox_.max_bytes())
        .u64("pushed", oc.pushed)
        .u64("acked", oc.acked)
        .u64("resent", oc.requeued)
        .u64("memory_only", outbox_.memory_only())
        .u64("pinned_bytes", outbox_.pinned_bytes())
        .boolean("accepting", outbox_.accepting());
  });

  top.object("spool", [&](JsonObject& s) {
    const DiskSpoolStats* ss = spool_ ? &spool_->stats() : nullptr;
    s.u64("bytes", ss ? ss->bytes : 0)
        .u64("max_bytes", config_.spool.max_bytes)
        .u64("dropped", oc.dropped_total())
        .str("dir", spool_ ? spool_->options().dir : "")
        .boolean("open", ss && ss->open)
        .u64("segments", ss ? ss->segments : 0)
        .u64("records", ss ? ss->records : 0)
        .u64("backlog", outbox_.backlog())
        .u64("writing", outbox_.writing())
        .u64("spooled", oc.spooled)
        .u64("restored", oc.restored)
        .u64("loads", oc.loads)
        .u64("replayed", oc.replayed)
        .num("replay_rate", replay_rate_)
        .u64("write_failures", oc.write_failures)
        .u64("evicted_payloads", oc.evicted_payloads);
    rapidjson::Value drops(rapidjson::kArrayType);
    for (const auto& [key, n] : oc.dropped) {
      rapidjson::Value drop(rapidjson::kObjectType);
      JsonObject(drop, s.allocator()).str("stream", key.first).str("reason", key.second).u64("count", n);
      drops.PushBack(drop, s.allocator());
    }
    s.add("drops", std::move(drops))
        .u64("corrupt_records", ss ? ss->counters.corrupt_records : 0)
        .u64("truncated_records", ss ? ss->counters.truncated_records : 0)
        .u64("quarantined_segments", ss ? ss->counters.quarantined_segments : 0)
        .u64("io_errors", ss ? ss->io_errors : 0)
        .str("last_error", ss ? ss->last_error : "")
        .object("fsync", [&](JsonObject& f) {
          f.str("policy", to_string(config_.spool.fsync))
              .u64("count", ss ? ss->fsyncs : 0)
              .num("last_ms", ss ? ss->fsync_last_ms : 0.0)
              .num("max_ms", ss ? ss->fsync_max_ms : 0.0)
              .num("mean_ms", ss && ss->fsyncs ? ss->fsync_total_ms / static_cast<double>(ss->fsyncs) : 0.0);
        });
  });

  top.object("apps", [&](JsonObject& apps) {
    for (const auto& app : app_server_.apps()) {
      apps.object(app.name, [&](JsonObject& o) {
        const AppCounters& c = app.counters;
        uint64_t rejected = 0;
        for (uint64_t n : c.errors) rejected += n;
        o.u64("port", app.port)
            .boolean("connected", app.connected)
            .ms("since", app.since_ms)
            .u64("lines", c.lines)
            .u64("rejected", rejected)
            .u64("actions_pending", app.pending_actions)
            .str("name", app.name)
            .str("bind", app.bind)
            // "bind_failed": the port could not be bound (yet); retried, last_error says why.
            .str("listener", app.listening ? "listening" : "bind_failed")
            .str("last_error", app.bind_error)
            .u64("pending_actions", app.pending_actions)
            .u64("connects", c.connects)
            .u64("evictions", c.evictions)
            .u64("points", c.points)
            .u64("statuses", c.statuses)
            .u64("actions_delivered", c.actions_delivered)
            .u64("pauses", c.pauses)
            .u64("reports_dropped", c.reports_dropped)
            .u64("bind_failures", c.bind_failures)
            .u64("upload_port", app.upload_port)
            .str("upload_last_error", app.upload_bind_error)
            .u64("upload_connections", app.upload_connections)
            .u64("upload_connects", c.upload_connects)
            .u64("upload_refused", c.upload_refused)
            .object("errors", [&](JsonObject& e) {
              for (size_t i = 0; i < c.errors.size(); ++i)
                if (c.errors[i]) e.u64(to_string(static_cast<AppErrorCode>(i)), c.errors[i]);
            });
      });
    }
  });

  top.object("streams", [&](JsonObject& streams) {
    const auto pending = outbox_.pending_by_stream();
    for (const auto& s : batcher_.streams()) {
      auto acked = oc.acked_by_stream.find(s.name);
      auto queued = pending.find(s.name);
      const Outbox::StreamPending p = queued == pending.end() ? Outbox::StreamPending{} : queued->second;
      streams.object(s.name, [&](JsonObject& o) {
        // batches_published: acknowledged by the broker (PUBACK), this run; `batches`
        // counts those handed to the outbox. pending_points: taken from apps and not
        // acknowledged yet (the open batch plus the outbox's, see pending_by_stream()).
        o.u64("points", s.counters.points)
            .u64("batches_published", acked == oc.acked_by_stream.end() ? 0 : acked->second)
            .u64("pending_points", s.open_points + p.points)
            .str("name", s.name)
            .boolean("configured", s.configured)
            .u64("batches", s.counters.batches)
            .u64("bytes", s.counters.bytes)
            .u64("open_points", s.open_points)
            .u64("pending_batches", p.batches);
      });
    }
  });

  top.object("devices", [&](JsonObject& devices) { devices_.write_status(devices); });

  top.object("actions", [&](JsonObject& o) {
    const ActionCounters& ac = action_counters_;
    o.u64("in_flight", tracker_.size())
        .u64("received", ac.received)
        .u64("duplicates", ac.duplicates)
        .u64("unknown_name", ac.unknown_name)
        .u64("invalid", ac.invalid)
        .u64("statuses", ac.statuses)
        .u64("completed", ac.completed)
        .u64("failed", ac.failed)
        .u64("timed_out", ac.timed_out)
        .u64("late_statuses", ac.late_statuses)
        .u64("restored", ac.restored)
        .u64("cancels_refused", ac.cancels_refused)
        .object("by_app", [&](JsonObject& by_app) {
          // Every configured app, so its series exist before its first action.
          std::map<std::string, ActionStateCounts> counts = actions_by_app_;
          for (const auto& [name, app] : config_.tcpapps) counts.try_emplace(name);
          for (const auto& entry : counts) {
            const ActionStateCounts& n = entry.second;  // clang 14 cannot capture a structured binding
            by_app.object(entry.first, [&](JsonObject& s) {
              s.u64("received", n.received)
                  .u64("completed", n.completed)
                  .u64("failed", n.failed)
                  .u64("timed_out", n.timed_out);
            });
          }
        });
  });

  write_counters(top, oc);

  for (const auto& hook : status_hooks_) hook(doc);
  return doc;
}

std::string Daemon::status_json(bool pretty) const {
  const rapidjson::Document doc = status_document();
  rapidjson::StringBuffer buf;
  if (pretty) {
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buf);
    doc.Accept(w);
  } else {
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    doc.Accept(w);
  }
  std::string out(buf.GetString(), buf.GetSize());
  out += '\n';
  return out;
}

}  // namespace edgelink

// The status document behind `edgelink status` (and later the HTTP API).
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include "edgelink/daemon/daemon.hpp"

namespace edgelink {

std::string Daemon::status_json() const {
  rapidjson::StringBuffer buf;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buf);
  auto key_u64 = [&w](const char* k, uint64_t v) {
    w.Key(k);
    w.Uint64(v);
  };
  auto key_str = [&w](const char* k, const std::string& v) {
    w.Key(k);
    w.String(v.data(), v.size());
  };
  w.StartObject();
  key_str("version", EDGELINK_VERSION);
  key_str("project_id", config_.project_id);
  key_str("device_id", config_.device_id);
  key_u64("uptime_s", std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - started_)
                          .count());
  key_str("state", stopping_ ? "stopping" : "running");

  w.Key("broker");
  w.StartObject();
  const LinkCounters& lc = link_.counters();
  key_str("uri", link_.server_uri());
  key_str("state", link_.state_name());
  key_str("last_error", link_.last_error());
  key_u64("connects", lc.connects);
  key_u64("connect_failures", lc.connect_failures);
  key_u64("disconnects", lc.disconnects);
  key_u64("published", lc.published);
  key_u64("acked", lc.acked);
  key_u64("publish_failures", lc.publish_failures);
  key_u64("messages_in", lc.messages_in);
  w.EndObject();

  w.Key("outbox");
  w.StartObject();
  key_u64("queued", outbox_.queued());
  key_u64("in_flight", outbox_.in_flight());
  key_u64("bytes", outbox_.bytes());
  key_u64("max_bytes", outbox_.max_bytes());
  key_u64("pushed", outbox_.counters().pushed);
  key_u64("acked", outbox_.counters().acked);
  key_u64("resent", outbox_.counters().requeued);
  key_u64("memory_only", outbox_.memory_only());
  key_u64("pinned_bytes", outbox_.pinned_bytes());
  w.Key("accepting");
  w.Bool(outbox_.accepting());
  w.EndObject();

  w.Key("spool");
  w.StartObject();
  const OutboxCounters& oc = outbox_.counters();
  const DiskSpoolStats* ss = spool_ ? &spool_->stats() : nullptr;
  key_str("dir", spool_ ? spool_->options().dir : "");
  w.Key("open");
  w.Bool(ss && ss->open);
  key_u64("bytes", ss ? ss->bytes : 0);
  key_u64("max_bytes", config_.spool.max_bytes);
  key_u64("segments", ss ? ss->segments : 0);
  key_u64("records", ss ? ss->records : 0);
  key_u64("backlog", outbox_.backlog());
  key_u64("writing", outbox_.writing());
  key_u64("spooled", oc.spooled);
  key_u64("restored", oc.restored);
  key_u64("loads", oc.loads);
  key_u64("replayed", oc.replayed);
  w.Key("replay_rate");
  w.Double(replay_rate_);
  key_u64("write_failures", oc.write_failures);
  key_u64("evicted_payloads", oc.evicted_payloads);
  key_u64("dropped", oc.dropped_total());
  w.Key("drops");
  w.StartArray();
  for (const auto& [key, n] : oc.dropped) {
    w.StartObject();
    key_str("stream", key.first);
    key_str("reason", key.second);
    key_u64("count", n);
    w.EndObject();
  }
  w.EndArray();
  key_u64("corrupt_records", ss ? ss->counters.corrupt_records : 0);
  key_u64("truncated_records", ss ? ss->counters.truncated_records : 0);
  key_u64("quarantined_segments", ss ? ss->counters.quarantined_segments : 0);
  key_u64("io_errors", ss ? ss->io_errors : 0);
  key_str("last_error", ss ? ss->last_error : "");
  w.Key("fsync");
  w.StartObject();
  key_str("policy", to_string(config_.spool.fsync));
  key_u64("count", ss ? ss->fsyncs : 0);
  w.Key("last_ms");
  w.Double(ss ? ss->fsync_last_ms : 0.0);
  w.Key("max_ms");
  w.Double(ss ? ss->fsync_max_ms : 0.0);
  w.Key("mean_ms");
  w.Double(ss && ss->fsyncs ? ss->fsync_total_ms / static_cast<double>(ss->fsyncs) : 0.0);
  w.EndObject();
  w.EndObject();

  w.Key("apps");
  w.StartArray();
  for (const auto& app : app_server_.apps()) {
    w.StartObject();
    key_str("name", app.name);
    key_str("bind", app.bind);
    key_u64("port", app.port);
    // "bind_failed": the port could not be bound (yet); retried, last_error says why.
    key_str("listener", app.listening ? "listening" : "bind_failed");
    key_str("last_error", app.bind_error);
    w.Key("connected");
    w.Bool(app.connected);
    key_u64("pending_actions", app.pending_actions);
    const AppCounters& c = app.counters;
    key_u64("connects", c.connects);
    key_u64("evictions", c.evictions);
    key_u64("lines", c.lines);
    key_u64("points", c.points);
    key_u64("statuses", c.statuses);
    key_u64("actions_delivered", c.actions_delivered);
    key_u64("pauses", c.pauses);
    key_u64("reports_dropped", c.reports_dropped);
    key_u64("bind_failures", c.bind_failures);
    w.Key("errors");
    w.StartObject();
    for (size_t i = 0; i < c.errors.size(); ++i)
      if (c.errors[i]) key_u64(to_string(static_cast<AppErrorCode>(i)), c.errors[i]);
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();

  w.Key("streams");
  w.StartArray();
  for (const auto& s : batcher_.streams()) {
    w.StartObject();
    key_str("name", s.name);
    w.Key("configured");
    w.Bool(s.configured);
    key_u64("points", s.counters.points);
    key_u64("batches", s.counters.batches);
    key_u64("bytes", s.counters.bytes);
    key_u64("open_points", s.open_points);
    w.EndObject();
  }
  w.EndArray();

  w.Key("devices");
  devices_.write_status(w);

  w.Key("actions");
  w.StartObject();
  const ActionCounters& ac = action_counters_;
  key_u64("in_flight", tracker_.size());
  key_u64("received", ac.received);
  key_u64("duplicates", ac.duplicates);
  key_u64("unknown_name", ac.unknown_name);
  key_u64("invalid", ac.invalid);
  key_u64("statuses", ac.statuses);
  key_u64("completed", ac.completed);
  key_u64("failed", ac.failed);
  key_u64("timed_out", ac.timed_out);
  key_u64("late_statuses", ac.late_statuses);
  key_u64("restored", ac.restored);
  key_u64("cancels_refused", ac.cancels_refused);
  w.EndObject();

  w.EndObject();
  std::string out(buf.GetString(), buf.GetSize());
  out += '\n';
  return out;
}

}  // namespace edgelink

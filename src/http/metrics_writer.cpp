// The status document as Prometheus text (see metrics_writer.hpp). One table row per
// family; each row names where its samples are in the document with a path whose
// wildcard steps become labels:
//   "apps/{app}/lines"          every member of "apps"; label app = the member's name
//   ".../rtstreams/[rtstream:name]/busy"
//                               every element of an array; label rtstream = its "name"
// A leaf that is a number is the value, a boolean 0/1; a string leaf needs `equals`
// (1 when equal, else 0) or `value_label` (the string is a label, the value 1). Null
// and missing leaves give no sample.
#include "edgelink/http/metrics_writer.hpp"

#include <charconv>
#include <cmath>
#include <string_view>
#include <utility>
#include <vector>

namespace edgelink::http {
namespace {

enum class Type { Counter, Gauge };

struct Source {
  std::string path;
  const char* label = nullptr;        // a constant label, "where=memory"
  const char* equals = nullptr;       // string leaf: 1 when equal to this, else 0
  const char* sibling = nullptr;      // a label of this name from the string of this name beside the leaf
  const char* value_label = nullptr;  // string leaf: becomes this label, the value is 1
  // Non-zero: the value divided by this (1000: milliseconds -> seconds). A division, not
  // a product with 0.001, which is inexact: 1732180000123 / 1000 prints 1732180000.123.
  double divisor = 0;
};

struct Family {
  const char* name;
  Type type;
  const char* help;
  std::vector<Source> sources;
};

constexpr Type C = Type::Counter;
constexpr Type G = Type::Gauge;

std::vector<Family> make_families() {
  const std::string app = "apps/{app}/", stream = "streams/{stream}/", dev = "devices/{device}/";
  const std::string serial = dev + "serial/", link = dev + "link_counters/", sess = dev + "sessions/";
  const std::string rt = dev + "rtstreams/[rtstream:name]/";
  return {
      // spec/http-api.md §3.2, in its order.
      {"edgelink_build_info", G, "The running edgelink's version (always 1).", {{.path = "version", .value_label = "version"}}},
      {"edgelink_uptime_seconds", G, "Seconds since the daemon started.", {{"uptime_s"}}},
      {"edgelink_broker_connected", G, "1 while the MQTT broker is connected.", {{.path = "broker/state", .equals = "connected"}}},
      {"edgelink_broker_reconnects_total", C, "Broker connections after the first.", {{"broker/reconnects"}}},
      {"edgelink_app_connected", G, "1 while the app has a client connected.", {{app + "connected"}}},
      {"edgelink_app_lines_total", C, "Lines received from the app.", {{app + "lines"}}},
      {"edgelink_app_rejected_lines_total", C, "Lines of the app rejected, by error code.", {{app + "errors/{code}"}}},
      {"edgelink_stream_points_total", C, "Data points taken into the stream.", {{stream + "points"}}},
      {"edgelink_stream_batches_published_total", C, "Batches of the stream acknowledged by the broker.", {{stream + "batches_published"}}},
      {"edgelink_outbox_bytes", G, "Bytes waiting for the broker, in memory and in the disk spool.",
       {{"outbox/bytes", "where=memory"}, {"spool/bytes", "where=disk"}}},
      {"edgelink_dropped_total", C, "Items lost, by reason.", {{"counters/dropped/{reason}"}}},
      {"edgelink_actions_total", C, "Actions by app and state (received, completed, failed, timed_out).", {{"actions/by_app/{app}/{state}"}}},
      {"edgelink_device_link_up", G, "1 while the device's link is up.", {{.path = dev + "link", .equals = "up", .sibling = "kind"}}},
      {"edgelink_device_resets_total", C, "Device restarts seen.", {{dev + "resets"}}},
      {"edgelink_device_requests_total", C, "HTTP device requests by result.", {{"http/devices/{device}/results/{result}"}}},
      {"edgelink_http_requests_total", C, "HTTP requests by kind and code.", {{"http/requests_by/{kind}/{code}"}}},
      {"edgelink_http_observers", G, "Open obget streams of the device.", {{"http/devices/{device}/observers"}}},
      {"edgelink_http_observers_ended_total", C, "obget streams ended, by reason.", {{"http/devices/{device}/observers_ended/{reason}"}}},
      {"edgelink_rtio_connections_total", C, "RTIO device connections by how they ended or were verified.", {{"rtio/connections/{result}"}}},
      {"edgelink_rtio_device_copost_total", C, "Coposts from RTIO devices by uri and status.", {{"rtio/device_copost/{uri}/{status}"}}},
      // spec/xstream.md §11.
      {"edgelink_uploads_active", G, "Uploads of the app in their negotiation or raw phase.", {{"uploads/apps/{app}/active"}}},
      {"edgelink_uploads_total", C, "Uploads by app, route and final (or refusal) status.",
       {{"uploads/apps/{app}/routes/{route}/status/{status}"}}},
      {"edgelink_upload_bytes_total", C, "Upload bytes written to the spool.", {{"uploads/apps/{app}/routes/{route}/bytes"}}},
      {"edgelink_xstream_spool_bytes", G, "Bytes of unfinished uploads in the spool (and granted to raw phases).",
       {{"uploads/spool_bytes"}}},
      {"edgelink_xstream_keys", G, "Upload keys by state.", {{"uploads/keys_by_state/{state}"}}},
      // spec/datastreams.md §9.
      {"edgelink_datastreams_open", G, "Data streams open, by direction.", {{"datastreams/open/{direction}"}}},
      {"edgelink_datastream_bytes_total", C, "Data stream content bytes, by direction.", {{"datastreams/bytes/{direction}"}}},
      {"edgelink_datastream_chunks_total", C, "Data stream chunks, by direction.", {{"datastreams/chunks/{direction}"}}},
      {"edgelink_datastream_ends_total", C, "Data streams ended, by direction and reason (normal for \"\").",
       {{"datastreams/ends/{direction}/{reason}"}}},
      {"edgelink_datastream_errors_total", C, "Data stream control lines refused, by reason.", {{"datastreams/errors/{reason}"}}},
      {"edgelink_datastream_inbound_dropped_total", C, "Inbound data stream messages dropped, by why.",
       {{"datastreams/inbound_dropped/{why}"}}},

      // The rest of the document.
      {"edgelink_start_time_seconds", G, "Unix time the daemon started.", {{.path = "started", .divisor = 1000}}},
      {"edgelink_dropped_bytes_total", C, "Bytes lost, by reason.", {{"counters/dropped_bytes/{reason}"}}},
      {"edgelink_errors_total", C, "Errors the daemon handled, by kind.", {{"counters/errors/{reason}"}}},
      {"edgelink_rejected_lines_total", C, "Lines rejected over all apps, by error code.", {{"counters/rejected_lines/{code}"}}},
      {"edgelink_http_responses_total", C, "HTTP responses by status.", {{"counters/http_status/{code}"}}},

      {"edgelink_broker_state_change_timestamp_seconds", G, "Unix time of the broker link's last state change.",
       {{.path = "broker/since", .divisor = 1000}}},
      {"edgelink_broker_inflight", G, "QoS 1 publishes awaiting their PUBACK.", {{"broker/inflight"}}},
      {"edgelink_broker_connects_total", C, "Broker connections made.", {{"broker/connects"}}},
      {"edgelink_broker_connect_failures_total", C, "Broker connection attempts that failed.", {{"broker/connect_failures"}}},
      {"edgelink_broker_disconnects_total", C, "Broker connections lost.", {{"broker/disconnects"}}},
      {"edgelink_broker_published_total", C, "Publishes handed to the MQTT client, resends included.", {{"broker/published"}}},
      {"edgelink_broker_acked_total", C, "PUBACKs received.", {{"broker/acked"}}},
      {"edgelink_broker_publish_failures_total", C, "Publishes refused or failed on a healthy connection.", {{"broker/publish_failures"}}},
      {"edgelink_broker_messages_in_total", C, "Messages received from the broker.", {{"broker/messages_in"}}},
      {"edgelink_broker_server_changes_total", C, "Moves to another of the configured broker servers.", {{"broker/server_changes"}}},
      {"edgelink_broker_server_index", G, "Index in [broker] servers of the server in use (or tried next).", {{"broker/server_index"}}},

      {"edgelink_outbox_max_bytes", G, "Budget of the outbox in memory and of the disk spool.",
       {{"outbox/max_bytes", "where=memory"}, {"spool/max_bytes", "where=disk"}}},
      {"edgelink_outbox_queued", G, "Publishes waiting to be sent.", {{"outbox/queued"}}},
      {"edgelink_outbox_memory_only", G, "Publishes held only in memory.", {{"outbox/memory_only"}}},
      {"edgelink_outbox_pinned_bytes", G, "Bytes in memory that are not on disk yet.", {{"outbox/pinned_bytes"}}},
      {"edgelink_outbox_accepting", G, "0 while apps are held back (back-pressure).", {{"outbox/accepting"}}},
      {"edgelink_outbox_pushed_total", C, "Publishes entered into the outbox.", {{"outbox/pushed"}}},
      {"edgelink_outbox_acked_total", C, "Publishes acknowledged and removed from the outbox.", {{"outbox/acked"}}},
      {"edgelink_outbox_resent_total", C, "Publishes sent again after a reconnect or a failure.", {{"outbox/resent"}}},

      {"edgelink_spool_open", G, "1 while the disk spool is open.", {{"spool/open"}}},
      {"edgelink_spool_segments", G, "Segment files of the spool.", {{"spool/segments"}}},
      {"edgelink_spool_records", G, "Records in the spool.", {{"spool/records"}}},
      {"edgelink_spool_backlog", G, "Spooled batches waiting to be replayed.", {{"spool/backlog"}}},
      {"edgelink_spool_writing", G, "Batches being written to the spool.", {{"spool/writing"}}},
      {"edgelink_spool_replay_rate", G, "Spooled batches acknowledged per second, over the last 5 s.", {{"spool/replay_rate"}}},
      {"edgelink_spool_spooled_total", C, "Batches written to the spool.", {{"spool/spooled"}}},
      {"edgelink_spool_restored_total", C, "Batches found in the spool at start.", {{"spool/restored"}}},
      {"edgelink_spool_loads_total", C, "Batches read back from the spool.", {{"spool/loads"}}},
      {"edgelink_spool_replayed_total", C, "Spooled batches acknowledged by the broker.", {{"spool/replayed"}}},
      {"edgelink_spool_write_failures_total", C, "Spool writes refused or failed.", {{"spool/write_failures"}}},
      {"edgelink_spool_evicted_payloads_total", C, "Payloads dropped from memory because they are on disk.", {{"spool/evicted_payloads"}}},
      {"edgelink_spool_dropped_total", C, "Spooled batches lost, by stream and reason.", {{"spool/drops/[stream,reason]/count"}}},
      {"edgelink_spool_corrupt_records_total", C, "Damaged spool records skipped.", {{"spool/corrupt_records"}}},
      {"edgelink_spool_truncated_records_total", C, "Truncated spool records skipped.", {{"spool/truncated_records"}}},
      {"edgelink_spool_quarantined_segments_total", C, "Spool segments set aside.", {{"spool/quarantined_segments"}}},
      {"edgelink_spool_io_errors_total", C, "Failed spool reads, writes and syncs.", {{"spool/io_errors"}}},
      {"edgelink_spool_fsyncs_total", C, "fsync calls of the spool.", {{"spool/fsync/count"}}},
      {"edgelink_spool_fsync_seconds", G, "Duration of spool fsyncs: last, mean and max.",
       {{.path = "spool/fsync/last_ms", .label = "stat=last", .divisor = 1000},
        {.path = "spool/fsync/mean_ms", .label = "stat=mean", .divisor = 1000},
        {.path = "spool/fsync/max_ms", .label = "stat=max", .divisor = 1000}}},

      {"edgelink_app_listening", G, "1 while the app's port is bound.", {{.path = app + "listener", .equals = "listening"}}},
      {"edgelink_app_state_change_timestamp_seconds", G, "Unix time the app's client last connected or disconnected.",
       {{.path = app + "since", .divisor = 1000}}},
      {"edgelink_app_points_total", C, "Data points taken from the app.", {{app + "points"}}},
      {"edgelink_app_statuses_total", C, "Action statuses received from the app.", {{app + "statuses"}}},
      {"edgelink_app_connects_total", C, "Clients accepted on the app's port.", {{app + "connects"}}},
      {"edgelink_app_evictions_total", C, "Clients replaced by a newer one.", {{app + "evictions"}}},
      {"edgelink_app_pauses_total", C, "Times reading from the app stopped for back-pressure.", {{app + "pauses"}}},
      {"edgelink_app_actions_delivered_total", C, "Actions written to the app.", {{app + "actions_delivered"}}},
      {"edgelink_app_actions_pending", G, "Actions waiting for the app.", {{app + "actions_pending"}}},
      {"edgelink_app_error_reports_dropped_total", C, "Error reports not sent: the app does not read.", {{app + "reports_dropped"}}},
      {"edgelink_app_bind_failures_total", C, "Failed attempts to bind the app's port.", {{app + "bind_failures"}}},

      {"edgelink_stream_batches_total", C, "Batches of the stream handed to the outbox.", {{stream + "batches"}}},
      {"edgelink_stream_bytes_total", C, "Payload bytes of the stream's batches.", {{stream + "bytes"}}},
      {"edgelink_stream_pending_points", G, "Points of the stream not acknowledged yet.", {{stream + "pending_points"}}},
      {"edgelink_stream_pending_batches", G, "Batches of the stream in the outbox.", {{stream + "pending_batches"}}},

      {"edgelink_actions_in_flight", G, "Actions waiting for a terminal status.", {{"actions/in_flight"}}},
      {"edgelink_actions_restored_total", C, "Actions in flight at the last stop, tracked again.", {{"actions/restored"}}},
      {"edgelink_action_messages_total", C, "Action messages from the cloud by outcome.",
       {{"actions/received", "result=accepted"},
        {"actions/duplicates", "result=duplicate"},
        {"actions/unknown_name", "result=unknown_name"},
        {"actions/invalid", "result=invalid"},
        {"actions/cancels_refused", "result=cancel_refused"}}},
      {"edgelink_action_statuses_total", C, "Action statuses from apps: forwarded, or dropped as late.",
       {{"actions/statuses", "result=forwarded"}, {"actions/late_statuses", "result=late"}}},

      {"edgelink_device_state_change_timestamp_seconds", G, "Unix time of the device link's last up/down change.",
       {{.path = dev + "since", .divisor = 1000}}},
      {"edgelink_device_coposts_in_flight", G, "Device requests of the HTTP API in flight.", {{dev + "coposts"}}},
      {"edgelink_device_link_ups_total", C, "Times the device's link came up.", {{dev + "ups"}}},
      {"edgelink_device_link_downs_total", C, "Times the device's link went down.", {{dev + "downs"}}},
      {"edgelink_device_log_lines_total", C, "Log lines from the device.", {{dev + "log_lines"}}},
      {"edgelink_device_serial_bytes_total", C, "Bytes over the serial port.",
       {{serial + "bytes_in", "direction=in"}, {serial + "bytes_out", "direction=out"}}},
      {"edgelink_device_serial_opens_total", C, "Serial port opens.", {{serial + "opens"}}},
      {"edgelink_device_serial_open_failures_total", C, "Serial port opens that failed.", {{serial + "open_failures"}}},
      {"edgelink_device_serial_disconnects_total", C, "Serial port losses.", {{serial + "disconnects"}}},
      {"edgelink_device_serial_writes_refused_total", C, "Writes refused: port down or queue full.", {{serial + "writes_refused"}}},
      {"edgelink_device_serial_queued_bytes", G, "Bytes queued for the serial port.", {{serial + "queued_bytes"}}},
      {"edgelink_device_link_requests_total", C, "RICREST requests sent.", {{link + "requests"}}},
      {"edgelink_device_link_replies_total", C, "RICREST replies matched to a request.", {{link + "replies"}}},
      {"edgelink_device_link_retries_total", C, "RICREST requests sent again.", {{link + "retries"}}},
      {"edgelink_device_link_timeouts_total", C, "RICREST requests failed after their last attempt.", {{link + "timeouts"}}},
      {"edgelink_device_link_bad_frames_total", C, "Frames with a bad CRC.", {{link + "bad_frames"}}},
      {"edgelink_device_link_bad_messages_total", C, "Frames that are not a valid message.", {{link + "bad_messages"}}},
      {"edgelink_device_link_send_refused_total", C, "Frames the transport refused.", {{link + "send_refused"}}},
      {"edgelink_device_link_messages_total", C, "Device-originated messages by kind.",
       {{link + "notices", "kind=notice"},
        {link + "file_blocks", "kind=file_block"},
        {link + "publishes", "kind=publish"},
        {link + "reports", "kind=report"}}},
      {"edgelink_device_session_resets_total", C, "Device resets seen by its sessions.", {{sess + "device_resets"}}},
      {"edgelink_device_reset_reports_total", C, "Shutdown reports from the device.", {{sess + "reset_reports"}}},
      {"edgelink_device_id_collisions_total", C, "Stream IDs handed out again by the device.", {{sess + "id_collisions"}}},
      {"edgelink_device_restarting", G, "1 while waiting for the device to restart.", {{sess + "restarting"}}},

      {"edgelink_rtstream_open", G, "1 while the rtstream session is open.", {{.path = rt + "state", .equals = "open"}}},
      {"edgelink_rtstream_queued_bytes", G, "Bytes waiting to go to the device.", {{rt + "queued_bytes"}}},
      {"edgelink_rtstream_block_window_seconds", G, "Time a block waits for a complaint.", {{.path = rt + "block_window_ms", .divisor = 1000}}},
      {"edgelink_rtstream_bytes_total", C, "Bytes to the device (confirmed) and from it.",
       {{rt + "bytes_out", "direction=out"}, {rt + "bytes_in", "direction=in"}}},
      {"edgelink_rtstream_bytes_written_total", C, "Bytes accepted for the device.", {{rt + "bytes_written"}}},
      {"edgelink_rtstream_blocks_total", C, "File blocks to and from the device.",
       {{rt + "blocks_out", "direction=out"}, {rt + "blocks_in", "direction=in"}}},
      {"edgelink_rtstream_complaints_total", C, "Device complaints about blocks, by kind.",
       {{rt + "busy", "kind=busy"},
        {rt + "pos_mismatch", "kind=pos_mismatch"},
        {rt + "session_not_found", "kind=session_not_found"},
        {rt + "hard_failures", "kind=hard_failure"},
        {rt + "late_notices", "kind=late"}}},
      {"edgelink_rtstream_resends_total", C, "Blocks sent again.", {{rt + "resends"}}},
      {"edgelink_rtstream_opens_total", C, "Sessions opened, by kind.",
       {{rt + "opens", "kind=open"}, {rt + "reopens", "kind=reopen"}, {rt + "keepalives", "kind=keepalive"}}},
      {"edgelink_rtstream_open_failures_total", C, "Session opens that failed.", {{rt + "open_failures"}}},
      {"edgelink_rtstream_device_resets_total", C, "Device resets seen by the session.", {{rt + "device_resets"}}},
      {"edgelink_rtstream_rx_gaps_total", C, "Device blocks not following the previous one.", {{rt + "rx_gaps"}}},
      {"edgelink_rtstream_window_grown_total", C, "Late complaints that lengthened the block window.", {{rt + "window_grown"}}},
      {"edgelink_rtstream_data_lost_total", C, "Data-lost reports of the device.", {{rt + "data_lost"}}},
      {"edgelink_rtstream_quiet_closes_total", C, "Sessions closed for lack of use.", {{rt + "quiet_closes"}}},
      {"edgelink_rtstream_dropped_bytes_total", C, "Bytes lost, by reason.",
       {{rt + "write_refused", "reason=write_refused"},
        {rt + "dropped_closed", "reason=closed"},
        {rt + "dropped_late", "reason=late"},
        {rt + "mqtt/dropped_in_bytes", "reason=mqtt_in"},
        {rt + "tcp/dropped_by/no_client", "reason=no_client"},
        {rt + "tcp/dropped_by/slow_client", "reason=slow_client"},
        {rt + "tcp/dropped_by/disconnect", "reason=client_gone"},
        {rt + "tcp/dropped_by/input", "reason=input"}}},
      {"edgelink_rtstream_client_connected", G, "1 while a TCP client is connected.", {{rt + "tcp/client"}}},
      {"edgelink_rtstream_tcp_clients_total", C, "TCP clients, accepted or rejected.",
       {{rt + "tcp/clients_accepted", "result=accepted"}, {rt + "tcp/clients_rejected", "result=rejected"}}},
      {"edgelink_rtstream_tcp_bytes_total", C, "Bytes from and to the TCP client.",
       {{rt + "tcp/bytes_in", "direction=in"}, {rt + "tcp/bytes_out", "direction=out"}}},
      {"edgelink_rtstream_tcp_pauses_total", C, "Times reading the TCP client stopped.", {{rt + "tcp/pauses"}}},
      {"edgelink_rtstream_slow_client_disconnects_total", C, "TCP clients closed for not reading.", {{rt + "tcp/slow_client_disconnects"}}},
      {"edgelink_rtstream_mqtt_messages_total", C, "MQTT messages in and out.",
       {{rt + "mqtt/messages_in", "direction=in"}, {rt + "mqtt/messages_out", "direction=out"}}},
      {"edgelink_rtstream_mqtt_bytes_total", C, "MQTT payload bytes in and out.",
       {{rt + "mqtt/bytes_in", "direction=in"}, {rt + "mqtt/bytes_out", "direction=out"}}},
      {"edgelink_rtstream_mqtt_dropped_total", C, "MQTT messages dropped: the stream's queue was full.", {{rt + "mqtt/dropped_in"}}},
  };
}

const std::vector<Family>& families() {
  static const std::vector<Family> table = make_families();
  return table;
}

using Labels = std::vector<std::pair<std::string, std::string>>;

void escape(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quote)
      out += "\\\"";
    else
      out += c;
  }
}

std::string number(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest form that reads back exactly
  return std::string(buf, end);
}

// The value of a leaf as the format writes it; empty when the leaf gives no sample.
std::string value(const rapidjson::Value& v, const Source& src) {
  if (src.equals) return v.IsString() ? (std::string_view(v.GetString()) == src.equals ? "1" : "0") : "";
  if (v.IsBool()) return v.GetBool() ? "1" : "0";
  if (!v.IsNumber()) return "";
  if (src.divisor != 0) return number(v.GetDouble() / src.divisor);
  if (v.IsUint64()) return std::to_string(v.GetUint64());
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  return number(v.GetDouble());
}

// A label value from a JSON scalar (an array element's field).
bool scalar_text(const rapidjson::Value& v, std::string& out) {
  if (v.IsString()) {
    out.assign(v.GetString(), v.GetStringLength());
    return true;
  }
  if (v.IsUint64()) {
    out = std::to_string(v.GetUint64());
    return true;
  }
  return false;
}

class Writer {
 public:
  Writer(std::string& out, const rapidjson::Value& status) : out_(out), status_(status) {}

  void family(const Family& f) {
    out_ += "# HELP ";
    out_ += f.name;
    out_ += ' ';
    escape(out_, f.help, false);
    out_ += "\n# TYPE ";
    out_ += f.name;
    out_ += f.type == Type::Counter ? " counter\n" : " gauge\n";
    for (const Source& src : f.sources) {
      std::vector<std::string_view> steps;
      std::string_view path = src.path;
      for (size_t slash; (slash = path.find('/')) != std::string_view::npos; path.remove_prefix(slash + 1))
        steps.push_back(path.substr(0, slash));
      steps.push_back(path);
      Labels labels;
      walk(f.name, src, status_, nullptr, steps, 0, labels);
    }
  }

 private:
  // `parent`: the object `v` was found in by name (for Source::sibling).
  void walk(const char* name, const Source& src, const rapidjson::Value& v, const rapidjson::Value* parent,
            const std::vector<std::string_view>& steps, size_t i, Labels& labels) {
    if (i == steps.size()) {
      sample(name, src, v, parent, labels);
      return;
    }
    const std::string_view step = steps[i];
    if (step.front() == '{') {
      if (!v.IsObject()) return;
      for (const auto& m : v.GetObject()) {
        labels.emplace_back(std::string(step.substr(1, step.size() - 2)),
                            std::string(m.name.GetString(), m.name.GetStringLength()));
        walk(name, src, m.value, &v, steps, i + 1, labels);
        labels.pop_back();
      }
    } else if (step.front() == '[') {
      if (!v.IsArray()) return;
      // "[label:field,label2]": labels from the element's fields ("label" alone: same name).
      std::vector<std::pair<std::string, std::string>> spec;
      for (std::string_view rest = step.substr(1, step.size() - 2); !rest.empty();) {
        size_t comma = rest.find(',');
        std::string_view one = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        size_t colon = one.find(':');
        spec.emplace_back(std::string(one.substr(0, colon)),
                          std::string(colon == std::string_view::npos ? one : one.substr(colon + 1)));
      }
      for (const auto& element : v.GetArray()) {
        if (!element.IsObject()) continue;
        size_t added = 0;
        for (const auto& [label, field] : spec) {
          auto it = element.FindMember(field.c_str());
          std::string text;
          if (it == element.MemberEnd() || !scalar_text(it->value, text)) break;
          labels.emplace_back(label, std::move(text));
          ++added;
        }
        if (added == spec.size()) walk(name, src, element, &v, steps, i + 1, labels);
        labels.resize(labels.size() - added);
      }
    } else {
      if (!v.IsObject()) return;
      auto it = v.FindMember(rapidjson::Value(rapidjson::StringRef(step.data(), step.size())));
      if (it != v.MemberEnd()) walk(name, src, it->value, &v, steps, i + 1, labels);
    }
  }

  void sample(const char* name, const Source& src, const rapidjson::Value& v, const rapidjson::Value* parent,
              const Labels& labels) {
    std::string text;
    Labels extra;
    if (src.value_label) {
      if (!v.IsString()) return;
      extra.emplace_back(src.value_label, std::string(v.GetString(), v.GetStringLength()));
      text = "1";
    } else {
      text = value(v, src);
      if (text.empty()) return;
    }
    if (src.sibling && parent && parent->IsObject()) {
      auto it = parent->FindMember(src.sibling);
      if (it != parent->MemberEnd() && it->value.IsString())
        extra.emplace_back(src.sibling, std::string(it->value.GetString(), it->value.GetStringLength()));
    }
    if (src.label) {
      const std::string_view fixed = src.label;
      const size_t eq = fixed.find('=');
      extra.emplace_back(std::string(fixed.substr(0, eq)), std::string(fixed.substr(eq + 1)));
    }
    out_ += name;
    char sep = '{';
    for (const Labels* set : {&labels, static_cast<const Labels*>(&extra)})
      for (const auto& [label, val] : *set) {
        out_ += sep;
        sep = ',';
        out_ += label;
        out_ += "=\"";
        escape(out_, val, true);
        out_ += '"';
      }
    if (sep == ',') out_ += '}';
    out_ += ' ';
    out_ += text;
    out_ += '\n';
  }

  std::string& out_;
  const rapidjson::Value& status_;
};

}  // namespace

std::string write_metrics(const rapidjson::Value& status) {
  std::string out;
  out.reserve(16 * 1024);
  Writer w(out, status);
  for (const Family& f : families()) w.family(f);
  return out;
}

}  // namespace edgelink::http

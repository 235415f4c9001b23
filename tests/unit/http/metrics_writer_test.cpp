#include "edgelink/http/metrics_writer.hpp"

#include <catch2/catch.hpp>

#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using edgelink::http::write_metrics;

namespace {

// A status document as the daemon builds it, cut down, plus the sections the HTTP API
// and the RTIO server add. The second app's name needs every escape the format has.
constexpr const char* kStatus = R"({
  "version": "0.4.0", "started": 1732180000123, "uptime_s": 3600,
  "broker": {"state": "connected", "since": null, "reconnects": 2, "inflight": 5, "connects": 3},
  "apps": {
    "main_app": {"port": 5050, "connected": true, "lines": 120345, "errors": {"BadJson": 2, "UnknownStream": 1}},
    "we\"ird\\app\nx": {"port": 5051, "connected": false, "lines": 0, "errors": {}}
  },
  "streams": {"imu": {"points": 120000, "batches_published": 1200, "pending_points": 45}},
  "outbox": {"bytes": 4096},
  "spool": {"bytes": 0, "max_bytes": 268435456,
            "drops": [{"stream": "imu", "reason": "spool_full", "count": 7}],
            "fsync": {"count": 2, "last_ms": 1.5, "mean_ms": 0.25, "max_ms": 2}},
  "devices": {
    "mcu1": {"kind": "ricrest", "link": "up", "since": 1732180002000, "resets": 1,
             "rtstreams": [{"name": "console", "state": "open", "busy": 3, "mqtt": null, "tcp": {"client": true}}]},
    "cfa09baa-4913-4ad7-a936-3e26f9671b09": {"kind": "rtio", "link": "down", "since": null}
  },
  "actions": {"in_flight": 1, "by_app": {"main_app": {"received": 4, "completed": 3, "failed": 0, "timed_out": 1}}},
  "counters": {"dropped": {"spool_full": 7, "corrupt": 0}, "rejected_lines": {"BadJson": 2},
               "http_status": {"200": 55, "401": 2}},
  "http": {"requests_by": {"copost": {"OK": 10, "NOT_FOUND": 1}, "status": {"200": 4}},
           "devices": {"mcu1": {"observers": 1, "results": {"ok": 10, "timeout": 2},
                                "observers_ended": {"slow": 1}}}},
  "rtio": {"connections": {"verified": 3, "verify_failed": 1},
           "device_copost": {"/aa/bb": {"22": 5}}}
})";

rapidjson::Document parse(const char* json) {
  rapidjson::Document d;
  d.Parse(json);
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

// The lines of one family: its # HELP, # TYPE and samples, up to the next family.
std::string family(const std::string& text, const std::string& name) {
  const std::string head = "# HELP " + name + " ";
  size_t start = text.find(head);
  if (start == std::string::npos) return "(no family " + name + ")";
  size_t end = text.find("# HELP ", start + head.size());
  std::string block = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
  // Only the TYPE line and the samples: the HELP text is prose.
  return block.substr(block.find('\n') + 1);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("metrics: the families of the spec, with their labels and values", "[http]") {
  const std::string m = write_metrics(parse(kStatus));

  CHECK(family(m, "edgelink_build_info") == "# TYPE edgelink_build_info gauge\nedgelink_build_info{version=\"0.4.0\"} 1\n");
  CHECK(family(m, "edgelink_uptime_seconds") == "# TYPE edgelink_uptime_seconds gauge\nedgelink_uptime_seconds 3600\n");
  CHECK(family(m, "edgelink_broker_connected") ==
        "# TYPE edgelink_broker_connected gauge\nedgelink_broker_connected 1\n");
  CHECK(family(m, "edgelink_broker_reconnects_total") ==
        "# TYPE edgelink_broker_reconnects_total counter\nedgelink_broker_reconnects_total 2\n");
  CHECK(family(m, "edgelink_app_rejected_lines_total") ==
        "# TYPE edgelink_app_rejected_lines_total counter\n"
        "edgelink_app_rejected_lines_total{app=\"main_app\",code=\"BadJson\"} 2\n"
        "edgelink_app_rejected_lines_total{app=\"main_app\",code=\"UnknownStream\"} 1\n");
  CHECK(family(m, "edgelink_stream_batches_published_total") ==
        "# TYPE edgelink_stream_batches_published_total counter\n"
        "edgelink_stream_batches_published_total{stream=\"imu\"} 1200\n");
  CHECK(family(m, "edgelink_outbox_bytes") ==
        "# TYPE edgelink_outbox_bytes gauge\n"
        "edgelink_outbox_bytes{where=\"memory\"} 4096\n"
        "edgelink_outbox_bytes{where=\"disk\"} 0\n");
  CHECK(family(m, "edgelink_dropped_total") ==
        "# TYPE edgelink_dropped_total counter\n"
        "edgelink_dropped_total{reason=\"spool_full\"} 7\n"
        "edgelink_dropped_total{reason=\"corrupt\"} 0\n");
  CHECK(family(m, "edgelink_actions_total") ==
        "# TYPE edgelink_actions_total counter\n"
        "edgelink_actions_total{app=\"main_app\",state=\"received\"} 4\n"
        "edgelink_actions_total{app=\"main_app\",state=\"completed\"} 3\n"
        "edgelink_actions_total{app=\"main_app\",state=\"failed\"} 0\n"
        "edgelink_actions_total{app=\"main_app\",state=\"timed_out\"} 1\n");
  // The kind label comes from beside the link state.
  CHECK(family(m, "edgelink_device_link_up") ==
        "# TYPE edgelink_device_link_up gauge\n"
        "edgelink_device_link_up{device=\"mcu1\",kind=\"ricrest\"} 1\n"
        "edgelink_device_link_up{device=\"cfa09baa-4913-4ad7-a936-3e26f9671b09\",kind=\"rtio\"} 0\n");
  CHECK(family(m, "edgelink_device_requests_total") ==
        "# TYPE edgelink_device_requests_total counter\n"
        "edgelink_device_requests_total{device=\"mcu1\",result=\"ok\"} 10\n"
        "edgelink_device_requests_total{device=\"mcu1\",result=\"timeout\"} 2\n");
  CHECK(family(m, "edgelink_http_requests_total") ==
        "# TYPE edgelink_http_requests_total counter\n"
        "edgelink_http_requests_total{kind=\"copost\",code=\"OK\"} 10\n"
        "edgelink_http_requests_total{kind=\"copost\",code=\"NOT_FOUND\"} 1\n"
        "edgelink_http_requests_total{kind=\"status\",code=\"200\"} 4\n");
  CHECK(family(m, "edgelink_http_observers") ==
        "# TYPE edgelink_http_observers gauge\nedgelink_http_observers{device=\"mcu1\"} 1\n");
  CHECK(family(m, "edgelink_http_observers_ended_total") ==
        "# TYPE edgelink_http_observers_ended_total counter\n"
        "edgelink_http_observers_ended_total{device=\"mcu1\",reason=\"slow\"} 1\n");
  CHECK(family(m, "edgelink_rtio_connections_total") ==
        "# TYPE edgelink_rtio_connections_total counter\n"
        "edgelink_rtio_connections_total{result=\"verified\"} 3\n"
        "edgelink_rtio_connections_total{result=\"verify_failed\"} 1\n");
  CHECK(family(m, "edgelink_rtio_device_copost_total") ==
        "# TYPE edgelink_rtio_device_copost_total counter\n"
        "edgelink_rtio_device_copost_total{uri=\"/aa/bb\",status=\"22\"} 5\n");
}

TEST_CASE("metrics: label values are escaped", "[http]") {
  const std::string m = write_metrics(parse(kStatus));
  // The app named  we"ird\app<newline>x
  CHECK(family(m, "edgelink_app_connected") ==
        "# TYPE edgelink_app_connected gauge\n"
        "edgelink_app_connected{app=\"main_app\"} 1\n"
        "edgelink_app_connected{app=\"we\\\"ird\\\\app\\nx\"} 0\n");
}

TEST_CASE("metrics: the rest of the document: arrays, scaled values, nulls", "[http]") {
  const std::string m = write_metrics(parse(kStatus));
  // Array elements are labelled by their fields.
  CHECK(family(m, "edgelink_spool_dropped_total") ==
        "# TYPE edgelink_spool_dropped_total counter\n"
        "edgelink_spool_dropped_total{stream=\"imu\",reason=\"spool_full\"} 7\n");
  CHECK(family(m, "edgelink_rtstream_complaints_total") ==
        "# TYPE edgelink_rtstream_complaints_total counter\n"
        "edgelink_rtstream_complaints_total{device=\"mcu1\",rtstream=\"console\",kind=\"busy\"} 3\n");
  CHECK(family(m, "edgelink_rtstream_client_connected") ==
        "# TYPE edgelink_rtstream_client_connected gauge\n"
        "edgelink_rtstream_client_connected{device=\"mcu1\",rtstream=\"console\"} 1\n");
  // Milliseconds become seconds, in the shortest exact form; a null time is no sample.
  CHECK(family(m, "edgelink_spool_fsync_seconds") ==
        "# TYPE edgelink_spool_fsync_seconds gauge\n"
        "edgelink_spool_fsync_seconds{stat=\"last\"} 0.0015\n"
        "edgelink_spool_fsync_seconds{stat=\"mean\"} 0.00025\n"
        "edgelink_spool_fsync_seconds{stat=\"max\"} 0.002\n");
  CHECK(family(m, "edgelink_start_time_seconds") ==
        "# TYPE edgelink_start_time_seconds gauge\nedgelink_start_time_seconds 1732180000.123\n");
  CHECK(family(m, "edgelink_broker_state_change_timestamp_seconds") ==
        "# TYPE edgelink_broker_state_change_timestamp_seconds gauge\n");
  CHECK(family(m, "edgelink_device_state_change_timestamp_seconds") ==
        "# TYPE edgelink_device_state_change_timestamp_seconds gauge\n"
        "edgelink_device_state_change_timestamp_seconds{device=\"mcu1\"} 1732180002\n");
  CHECK(family(m, "edgelink_http_responses_total") ==
        "# TYPE edgelink_http_responses_total counter\n"
        "edgelink_http_responses_total{code=\"200\"} 55\n"
        "edgelink_http_responses_total{code=\"401\"} 2\n");
}

TEST_CASE("metrics: non-integer and non-finite values", "[http]") {
  const std::string m = write_metrics(parse(R"({"spool": {"replay_rate": 2.5, "fsync": {"max_ms": -0.5}}})"));
  CHECK(family(m, "edgelink_spool_replay_rate") ==
        "# TYPE edgelink_spool_replay_rate gauge\nedgelink_spool_replay_rate 2.5\n");
  rapidjson::Document d = parse("{}");
  d.AddMember("uptime_s", rapidjson::Value(std::numeric_limits<double>::quiet_NaN()), d.GetAllocator());
  rapidjson::Value spool(rapidjson::kObjectType);
  spool.AddMember("replay_rate", rapidjson::Value(std::numeric_limits<double>::infinity()), d.GetAllocator());
  d.AddMember("spool", spool, d.GetAllocator());
  const std::string odd = write_metrics(d);
  CHECK(family(odd, "edgelink_uptime_seconds") == "# TYPE edgelink_uptime_seconds gauge\nedgelink_uptime_seconds NaN\n");
  CHECK(family(odd, "edgelink_spool_replay_rate") ==
        "# TYPE edgelink_spool_replay_rate gauge\nedgelink_spool_replay_rate +Inf\n");
}

TEST_CASE("metrics: absent sections leave their families without samples", "[http]") {
  // The daemon's document without the HTTP API: no "http", no "rtio".
  rapidjson::Document d = parse(kStatus);
  d.RemoveMember("http");
  d.RemoveMember("rtio");
  const std::string m = write_metrics(d);
  for (const char* name : {"edgelink_http_requests_total", "edgelink_http_observers",
                           "edgelink_http_observers_ended_total", "edgelink_device_requests_total",
                           "edgelink_rtio_connections_total", "edgelink_rtio_device_copost_total"}) {
    INFO(name);
    CHECK(family(m, name) == std::string("# TYPE ") + name +
                                 (std::string(name).ends_with("_total") ? " counter\n" : " gauge\n"));
  }
  // An empty document: every family still has its header, and nothing else.
  const std::string empty = write_metrics(parse("{}"));
  for (const auto& line : lines(empty)) {
    INFO(line);
    CHECK(line.rfind("# ", 0) == 0);
  }
  // ... the same headers whatever the document holds.
  size_t headers = 0;
  for (const auto& line : lines(m)) headers += line.rfind("# ", 0) == 0;
  CHECK(lines(empty).size() == headers);
}

TEST_CASE("metrics: one HELP and TYPE per family, names and types by the conventions", "[http]") {
  const std::string m = write_metrics(parse(kStatus));
  std::set<std::string> seen;
  std::string current;  // the family whose samples may follow
  std::string help_for;
  for (const auto& line : lines(m)) {
    INFO(line);
    REQUIRE_FALSE(line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      help_for = line.substr(7, line.find(' ', 7) - 7);
      CHECK(line.size() > 7 + help_for.size() + 1);  // a text follows the name
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      const std::string type = line.substr(line.find(' ', 7) + 1);
      CHECK(name == help_for);  // HELP then TYPE, for the same family
      CHECK(seen.insert(name).second);  // never repeated
      CHECK(name.rfind("edgelink_", 0) == 0);
      CHECK((type == "counter" || type == "gauge"));
      CHECK(name.ends_with("_total") == (type == "counter"));
      current = name;
      continue;
    }
    // A sample: its name is the current family's (samples are not interleaved).
    const std::string name = line.substr(0, line.find_first_of("{ "));
    CHECK(name == current);
  }
  // Every family of spec/http-api.md §3.2.
  for (const char* name :
       {"edgelink_build_info", "edgelink_uptime_seconds", "edgelink_broker_connected",
        "edgelink_broker_reconnects_total", "edgelink_app_connected", "edgelink_app_lines_total",
        "edgelink_app_rejected_lines_total", "edgelink_stream_points_total",
        "edgelink_stream_batches_published_total", "edgelink_outbox_bytes", "edgelink_dropped_total",
        "edgelink_actions_total", "edgelink_device_link_up", "edgelink_device_resets_total",
        "edgelink_device_requests_total", "edgelink_http_requests_total", "edgelink_http_observers",
        "edgelink_http_observers_ended_total", "edgelink_rtio_connections_total",
        "edgelink_rtio_device_copost_total"}) {
    INFO(name);
    CHECK(seen.count(name) == 1);
  }
}

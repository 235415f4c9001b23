#include <catch2/catch.hpp>

#include <string>

#include <asio.hpp>
#include <rapidjson/document.h>

#include "edgelink/config/config.hpp"
#include "edgelink/daemon/daemon.hpp"
#include "edgelink/http/metrics_writer.hpp"
#include "edgelink/util/json_object.hpp"

using namespace edgelink;

namespace {

Config config() {
  LoadResult r = load_config_string(
      "project_id = \"demo\"\ndevice_id = \"gw-001\"\n"
      "[tcpapps.main_app]\nport = 5050\nactions = [{ name = \"reboot\", timeout = 5 }]\n"
      "[tcpapps.aux]\nport = 5051\n"
      "[streams.imu]\nbatch_size = 10\n",
      "test.toml");
  REQUIRE(r.config);
  return std::move(*r.config);
}

std::string str(const rapidjson::Value& v) { return std::string(v.GetString(), v.GetStringLength()); }

}  // namespace

// A daemon that was built but not started: nothing connected, nothing counted yet.
TEST_CASE("status document: the spec's keys before anything happened", "[status]") {
  asio::io_context io;
  Daemon daemon(io, config());
  const rapidjson::Document doc = daemon.status_document();
  REQUIRE(doc.IsObject());
  CHECK(str(doc["version"]) == EDGELINK_VERSION);
  CHECK(doc["started"].IsUint64());
  CHECK(doc["uptime_s"].GetUint64() == 0);

  const auto& b = doc["broker"];
  CHECK(str(b["state"]) == "disconnected");
  CHECK(b["since"].IsNull());  // never changed
  CHECK(b["reconnects"].GetUint64() == 0);
  CHECK(b["inflight"].GetUint64() == 0);
  CHECK(str(b["host"]) == "localhost");
  CHECK(b["port"].GetUint64() == 1883);

  // The app listeners are applied by start(); test_status.py covers the apps' keys.
  CHECK(doc["apps"].IsObject());

  const auto& s = doc["streams"]["imu"];
  CHECK(s["points"].GetUint64() == 0);
  CHECK(s["batches_published"].GetUint64() == 0);
  CHECK(s["pending_points"].GetUint64() == 0);
  CHECK(doc["devices"].IsObject());
  CHECK(doc["spool"]["max_bytes"].GetUint64() > 0);

  // Every configured app has its action counts, at zero.
  for (const char* app : {"main_app", "aux"})
    for (const char* state : {"received", "completed", "failed", "timed_out"}) {
      INFO(app << " " << state);
      CHECK(doc["actions"]["by_app"][app][state].GetUint64() == 0);
    }
  const auto& c = doc["counters"];
  CHECK(c["dropped"]["spool_full"].GetUint64() == 0);
  CHECK(c["rejected_lines"]["BadJson"].GetUint64() == 0);
  CHECK(c["http_status"].ObjectEmpty());
  // The HTTP API's own section is there with no [http]: nothing listens.
  CHECK_FALSE(doc["http"]["listening"].GetBool());
  CHECK(doc["http"]["requests"].GetUint64() == 0);
}

TEST_CASE("status document: hooks add their sections, seen by the JSON and the metrics alike", "[status]") {
  asio::io_context io;
  Daemon daemon(io, config());
  int calls = 0;
  daemon.add_status_hook([&calls](rapidjson::Document& doc) {
    ++calls;
    auto& a = doc.GetAllocator();
    // The daemon's own hook (the HTTP API's section) ran first.
    JsonObject(doc["http"]["requests_by"], a).object("status", [](JsonObject& codes) { codes.u64("200", 3); });
    JsonObject(doc["counters"]["http_status"], a).u64("200", 3);
  });
  // A second hook runs after the first and sees its section.
  daemon.add_status_hook([](rapidjson::Document& doc) {
    REQUIRE(doc.HasMember("http"));
    // The RTIO server's own section is there (no [rtio]: nothing listens).
    REQUIRE(doc.HasMember("rtio"));
    JsonObject(doc["rtio"]["connections"], doc.GetAllocator()).u64("verified", 1);
  });

  const rapidjson::Document doc = daemon.status_document();
  CHECK(calls == 1);
  CHECK(doc["http"]["requests_by"]["status"]["200"].GetUint64() == 3);
  CHECK(doc["counters"]["http_status"]["200"].GetUint64() == 3);

  // The socket's JSON (compact or pretty) is the same document, hooks included.
  for (bool pretty : {false, true}) {
    const std::string text = daemon.status_json(pretty);
    CHECK(text.back() == '\n');
    CHECK((text.find('\n') == text.size() - 1) == !pretty);
    rapidjson::Document parsed;
    parsed.Parse(text.c_str());
    REQUIRE_FALSE(parsed.HasParseError());
    CHECK(parsed["rtio"]["connections"]["verified"].GetUint64() == 1);
    CHECK(parsed["actions"] == doc["actions"]);
  }
  CHECK(calls == 3);

  const std::string metrics = http::write_metrics(doc);
  CHECK(metrics.find("\nedgelink_http_requests_total{kind=\"status\",code=\"200\"} 3\n") != std::string::npos);
  CHECK(metrics.find("\nedgelink_http_responses_total{code=\"200\"} 3\n") != std::string::npos);
  CHECK(metrics.find("\nedgelink_rtio_connections_total{result=\"verified\"} 1\n") != std::string::npos);
  CHECK(metrics.find("\nedgelink_actions_total{app=\"aux\",state=\"received\"} 0\n") != std::string::npos);
  CHECK(metrics.find("\nedgelink_broker_connected 0\n") != std::string::npos);
}

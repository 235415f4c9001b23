// Tests for to_toml (round trip through load_config_string), expand_topic and the
// to_string helpers.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

#include "config_test_util.hpp"
#include "edgelink/config/config.hpp"

using namespace edgelink;
using namespace edgelink::test;
using namespace std::chrono_literals;

namespace {


// Every key set to a value other than its default.
const std::string kFull = R"(project_id = "acme"
device_id = "dev-7"
persistence_path = "/tmp/state"
actions_subscription = "/t/{tenant_id}/d/{device_id}/+/actions"
presence_topic = "/t/{tenant_id}/d/{device_id}/up"
max_stream_count = 10
shutdown_timeout = 2.5
prioritize_live_data = true
[broker]
host = "broker.example"
port = 8883
client_id = "client-7"
username = "user"
password = "s3cret"
keep_alive = 0
max_inflight = 7
reconnect_min = 0.25
reconnect_max = 120.001
[tcpapps.app1]
port = 6000
bind = "::1"
actions = [{ name = "a1", timeout = 1.5 }, { name = "a2" }]
max_line_bytes = 4096
[tcpapps.app2]
port = 6000
bind = "127.0.0.2"
[streams.imu]
topic = "/x/{device_id}/{stream}"
batch_size = 5
flush_period = 0.001
compression = "lz4"
priority = 255
[streams.gps-1]
[streams.action_status]
topic = "/s/{tenant_id}"
[devices.mcu]
path = "/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0"
baud = 115200
framing = "console"
log_stream = "mcu_log"
[[devices.mcu.publish]]
topic = "devjson"
stream = "mcu_pub"
rate_hz = 0.1
min_ms = 10
trigger = "change"
[[devices.mcu.publish]]
topic = "devbin"
stream = "mcu_bin"
rate_hz = 1000
[devices.raw]
transport = "serial"
path = "/dev/ttyACM0"
max_frame_bytes = 5000
[rtstreams.console]
device = "mcu"
endpoint = "upyconsole"
file_name = "pyc"
port = 7001
bind = "::1"
mqtt = true
[rtstreams.telemetry]
device = "raw"
endpoint = "telem"
mqtt = true
[rtstreams.tcp_only]
device = "raw"
endpoint = "cmd"
port = 7002
[spool]
max_bytes = 1000
max_memory_bytes = 100
fsync = "Never"
[log]
level = "debug"
)";

// Field-by-field equality; the password is compared by the caller because to_toml
// redacts it.
void check_same_except_password(const Config& a, const Config& b) {
  CHECK(a.project_id == b.project_id);
  CHECK(a.device_id == b.device_id);
  CHECK(a.persistence_path == b.persistence_path);
  CHECK(a.actions_subscription == b.actions_subscription);
  CHECK(a.presence_topic == b.presence_topic);
  CHECK(a.max_stream_count == b.max_stream_count);
  CHECK(a.shutdown_timeout == b.shutdown_timeout);
  CHECK(a.prioritize_live_data == b.prioritize_live_data);
  CHECK(a.broker.host == b.broker.host);
  CHECK(a.broker.port == b.broker.port);
  CHECK(a.broker.client_id == b.broker.client_id);
  CHECK(a.broker.username == b.broker.username);
  CHECK(a.broker.password_file == b.broker.password_file);
  CHECK(a.broker.keep_alive == b.broker.keep_alive);
  CHECK(a.broker.max_inflight == b.broker.max_inflight);
  CHECK(a.broker.reconnect_min == b.broker.reconnect_min);
  CHECK(a.broker.reconnect_max == b.broker.reconnect_max);
  REQUIRE(a.broker.tls.has_value() == b.broker.tls.has_value());
  if (a.broker.tls) {
    CHECK(a.broker.tls->ca_file == b.broker.tls->ca_file);
    CHECK(a.broker.tls->cert_file == b.broker.tls->cert_file);
    CHECK(a.broker.tls->key_file == b.broker.tls->key_file);
    CHECK(a.broker.tls->verify == b.broker.tls->verify);
  }
  REQUIRE(a.tcpapps.size() == b.tcpapps.size());
  for (const auto& [name, app] : a.tcpapps) {
    REQUIRE(b.tcpapps.count(name) == 1);
    const AppConfig& other = b.tcpapps.at(name);
    CHECK(app.name == other.name);
    CHECK(app.bind == other.bind);
    CHECK(app.port == other.port);
    CHECK(app.max_line_bytes == other.max_line_bytes);
    REQUIRE(app.actions.size() == other.actions.size());
    for (size_t i = 0; i < app.actions.size(); ++i) {
      CHECK(app.actions[i].name == other.actions[i].name);
      CHECK(app.actions[i].timeout == other.actions[i].timeout);
    }
  }
  REQUIRE(a.streams.size() == b.streams.size());
  for (const auto& [name, s] : a.streams) {
    REQUIRE(b.streams.count(name) == 1);
    const StreamConfig& other = b.streams.at(name);
    CHECK(s.name == other.name);
    CHECK(s.topic == other.topic);
    CHECK(s.batch_size == other.batch_size);
    CHECK(s.flush_period == other.flush_period);
    CHECK(s.compression == other.compression);
    CHECK(s.priority == other.priority);
  }
  CHECK(a.default_stream.topic == b.default_stream.topic);
  CHECK(a.default_stream.batch_size == b.default_stream.batch_size);
  CHECK(a.default_stream.flush_period == b.default_stream.flush_period);
  CHECK(a.devices == b.devices);
  CHECK(a.rtstreams == b.rtstreams);
  CHECK(a.spool.max_bytes == b.spool.max_bytes);
  CHECK(a.spool.max_memory_bytes == b.spool.max_memory_bytes);
  CHECK(a.spool.fsync == b.spool.fsync);
  CHECK(a.log.level == b.log.level);
}

}  // namespace

TEST_CASE("config: to_toml round-trips to an equal config", "[config]") {
  TempDir dir;
  const std::string ca = dir.write("ca.pem", "ca");
  const std::string cert = dir.write("cert.pem", "cert");
  const std::string key = dir.write("key.pem", "key");
  std::string text = kFull;
  text += "\n[broker.tls]\nca_file = \"" + ca + "\"\ncert_file = \"" + cert + "\"\nkey_file = \"" + key +
          "\"\nverify = false\n";
  const auto first = load(text);
  INFO(all_issues(first.errors));
  REQUIRE(first.config);

  const std::string printed = to_toml(*first.config);
  INFO(printed);
  CHECK(printed.find("s3cret") == std::string::npos);
  const auto second = load_config_string(printed, "printed.toml");
  INFO(all_issues(second.errors));
  REQUIRE(second.config);
  CHECK(second.unknown_keys.empty());
  REQUIRE(second.config->devices.size() == 2);
  REQUIRE(second.config->devices.at("mcu").publish.size() == 2);
  CHECK(printed.find("\n[[devices.mcu.publish]]\ntopic = \"devjson\"\nstream = \"mcu_pub\"\nrate_hz = 0.1\n"
                     "min_ms = 10\ntrigger = \"change\"\n") != std::string::npos);
  REQUIRE(second.config->rtstreams.size() == 3);
  CHECK(second.config->prioritize_live_data);
  CHECK(printed.find("\nprioritize_live_data = true\n") != std::string::npos);
  // to_toml redacts the password, so it is the one field that cannot round-trip.
  check_same_except_password(*first.config, *second.config);
  CHECK(second.config->broker.password == "<redacted>");
  // Printing is stable once defaults are filled in (the first line names the source).
  const std::string reprinted = to_toml(*second.config);
  CHECK(reprinted.substr(reprinted.find('\n')) == printed.substr(printed.find('\n')));

  SECTION("a compressed stream prints the topic it publishes on") {
    const auto r = load(std::string(kIds) + "[streams.imu]\ncompression = \"Lz4\"\n");
    REQUIRE(r.config);
    const std::string out = to_toml(*r.config);
    CHECK(out.find("topic = \"/tenants/{tenant_id}/devices/{device_id}/events/{stream}/jsonarray/lz4\"") !=
          std::string::npos);
    const auto back = load_config_string(out, "x");
    REQUIRE(back.config);
    CHECK(back.config->streams.at("imu").topic == r.config->streams.at("imu").topic);
  }

  SECTION("defaults and awkward strings") {
    Config c = *load(kIds).config;
    c.persistence_path = "/tmp/a \"quoted\"\\path\twith\nnewline";
    c.presence_topic = "/p/\x01";
    c.source = "evil\nname";
    c.tcpapps["a"] = AppConfig{"a", "127.0.0.1", 99, {{"odd \"name\"", Millis{1}}}, 10};
    c.devices["d"] = DeviceConfig{"d", DeviceTransport::Serial, "/dev/odd \"path\"\\x\n", 57600,
                                  DeviceFraming::Console, "logs"};
    c.devices["h"] = DeviceConfig{"h", DeviceTransport::Serial, "/dev/h", 921600, DeviceFraming::Hdlc, "device_log"};
    c.rtstreams["r"] = RtStreamConfig{"r", "d", "ep", "ep/file name", 0, "127.0.0.1", true};
    c.rtstreams["s"] = RtStreamConfig{"s", "h", "ep", "ep", 65535, "0.0.0.0", false};
    const std::string out = to_toml(c);
    INFO(out);
    const auto back = load_config_string(out, "x");
    INFO(all_issues(back.errors));
    REQUIRE(back.config);
    check_same_except_password(c, *back.config);
  }

  SECTION("password_file is printed instead of the secret") {
    const std::string file = dir.write("pass", "pw\n");
    const auto r = load(std::string(kIds) + "[broker]\nusername = \"u\"\npassword_file = \"" + file + "\"\n");
    REQUIRE(r.config);
    const std::string out = to_toml(*r.config);
    CHECK(out.find("\"pw\"") == std::string::npos);
    const auto back = load_config_string(out, "x");
    REQUIRE(back.config);
    CHECK(back.config->broker.password == "pw");  // read again from the file
  }
}

TEST_CASE("config: expand_topic", "[config]") {
  Config c;
  c.project_id = "demo";
  c.device_id = "gw-001";
  CHECK(expand_topic("/tenants/{tenant_id}/devices/{device_id}/events/{stream}/jsonarray", c, "imu") ==
        "/tenants/demo/devices/gw-001/events/imu/jsonarray");
  CHECK(expand_topic("{device_id}{device_id}", c) == "gw-001gw-001");
  CHECK(expand_topic("/a/{stream}", c) == "/a/");
  CHECK(expand_topic("/{unknown}/{tenant_id", c) == "/{unknown}/{tenant_id");
  CHECK(expand_topic("", c, "s").empty());
  // Substituted text is not expanded again.
  c.device_id = "{stream}";
  CHECK(expand_topic("/{device_id}/{stream}", c, "x") == "/{stream}/x");
}

TEST_CASE("config: to_string helpers", "[config]") {
  CHECK(std::string(to_string(LogLevel::Trace)) == "trace");
  CHECK(std::string(to_string(LogLevel::Warn)) == "warn");
  CHECK(std::string(to_string(LogLevel::Error)) == "error");
  CHECK(ConfigIssue{"f.toml", 3, 7, "bad"}.to_string() == "f.toml:3:7: bad");
  CHECK(ConfigIssue{"f.toml", 0, 0, "bad"}.to_string() == "f.toml: bad");
}

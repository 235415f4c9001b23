// Tests for load_config_string and load_config_file: values, defaults, every kind of
// error with its position, unknown keys, password_file and TLS file checks.

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

// Exactly one error, containing `text`, at line:col.
void require_one_error(const std::string& toml, const std::string& text, int line, int col) {
  INFO(toml);
  const auto r = load(toml);
  INFO(all_issues(r.errors));
  REQUIRE(r.errors.size() == 1);
  CHECK_FALSE(r.config);
  CHECK(r.errors[0].file == "test.toml");
  CHECK(r.errors[0].message.find(text) != std::string::npos);
  CHECK(r.errors[0].line == line);
  CHECK(r.errors[0].column == col);
}


const std::string kFull = R"(project_id = "acme"
device_id = "dev-7"
persistence_path = "/tmp/state"
actions_subscription = "/t/{tenant_id}/d/{device_id}/+/actions"
presence_topic = "/t/{tenant_id}/d/{device_id}/up"
max_stream_count = 10
shutdown_timeout = 2.5

[broker]
host = "broker.example"
port = 8883
client_id = "client-7"
username = "user"
password = "s3cret"
keep_alive = 0
max_inflight = 7
reconnect_min = 0.25
reconnect_max = 120

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
flush_period = 0.5
compression = "lz4"
priority = 255

[streams.gps-1]

[streams.action_status]
topic = "/s/{tenant_id}"

[spool]
max_bytes = 1000
max_memory_bytes = 100
fsync = "Never"

[log]
level = "debug"
)";


}  // namespace

TEST_CASE("config: a full valid file fills every field", "[config]") {
  const auto r = load(kFull);
  INFO(all_issues(r.errors));
  REQUIRE(r.errors.empty());
  CHECK(r.unknown_keys.empty());
  REQUIRE(r.config);
  const Config& c = *r.config;
  CHECK(c.source == "test.toml");
  CHECK(c.project_id == "acme");
  CHECK(c.device_id == "dev-7");
  CHECK(c.persistence_path == "/tmp/state");
  CHECK(c.actions_subscription == "/t/{tenant_id}/d/{device_id}/+/actions");
  CHECK(c.presence_topic == "/t/{tenant_id}/d/{device_id}/up");
  CHECK(c.max_stream_count == 10);
  CHECK(c.shutdown_timeout == 2500ms);
  CHECK(c.broker.host == "broker.example");
  CHECK(c.broker.port == 8883);
  CHECK(c.broker.client_id == "client-7");
  CHECK(c.broker.username == "user");
  CHECK(c.broker.password == "s3cret");
  CHECK(c.broker.keep_alive == 0);
  CHECK(c.broker.max_inflight == 7);
  CHECK(c.broker.reconnect_min == 250ms);
  CHECK(c.broker.reconnect_max == 120000ms);
  CHECK_FALSE(c.broker.tls);
  REQUIRE(c.tcpapps.size() == 2);
  const AppConfig& app1 = c.tcpapps.at("app1");
  CHECK(app1.name == "app1");
  CHECK(app1.bind == "::1");
  CHECK(app1.port == 6000);
  CHECK(app1.max_line_bytes == 4096);
  REQUIRE(app1.actions.size() == 2);
  CHECK(app1.actions[0].name == "a1");
  CHECK(app1.actions[0].timeout == 1500ms);
  CHECK(app1.actions[1].name == "a2");
  CHECK(app1.actions[1].timeout == 60000ms);
  CHECK(c.tcpapps.at("app2").actions.empty());
  REQUIRE(c.streams.size() == 3);
  const StreamConfig& imu = c.streams.at("imu");
  CHECK(imu.name == "imu");
  CHECK(imu.topic == "/x/{device_id}/{stream}");
  CHECK(imu.batch_size == 5);
  CHECK(imu.flush_period == 500ms);
  CHECK(imu.compression == Compression::Lz4);
  CHECK(imu.priority == 255);
  const StreamConfig& gps = c.streams.at("gps-1");
  CHECK(gps.topic == "/tenants/{tenant_id}/devices/{device_id}/events/{stream}/jsonarray");
  CHECK(gps.batch_size == 100);
  const StreamConfig& status = c.streams.at("action_status");
  CHECK(status.topic == "/s/{tenant_id}");
  CHECK(status.batch_size == 1);
  CHECK(status.priority == kActionStatusPriority);
  CHECK(c.spool.max_bytes == 1000);
  CHECK(c.spool.max_memory_bytes == 100);
  CHECK(c.spool.fsync == FsyncPolicy::Never);
  CHECK(c.log.level == LogLevel::Debug);
}

TEST_CASE("config: defaults fill everything not in the file", "[config]") {
  const auto r = load(kIds);
  REQUIRE(r.errors.empty());
  REQUIRE(r.config);
  const Config& c = *r.config;
  CHECK(c.persistence_path == "/var/lib/edgelink");
  CHECK(c.actions_subscription == "/tenants/{tenant_id}/devices/{device_id}/actions");
  CHECK(c.presence_topic == "/tenants/{tenant_id}/devices/{device_id}/presence");
  CHECK(c.max_stream_count == 64);
  CHECK(c.shutdown_timeout == 5000ms);
  CHECK(c.broker.host == "localhost");
  CHECK(c.broker.port == 1883);
  CHECK(c.broker.client_id == "gw-001");  // device_id
  CHECK(c.broker.password.empty());
  CHECK(c.broker.keep_alive == 30);
  CHECK(c.broker.max_inflight == 100);
  CHECK(c.broker.reconnect_min == 1000ms);
  CHECK(c.broker.reconnect_max == 60000ms);
  CHECK_FALSE(c.broker.tls);
  CHECK(c.tcpapps.empty());
  REQUIRE(c.streams.size() == 1);
  const StreamConfig& status = c.streams.at(kActionStatusStream);
  CHECK(status.name == "action_status");
  CHECK(status.topic == "/tenants/{tenant_id}/devices/{device_id}/action/status");
  CHECK(status.batch_size == 1);
  CHECK(status.priority == kActionStatusPriority);
  CHECK(c.default_stream.name.empty());
  CHECK(c.default_stream.topic == "/tenants/{tenant_id}/devices/{device_id}/events/{stream}/jsonarray");
  CHECK(c.default_stream.batch_size == 100);
  CHECK(c.default_stream.flush_period == 60000ms);
  CHECK(c.default_stream.compression == Compression::Disabled);
  CHECK(c.spool.max_bytes == 256ull << 20);
  CHECK(c.spool.max_memory_bytes == 16ull << 20);
  CHECK(c.spool.fsync == FsyncPolicy::Batch);
  CHECK(c.log.level == LogLevel::Info);

  const auto app = load(std::string(kIds) + "[tcpapps.a]\nport = 1\n");
  REQUIRE(app.config);
  CHECK(app.config->tcpapps.at("a").bind == "127.0.0.1");
  CHECK(app.config->tcpapps.at("a").max_line_bytes == 1u << 20);
}

TEST_CASE("config: the shipped example config loads cleanly", "[config]") {
  // Found relative to this source file, so the test does not depend on the working directory.
  std::string root = __FILE__;
  root.erase(root.rfind("tests/unit/config/"));
  const auto r = load_config_file(root + "config/edgelink.toml");
  INFO(all_issues(r.errors));
  REQUIRE(r.config);
  CHECK(r.unknown_keys.empty());
  const Config& c = *r.config;
  CHECK(c.project_id == "demo");
  CHECK(c.device_id == "gw-001");
  CHECK(c.broker.host == "localhost");
  CHECK(c.broker.port == 1883);
  const AppConfig& app = c.tcpapps.at("main_app");
  CHECK(app.port == 5050);
  REQUIRE(app.actions.size() == 2);
  CHECK(app.actions[0].name == "update_firmware");
  CHECK(app.actions[0].timeout == 300000ms);
  CHECK(app.actions[1].name == "reboot");
  CHECK(c.streams.at("imu").batch_size == 100);
}

TEST_CASE("config: each error names the key and its position", "[config]") {
  const std::string ids = kIds;  // lines 1-2
  // Required keys missing: no node to point at.
  require_one_error("device_id = \"d\"\n", "project_id: required key is missing", 0, 0);
  require_one_error("project_id = \"p\"\n", "device_id: required key is missing", 0, 0);
  require_one_error("project_id = \"\"\ndevice_id = \"d\"\n", "project_id: must be a non-empty string", 1, 14);
  require_one_error("project_id = 5\ndevice_id = \"d\"\n", "project_id: must be a string, got an integer", 1, 14);
  require_one_error("project_id = \"a+b\"\ndevice_id = \"d\"\n", "must not contain '/', '+' or '#'", 1, 14);
  require_one_error(ids + "max_stream_count = 0\n", "max_stream_count: must be an integer > 0, got 0", 3, 20);
  require_one_error(ids + "shutdown_timeout = -1\n", "shutdown_timeout: must be a number of seconds >= 0", 3, 20);
  require_one_error(ids + "presence_topic = \"/p/#\"\n", "must not contain the MQTT wildcards", 3, 18);
  require_one_error(ids + "presence_topic = \"/p/{stream}\"\n", "unknown placeholder \"{stream}\"", 3, 18);
  require_one_error(ids + "persistence_path = \"a\\u0000b\"\n", "must not contain NUL", 3, 20);
  require_one_error(ids + "broker = 3\n", "broker: must be a table, got an integer", 3, 10);

  require_one_error(ids + "[broker]\nport = 70000\n", "broker.port: must be an integer 1..65535, got 70000", 4, 8);
  require_one_error(ids + "[broker]\nport = \"1883\"\n", "broker.port: must be an integer 1..65535, got a string", 4, 8);
  require_one_error(ids + "[broker]\nport = 1883.0\n", "must be an integer 1..65535, got a float", 4, 8);
  require_one_error(ids + "[broker]\nhost = \"\"\n", "broker.host: must be a non-empty string", 4, 8);
  require_one_error(ids + "[broker]\nkeep_alive = -1\n", "broker.keep_alive: must be an integer 0..65535", 4, 14);
  require_one_error(ids + "[broker]\nmax_inflight = 0\n", "broker.max_inflight: must be an integer 1..65535", 4, 16);
  require_one_error(ids + "[broker]\nreconnect_min = 0\n", "broker.reconnect_min: must be a number of seconds > 0", 4, 17);
  require_one_error(ids + "[broker]\nreconnect_min = 0.0001\n", "1 ms resolution", 4, 17);
  require_one_error(ids + "[broker]\nreconnect_max = nan\n", "broker.reconnect_max: must be a number of seconds > 0", 4, 17);
  require_one_error(ids + "[broker]\nreconnect_max = inf\n", "must be a number of seconds > 0", 4, 17);
  require_one_error(ids + "[broker]\nreconnect_max = 1e300\n", "at most 10 years", 4, 17);
  require_one_error(ids + "[broker]\nreconnect_max = true\n", "got a boolean", 4, 17);
  require_one_error(ids + "[broker]\nreconnect_min = 61\n", "broker.reconnect_min: must be <= broker.reconnect_max", 4, 17);
  require_one_error(ids + "[broker]\nreconnect_max = 0.5\n", "broker.reconnect_min: must be <= broker.reconnect_max", 4, 17);
  require_one_error(ids + "[broker]\nclient_id = \"\"\n", "broker.client_id: must be a non-empty string", 4, 13);
  require_one_error(ids + "[broker]\npassword = \"x\"\n", "broker.password: needs broker.username", 4, 12);

  require_one_error(ids + "[tcpapps.main_app]\nport = 70000\n",
                    "tcpapps.main_app.port: must be an integer 1..65535, got 70000", 4, 8);
  require_one_error(ids + "[tcpapps.main_app]\nbind = \"127.0.0.1\"\n", "tcpapps.main_app.port: required key is missing", 3, 1);
  require_one_error(ids + "[tcpapps.a]\nport = 1\nbind = \"localhost\"\n",
                    "tcpapps.a.bind: must be an IPv4 or IPv6 address literal, got \"localhost\"", 5, 8);
  require_one_error(ids + "[tcpapps.a]\nport = 1\nbind = \"127.0.0.1\\u0000x\"\n", "must not contain NUL", 5, 8);
  require_one_error(ids + "[tcpapps.a]\nport = 1\nmax_line_bytes = 0\n", "tcpapps.a.max_line_bytes: must be an integer > 0", 5, 18);
  require_one_error(ids + "[tcpapps.a]\nport = 1\nactions = \"reboot\"\n", "tcpapps.a.actions: must be an array", 5, 11);
  require_one_error(ids + "[tcpapps.a]\nport = 1\nactions = [\"reboot\"]\n",
                    "tcpapps.a.actions[0]: must be a table", 5, 12);
  require_one_error(ids + "[tcpapps.a]\nport = 1\nactions = [{ timeout = 5 }]\n",
                    "tcpapps.a.actions[0].name: required key is missing", 5, 12);
  require_one_error(ids + "[tcpapps.a]\nport = 1\nactions = [{ name = \"\" }]\n",
                    "tcpapps.a.actions[0].name: must be a non-empty string", 5, 21);
  require_one_error(ids + "[tcpapps.a]\nport = 1\nactions = [{ name = \"r\", timeout = 0 }]\n",
                    "tcpapps.a.actions[0].timeout: must be a number of seconds > 0", 5, 36);
  require_one_error(ids + "[tcpapps.\"a b\"]\nport = 1\n", "tcpapps.\"a b\": app name must be", 3, 10);
  require_one_error(ids + "tcpapps = 1\n", "tcpapps: must be a table", 3, 11);

  require_one_error(ids + "[streams.\"bad name\"]\n", "streams.\"bad name\": stream name must be 1..64", 3, 10);
  require_one_error(ids + "[streams." + std::string(65, 'x') + "]\n", "stream name must be 1..64", 3, 10);
  require_one_error(ids + "[streams.s]\nbatch_size = 0\n", "streams.s.batch_size: must be an integer 1..1000000, got 0", 4, 14);
  require_one_error(ids + "[streams.s]\nbatch_size = 1000001\n", "got 1000001", 4, 14);
  require_one_error(ids + "[streams.s]\nflush_period = -0.5\n", "streams.s.flush_period: must be a number of seconds > 0", 4, 16);
  require_one_error(ids + "[streams.s]\ncompression = \"zstd\"\n",
                    "streams.s.compression: must be one of \"Lz4\", \"Disabled\", got \"zstd\"", 4, 15);
  require_one_error(ids + "[streams.s]\ncompression = 1\n", "got an integer", 4, 15);
  require_one_error(ids + "[streams.s]\npriority = 256\n", "streams.s.priority: must be an integer 0..255, got 256", 4, 12);
  require_one_error(ids + "[streams.s]\ntopic = \"/a/{stram}\"\n", "unknown placeholder \"{stram}\"", 4, 9);
  require_one_error(ids + "[streams.s]\ntopic = \"/a/+\"\n", "wildcards", 4, 9);
  require_one_error(ids + "[streams.s]\ntopic = \"\"\n", "streams.s.topic: must be a non-empty string", 4, 9);
  require_one_error(ids + "streams.s = 5\n", "streams.s: must be a table", 3, 13);
  // (batch_size, flush_period, priority and persistence are uplink's: warnings, see below)
  require_one_error(ids + "[streams.action_status]\ncompression = \"Lz4\"\n",
                    "streams.action_status.compression: cannot be set", 4, 1);
  require_one_error(ids + "max_stream_count = 1\n[streams.a]\n[streams.b]\n",
                    "2 streams are configured but max_stream_count is 1", 3, 20);

  require_one_error(ids + "[spool]\nmax_bytes = 0\n", "spool.max_bytes: must be an integer > 0", 4, 13);
  require_one_error(ids + "[spool]\nmax_memory_bytes = -5\n", "spool.max_memory_bytes: must be an integer > 0, got -5", 4, 20);
  require_one_error(ids + "[spool]\nfsync = \"always\"\n",
                    "spool.fsync: must be one of \"batch\", \"interval\", \"never\", got \"always\"", 4, 9);
  require_one_error(ids + "[log]\nlevel = \"verbose\"\n", "log.level: must be one of \"trace\"", 4, 9);
  require_one_error(ids + "[log]\nlevel = [\"info\"]\n", "got an array", 4, 9);
}

TEST_CASE("config: accepted edge values", "[config]") {
  const std::string ids = kIds;
  auto r = load(ids + "max_stream_count = 1\n[streams.a]\n[streams.action_status]\n");
  CHECK(r.config);  // action_status does not count
  r = load(ids + "[log]\nlevel = \"WARN\"\n[streams.s]\ncompression = \"LZ4\"\n[spool]\nfsync = \"Interval\"\n");
  REQUIRE(r.config);
  CHECK(r.config->log.level == LogLevel::Warn);
  CHECK(r.config->streams.at("s").compression == Compression::Lz4);
  CHECK(r.config->spool.fsync == FsyncPolicy::Interval);
  r = load(ids + "shutdown_timeout = 0\n[broker]\nport = 65535\nreconnect_min = 0.001\nreconnect_max = 0.001\n");
  REQUIRE(r.config);
  CHECK(r.config->shutdown_timeout == 0ms);
  CHECK(r.config->broker.port == 65535);
  CHECK(r.config->broker.reconnect_min == 1ms);
  r = load(ids + "[streams." + std::string(64, 'x') + "]\n");
  CHECK(r.config);
  // Actions may also be written as an array of tables.
  r = load(ids + "[tcpapps.a]\nport = 1\n[[tcpapps.a.actions]]\nname = \"x\"\ntimeout = 2\n");
  REQUIRE(r.config);
  REQUIRE(r.config->tcpapps.at("a").actions.size() == 1);
  CHECK(r.config->tcpapps.at("a").actions[0].timeout == 2000ms);
}

TEST_CASE("config: apps must not share an address or an action", "[config]") {
  const std::string ids = kIds;
  require_one_error(ids + "[tcpapps.a]\nport = 5050\n[tcpapps.b]\nport = 5050\n",
                    "tcpapps.b.port: 127.0.0.1 port 5050 overlaps tcpapps.a", 6, 8);
  // The error is on the app that comes later in the file, whatever the names sort as.
  require_one_error(ids + "[tcpapps.z]\nport = 5050\n[tcpapps.a]\nport = 5050\n",
                    "tcpapps.a.port: 127.0.0.1 port 5050 overlaps tcpapps.z", 6, 8);
  require_one_error(ids + "[tcpapps.a]\nport = 5050\n[tcpapps.b]\nport = 5050\nbind = \"0.0.0.0\"\n",
                    "overlaps tcpapps.a", 6, 8);
  require_one_error(ids + "[tcpapps.a]\nport = 5050\nbind = \"::\"\n[tcpapps.b]\nport = 5050\nbind = \"10.0.0.1\"\n",
                    "overlaps tcpapps.a", 7, 8);
  require_one_error(ids + "[tcpapps.a]\nport = 1\nbind = \"::1\"\n[tcpapps.b]\nport = 1\nbind = \"0:0::1\"\n",
                    "overlaps", 7, 8);
  CHECK(load(ids + "[tcpapps.a]\nport = 5050\n[tcpapps.b]\nport = 5051\n").config);
  CHECK(load(ids + "[tcpapps.a]\nport = 5050\n[tcpapps.b]\nport = 5050\nbind = \"127.0.0.2\"\n").config);

  require_one_error(ids + "[tcpapps.b]\nport = 1\nactions = [{ name = \"reboot\" }]\n"
                          "[tcpapps.a]\nport = 2\nactions = [{ name = \"x\" }, { name = \"reboot\" }]\n",
                    "tcpapps.a.actions: action \"reboot\" is already listed by tcpapps.b", 8, 37);
  require_one_error(ids + "[tcpapps.a]\nport = 1\nactions = [{ name = \"r\" }, { name = \"r\" }]\n",
                    "already listed by tcpapps.a", 5, 37);
}

TEST_CASE("config: all errors are reported in one pass, in file order", "[config]") {
  const std::string text = R"(project_id = ""
device_id = "gw"
[broker]
port = 0
keep_alive = "30"
[tcpapps.a]
port = 70000
actions = [{ name = "x", timeout = -1 }]
[streams.s]
batch_size = 0
priority = -1
[spool]
fsync = "sometimes"
[log]
level = 3
)";
  const auto r = load(text);
  INFO(all_issues(r.errors));
  CHECK_FALSE(r.config);
  REQUIRE(r.errors.size() == 9);
  const int lines[] = {1, 4, 5, 7, 8, 10, 11, 13, 15};
  for (size_t i = 0; i < r.errors.size(); ++i) CHECK(r.errors[i].line == lines[i]);
  CHECK(r.errors[0].message.find("project_id") == 0);
  CHECK(r.errors[8].message.find("log.level") == 0);
}

TEST_CASE("config: unknown keys are listed with positions and keep the config", "[config]") {
  const std::string text = std::string(kIds) + R"(prot = 1
[broker]
hots = "x"
[broker.tls]
verfy = false
[tcpapps.a]
port = 1
bnd = "x"
actions = [{ name = "r", timout = 3 }]
[streams.s]
batchsize = 3
[spool]
max = 1
[log]
lvl = "x"
[devices.mcu]
path = "/dev/ttyUSB0"
port = "/dev/ttyUSB0"
[htpp]
)";
  const auto r = load(text);
  INFO(all_issues(r.unknown_keys));
  CHECK(r.errors.empty());
  CHECK(r.config);
  REQUIRE(r.unknown_keys.size() == 10);
  const auto& u = r.unknown_keys;
  CHECK(u[0].message == "unknown key 'prot' at top level");
  CHECK((u[0].line == 3 && u[0].column == 1));
  CHECK(u[1].message == "unknown key 'hots' in [broker]");
  CHECK(u[1].line == 5);
  CHECK(u[2].message == "unknown key 'verfy' in [broker.tls]");
  CHECK(u[2].line == 7);
  CHECK(u[3].message == "unknown key 'bnd' in [tcpapps.a]");
  CHECK(u[3].line == 10);
  CHECK(u[4].message == "unknown key 'timout' in tcpapps.a.actions[0]");
  CHECK((u[4].line == 11 && u[4].column == 26));
  CHECK(u[5].message == "unknown key 'batchsize' in [streams.s]");
  CHECK(u[6].message == "unknown key 'max' in [spool]");
  CHECK(u[7].message == "unknown key 'lvl' in [log]");
  CHECK(u[8].message == "unknown key 'port' in [devices.mcu]");
  CHECK(u[8].line == 20);
  CHECK(u[9].message == "unknown key 'htpp' at top level");
  CHECK(u[9].line == 21);
  CHECK(u[9].to_string() == "test.toml:21:2: unknown key 'htpp' at top level");
}

TEST_CASE("config: password_file", "[config]") {
  TempDir dir;
  const std::string ids = kIds;
  const std::string file = dir.write("pass", "hunter2\r\n");
  auto r = load(ids + "[broker]\nusername = \"u\"\npassword_file = \"" + file + "\"\n");
  INFO(all_issues(r.errors));
  REQUIRE(r.config);
  CHECK(r.config->broker.password == "hunter2");
  CHECK(r.config->broker.password_file == file);

  require_one_error(ids + "[broker]\nusername = \"u\"\npassword_file = \"" + dir.path + "/none\"\n",
                    "broker.password_file: cannot read \"" + dir.path + "/none\": No such file or directory", 5, 17);
  require_one_error(ids + "[broker]\nusername = \"u\"\npassword_file = \"" + dir.path + "\"\n",
                    "Is a directory", 5, 17);
  require_one_error(ids + "[broker]\nusername = \"u\"\npassword = \"p\"\npassword_file = \"" + file + "\"\n",
                    "broker.password_file: cannot be combined with broker.password", 6, 17);
  require_one_error(ids + "[broker]\npassword_file = \"" + file + "\"\n", "needs broker.username", 4, 17);
  const std::string nul = dir.write("nul", std::string("a\0b", 3));
  require_one_error(ids + "[broker]\nusername = \"u\"\npassword_file = \"" + nul + "\"\n", "NUL byte", 5, 17);
}

TEST_CASE("config: TLS files must be readable and paired", "[config]") {
  TempDir dir;
  const std::string ids = kIds;
  const std::string ca = dir.write("ca.pem", "ca");
  const std::string cert = dir.write("cert.pem", "cert");
  const std::string key = dir.write("key.pem", "key");
  auto r = load(ids + "[broker.tls]\nca_file = \"" + ca + "\"\ncert_file = \"" + cert + "\"\nkey_file = \"" +
                key + "\"\nverify = false\n");
  INFO(all_issues(r.errors));
  REQUIRE(r.config);
  REQUIRE(r.config->broker.tls);
  CHECK(r.config->broker.tls->ca_file == ca);
  CHECK(r.config->broker.tls->cert_file == cert);
  CHECK(r.config->broker.tls->key_file == key);
  CHECK_FALSE(r.config->broker.tls->verify);

  r = load(ids + "[broker.tls]\n");
  REQUIRE(r.config);
  REQUIRE(r.config->broker.tls);  // an empty section still turns TLS on
  CHECK(r.config->broker.tls->verify);
  CHECK(r.config->broker.tls->ca_file.empty());

  require_one_error(ids + "[broker.tls]\nca_file = \"" + dir.path + "/missing.pem\"\n",
                    "broker.tls.ca_file: cannot read \"" + dir.path + "/missing.pem\": No such file", 4, 11);
  require_one_error(ids + "[broker.tls]\ncert_file = \"" + cert + "\"\n",
                    "broker.tls.cert_file: needs broker.tls.key_file", 4, 13);
  require_one_error(ids + "[broker.tls]\nkey_file = \"" + key + "\"\n",
                    "broker.tls.key_file: needs broker.tls.cert_file", 4, 12);
  require_one_error(ids + "[broker.tls]\nverify = \"yes\"\n", "broker.tls.verify: must be a boolean", 4, 10);
  require_one_error(ids + "[broker.tls]\nca_file = \"" + dir.path + "\"\n", "Is a directory", 4, 11);

  // Both problems of one section at once.
  r = load(ids + "[broker.tls]\ncert_file = \"" + dir.path + "/nope\"\nca_file = 1\n");
  CHECK(r.errors.size() == 3);
}

TEST_CASE("config: TOML syntax errors carry their position", "[config]") {
  const auto r = load(std::string(kIds) + "[broker]\nport = = 3\n");
  REQUIRE(r.errors.size() == 1);
  CHECK_FALSE(r.config);
  CHECK(r.errors[0].line == 4);
  CHECK(r.errors[0].column > 0);
  CHECK(r.errors[0].message.rfind("TOML syntax error: ", 0) == 0);
  CHECK(r.errors[0].to_string().rfind("test.toml:4:", 0) == 0);

  const auto dup = load(std::string(kIds) + "device_id = \"again\"\n");
  REQUIRE(dup.errors.size() == 1);
  CHECK(dup.errors[0].line == 3);

  const auto bad_utf8 = load(std::string(kIds) + "persistence_path = \"\xff\"\n");
  REQUIRE(bad_utf8.errors.size() == 1);
  CHECK(bad_utf8.errors[0].line == 3);

  CHECK(load("\xef\xbb\xbf" + std::string(kIds)).config);  // a UTF-8 BOM is fine
}

TEST_CASE("config: load_config_file", "[config]") {
  TempDir dir;
  const std::string missing = dir.path + "/nope.toml";
  auto r = load_config_file(missing);
  REQUIRE(r.errors.size() == 1);
  CHECK_FALSE(r.config);
  CHECK(r.errors[0].to_string() == missing + ": cannot read " + missing + ": No such file or directory");

  r = load_config_file(dir.path);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message.find("Is a directory") != std::string::npos);

  const std::string good = dir.write("good.toml", std::string(kIds) + "[broker]\nport = 1\n");
  r = load_config_file(good);
  REQUIRE(r.config);
  CHECK(r.config->source == good);
  CHECK(r.config->broker.port == 1);

  const std::string bad = dir.write("bad.toml", std::string(kIds) + "[broker]\nport = 0\n");
  r = load_config_file(bad);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].to_string() == bad + ":4:8: broker.port: must be an integer 1..65535, got 0");
}

namespace {
// A device on lines 3-4, for the rtstream tests.
const std::string kDevice = std::string(kIds) + "[devices.m]\npath = \"/dev/ttyACM0\"\n";
}  // namespace

TEST_CASE("config: devices and rtstreams", "[config][devices]") {
  const std::string text = std::string(kIds) + R"([devices.mcu]
transport = "serial"
path = "/dev/serial/by-id/usb-Espressif_USB_JTAG_serial_debug_unit_F4:12:FA:00:11:22-if00"
baud = 115200
framing = "console"
log_stream = "mcu_log"
max_frame_bytes = 5000

[devices.raw]
path = "/dev/ttyUSB0"

[rtstreams.console]
device = "mcu"
endpoint = "upyconsole"
port = 7001

[rtstreams.telemetry]
device = "raw"
endpoint = "telem"
file_name = "telem-1"
port = 7002
bind = "::1"
mqtt = true

[rtstreams.cmd]
device = "mcu"
endpoint = "cmd"
mqtt = true
)";
  const auto r = load(text);
  INFO(all_issues(r.errors));
  INFO(all_issues(r.unknown_keys));
  REQUIRE(r.config);
  CHECK(r.unknown_keys.empty());
  const Config& c = *r.config;
  REQUIRE(c.devices.size() == 2);
  const DeviceConfig& mcu = c.devices.at("mcu");
  CHECK(mcu.name == "mcu");
  CHECK(mcu.transport == DeviceTransport::Serial);
  CHECK(mcu.path == "/dev/serial/by-id/usb-Espressif_USB_JTAG_serial_debug_unit_F4:12:FA:00:11:22-if00");
  CHECK(mcu.baud == 115200);
  CHECK(mcu.framing == DeviceFraming::Console);
  CHECK(mcu.log_stream == "mcu_log");
  CHECK(mcu.max_frame_bytes == 5000);
  // Defaults.
  CHECK(c.devices.at("raw") == DeviceConfig{"raw", DeviceTransport::Serial, "/dev/ttyUSB0", 921600,
                                            DeviceFraming::Hdlc, "device_log", 256 * 1024});

  REQUIRE(c.rtstreams.size() == 3);
  CHECK(c.rtstreams.at("console") ==
        RtStreamConfig{"console", "mcu", "upyconsole", "upyconsole", 7001, "127.0.0.1", false});
  CHECK(c.rtstreams.at("telemetry") == RtStreamConfig{"telemetry", "raw", "telem", "telem-1", 7002, "::1", true});
  CHECK(c.rtstreams.at("cmd") == RtStreamConfig{"cmd", "mcu", "cmd", "cmd", 0, "127.0.0.1", true});

  // Enum strings are case-insensitive like the other enums; the transport may be spelt out.
  const auto upper = load(std::string(kIds) + "[devices.d]\npath = \"/x\"\ntransport = \"Serial\"\nframing = \"HDLC\"\n");
  REQUIRE(upper.config);
  CHECK(upper.config->devices.at("d").framing == DeviceFraming::Hdlc);
  // Every rate SerialTransport maps is accepted.
  for (uint32_t baud : {9600u, 57600u, 230400u, 1000000u, 4000000u}) {
    const auto b = load(std::string(kIds) + "[devices.d]\npath = \"/x\"\nbaud = " + std::to_string(baud) + "\n");
    REQUIRE(b.config);
    CHECK(b.config->devices.at("d").baud == baud);
  }
  // Four rtstreams fill a device; the same file_name on two devices is two sessions.
  std::string four = kDevice + "[devices.n]\npath = \"/dev/ttyACM1\"\n";
  for (int i = 0; i < 4; ++i)
    four += "[rtstreams.s" + std::to_string(i) + "]\ndevice = \"m\"\nendpoint = \"e" + std::to_string(i) + "\"\nmqtt = true\n";
  four += "[rtstreams.other]\ndevice = \"n\"\nendpoint = \"e0\"\nmqtt = true\n";
  const auto f = load(four);
  INFO(all_issues(f.errors));
  CHECK(f.config);
  // One endpoint, two sessions: distinct file_names make distinct device sessions.
  CHECK(load(kDevice + "[rtstreams.a]\ndevice = \"m\"\nendpoint = \"e\"\nmqtt = true\n"
                       "[rtstreams.b]\ndevice = \"m\"\nendpoint = \"e\"\nfile_name = \"e2\"\nmqtt = true\n")
            .config);
  // A port with mqtt = false is fine: the TCP side uses it.
  CHECK(load(kDevice + "[rtstreams.a]\ndevice = \"m\"\nendpoint = \"e\"\nport = 1\nmqtt = false\n").config);
  // An rtstream and an app may share a port number on different addresses.
  CHECK(load(kDevice + "[tcpapps.a]\nport = 7000\n[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nport = 7000\n"
                       "bind = \"127.0.0.2\"\n")
            .config);
}

TEST_CASE("config: ble devices", "[config][devices]") {
  const std::string ids = kIds;
  const auto a = load(ids + "[devices.bot]\ntransport = \"BLE\"\naddress = \"aa:bb:cc:dd:ee:0f\"\n");
  INFO(all_issues(a.errors));
  REQUIRE(a.config);
  const DeviceConfig& d = a.config->devices.at("bot");
  CHECK(d.transport == DeviceTransport::Ble);
  CHECK(d.ble_address == "AA:BB:CC:DD:EE:0F");  // BlueZ spells addresses in upper case
  CHECK(d.ble_name.empty());
  CHECK(d.ble_adapter == "hci0");
  CHECK(d.ble_service_uuid.empty());  // either Raft service UUID
  CHECK(d.ble_command_uuid == "aa76677e-9cfd-4626-a510-0d305be57c8e");
  CHECK(d.ble_response_uuid == "aa76677e-9cfd-4626-a510-0d305be57c8f");
  CHECK(d.ble_max_write == 512);
  CHECK(d.framing == DeviceFraming::Hdlc);

  const auto n = load(ids + "[devices.bot]\ntransport = \"ble\"\nname = \"RaftBot\"\nadapter = \"hci1\"\n"
                            "service_uuid = \"DA903F65-D5C2-4F4D-A065-D1AADE7AF874\"\nmax_write = 182\n");
  INFO(all_issues(n.errors));
  REQUIRE(n.config);
  const DeviceConfig& e = n.config->devices.at("bot");
  CHECK(e.ble_name == "RaftBot");
  CHECK(e.ble_adapter == "hci1");
  CHECK(e.ble_service_uuid == "da903f65-d5c2-4f4d-a065-d1aade7af874");
  CHECK(e.ble_max_write == 182);
  // A BLE device can carry rtstreams and publish mappings like a serial one.
  CHECK(load(ids + "[devices.bot]\ntransport = \"ble\"\nname = \"R\"\n[rtstreams.c]\ndevice = \"bot\"\n"
                   "endpoint = \"upyconsole\"\nport = 7001\n")
            .config);
}

TEST_CASE("config: ble device errors", "[config][devices]") {
  const std::string ids = kIds;
  const std::string ble = ids + "[devices.m]\ntransport = \"ble\"\n";
  require_one_error(ble, "devices.m: a ble device needs address (\"AA:BB:CC:DD:EE:FF\") or name (its advertised name)", 3, 1);
  require_one_error(ble + "address = \"AA:BB:CC:DD:EE\"\n",
                    "devices.m.address: must be a Bluetooth address like \"AA:BB:CC:DD:EE:FF\", got \"AA:BB:CC:DD:EE\"", 5, 11);
  require_one_error(ble + "address = \"AA-BB-CC-DD-EE-FF\"\n", "must be a Bluetooth address", 5, 11);
  require_one_error(ble + "address = \"GG:BB:CC:DD:EE:FF\"\n", "must be a Bluetooth address", 5, 11);
  require_one_error(ble + "address = \"AA:BB:CC:DD:EE:FF\"\nname = \"x\"\n",
                    "devices.m.name: give address or name, not both", 6, 8);
  require_one_error(ble + "name = \"x\"\npath = \"/dev/ttyACM0\"\n",
                    "devices.m.path: only used with transport = \"serial\"", 6, 8);
  require_one_error(ble + "name = \"x\"\nbaud = 115200\n", "devices.m.baud: only used with transport = \"serial\"", 6, 8);
  require_one_error(ble + "name = \"x\"\nframing = \"console\"\n",
                    "devices.m.framing: a ble device carries HDLC frames only", 6, 11);
  require_one_error(ble + "name = \"x\"\nadapter = \"hci 0\"\n",
                    "devices.m.adapter: must be a BlueZ adapter name like \"hci0\", got \"hci 0\"", 6, 11);
  require_one_error(ble + "name = \"x\"\ncommand_uuid = \"1234\"\n",
                    "devices.m.command_uuid: must be a 128-bit UUID like", 6, 16);
  require_one_error(ble + "name = \"x\"\nmax_write = 10\n", "devices.m.max_write: must be an integer 20..512, got 10", 6, 13);
  require_one_error(ble + "name = \"x\"\nmax_write = 513\n", "must be an integer 20..512", 6, 13);
  // BLE keys on a serial device.
  require_one_error(ids + "[devices.m]\npath = \"/dev/x\"\naddress = \"AA:BB:CC:DD:EE:FF\"\n",
                    "devices.m.address: only used with transport = \"ble\"", 5, 11);
}

TEST_CASE("config: device errors", "[config][devices]") {
  const std::string ids = kIds;
  require_one_error(ids + "[devices.m]\n", "devices.m.path: required key is missing", 3, 1);
  require_one_error(ids + "[devices.m]\nbaud = 115200\n", "devices.m.path: required key is missing", 3, 1);
  // No follow-on "path missing" for a transport that is refused anyway.
  require_one_error(ids + "[devices.m]\ntransport = \"usb\"\n", "devices.m.transport: must be \"serial\" or \"ble\", got \"usb\"", 4, 13);
  require_one_error(ids + "[devices.m]\npath = \"/dev/x\"\ntransport = \"usb\"\n",
                    "devices.m.transport: must be \"serial\" or \"ble\", got \"usb\"", 5, 13);
  require_one_error(ids + "[devices.m]\npath = \"/dev/x\"\ntransport = 1\n",
                    "devices.m.transport: must be a string, got an integer", 5, 13);
  require_one_error(ids + "[devices.m]\npath = \"ttyUSB0\"\n",
                    "devices.m.path: must be an absolute path like \"/dev/serial/by-id/...\", got \"ttyUSB0\"", 4, 8);
  require_one_error(ids + "[devices.m]\npath = \"\"\n", "devices.m.path: must be a non-empty string", 4, 8);
  require_one_error(ids + "[devices.m]\npath = \"/dev/a\\u0000b\"\n", "must not contain NUL", 4, 8);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nbaud = 12345\n",
                    "devices.m.baud: 12345 is not a supported baud rate; use one of 9600, 19200, 38400, 57600, "
                    "115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000, "
                    "2500000, 3000000, 3500000, 4000000",
                    5, 8);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nbaud = 0\n", "devices.m.baud: must be an integer 1..4294967295, got 0", 5, 8);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nbaud = 4294967296\n", "must be an integer 1..4294967295", 5, 8);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nbaud = \"115200\"\n", "got a string", 5, 8);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nmax_frame_bytes = 100\n",
                    "devices.m.max_frame_bytes: must be an integer 512..16777216, got 100", 5, 19);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nmax_frame_bytes = 16777217\n",
                    "devices.m.max_frame_bytes: must be an integer 512..16777216, got 16777217", 5, 19);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nmax_frame_bytes = \"64k\"\n",
                    "devices.m.max_frame_bytes: must be an integer 512..16777216, got a string", 5, 19);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nframing = \"raw\"\n",
                    "devices.m.framing: must be one of \"hdlc\", \"console\", got \"raw\"", 5, 11);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nframing = \"console\"\nlog_stream = \"bad name\"\n",
                    "devices.m.log_stream: a stream name must be 1..64 letters, digits, '_' or '-', got \"bad name\"",
                    6, 14);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nframing = \"console\"\nlog_stream = \"a/b\"\n",
                    "a stream name must be", 6, 14);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nframing = \"console\"\nlog_stream = \"action_status\"\n",
                    "devices.m.log_stream: \"action_status\" is the built-in action status stream", 6, 14);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nframing = \"console\"\nlog_stream = \"\"\n",
                    "devices.m.log_stream: must be a non-empty string", 6, 14);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nlog_stream = \"logs\"\n",
                    "devices.m.log_stream: only used with framing = \"console\"", 5, 14);
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nframing = \"hdlc\"\nlog_stream = \"logs\"\n",
                    "only used with framing", 6, 14);
  // A bad framing is reported once, without a follow-on about log_stream.
  require_one_error(ids + "[devices.m]\npath = \"/x\"\nframing = 3\nlog_stream = \"logs\"\n",
                    "devices.m.framing: must be one of", 5, 11);
  require_one_error(ids + "[devices.\"a b\"]\npath = \"/x\"\n", "devices.\"a b\": device name must be 1..64", 3, 10);
  require_one_error(ids + "[devices.\"a+b\"]\npath = \"/x\"\n", "device name must be", 3, 10);
  require_one_error(ids + "devices = 1\n", "devices: must be a table, got an integer", 3, 11);
  require_one_error(ids + "devices.m = \"/dev/x\"\n", "devices.m: must be a table, got a string", 3, 13);
  require_one_error(ids + "[devices.a]\npath = \"/dev/x\"\n[devices.b]\npath = \"/dev/x\"\n",
                    "devices.b.path: \"/dev/x\" is already used by devices.a", 6, 8);
  // The later one in the file gets the error, whatever the names sort as.
  require_one_error(ids + "[devices.z]\npath = \"/dev/x\"\n[devices.a]\npath = \"/dev/x\"\n",
                    "devices.a.path: \"/dev/x\" is already used by devices.z", 6, 8);
}

TEST_CASE("config: rtstream errors", "[config][devices]") {
  const std::string d = kDevice;  // lines 1-4; [rtstreams.r] is line 5
  require_one_error(d + "[rtstreams.r]\nendpoint = \"e\"\nmqtt = true\n", "rtstreams.r.device: required key is missing", 5, 1);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nmqtt = true\n", "rtstreams.r.endpoint: required key is missing", 5, 1);
  require_one_error(d + "[rtstreams.r]\ndevice = \"nope\"\nendpoint = \"e\"\nmqtt = true\n",
                    "rtstreams.r.device: no device \"nope\" is configured in [devices]", 6, 10);
  require_one_error(kIds + std::string("[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nmqtt = true\n"),
                    "no device \"m\" is configured", 4, 10);
  require_one_error(d + "[rtstreams.r]\ndevice = 5\nendpoint = \"e\"\nmqtt = true\n",
                    "rtstreams.r.device: must be a string, got an integer", 6, 10);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\n",
                    "rtstreams.r: needs a port, mqtt = true, or both", 5, 1);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nmqtt = false\n",
                    "rtstreams.r: needs a port, mqtt = true, or both", 8, 8);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nmqtt = \"yes\"\n",
                    "rtstreams.r.mqtt: must be a boolean (true or false), got a string", 8, 8);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nmqtt = true\nbind = \"0.0.0.0\"\n",
                    "rtstreams.r.bind: only used with a port", 9, 8);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nport = 7000\nbind = \"localhost\"\n",
                    "rtstreams.r.bind: must be an IPv4 or IPv6 address literal, got \"localhost\"", 9, 8);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nport = 0\n",
                    "rtstreams.r.port: must be an integer 1..65535, got 0", 8, 8);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nport = 65536\n", "got 65536", 8, 8);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"\"\nmqtt = true\n",
                    "rtstreams.r.endpoint: must be a non-empty string", 7, 12);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"a\\\"b\"\nmqtt = true\n",
                    "rtstreams.r.endpoint: must not contain quotes, backslashes or control characters, got \"a\\\"b\"",
                    7, 12);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = 'a\\b'\nmqtt = true\n", "must not contain quotes", 7, 12);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"a\\tb\"\nmqtt = true\n", "control characters", 7, 12);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"a\\u007fb\"\nmqtt = true\n", "control characters", 7, 12);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"" + std::string(65, 'e') + "\"\nmqtt = true\n",
                    "rtstreams.r.endpoint: must be at most 64 bytes, got 65", 7, 12);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nfile_name = \"\"\nmqtt = true\n",
                    "rtstreams.r.file_name: must be a non-empty string", 8, 13);
  require_one_error(d + "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nfile_name = \"a\\nb\"\nmqtt = true\n",
                    "rtstreams.r.file_name: must not contain", 8, 13);
  require_one_error(d + "[rtstreams.\"a/b\"]\ndevice = \"m\"\nendpoint = \"e\"\nmqtt = true\n",
                    "rtstreams.\"a/b\": rtstream name must be 1..64 letters, digits, '_' or '-'", 5, 12);
  require_one_error(d + "[rtstreams.\"a#\"]\ndevice = \"m\"\nendpoint = \"e\"\nmqtt = true\n", "rtstream name must be", 5, 12);
  require_one_error(d + "[rtstreams.\"+\"]\ndevice = \"m\"\nendpoint = \"e\"\nmqtt = true\n", "rtstream name must be", 5, 12);
  require_one_error(kIds + std::string("rtstreams = []\n"), "rtstreams: must be a table, got an array", 3, 13);
  require_one_error(kIds + std::string("rtstreams.r = 1\n"), "rtstreams.r: must be a table, got an integer", 3, 15);

  // A device with a bad value still exists: its rtstreams get no follow-on error.
  require_one_error(std::string(kIds) + "[devices.m]\npath = \"/x\"\nbaud = 7\n"
                                        "[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nmqtt = true\n",
                    "devices.m.baud", 5, 8);
}

TEST_CASE("config: rtstreams across sections", "[config][devices]") {
  const std::string d = kDevice;
  auto stream = [](const std::string& name, const std::string& extra) {
    return "[rtstreams." + name + "]\ndevice = \"m\"\nendpoint = \"" + name + "\"\n" + extra;
  };
  // The 5th rtstream of a device (in file order) is refused at its device key.
  std::string five = d;
  for (const char* n : {"e", "d", "c", "b"}) five += stream(n, "mqtt = true\n");
  require_one_error(five + stream("a", "mqtt = true\n"),
                    "rtstreams.a.device: device \"m\" already has 4 rtstreams, the most its sessions allow", 22, 10);

  // One file_name on one device would be one device session (ufStart restart, §5.1).
  require_one_error(d + stream("a", "mqtt = true\n") + "[rtstreams.b]\ndevice = \"m\"\nendpoint = \"a\"\nmqtt = true\n",
                    "rtstreams.b: file_name \"a\" is already used on device \"m\" by rtstreams.a", 11, 12);
  require_one_error(d + stream("a", "mqtt = true\n") + stream("b", "file_name = \"a\"\nmqtt = true\n"),
                    "rtstreams.b: file_name \"a\" is already used on device \"m\" by rtstreams.a", 12, 13);

  // Ports clash with each other and with apps, whichever comes first in the file.
  require_one_error(d + stream("a", "port = 7000\n") + stream("b", "port = 7000\n"),
                    "rtstreams.b.port: 127.0.0.1 port 7000 overlaps rtstreams.a (127.0.0.1 port 7000)", 12, 8);
  require_one_error(d + "[tcpapps.app]\nport = 7000\n" + stream("r", "port = 7000\nbind = \"0.0.0.0\"\n"),
                    "rtstreams.r.port: 0.0.0.0 port 7000 overlaps tcpapps.app (127.0.0.1 port 7000)", 10, 8);
  require_one_error(d + stream("r", "port = 7000\n") + "[tcpapps.app]\nport = 7000\n",
                    "tcpapps.app.port: 127.0.0.1 port 7000 overlaps rtstreams.r", 10, 8);
}

TEST_CASE("config: unknown keys in devices and rtstreams", "[config][devices]") {
  const auto r = load(kDevice + "baudrate = 1\n[rtstreams.r]\ndevice = \"m\"\nendpoint = \"e\"\nmqtt = true\nprot = 1\n");
  INFO(all_issues(r.errors));
  REQUIRE(r.config);
  REQUIRE(r.unknown_keys.size() == 2);
  CHECK(r.unknown_keys[0].to_string() == "test.toml:5:1: unknown key 'baudrate' in [devices.m]");
  CHECK(r.unknown_keys[1].to_string() == "test.toml:10:1: unknown key 'prot' in [rtstreams.r]");
}

TEST_CASE("config: device publish mappings", "[config][devices]") {
  // kDevice is lines 1-4; the first [[devices.m.publish]] is line 5.
  const auto r = load(kDevice + R"([[devices.m.publish]]
topic = "devjson"
stream = "mcu_pub"
rate_hz = 5
[[devices.m.publish]]
topic = "dev.bin-2_x"
stream = "mcu_bin"
rate_hz = 0.25
min_ms = 0
trigger = "change"
)");
  INFO(all_issues(r.errors));
  REQUIRE(r.config);
  CHECK(r.unknown_keys.empty());
  const auto& pub = r.config->devices.at("m").publish;
  REQUIRE(pub.size() == 2);
  CHECK(pub[0] == DevicePublishConfig{"devjson", "mcu_pub", 5.0, 50, "timeorchange"});
  CHECK(pub[1] == DevicePublishConfig{"dev.bin-2_x", "mcu_bin", 0.25, 0, "change"});
  // The inline form is the same array of tables; 1000 Hz is the top of the range.
  const auto inline_form =
      load(kDevice + "publish = [{ topic = \"devjson\", stream = \"s\", rate_hz = 1000, trigger = \"\" }]\n");
  INFO(all_issues(inline_form.errors));
  REQUIRE(inline_form.config);
  CHECK(inline_form.config->devices.at("m").publish.at(0) == DevicePublishConfig{"devjson", "s", 1000.0, 50, ""});
  // No publish tables: none.
  CHECK(load(kDevice).config->devices.at("m").publish.empty());

  const std::string p = kDevice + "[[devices.m.publish]]\n";  // keys from line 6 on
  require_one_error(p + "stream = \"s\"\n", "devices.m.publish[0].topic: required key is missing", 5, 1);
  require_one_error(p + "topic = \"t\"\n", "devices.m.publish[0].stream: required key is missing", 5, 1);
  require_one_error(p + "topic = \"a/b\"\nstream = \"s\"\n",
                    "devices.m.publish[0].topic: a device topic must be 1..64 letters, digits, '.', '_' or '-', "
                    "got \"a/b\"",
                    6, 9);
  require_one_error(p + "topic = \"" + std::string(65, 't') + "\"\nstream = \"s\"\n", "a device topic must be", 6, 9);
  require_one_error(p + "topic = \"\"\nstream = \"s\"\n", "must be a non-empty string", 6, 9);
  require_one_error(p + "topic = \"t\"\nstream = \"a b\"\n",
                    "devices.m.publish[0].stream: a stream name must be 1..64 letters, digits, '_' or '-', got "
                    "\"a b\"",
                    7, 10);
  require_one_error(p + "topic = \"t\"\nstream = \"action_status\"\n",
                    "devices.m.publish[0].stream: \"action_status\" is the built-in action status stream", 7, 10);
  require_one_error(p + "topic = \"t\"\nstream = \"s\"\nrate_hz = 0\n",
                    "devices.m.publish[0].rate_hz: must be a number of Hz > 0 and <= 1000, got 0", 8, 11);
  require_one_error(p + "topic = \"t\"\nstream = \"s\"\nrate_hz = 1000.5\n", "got 1000.5", 8, 11);
  require_one_error(p + "topic = \"t\"\nstream = \"s\"\nrate_hz = -1\n", "> 0 and <= 1000, got -1", 8, 11);
  require_one_error(p + "topic = \"t\"\nstream = \"s\"\nrate_hz = nan\n", "> 0 and <= 1000, got nan", 8, 11);
  require_one_error(p + "topic = \"t\"\nstream = \"s\"\nrate_hz = \"5\"\n", "got a string", 8, 11);
  require_one_error(p + "topic = \"t\"\nstream = \"s\"\nmin_ms = -1\n",
                    "devices.m.publish[0].min_ms: must be an integer 0..4294967295, got -1", 8, 10);
  require_one_error(p + "topic = \"t\"\nstream = \"s\"\nmin_ms = 1.5\n", "must be an integer 0..4294967295", 8, 10);
  require_one_error(p + "topic = \"t\"\nstream = \"s\"\ntrigger = \"time&change\"\n",
                    "devices.m.publish[0].trigger: must be at most 64 letters, digits, '_' or '-'", 8, 11);
  require_one_error(p + "topic = \"t\"\nstream = \"s\"\ntrigger = 1\n", "must be a string, got an integer", 8, 11);
  require_one_error(kDevice + "publish = 1\n",
                    "devices.m.publish: must be an array of tables ([[devices.m.publish]] with topic and stream), "
                    "got an integer",
                    5, 11);
  require_one_error(kDevice + "publish = [1]\n", "devices.m.publish[0]: must be a table with topic and stream", 5, 12);
  // One device subscription per topic: the second mapping of a topic is the error.
  require_one_error(p + "topic = \"t\"\nstream = \"s\"\n[[devices.m.publish]]\ntopic = \"t\"\nstream = \"s2\"\n",
                    "devices.m.publish[1].topic: topic \"t\" is already published by devices.m.publish[0]", 9, 9);
  // The same topic on two devices is two subscriptions.
  CHECK(load(p + "topic = \"t\"\nstream = \"s\"\n[devices.n]\npath = \"/dev/n\"\n[[devices.n.publish]]\n"
                 "topic = \"t\"\nstream = \"s\"\n")
            .config);

  const auto unknown = load(p + "topic = \"t\"\nstream = \"s\"\nrate = 5\n");
  REQUIRE(unknown.config);
  REQUIRE(unknown.unknown_keys.size() == 1);
  CHECK(unknown.unknown_keys[0].to_string() == "test.toml:8:1: unknown key 'rate' in devices.m.publish[0]");
}

TEST_CASE("non-ASCII text outside strings and comments is a syntax error found before toml++ parses", "[config]") {
  // toml++ 3.3 reaches __builtin_unreachable for some of these characters; the text
  // must never get to it.
  auto bad = load_config_string("project_id = \"demo\"\ndevice_id = \"gw\"\npr\xC5\x85tlsd3 = 1\n", "bad.toml");
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].to_string() ==
        "bad.toml:3:3: TOML syntax error: a non-ASCII character outside a string or comment");
  auto value = load_config_string("project_id = \xC2\xA0\"demo\"\n", "v.toml");
  REQUIRE(value.errors.size() == 1);
  CHECK(value.errors[0].line == 1);
  CHECK(value.errors[0].column == 14);
  auto continuation = load_config_string("project_id = \"\"\"de\\\n   \xC5\x85mo\"\"\"\n", "c.toml");
  REQUIRE(continuation.errors.size() == 1);
  CHECK(continuation.errors[0].message.find("right after a line-ending backslash") != std::string::npos);

  // Inside strings (all four kinds) and comments it is fine.
  auto ok = load_config_string(
      "# caf\xC3\xA9 \xC5\x85\n"
      "project_id = \"d\xC3\xA9mo\" # \xE2\x82\xAC\n"
      "device_id = 'gw-\xC5\x85'\n"
      "[tcpapps.app]\nport = 5001\n"
      "[streams.s]\ntopic = \"\"\"/t/\xC5\x85/\\\"x\"\"\"\n"
      "[streams.t]\ntopic = '''/t/\xE2\x82\xAC'''\n",
      "ok.toml");
  for (const auto& e : ok.errors) CHECK(e.message.find("non-ASCII") == std::string::npos);
}

TEST_CASE("config: prioritize_live_data", "[config]") {
  const std::string ids = kIds;
  auto r = load(ids);
  REQUIRE(r.config);
  CHECK_FALSE(r.config->prioritize_live_data);  // uplink's default: spooled data first
  r = load(ids + "prioritize_live_data = true\n");
  REQUIRE(r.config);
  CHECK(r.config->prioritize_live_data);
  CHECK(r.warnings.empty());
  require_one_error(ids + "prioritize_live_data = \"yes\"\n",
                    "prioritize_live_data: must be a boolean (true or false), got a string", 3, 24);
}

TEST_CASE("config: a compressed stream's default topic ends in /lz4; a configured topic is used as written",
          "[config]") {
  const auto r = load(std::string(kIds) + R"([streams.motor]
compression = "Lz4"

[streams.imu]
topic = "/tenants/{tenant_id}/devices/{device_id}/events/imu/jsonarray/lz4"
compression = "Lz4"

[streams.raw]
topic = "/custom/{stream}"
compression = "Lz4"
)");
  INFO(all_issues(r.errors));
  REQUIRE(r.config);
  CHECK(r.config->streams.at("motor").topic ==
        "/tenants/{tenant_id}/devices/{device_id}/events/{stream}/jsonarray/lz4");
  CHECK(r.config->streams.at("imu").topic == "/tenants/{tenant_id}/devices/{device_id}/events/imu/jsonarray/lz4");
  CHECK(r.config->streams.at("raw").topic == "/custom/{stream}");
  CHECK(r.config->default_stream.topic == "/tenants/{tenant_id}/devices/{device_id}/events/{stream}/jsonarray");
}

// Fragments written the way uplink's docs/configs/config.toml writes them.
TEST_CASE("config: an uplink config file loads; what edgelink reads differently or ignores is a warning", "[config]") {
  const std::string text = std::string(kIds) + R"(processes = [{ name = "echo" }]
action_redirections = { "firmware_update" = "install_update", "send_file" = "load_file" }
persistence_path = "/tmp/uplink/"
max_stream_count = 10
enable_remote_shell = true

[mqtt]
max_packet_size = 256000
max_inflight = 42
keep_alive = 45
network_timeout = 30

[tcpapps.1]
port = 5050
actions = [{ name = "install_update" }, { name = "load_file" }]

[serializer_metrics]
enabled = true

[streams.imu]
topic = "/tenants/{tenant_id}/devices/{device_id}/events/imu/jsonarray/lz4"
batch_size = 100
compression = "Lz4"
priority = 50

[streams.gps]
topic = "/tenants/{tenant_id}/devices/{device_id}/events/gps/jsonarray"
batch_size = 10
persistence = { max_file_size = 1048576, max_file_count = 10 }

[streams.action_status]
topic = "/tenants/{tenant_id}/devices/{device_id}/action/status"
batch_size = 1
flush_period = 2
persistence = { max_file_size = 10240, max_file_count = 5 }
priority = 255

[downloader]
actions = [{ name = "update_firmware" }, { name = "send_file" }]
path = "/var/tmp/ota-file"

[system_stats]
enabled = false
process_names = ["uplink"]
update_period = 30
)";
  const auto r = load(text);
  INFO(all_issues(r.errors) + all_issues(r.unknown_keys) + all_issues(r.warnings));
  CHECK(r.errors.empty());
  CHECK(r.unknown_keys.empty());
  REQUIRE(r.config);
  CHECK(r.config->broker.max_inflight == 42);
  CHECK(r.config->broker.keep_alive == 45);
  CHECK(r.config->streams.at("imu").topic == "/tenants/{tenant_id}/devices/{device_id}/events/imu/jsonarray/lz4");
  CHECK(r.config->streams.at("imu").priority == 50);
  CHECK(r.config->streams.at("gps").batch_size == 10);
  CHECK(r.config->streams.at("action_status").priority == kActionStatusPriority);
  CHECK(r.config->tcpapps.at("1").port == 5050);

  std::vector<std::string> w;
  for (const auto& issue : r.warnings) w.push_back(issue.to_string());
  const std::string status_why =
      "uplink key ignored (edgelink publishes each action status at once, ahead of all data, and spools it like any "
      "batch)";
  CHECK(w ==
        std::vector<std::string>{
            "test.toml:3:1: processes: uplink feature not supported by edgelink (process actions); key ignored",
            "test.toml:4:1: action_redirections: uplink feature not supported by edgelink (action redirections); "
            "section ignored",
            "test.toml:7:1: enable_remote_shell: uplink feature not supported by edgelink (remote shell); key "
            "ignored",
            "test.toml:10:1: mqtt.max_packet_size: uplink key ignored (edgelink's MQTT client sets its own limits)",
            "test.toml:11:1: mqtt.max_inflight: uplink's name for broker.max_inflight; read as broker.max_inflight",
            "test.toml:12:1: mqtt.keep_alive: uplink's name for broker.keep_alive; read as broker.keep_alive",
            "test.toml:13:1: mqtt.network_timeout: uplink key ignored (edgelink's MQTT client sets its own limits)",
            "test.toml:19:2: serializer_metrics: uplink feature not supported by edgelink (metrics streams); "
            "section ignored",
            "test.toml:31:1: streams.gps.persistence: uplink key ignored (edgelink keeps unsent batches of every "
            "stream in its one disk spool, see [spool])",
            "test.toml:35:1: streams.action_status.batch_size: " + status_why,
            "test.toml:36:1: streams.action_status.flush_period: " + status_why,
            "test.toml:37:1: streams.action_status.persistence: " + status_why,
            "test.toml:38:1: streams.action_status.priority: " + status_why,
            "test.toml:40:2: downloader: uplink feature not supported by edgelink (file downloader); section "
            "ignored",
            "test.toml:44:2: system_stats: uplink feature not supported by edgelink (system stats); section "
            "ignored",
        });
}

TEST_CASE("config: [mqtt] and [broker] both setting a limit is an error; other keys stay unknown", "[config]") {
  const std::string ids = kIds;
  require_one_error(ids + "[broker]\nmax_inflight = 5\n[mqtt]\nmax_inflight = 100\n",
                    "mqtt.max_inflight: broker.max_inflight is set as well; keep one of them", 6, 1);
  // keep_alive in [broker] does not stop [mqtt] max_inflight from being read.
  auto r = load(ids + "[broker]\nkeep_alive = 5\n[mqtt]\nmax_inflight = 7\nmax_infligt = 1\n");
  REQUIRE(r.config);
  CHECK(r.config->broker.max_inflight == 7);
  CHECK(r.config->broker.keep_alive == 5);
  REQUIRE(r.unknown_keys.size() == 1);
  CHECK(r.unknown_keys[0].to_string() == "test.toml:7:1: unknown key 'max_infligt' in [mqtt]");
  // The same range checks as under [broker].
  require_one_error(ids + "[mqtt]\nmax_inflight = 0\n", "mqtt.max_inflight: must be an integer 1..65535, got 0", 4, 16);
  // A typo of an uplink stream key is still a typo.
  r = load(ids + "[streams.s]\npersistance = { max_file_count = 3 }\n");
  REQUIRE(r.unknown_keys.size() == 1);
  CHECK(r.warnings.empty());
}

TEST_CASE("config: broker servers", "[config][broker]") {
  const std::string ids = kIds;
  // host/port alone: a list of one.
  const auto one = load(ids + "[broker]\nhost = \"b.example\"\nport = 8883\n");
  REQUIRE(one.config);
  CHECK(one.config->broker.servers == std::vector<BrokerServer>{{"b.example", 8883}});
  const auto none = load(ids);
  REQUIRE(none.config);
  CHECK(none.config->broker.servers == std::vector<BrokerServer>{{"localhost", 1883}});

  const auto many = load(ids + "[broker]\nservers = [\"n1:1883\", \"[::1]:1884\", \"n3\", \"10.0.0.2:65535\"]\n");
  INFO(all_issues(many.errors));
  REQUIRE(many.config);
  const BrokerConfig& b = many.config->broker;
  CHECK(b.servers == std::vector<BrokerServer>{{"n1", 1883}, {"::1", 1884}, {"n3", 1883}, {"10.0.0.2", 65535}});
  CHECK(b.host == "n1");  // host/port mirror the first
  CHECK(b.port == 1883);

  require_one_error(ids + "[broker]\nservers = [\"a:1\"]\nhost = \"x\"\n",
                    "broker.host: cannot be combined with broker.servers", 5, 8);
  require_one_error(ids + "[broker]\nservers = []\n", "broker.servers: needs at least one \"host:port\"", 4, 11);
  require_one_error(ids + "[broker]\nservers = [\"a:\"]\n", "broker.servers[0]: the port after ':' is missing, got \"a:\"", 4, 12);
  require_one_error(ids + "[broker]\nservers = [\"a:99999\"]\n", "the port must be a number 1..65535", 4, 12);
  require_one_error(ids + "[broker]\nservers = [\"a:x1\"]\n", "the port must be a number 1..65535", 4, 12);
  require_one_error(ids + "[broker]\nservers = [\"[::1\"]\n", "needs its closing ']'", 4, 12);
  require_one_error(ids + "[broker]\nservers = [\"[::1]x\"]\n", "expected ':' and a port after ']'", 4, 12);
  require_one_error(ids + "[broker]\nservers = [\"fe80::1\"]\n", "an IPv6 address goes in brackets", 4, 12);
  require_one_error(ids + "[broker]\nservers = [\":1883\"]\n", "not a host name or address", 4, 12);
  require_one_error(ids + "[broker]\nservers = [\"a b:1\"]\n", "not a host name or address", 4, 12);
  require_one_error(ids + "[broker]\nservers = [\"a:1\", \"a:1\"]\n", "broker.servers[1]: \"a:1\" is listed twice", 4, 19);
  require_one_error(ids + "[broker]\nservers = [1]\n", "broker.servers[0]: must be a string", 4, 12);
  require_one_error(ids + "[broker]\nservers = \"a:1\"\n", "broker.servers: must be an array of \"host:port\" strings", 4, 11);
}

TEST_CASE("config: a '.' in an id or topic is a warning (RabbitMQ delivers it as '/')", "[config][broker]") {
  const auto r = load("project_id = \"acme.prod\"\ndevice_id = \"gw.1\"\n"
                      "presence_topic = \"/t/{tenant_id}/p.v1\"\n[streams.imu]\ntopic = \"/x/imu.v1\"\n"
                      "[streams.gps]\ntopic = \"/x/gps\"\n");
  INFO(all_issues(r.errors));
  REQUIRE(r.config);  // not an error
  REQUIRE(r.warnings.size() == 4);
  CHECK(all_issues(r.warnings) ==
        "test.toml:1:14: project_id: contains '.', which RabbitMQ's MQTT plugin delivers as '/' (subscribers there see another topic)\n"
        "test.toml:2:13: device_id: contains '.', which RabbitMQ's MQTT plugin delivers as '/' (subscribers there see another topic)\n"
        "test.toml:3:18: presence_topic: contains '.', which RabbitMQ's MQTT plugin delivers as '/' (subscribers there see another topic)\n"
        "test.toml:5:9: streams.imu.topic: contains '.', which RabbitMQ's MQTT plugin delivers as '/' (subscribers there see another topic)\n");
  CHECK(load(std::string(kIds) + "[streams.imu]\ntopic = \"/x/imu\"\n").warnings.empty());
}

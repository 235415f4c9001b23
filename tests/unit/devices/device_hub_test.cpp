// DeviceHub: the pure helpers, and one console-framed device over a real
// pseudo-terminal (posix_openpt) where the test plays the Raft device on the master
// side with the project's codecs. Tagged [pty]: it needs /dev/ptmx, no network.

#include "edgelink/devices/device_hub.hpp"

#include <catch2/catch.hpp>

#include "pty_test_util.hpp"
#include <fcntl.h>
#include <rapidjson/document.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "edgelink/apps/app_message.hpp"
#include "edgelink/devices/over_ascii.hpp"
#include "edgelink/devices/ricrest.hpp"

using namespace edgelink;
using namespace edgelink::devices;
using namespace std::chrono_literals;

namespace {

using test::run_until;

using Bytes = std::vector<uint8_t>;
Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

// The device side of one pseudo-terminal pair, console framing: it answers ufStart,
// collects the FILEBLOCK bytes it is sent, and prints log text or stream output.
class ConsoleDevice {
 public:
  ConsoleDevice() {
    master_ = test::open_pty_master(path_);
  }
  ~ConsoleDevice() { unplug(); }

  const std::string& path() const { return path_; }
  void unplug() {
    if (master_ >= 0) ::close(master_);
    master_ = -1;
  }
  void write(const Bytes& b) { REQUIRE(::write(master_, b.data(), b.size()) == static_cast<ssize_t>(b.size())); }
  Bytes frame(const Bytes& message) {
    Bytes out;
    encode_console_frame(message, out);
    return out;
  }
  Bytes block(uint8_t sid, uint32_t pos, std::string_view data) {
    Bytes m;
    REQUIRE(encode_file_block(m, sid, pos, bytes_of(data)));
    return frame(m);
  }

  // Reads what the gateway sent and answers it.
  void poll() {
    uint8_t buf[4096];
    ssize_t n;
    while (master_ >= 0 && (n = ::read(master_, buf, sizeof buf)) > 0) {
      std::span<const uint8_t> in(buf, static_cast<size_t>(n));
      while (true) {
        auto r = demux_.next(in);
        in = in.subspan(r.consumed);
        if (r.status == ConsoleDemux::Status::NeedMore) break;
        if (r.status == ConsoleDemux::Status::LogLine) ++raw_text;  // a gateway must never send ASCII
        if (r.status == ConsoleDemux::Status::Frame) on_message(Bytes(r.frame.begin(), r.frame.end()));
      }
    }
  }

  std::string received;  // FILEBLOCK payloads, in order
  std::vector<std::string> commands;
  int raw_text = 0;
  uint8_t stream_id = 7;

 private:
  void on_message(const Bytes& m) {
    auto decoded = decode_message(m);
    auto* msg = std::get_if<RicMessage>(&decoded);
    REQUIRE(msg);
    if (auto* cf = std::get_if<CommandFrameElement>(&msg->body)) {
      commands.emplace_back(cf->json);
      std::string reply = cf->json.find("ufStart") != std::string_view::npos
                              ? ufstart_ok_json(stream_id)
                              : session_cmd_reply_json("ufEnd", stream_id);
      Bytes out;
      REQUIRE(encode_cmdresp(out, {msg->header.msg_num, RicMsgType::Response, ric_protocol::kRicRest}, reply));
      write(frame(out));
    } else if (auto* fb = std::get_if<FileBlockElement>(&msg->body)) {
      received.append(fb->data.begin(), fb->data.end());
    }
  }

  int master_ = -1;
  std::string path_;
  ConsoleDemux demux_;
};

}  // namespace

TEST_CASE("device hub: log text is cleaned for the log and for JSON", "[device_hub]") {
  CHECK(clean_log_text("\x1b[0;32mI (12) Tag: ok\x1b[0m") == "I (12) Tag: ok");
  CHECK(clean_log_text("a\tb\x01" "c\x7f") == "a\tb c ");
  CHECK(clean_log_text("caf\xc3\xa9 \xf0\x9f\x99\x82") == "caf\xc3\xa9 \xf0\x9f\x99\x82");
  CHECK(clean_log_text("bad\xff") == "bad\xEF\xBF\xBD");
  CHECK(clean_log_text("cut\xc3") == "cut\xEF\xBF\xBD");
  // A surrogate and an overlong form: every byte becomes U+FFFD.
  CHECK(clean_log_text("\xed\xa0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(clean_log_text("\xe0\x80\xaf") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(clean_log_text("\x1b[") == "");
  for (std::string s : {std::string("\x80\x81"), std::string("\xf4\x90\x80\x80"), std::string("x\x1b" "y")})
    CHECK(is_valid_json("\"" + clean_log_text(s) + "\""));
}

TEST_CASE("device hub: the block window follows baud rate, framing and stream count", "[device_hub]") {
  DeviceConfig d;
  d.baud = 921600;
  CHECK(rtstream_block_window(d, 1) == 31ms);  // 2 x 5.3 ms on the wire + 20 ms
  CHECK(rtstream_block_window(d, 4) == 47ms);
  d.baud = 115200;
  d.framing = DeviceFraming::Console;  // OverAscii doubles the frame
  CHECK(rtstream_block_window(d, 1) == 190ms);
  // BLE has no baud rate: a GATT round trip's allowance plus the turnaround.
  DeviceConfig ble;
  ble.transport = edgelink::DeviceTransport::Ble;
  CHECK(rtstream_block_window(ble, 1) == 70ms);
  ble.baud = 9600;  // ignored
  CHECK(rtstream_block_window(ble, 4) == 70ms);
}

TEST_CASE("device hub: a console device over a pty: log lines, status points, MQTT in and out", "[device_hub][pty]") {
  ConsoleDevice dev;
  Config config;
  config.project_id = "demo";
  config.device_id = "gw";
  DeviceConfig dc;
  dc.name = "mcu";
  dc.path = dev.path();
  dc.baud = 115200;
  dc.framing = DeviceFraming::Console;
  config.devices["mcu"] = dc;
  RtStreamConfig rc;
  rc.name = "console";
  rc.device = "mcu";
  rc.endpoint = "upyconsole";
  rc.file_name = "upyconsole";
  rc.mqtt = true;
  config.rtstreams["console"] = rc;
  const std::string in_topic = "/tenants/demo/devices/gw/rtstreams/console/in";
  const std::string out_topic = "/tenants/demo/devices/gw/rtstreams/console/out";

  asio::io_context io;
  std::vector<std::pair<std::string, std::string>> published, points;
  DeviceHub hub(io, config,
                DeviceHubCallbacks{
                    [&](std::string topic, std::string payload, const std::string&) {
                      published.emplace_back(std::move(topic), std::move(payload));
                    },
                    [&](const DataPoint& p) {
                      CHECK(is_valid_json(std::string(p.head) + std::string(p.tail)));
                      points.emplace_back(std::string(p.stream), std::string(p.head) + std::string(p.tail));
                      return true;
                    },
                });
  REQUIRE(hub.subscriptions() == std::vector<std::string>{in_topic});
  REQUIRE(hub.start().empty());
  auto has_point = [&](std::string_view stream, std::string_view text) {
    for (const auto& [s, json] : points)
      if (s == stream && json.find(text) != std::string::npos) return true;
    return false;
  };
  REQUIRE(run_until(io, [&] { return has_point("device_status", "\"state\":\"up\""); }));
  CHECK(has_point("device_status", "\"path\":\"" + dev.path() + "\""));
  CHECK(hub.devices_up() == 1);

  // Console text is log, not protocol.
  dev.write(bytes_of("\x1b[0;32mI (5) SysManager: hello\x1b[0m\r\n"));
  REQUIRE(run_until(io, [&] { return has_point("device_log", "hello"); }));
  CHECK(has_point("device_log", R"("device":"mcu","line":"I (5) SysManager: hello")"));

  // MQTT input opens the session and reaches the endpoint.
  CHECK_FALSE(hub.on_mqtt_message("/tenants/demo/devices/gw/actions", "{}"));
  CHECK(hub.on_mqtt_message(in_topic, "print(1)\r"));
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return dev.received == "print(1)\r";
  }));
  CHECK(dev.raw_text == 0);
  REQUIRE(!dev.commands.empty());
  CHECK(dev.commands[0].find("\"fileName\":\"upyconsole\"") != std::string::npos);

  // Device output in two blocks arriving together becomes one MQTT message.
  Bytes out = dev.block(dev.stream_id, 0, "print(1)\r\nok\r\n");
  const Bytes more = dev.block(dev.stream_id, 14, ">>> ");
  out.insert(out.end(), more.begin(), more.end());
  dev.write(out);
  REQUIRE(run_until(io, [&] { return !published.empty(); }));
  run_until(io, [] { return false; }, 30ms);
  REQUIRE(published.size() == 1);
  CHECK(published[0].first == out_topic);
  CHECK(published[0].second == "print(1)\r\nok\r\n>>> ");

  rapidjson::Document doc;
  JsonObject devices(doc, doc.GetAllocator());
  hub.write_status(devices);
  REQUIRE(doc.IsObject());
  REQUIRE(doc.MemberCount() == 1);
  const auto& d = doc.MemberBegin()->value;
  CHECK(std::string(d["state"].GetString()) == "up");
  CHECK(std::string(d["link"].GetString()) == "up");
  CHECK(std::string(d["kind"].GetString()) == "ricrest");
  CHECK(std::string(d["transport"].GetString()) == "serial");
  CHECK(d["since"].IsUint64());
  CHECK(d["log_lines"].GetUint64() == 1);
  const auto& s = d["rtstreams"][0];
  CHECK(std::string(s["state"].GetString()) == "open");
  CHECK(s["stream_id"].GetUint64() == 7);
  CHECK(s["tcp"].IsNull());
  CHECK(s["mqtt"]["messages_in"].GetUint64() == 1);
  CHECK(s["mqtt"]["bytes_out"].GetUint64() == 18);

  // Unplugged: down, with a point saying so.
  dev.unplug();
  REQUIRE(run_until(io, [&] { return has_point("device_status", "\"state\":\"down\""); }));
  CHECK(hub.devices_up() == 0);
  CHECK(hub.summary().find("devices 0/1 up") != std::string::npos);
  hub.stop();
  io.restart();
  io.run_for(20ms);
}

TEST_CASE("device hub: a bridge port in use is a start error; reload rebuilds only changed devices", "[device_hub]") {
  asio::io_context io;
  asio::ip::tcp::acceptor taken(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  Config config;
  config.project_id = "demo";
  config.device_id = "gw";
  for (const char* name : {"a", "b"}) {
    DeviceConfig dc;
    dc.name = name;
    dc.path = std::string("/nonexistent/edgelink-test-") + name;
    config.devices[name] = dc;
  }
  RtStreamConfig rc;
  rc.name = "console";
  rc.device = "a";
  rc.endpoint = "upyconsole";
  rc.file_name = "upyconsole";
  rc.port = taken.local_endpoint().port();
  config.rtstreams["console"] = rc;

  DeviceHub hub(io, config, {});
  const auto errors = hub.start();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("console") != std::string::npos);

  // Reload: device a gains a stream and b changes its baud rate (both rebuilt), then b goes.
  DeviceHub hub2(io, [&] {
    Config c = config;
    c.rtstreams.clear();
    return c;
  }(), {});
  REQUIRE(hub2.start().empty());
  Config next = config;
  next.rtstreams["console"].port = 0;  // no TCP port now
  next.devices["b"].baud = 115200;
  CHECK(hub2.reload(next).empty());
  CHECK(hub2.device_count() == 2);
  next.devices.erase("b");
  next.rtstreams.clear();
  CHECK(hub2.reload(next).empty());
  CHECK(hub2.device_count() == 1);
  CHECK(hub2.devices_up() == 0);  // the path does not exist: down, retried on a backoff
  hub2.stop();
  io.restart();
  io.run_for(20ms);
}

TEST_CASE("device hub: a session nobody uses is closed after the quiet period and reopened on use",
          "[device_hub][pty]") {
  ConsoleDevice dev;
  Config config;
  config.project_id = "demo";
  config.device_id = "gw";
  DeviceConfig dc;
  dc.name = "mcu";
  dc.path = dev.path();
  dc.framing = DeviceFraming::Console;
  config.devices["mcu"] = dc;
  RtStreamConfig rc;
  rc.name = "console";
  rc.device = "mcu";
  rc.endpoint = "upyconsole";
  rc.file_name = "upyconsole";
  rc.mqtt = true;
  config.rtstreams["console"] = rc;
  const std::string in_topic = "/tenants/demo/devices/gw/rtstreams/console/in";

  asio::io_context io;
  DeviceHub hub(io, config, {}, 300ms);
  REQUIRE(hub.start().empty());
  auto count = [&](std::string_view what) {
    return std::count_if(dev.commands.begin(), dev.commands.end(),
                         [&](const std::string& c) { return c.find(what) != std::string::npos; });
  };
  auto quiet_closes = [&] {
    rapidjson::Document doc;
    JsonObject devices(doc, doc.GetAllocator());
    hub.write_status(devices);
    return doc.MemberBegin()->value["rtstreams"][0]["quiet_closes"].GetUint64();
  };
  REQUIRE(run_until(io, [&] { return hub.devices_up() == 1; }));
  const auto opened = std::chrono::steady_clock::now();
  CHECK(hub.on_mqtt_message(in_topic, "a\r"));
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return dev.received == "a\r";
  }));
  CHECK(count("ufEnd") == 0);
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return count("ufEnd") == 1;
  }));
  CHECK(std::chrono::steady_clock::now() - opened >= 300ms);
  CHECK(quiet_closes() == 1);
  CHECK(count("ufStart") == 1);

  CHECK(hub.on_mqtt_message(in_topic, "b\r"));
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return dev.received == "a\rb\r";
  }));
  CHECK(count("ufStart") == 2);
  hub.stop();
  io.restart();
  io.run_for(20ms);
}

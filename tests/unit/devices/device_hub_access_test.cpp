// DeviceHub as http::DeviceAccess, end to end over a real pseudo-terminal: the test
// plays an HDLC-framed Raft device on the master side (answering URLs, subscription
// updates and ufStart, sending publishes and stream output) and calls copost/obget as
// HttpApi would. Tagged [pty]: it needs /dev/ptmx, no network.

#include <catch2/catch.hpp>

#include "pty_test_util.hpp"
#include <fcntl.h>
#include <rapidjson/document.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "edgelink/apps/app_message.hpp"
#include "edgelink/devices/device_hub.hpp"
#include "edgelink/devices/hdlc.hpp"
#include "edgelink/devices/ricrest.hpp"

using namespace edgelink;
using namespace edgelink::devices;
using namespace std::chrono_literals;
using http::Code;

namespace {

using test::run_until;

using Bytes = std::vector<uint8_t>;

class HdlcDevice {
 public:
  HdlcDevice() {
    master_ = test::open_pty_master(path_);
  }
  ~HdlcDevice() { unplug(); }

  const std::string& path() const { return path_; }
  void unplug() {
    if (master_ >= 0) ::close(master_);
    master_ = -1;
  }
  void send(const Bytes& message) {
    Bytes out;
    hdlc_encode(message, out);
    REQUIRE(::write(master_, out.data(), out.size()) == static_cast<ssize_t>(out.size()));
  }
  void publish(std::string_view payload) { publish(Bytes(payload.begin(), payload.end())); }
  void publish(const Bytes& payload) {
    Bytes m;
    encode_publish(m, payload);
    send(m);
  }
  void block(uint8_t sid, uint32_t pos, std::string_view data) {
    Bytes m;
    REQUIRE(encode_file_block(m, sid, pos, Bytes(data.begin(), data.end())));
    send(m);
  }
  void report_shutdown() {
    Bytes m;
    REQUIRE(encode_cmdresp(m, {0, RicMsgType::Report, ric_protocol::kRicRest}, shutdown_report_json(true, "")));
    send(m);
  }

  // Reads what the gateway sent and answers it.
  void poll() {
    uint8_t buf[4096];
    ssize_t n;
    while (master_ >= 0 && (n = ::read(master_, buf, sizeof buf)) > 0) {
      std::span<const uint8_t> in(buf, static_cast<size_t>(n));
      while (true) {
        auto r = hdlc_.next(in);
        in = in.subspan(r.consumed);
        if (r.status == HdlcDecoder::Status::NeedMore) break;
        if (r.status == HdlcDecoder::Status::Frame) on_message(Bytes(r.frame.begin(), r.frame.end()));
      }
    }
  }

  std::vector<std::string> urls;           // URL elements received
  std::vector<std::string> commands;       // COMMAND_FRAME JSON received
  std::vector<std::string> subscriptions;  // "devjson 10" per subscription pubRec
  bool answer = true;                      // false: stay silent (the link retries, then gives up)
  uint8_t stream_id = 3;
  std::string ufstart_reply;               // set: the reply to every ufStart

 private:
  void reply(uint8_t msg_num, const std::string& json) {
    if (!answer) return;
    Bytes out;
    REQUIRE(encode_cmdresp(out, {msg_num, RicMsgType::Response, ric_protocol::kRicRest}, json));
    send(out);
  }

  void on_message(const Bytes& m) {
    auto decoded = decode_message(m);
    auto* msg = std::get_if<RicMessage>(&decoded);
    REQUIRE(msg);
    const uint8_t num = msg->header.msg_num;
    if (auto* url = std::get_if<UrlElement>(&msg->body)) {
      urls.emplace_back(url->url);
      if (url->url == "v") return reply(num, R"({"req":"v","rslt":"ok","SystemName":"Test"})");
      return reply(num, R"({"req":")" + std::string(url->url) + R"(","rslt":"fail","error":"failUnknownAPI"})");
    }
    if (auto* cf = std::get_if<CommandFrameElement>(&msg->body)) {
      const std::string json(cf->json);
      commands.push_back(json);
      rapidjson::Document doc;
      doc.Parse(json.c_str());
      REQUIRE(doc.IsObject());
      const std::string cmd = doc["cmdName"].GetString();
      if (cmd == "ufStart") return reply(num, ufstart_reply.empty() ? ufstart_ok_json(stream_id) : ufstart_reply);
      if (cmd == "ufEnd") return reply(num, session_cmd_reply_json("ufEnd", stream_id));
      if (cmd == "subscription") {
        std::string topics;
        for (const auto& rec : doc["pubRecs"].GetArray()) {
          const std::string name = rec["name"].GetString();
          subscriptions.push_back(name + " " + std::to_string(rec["rateHz"].GetDouble()).substr(0, 4));
          const int idx = name == "devjson" ? 0 : name == "devbin" ? 1 : -1;
          if (idx >= 0)
            topics += std::string(topics.empty() ? "" : ",") + R"({"name":")" + name + R"(","idx":)" + std::to_string(idx) + "}";
        }
        return reply(num, R"({"req":"subscription","rslt":"ok","topics":[)" + topics + "]}");
      }
      return reply(num, R"({"req":")" + cmd + R"(","rslt":"ok"})");
    }
  }

  int master_ = -1;
  std::string path_;
  HdlcDecoder hdlc_;
};

// What HttpApi would see of one obget.
struct Observed {
  bool established = false;
  std::vector<http::Frame> frames;
  http::ObserveCallbacks callbacks() {
    return {[this] { established = true; }, [this](http::Frame f) { frames.push_back(std::move(f)); }};
  }
  bool ended() const { return !frames.empty() && frames.back().code != Code::Continue; }
};

Config device_config(const std::string& path) {
  Config config;
  config.project_id = "demo";
  config.device_id = "gw";
  DeviceConfig dc;
  dc.name = "mcu";
  dc.path = path;
  dc.baud = 115200;
  config.devices["mcu"] = dc;
  RtStreamConfig rc;
  rc.name = "console";
  rc.device = "mcu";
  rc.endpoint = "upyconsole";
  rc.file_name = "upyconsole";
  rc.mqtt = true;
  config.rtstreams["console"] = rc;
  return config;
}

}  // namespace

TEST_CASE("device access: kind, link and the row-11 checks", "[devices][device_hub]") {
  asio::io_context io;
  Config config = device_config("/nonexistent/edgelink-test-mcu");
  DeviceHub hub(io, config, {});
  http::DeviceAccess& access = hub;
  CHECK(access.kind("mcu") == http::DeviceKind::Ricrest);
  CHECK(access.kind("other") == http::DeviceKind::None);
  CHECK_FALSE(access.link_up("mcu"));  // never opened
  CHECK_FALSE(access.link_up("other"));
  using http::Method;
  CHECK(access.check("mcu", Method::Copost, "/v", "") == Code::Ok);
  CHECK(access.check("mcu", Method::Copost, "/sim/say", R"({"text":"hi"})") == Code::Ok);
  CHECK(access.check("mcu", Method::Copost, "/sim/say", "[1]") == Code::BadRequest);
  CHECK(access.check("mcu", Method::Copost, "/subscription", "") == Code::MethodNotAllowed);
  CHECK(access.check("mcu", Method::Obget, "/pub/devjson", "") == Code::Ok);
  CHECK(access.check("mcu", Method::Obget, "/pub/devjson", R"({"rateHz":10})") == Code::Ok);
  CHECK(access.check("mcu", Method::Obget, "/pub/devjson", R"({"rateHz":0})") == Code::BadRequest);
  CHECK(access.check("mcu", Method::Obget, "/pub/a b", "") == Code::BadRequest);
  CHECK(access.check("mcu", Method::Obget, "/rtstreams/console", "") == Code::Ok);
  CHECK(access.check("mcu", Method::Obget, "/rtstreams/console", "{}") == Code::BadRequest);
  CHECK(access.check("mcu", Method::Obget, "/rtstreams/nosuch", "") == Code::NotFound);
  CHECK(access.check("mcu", Method::Obget, "/v", "") == Code::NotFound);
  CHECK(access.check("other", Method::Copost, "/v", "") == Code::DeviceIdOffline);

  // A device whose port is not open: the request ends DEVICEID_OFFLINE, posted.
  std::vector<http::Frame> replies;
  auto pending = access.copost("mcu", "/v", "", [&](http::Frame f) { replies.push_back(std::move(f)); });
  Observed o;
  auto observing = access.obget("mcu", "/pub/devjson", "", o.callbacks());
  CHECK(replies.empty());
  CHECK(o.frames.empty());
  io.run_for(10ms);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].code == Code::DeviceIdOffline);
  REQUIRE(o.frames.size() == 1);
  CHECK(o.frames[0].code == Code::DeviceIdOffline);
  CHECK_FALSE(o.established);
}

TEST_CASE("device access: coposts over a pty", "[devices][device_hub][pty]") {
  HdlcDevice dev;
  asio::io_context io;
  DeviceHub hub(io, device_config(dev.path()), {});
  REQUIRE(hub.start().empty());
  REQUIRE(run_until(io, [&] { return hub.link_up("mcu"); }));

  std::vector<http::Frame> replies;
  auto done = [&](http::Frame f) { replies.push_back(std::move(f)); };
  auto p1 = hub.copost("mcu", "/v", "", done);
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return replies.size() == 1;
  }));
  CHECK(replies[0].code == Code::Ok);
  CHECK(replies[0].data == R"({"req":"v","rslt":"ok","SystemName":"Test"})");
  CHECK(dev.urls == std::vector<std::string>{"v"});

  auto p2 = hub.copost("mcu", "/nosuch", "", done);
  auto p3 = hub.copost("mcu", "/sim/say", R"({"text":"hi"})", done);
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return replies.size() == 3;
  }));
  CHECK(replies[1].code == Code::NotFound);
  CHECK(replies[1].data.find("failUnknownAPI") != std::string::npos);
  CHECK(replies[2].code == Code::Ok);
  CHECK(dev.commands.back() == R"({"cmdName":"sim/say","text":"hi"})");

  // Refused requests: nothing reaches the device, the reply is posted.
  auto p4 = hub.copost("mcu", "/sim/say", "hello", done);
  CHECK(replies.size() == 3);
  REQUIRE(run_until(io, [&] { return replies.size() == 4; }));
  CHECK(replies[3].code == Code::BadRequest);

  // A handle destroyed before the reply: the reply is never delivered.
  dev.answer = false;
  auto p5 = hub.copost("mcu", "/v", "", done);
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return dev.urls.size() == 3;
  }));
  p5.reset();
  dev.answer = true;
  io.run_for(50ms);
  CHECK(replies.size() == 4);

  // The port closing fails a copost in flight with DEVICEID_OFFLINE.
  dev.answer = false;
  auto p6 = hub.copost("mcu", "/v", "", done);
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return dev.urls.size() == 4;
  }));
  dev.unplug();
  REQUIRE(run_until(io, [&] { return replies.size() == 5; }));
  CHECK(replies[4].code == Code::DeviceIdOffline);
  CHECK_FALSE(hub.link_up("mcu"));
  hub.stop();
  io.restart();
  io.run_for(20ms);
}

TEST_CASE("device access: /pub observers share one subscription; mappings make data points",
          "[devices][device_hub][pty]") {
  HdlcDevice dev;
  asio::io_context io;
  Config config = device_config(dev.path());
  config.devices["mcu"].publish.push_back({"devbin", "mcu_bin", 2.0, 50, "timeorchange"});
  std::vector<std::pair<std::string, std::string>> points;
  DeviceHub hub(io, config,
                DeviceHubCallbacks{{}, [&](const DataPoint& p) {
                                     const std::string json = std::string(p.head) + std::string(p.tail);
                                     CHECK(is_valid_json(json));
                                     if (p.stream != kDeviceStatusStream) points.emplace_back(p.stream, json);
                                     return true;
                                   }});
  REQUIRE(hub.start().empty());
  // The mapping subscribes as soon as the port is open.
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return dev.subscriptions == std::vector<std::string>{"devbin 2.00"};
  }));

  Observed a, b;
  auto ha = hub.obget("mcu", "/pub/devjson", R"({"rateHz":10})", a.callbacks());
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return a.established;
  }));
  CHECK(dev.subscriptions.back() == "devjson 10.0");
  // A second observer at 1 Hz is served by the standing 10 Hz: no update, established at
  // once, but never from inside obget().
  auto hb = hub.obget("mcu", "/pub/devjson", "", b.callbacks());
  CHECK_FALSE(b.established);
  REQUIRE(run_until(io, [&] { return b.established; }));
  CHECK(dev.subscriptions.size() == 2);

  dev.publish(R"({"_t":0,"_v":1,"n":1})");
  dev.publish(Bytes{0xDB, 0x01, 0x00, 0x07, 0x81, 0, 0, 0, 0x48, 0, 0});
  dev.publish(R"({"_t":0,"_v":1,"n":2})");
  REQUIRE(run_until(io, [&] { return a.frames.size() == 2 && b.frames.size() == 2 && points.size() == 1; }));
  CHECK(a.frames[0].code == Code::Continue);
  CHECK(a.frames[0].data == R"({"_t":0,"_v":1,"n":1})");
  CHECK(a.frames[1].data == R"({"_t":0,"_v":1,"n":2})");
  CHECK(b.frames[1].data == a.frames[1].data);
  CHECK(points[0].first == "mcu_bin");
  CHECK(points[0].second.find(R"("device":"mcu","topic":"devbin","payload_b64":"2wEAB4EAAABIAAA=")") !=
        std::string::npos);

  // Cancel: the device is told the remaining observer's rate, then 0.
  ha.reset();
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return dev.subscriptions.size() == 3;
  }));
  CHECK(dev.subscriptions.back() == "devjson 1.00");
  hb.reset();
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return dev.subscriptions.size() == 4;
  }));
  CHECK(dev.subscriptions.back() == "devjson 0.00");

  // An unknown topic: NOT_FOUND as the only frame.
  Observed c;
  auto hc = hub.obget("mcu", "/pub/nosuch", "", c.callbacks());
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return c.ended();
  }));
  CHECK_FALSE(c.established);
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].code == Code::NotFound);

  // A JSON publish for a mapping is the object itself in the point.
  config.devices["mcu"].publish = {{"devjson", "mcu_pub", 5.0, 50, "timeorchange"}};
  hub.reload(config);
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return dev.subscriptions.back() == "devjson 5.00";
  }));
  points.clear();
  dev.publish(R"({"_t":0, "_v":1, "1":{"48":{"x":"0001"}}})");
  REQUIRE(run_until(io, [&] { return points.size() == 1; }));
  CHECK(points[0].first == "mcu_pub");
  CHECK(points[0].second.find(R"("device":"mcu","topic":"devjson","payload":{"_t":0,"_v":1,"1":{"48":{"x":"0001"}}}})") !=
        std::string::npos);

  // The device restarts: after its restart wait the mapping is subscribed again; an
  // observer established before keeps going.
  Observed d;
  auto hd = hub.obget("mcu", "/pub/devjson", "", d.callbacks());
  REQUIRE(run_until(io, [&] { return d.established; }));
  const size_t before = dev.subscriptions.size();
  dev.report_shutdown();
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return dev.subscriptions.size() == before + 1;
  }));
  CHECK(dev.subscriptions.back() == "devjson 5.00");
  dev.publish(R"({"_t":0,"n":3})");
  REQUIRE(run_until(io, [&] { return d.frames.size() == 1; }));
  CHECK(d.frames[0].code == Code::Continue);

  // Link down: the observer's final frame is DEVICEID_OFFLINE.
  dev.unplug();
  REQUIRE(run_until(io, [&] { return d.ended(); }));
  CHECK(d.frames.back().code == Code::DeviceIdOffline);
  hub.stop();
  io.restart();
  io.run_for(20ms);
}

TEST_CASE("device access: an /rtstreams observer uses the session like a TCP client", "[devices][device_hub][pty]") {
  HdlcDevice dev;
  asio::io_context io;
  DeviceHub hub(io, device_config(dev.path()), {}, 300ms);
  REQUIRE(hub.start().empty());
  REQUIRE(run_until(io, [&] { return hub.link_up("mcu"); }));
  auto count = [&](std::string_view what) {
    return std::count_if(dev.commands.begin(), dev.commands.end(),
                         [&](const std::string& c) { return c.find(what) != std::string::npos; });
  };

  Observed o;
  auto h = hub.obget("mcu", "/rtstreams/console", "", o.callbacks());
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return o.established;
  }));
  CHECK(count("ufStart") == 1);
  dev.block(dev.stream_id, 0, "hello");
  dev.block(dev.stream_id, 5, " world");
  REQUIRE(run_until(io, [&] { return o.frames.size() == 2; }));
  CHECK(o.frames[0].code == Code::Continue);
  CHECK(o.frames[0].data == "hello");
  CHECK(o.frames[1].data == " world");
  // While observed the session stays open past the quiet period.
  run_until(io, [&] {
    dev.poll();
    return false;
  }, 500ms);
  CHECK(count("ufEnd") == 0);

  // A second observer of an open session is established at once (posted).
  Observed o2;
  auto h2 = hub.obget("mcu", "/rtstreams/console", "", o2.callbacks());
  CHECK_FALSE(o2.established);
  REQUIRE(run_until(io, [&] { return o2.established; }));
  h2.reset();

  // Cancel: the use is released and the quiet close follows.
  h.reset();
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return count("ufEnd") == 1;
  }));

  // stop(): an observer hears DEVICEID_OFFLINE (posted).
  Observed o3;
  auto h3 = hub.obget("mcu", "/rtstreams/console", "", o3.callbacks());
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return o3.established;
  }));
  hub.stop();
  CHECK_FALSE(o3.ended());
  REQUIRE(run_until(io, [&] { return o3.ended(); }));
  CHECK(o3.frames.back().code == Code::DeviceIdOffline);
}

TEST_CASE("device access: an /rtstreams observer whose session cannot be opened", "[devices][device_hub][pty]") {
  HdlcDevice dev;
  dev.ufstart_reply = session_not_started_json();
  asio::io_context io;
  DeviceHub hub(io, device_config(dev.path()), {});
  REQUIRE(hub.start().empty());
  REQUIRE(run_until(io, [&] { return hub.link_up("mcu"); }));
  Observed o;
  auto h = hub.obget("mcu", "/rtstreams/console", "", o.callbacks());
  REQUIRE(run_until(io, [&] {
    dev.poll();
    return o.ended();
  }));
  CHECK_FALSE(o.established);
  REQUIRE(o.frames.size() == 1);
  CHECK(o.frames[0].code == Code::InternalServerError);
  CHECK(o.frames[0].data == session_not_started_json());
  h.reset();
  hub.stop();
  io.restart();
  io.run_for(20ms);
}

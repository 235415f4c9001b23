#include "edgelink/devices/device_link.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "spec_vectors.hpp"

using namespace edgelink::devices;
using namespace std::chrono_literals;
using edgelink::devices::test::bytes;
using edgelink::devices::test::hex;

namespace {

using TimePoint = DeviceLink::TimePoint;

// A device on the other end of a DeviceLink: records every frame the link sends,
// decoded back to RICSerial messages, and builds the frames a device would send.
struct Harness {
  explicit Harness(DeviceLinkOptions opts = {}) : options(opts), link(opts, handlers()) {}

  DeviceLink::Handlers handlers() {
    DeviceLink::Handlers h;
    h.send = [this](std::span<const uint8_t> frame) {
      wire.insert(wire.end(), frame.begin(), frame.end());
      collect(frame);
      return accept_sends;
    };
    h.on_notice = [this](const DeviceReply& r, std::string_view json) {
      notices.push_back(r);
      notice_json.emplace_back(json);
    };
    h.on_file_block = [this](const FileBlockElement& b) {
      blocks.push_back({b.stream_id, b.pos, std::string(b.data.begin(), b.data.end())});
    };
    h.on_publish = [this](std::span<const uint8_t> p) { publishes.emplace_back(p.begin(), p.end()); };
    h.on_report = [this](const Report& r, std::string_view) {
      reports.push_back(r);
      if (reset_on_report) link.reset();
    };
    h.on_log_line = [this](std::string_view line, bool) { log_lines.emplace_back(line); };
    h.on_oversize_frame = [this](size_t len) { oversize.push_back(len); };
    // Bytes that reached the port but whose read has not run yet (`port`).
    h.poll_input = [this]() -> size_t {
      std::vector<uint8_t> b;
      b.swap(port);
      link.on_bytes(b);
      return b.size();
    };
    return h;
  }

  void collect(std::span<const uint8_t> frame) {
    if (options.framing == Framing::Console) {
      for (uint8_t b : frame) REQUIRE(b >= 0x80);  // never raw ASCII on a console port
      ConsoleDemux demux;
      auto r = demux.next(frame);
      REQUIRE(r.status == ConsoleDemux::Status::Frame);
      sent.emplace_back(r.frame.begin(), r.frame.end());
    } else {
      HdlcDecoder dec;
      auto r = dec.next(frame);
      REQUIRE(r.status == HdlcDecoder::Status::Frame);
      sent.emplace_back(r.frame.begin(), r.frame.end());
    }
  }

  // One frame from the device, framed for this link's port type.
  std::vector<uint8_t> frame(const std::vector<uint8_t>& message) const {
    std::vector<uint8_t> out;
    if (options.framing == Framing::Console)
      encode_console_frame(message, out);
    else
      hdlc_encode(message, out);
    return out;
  }
  std::vector<uint8_t> reply_frame(uint8_t msg_num, const std::string& json) const {
    std::vector<uint8_t> m;
    REQUIRE(encode_cmdresp(m, {msg_num, RicMsgType::Response, ric_protocol::kRicRest}, json));
    return frame(m);
  }
  void reply(uint8_t msg_num, const std::string& json) { link.on_bytes(reply_frame(msg_num, json)); }

  // Submits a URL request whose completion is recorded in `results`.
  uint8_t get(const std::string& url, bool idempotent = true) {
    auto s = link.request(RequestKind::Url, url, idempotent,
                          [this](const RequestResult& r) { results.push_back(r); }, now);
    REQUIRE(s);
    return s.msg_num;
  }

  DeviceLinkOptions options;
  TimePoint now{};  // the fake clock
  bool accept_sends = true;
  bool reset_on_report = false;
  std::vector<uint8_t> port;  // received, not yet read: only on_tick's poll_input takes it in
  std::vector<uint8_t> wire;
  std::vector<std::vector<uint8_t>> sent;
  std::vector<RequestResult> results;
  std::vector<DeviceReply> notices;
  std::vector<std::string> notice_json;
  struct Block {
    uint8_t stream_id;
    uint32_t pos;
    std::string data;
  };
  std::vector<Block> blocks;
  std::vector<std::vector<uint8_t>> publishes;
  std::vector<Report> reports;
  std::vector<std::string> log_lines;
  std::vector<size_t> oversize;
  DeviceLink link;
};

DeviceLinkOptions console_options() {
  DeviceLinkOptions o;
  o.framing = Framing::Console;
  return o;
}

}  // namespace

TEST_CASE("device link: the first request is V1 on the wire, V15 on a console port", "[device_link]") {
  Harness h;
  CHECK(h.get("v") == 1);
  CHECK(h.wire == hex(test::kV1.framed));

  Harness c(console_options());
  CHECK(c.get("v") == 1);
  CHECK(c.wire == hex(test::kV15OverAscii));
}

TEST_CASE("device link: msgNum runs 1..255, wraps to 1 and never uses 0", "[device_link]") {
  Harness h;
  std::vector<int> nums;
  for (int i = 0; i < 600; ++i) {
    const uint8_t n = h.get("v");
    nums.push_back(n);
    REQUIRE(h.sent.back()[0] == n);
    h.reply(n, R"({"req":"v","rslt":"ok"})");
  }
  for (size_t i = 0; i < nums.size(); ++i) REQUIRE(nums[i] == static_cast<int>(i % 255) + 1);
  CHECK(h.results.size() == 600);
  CHECK(h.link.counters().replies == 600);
  CHECK(h.link.outstanding() == 0);
}

TEST_CASE("device link: numbers still outstanding are skipped when the counter comes round", "[device_link]") {
  Harness h;
  const uint8_t held1 = h.get("held1");   // 1
  const uint8_t n2 = h.get("x");          // 2
  const uint8_t held3 = h.get("held3");   // 3
  h.reply(n2, R"({"rslt":"ok"})");
  for (int i = 4; i <= 255; ++i) h.reply(h.get("x"), R"({"rslt":"ok"})");
  // Counter is back at 1: 1 and 3 are outstanding, so it hands out 2, then 4.
  CHECK(h.get("a") == 2);
  CHECK(h.get("b") == 4);
  CHECK(h.link.is_outstanding(held1));
  CHECK(h.link.is_outstanding(held3));
  CHECK(h.link.outstanding() == 4);
}

TEST_CASE("device link: refuses when every msgNum is outstanding, or at max_outstanding", "[device_link]") {
  Harness h;
  for (int i = 1; i <= 255; ++i) REQUIRE(h.get("x") == i);
  bool called = false;
  auto s = h.link.request(RequestKind::Url, "y", true, [&](const RequestResult&) { called = true; }, h.now);
  CHECK_FALSE(s);
  CHECK(s.error == LinkError::TooManyPending);
  CHECK_FALSE(called);
  h.reply(200, R"({"rslt":"ok"})");
  CHECK(h.get("z") == 200);  // the only free number

  DeviceLinkOptions o;
  o.max_outstanding = 2;
  Harness small(o);
  small.get("a");
  small.get("b");
  CHECK(small.link.request(RequestKind::Url, "c", true, {}, small.now).error == LinkError::TooManyPending);
  CHECK(small.link.counters().refused_requests == 1);
}

TEST_CASE("device link: requests that cannot be encoded are refused without a msgNum", "[device_link]") {
  Harness h;
  auto s = h.link.request(RequestKind::Url, std::string_view("a\0b", 3), true, {}, h.now);
  CHECK(s.error == LinkError::Unencodable);
  CHECK(h.sent.empty());
  CHECK(h.get("v") == 1);  // the counter did not move
}

TEST_CASE("device link: replies are matched by msgNum, in any order", "[device_link]") {
  Harness h;
  const uint8_t a = h.get("v");
  auto b = h.link.request(RequestKind::CommandFrame, ufstart_rtstream_json("upyconsole", "upyconsole"), true,
                          [&](const RequestResult& r) { h.results.push_back(r); }, h.now);
  REQUIRE(b);
  // The command frame is element 3 with the V2 JSON.
  CHECK(h.sent.back()[1] == 0x02);
  CHECK(h.sent.back()[2] == 0x03);

  h.reply(b.msg_num, test::kV3.json);
  h.reply(a, R"({"req":"v","rslt":"ok","SystemName":"SimMCU"})");
  REQUIRE(h.results.size() == 2);
  CHECK(h.results[0].msg_num == b.msg_num);
  CHECK(h.results[0].ok());
  CHECK(h.results[0].reply.req == "ufStart");
  CHECK(h.results[0].reply.stream_id == 1);
  CHECK(h.results[0].json == test::kV3.json);
  CHECK(h.results[1].msg_num == a);
  CHECK(h.results[1].reply.req == "v");
  CHECK(h.results[1].attempts == 1);
}

TEST_CASE("device link: a fail reply is still a reply; a reply that is not JSON is BadReply", "[device_link]") {
  Harness h;
  h.reply(h.get("nope"), R"({"req":"nope","rslt":"fail","error":"failUnknownAPI"})");
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].ok());  // transport-level success; the caller reads rslt
  CHECK_FALSE(h.results[0].reply.ok());
  CHECK(h.results[0].reply.error == "failUnknownAPI");

  h.reply(h.get("v"), "not json");
  REQUIRE(h.results.size() == 2);
  CHECK(h.results[1].error == LinkError::BadReply);
  CHECK(h.results[1].json == "not json");
  CHECK(h.link.counters().bad_replies == 1);
}

TEST_CASE("device link: stale and unknown replies are dropped and counted", "[device_link]") {
  Harness h;
  h.reply(7, R"({"rslt":"ok"})");  // nothing outstanding
  CHECK(h.link.counters().stale_replies == 1);
  const uint8_t n = h.get("v", false);
  h.now += 2s;
  h.link.on_tick(h.now);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].error == LinkError::Timeout);
  h.reply(n, R"({"req":"v","rslt":"ok"})");  // too late
  CHECK(h.results.size() == 1);
  CHECK(h.link.counters().stale_replies == 2);
  CHECK(h.link.counters().replies == 0);
}

TEST_CASE("device link: timeout, retries with the same msgNum and bytes, final failure", "[device_link]") {
  DeviceLinkOptions o;
  o.max_attempts = 3;
  Harness h(o);
  const uint8_t n = h.get("v");
  const auto first = h.sent.back();
  REQUIRE(h.link.next_deadline() == h.now + 2s);

  h.link.on_tick(h.now + 1999ms);
  CHECK(h.sent.size() == 1);
  h.now += 2s;
  h.link.on_tick(h.now);
  REQUIRE(h.sent.size() == 2);
  CHECK(h.sent.back() == first);
  CHECK(h.link.next_deadline() == h.now + 2s);
  // A late tick gives the next attempt a full timeout from the tick.
  h.now += 2500ms;
  h.link.on_tick(h.now);
  REQUIRE(h.sent.size() == 3);
  CHECK(h.sent.back() == first);
  CHECK(h.link.next_deadline() == h.now + 2s);
  CHECK(h.results.empty());

  h.now += 2s;
  h.link.on_tick(h.now);
  CHECK(h.sent.size() == 3);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].error == LinkError::Timeout);
  CHECK(h.results[0].msg_num == n);
  CHECK(h.results[0].attempts == 3);
  CHECK(h.link.counters().retries == 2);
  CHECK(h.link.counters().timeouts == 1);
  CHECK_FALSE(h.link.next_deadline());
  CHECK(h.link.outstanding() == 0);
}

TEST_CASE("device link: a reply already at the port when the attempt times out completes the request",
          "[device_link]") {
  Harness h;
  const uint8_t n = h.get("v", false);  // sent once: a timeout would fail it
  h.port = h.reply_frame(n, R"({"req":"v","rslt":"ok"})");
  h.now += 2s;
  h.link.on_tick(h.now);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].ok());
  CHECK(h.link.counters().timeouts == 0);
  CHECK(h.link.counters().retries == 0);
  CHECK(h.link.counters().input_at_deadline == 1);
  CHECK(h.link.counters().bytes_at_deadline > 0);
  h.link.on_tick(h.now + 1s);  // nothing at the port: not counted
  CHECK(h.link.counters().input_at_deadline == 1);
}

TEST_CASE("device link: a reply to a retry completes the request", "[device_link]") {
  Harness h;
  const uint8_t n = h.get("v");
  h.now += 2s;
  h.link.on_tick(h.now);
  h.reply(n, R"({"req":"v","rslt":"ok"})");
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].ok());
  CHECK(h.results[0].attempts == 2);
}

TEST_CASE("device link: non-idempotent requests are sent once", "[device_link]") {
  Harness h;  // max_attempts 5, but the device would run a retransmission again
  h.get("reset", false);
  h.now += 2s;
  h.link.on_tick(h.now);
  CHECK(h.sent.size() == 1);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].error == LinkError::Timeout);
  CHECK(h.results[0].attempts == 1);
  CHECK(h.link.counters().retries == 0);
}

TEST_CASE("device link: next_deadline is the earliest of the outstanding attempts", "[device_link]") {
  Harness h;
  const TimePoint t0 = h.now;
  h.get("a");
  h.now += 500ms;
  h.get("b");
  CHECK(h.link.next_deadline() == t0 + 2s);
  h.reply(1, R"({"rslt":"ok"})");
  CHECK(h.link.next_deadline() == t0 + 2500ms);
}

TEST_CASE("device link: a refused send is retried on the timeout", "[device_link]") {
  Harness h;
  h.accept_sends = false;
  const uint8_t n = h.get("v");
  CHECK(h.link.counters().send_refused == 1);
  h.accept_sends = true;
  h.now += 2s;
  h.link.on_tick(h.now);
  CHECK(h.sent.size() == 2);
  h.reply(n, R"({"rslt":"ok"})");
  CHECK(h.results.at(0).ok());
}

TEST_CASE("device link: reset fails every outstanding request; numbering carries on", "[device_link]") {
  Harness h;
  const uint8_t a = h.get("a");
  const uint8_t b = h.get("b");
  h.link.on_bytes(hex("E7 05 42 01 7B"));  // half a frame, lost with the reset
  h.link.reset();
  REQUIRE(h.results.size() == 2);
  for (const auto& r : h.results) CHECK(r.error == LinkError::DeviceReset);
  CHECK(std::string(to_string(h.results[0].error)) == "device reset");
  CHECK(h.link.outstanding() == 0);
  CHECK_FALSE(h.link.next_deadline());
  CHECK(h.link.counters().reset_failed == 2);
  h.reply(a, R"({"rslt":"ok"})");
  CHECK(h.link.counters().stale_replies == 1);
  CHECK(h.get("c") == b + 1);
  // The decoder forgot the half frame: the next frame decodes cleanly.
  h.reply(b + 1, R"({"rslt":"ok"})");
  CHECK(h.results.back().ok());
  CHECK(h.link.counters().bad_frames == 0);
}

TEST_CASE("device link: completions may send new requests and reset the link", "[device_link]") {
  Harness h;
  std::vector<uint8_t> chained;
  auto s = h.link.request(
      RequestKind::Url, "first", true,
      [&](const RequestResult&) {
        auto t = h.link.request(RequestKind::Url, "second", true,
                                [&](const RequestResult& r) { h.results.push_back(r); }, h.now);
        chained.push_back(t.msg_num);
        h.link.reset();  // fails "second" from inside the first completion
      },
      h.now);
  h.reply(s.msg_num, R"({"rslt":"ok"})");
  REQUIRE(chained.size() == 1);
  CHECK(chained[0] == 2);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].error == LinkError::DeviceReset);
  CHECK(h.link.outstanding() == 0);
}

TEST_CASE("device link: unsolicited traffic is routed (§4.7)", "[device_link]") {
  Harness h;
  const uint8_t pending = h.get("v");
  std::vector<uint8_t> in;
  for (const auto* v : {&test::kV7, &test::kV11, &test::kV9, &test::kV12, &test::kV13}) {
    const auto f = hex(v->framed);
    in.insert(in.end(), f.begin(), f.end());
  }
  // One read, fed one byte at a time: slicing must not matter.
  for (uint8_t b : in) h.link.on_bytes({&b, 1});

  REQUIRE(h.notices.size() == 2);
  CHECK(h.notices[0].sokto == 10u);
  CHECK(h.notices[0].reason == "BUSY");
  CHECK(h.notice_json[0] == test::kV7.json);
  CHECK(h.notices[1].reason == "SESSION_NOT_FOUND");
  CHECK(h.notices[1].stream_id == 9);
  REQUIRE(h.blocks.size() == 1);
  CHECK(h.blocks[0].stream_id == 1);
  CHECK(h.blocks[0].pos == 0);
  CHECK(h.blocks[0].data == "ok\r\n>>> ");
  REQUIRE(h.publishes.size() == 1);
  CHECK(std::string(h.publishes[0].begin(), h.publishes[0].end()) == R"({"_t":0,"_v":1})");
  REQUIRE(h.reports.size() == 1);
  CHECK(h.reports[0].is_shutdown());
  CHECK(h.reports[0].reason == "RestartRequested");
  // None of it touched the outstanding request.
  CHECK(h.results.empty());
  CHECK(h.link.is_outstanding(pending));
  const auto& c = h.link.counters();
  CHECK(c.notices == 2);
  CHECK(c.file_blocks == 1);
  CHECK(c.publishes == 1);
  CHECK(c.reports == 1);
  CHECK(c.stale_replies == 0);
}

TEST_CASE("device link: a report handler can reset the link mid-read", "[device_link]") {
  Harness h;
  h.reset_on_report = true;
  h.get("a");
  std::vector<uint8_t> in = hex(test::kV13.framed);
  const auto after = hex(test::kV9.framed);  // the device's new life, same read
  in.insert(in.end(), after.begin(), after.end());
  h.link.on_bytes(in);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].error == LinkError::DeviceReset);
  CHECK(h.blocks.size() == 1);
}

TEST_CASE("device link: bad frames, bad messages and unexpected ones are counted", "[device_link]") {
  Harness h;
  auto bad_crc = hex(test::kV1.framed);
  bad_crc[bad_crc.size() - 2] ^= 0x01;
  h.link.on_bytes(bad_crc);
  CHECK(h.link.counters().bad_frames == 1);

  std::vector<uint8_t> m = {0x00};  // too short for a header
  h.link.on_bytes(h.frame(m));
  CHECK(h.link.counters().bad_messages == 1);

  h.link.on_bytes(h.reply_frame(0, "{broken"));  // unparseable notice
  CHECK(h.link.counters().bad_messages == 2);

  // A device never sends requests; bridged messages are not ours to handle.
  h.link.on_bytes(hex(test::kV1.framed));
  m = {0x00, 0x03, 0x01, 0x01, 0x02, 0x00, 0x76, 0x00};
  h.link.on_bytes(h.frame(m));
  CHECK(h.link.counters().unexpected == 2);
  CHECK(h.notices.empty());
  CHECK(h.results.empty());
}

TEST_CASE("device link: frames above the receive limit are dropped, counted and reported with their size",
          "[device_link]") {
  // A PSRAM board sizes its replies to the message (§3.1): 6000 bytes of JSON here.
  const std::string big = R"({"req":"v","rslt":"ok","pad":")" + std::string(6000, 'x') + R"("})";
  const size_t big_frame = 3 + big.size() + 1 + 2;  // header, element, JSON, NUL, CRC
  for (auto opts : {DeviceLinkOptions{}, console_options()}) {
    INFO((opts.framing == Framing::Console ? "console" : "hdlc"));
    {  // the default limit takes a PSRAM board's large reply
      Harness h(opts);
      const uint8_t n = h.get("v");
      h.reply(n, big);
      REQUIRE(h.results.size() == 1);
      CHECK(h.results[0].json == big);
      CHECK(h.link.counters().oversize_frames == 0);
      CHECK(h.oversize.empty());
    }
    {  // a configured limit of 5000 drops it, says so, and the next frame still gets through
      opts.hdlc.max_frame_len = kDeviceMaxRxFrame;
      Harness h(opts);
      const uint8_t n = h.get("v");
      h.reply(n, big);
      CHECK(h.results.empty());
      CHECK(h.link.counters().oversize_frames == 1);
      CHECK(h.link.counters().bad_frames == 0);
      CHECK(h.oversize == std::vector<size_t>{big_frame});
      h.reply(n, R"({"req":"v","rslt":"ok"})");
      REQUIRE(h.results.size() == 1);
      CHECK(h.results[0].ok());
    }
  }
}

TEST_CASE("device link: unnumbered sends use msgNum 0 and are never tracked", "[device_link]") {
  Harness h;
  const auto hello = bytes("hello");
  CHECK(h.link.send_file_block(1, 0x400, hello));
  CHECK(h.wire == hex(test::kV4.framed));
  CHECK_FALSE(h.link.send_file_block(1, 0, {}));          // empty: the device rejects it
  CHECK_FALSE(h.link.send_file_block(0, 0, hello));       // stream 0 is "any"
  CHECK_FALSE(h.link.send_file_block(1, 0x1000000, hello));  // 24-bit positions
  CHECK(h.link.send_unnumbered_command_frame(R"({"cmdName":"dfAck","okto":10,"streamID":2,"rslt":"ok"})"));
  CHECK(h.sent.back()[0] == 0);
  CHECK(h.link.outstanding() == 0);
  CHECK_FALSE(h.link.next_deadline());
  CHECK(h.link.counters().unnumbered_sent == 2);
  h.accept_sends = false;
  CHECK_FALSE(h.link.send_file_block(1, 5, hello));
}

TEST_CASE("device link: console framing separates log lines from frames", "[device_link]") {
  Harness h(console_options());
  const uint8_t n = h.get("v");
  std::vector<uint8_t> in = bytes("I (120) SysMan: boot\r\n");
  auto reply = h.reply_frame(n, R"({"req":"v","rslt":"ok"})");
  // The reply is interrupted by a log line: OverAscii bytes are >= 0x80, text < 0x80.
  in.insert(in.end(), reply.begin(), reply.begin() + 10);
  const auto log2 = bytes("W (130) Net: no wifi\n");
  in.insert(in.end(), log2.begin(), log2.end());
  in.insert(in.end(), reply.begin() + 10, reply.end());
  const auto tail = bytes("I (140) x: partial");
  in.insert(in.end(), tail.begin(), tail.end());
  std::vector<uint8_t> blk;
  REQUIRE(encode_file_block(blk, 3, 7, bytes(">>> ")));
  const auto blk_frame = h.frame(blk);
  in.insert(in.end(), blk_frame.begin(), blk_frame.end());
  const auto end = bytes(" line\n");
  in.insert(in.end(), end.begin(), end.end());

  // Split across reads at awkward places.
  for (size_t i = 0; i < in.size(); i += 7) h.link.on_bytes(std::span(in).subspan(i, std::min<size_t>(7, in.size() - i)));

  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].ok());
  CHECK(h.results[0].reply.req == "v");
  REQUIRE(h.log_lines.size() == 3);
  CHECK(h.log_lines[0] == "I (120) SysMan: boot");
  CHECK(h.log_lines[1] == "W (130) Net: no wifi");
  CHECK(h.log_lines[2] == "I (140) x: partial line");
  REQUIRE(h.blocks.size() == 1);
  CHECK(h.blocks[0].stream_id == 3);
  CHECK(h.blocks[0].data == ">>> ");
  CHECK(h.link.counters().log_lines == 3);
  CHECK(h.link.counters().bad_frames == 0);
}

TEST_CASE("device link: cancel forgets a request; its reply becomes stale", "[device_link]") {
  Harness h;
  const uint8_t n = h.get("v");
  CHECK(h.link.cancel(n));
  CHECK_FALSE(h.link.cancel(n));
  CHECK_FALSE(h.link.cancel(0));
  h.reply(n, R"({"rslt":"ok"})");
  CHECK(h.results.empty());
  CHECK(h.link.counters().stale_replies == 1);
}

#include "edgelink/devices/rtstream.hpp"

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "edgelink/devices/device_sessions.hpp"
#include "edgelink/devices/hdlc.hpp"
#include "edgelink/devices/ricrest.hpp"

using namespace edgelink::devices;
using namespace std::chrono_literals;

namespace {

using TimePoint = DeviceLink::TimePoint;
using Bytes = std::vector<uint8_t>;

Bytes pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}
Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

// A device on the far end of the link, written from spec §5 with the project's
// codecs: ufStart/ufEnd sessions keyed by fileName (restart keeps the streamID and
// resets the position), streamIDs 1..254 per boot, a 4-session limit, the 10 s idle
// timer (reset by uf* commands and by accepted or BUSY blocks, not by POS_MISMATCH
// blocks), and the exact StreamDatagram replies of §5.5. Its output waits in `out`
// until the rig delivers it, like bytes on a real port.
struct FakeDevice {
  struct Session {
    uint8_t sid = 0;
    std::string file_name;
    std::string endpoint;
    uint32_t pos = 0;  // streamPos, 32 bits like the device's
    TimePoint last;
    uint32_t tx_pos = 0;  // device -> gateway position
    Bytes data;           // what the endpoint's chunk callback accepted, in order
  };
  struct Block {
    TimePoint at;
    uint8_t sid;
    uint32_t pos;
    size_t len;
    std::string outcome;  // OK, BUSY, POS_MISMATCH, SESSION_NOT_FOUND, INVALID_OPERATION
  };

  explicit FakeDevice(const TimePoint& clock) : now(clock) {}

  const TimePoint& now;
  std::vector<Session> sessions;
  std::vector<Session> ended;  // sessions removed by expiry, failure or reset, in order
  uint8_t next_sid = 1;
  size_t max_sessions = 4;
  std::chrono::milliseconds idle{10000};
  std::vector<std::string> endpoints{"upyconsole", "echo"};  // endpoints with a chunk callback

  // Knobs.
  std::chrono::milliseconds restart_delay{1000};  // SYSTEM_RESTART_DELAY_MS
  std::optional<TimePoint> boot_at, reported_at, booted_at;
  size_t seen_at_report = 0, seen_at_boot = 0;  // commands + blocks received by then
  int busy = 0;          // the next k chunk callbacks return BUSY
  int fail_ufstart = 0;  // the next k ufStarts get sessionNotStarted
  int drop_frames = 0;   // the next k incoming frames vanish (bad CRC, noise)

  // Records.
  Bytes out;
  HdlcDecoder dec;
  std::vector<std::string> commands;  // command frame JSON, in arrival order
  std::vector<TimePoint> command_times;
  std::vector<Block> blocks;
  int expired = 0;
  int forward_gaps = 0;  // accepted blocks that started past streamPos
  std::chrono::milliseconds max_idle_gap{0};

  void boot() {
    for (auto& s : sessions) ended.push_back(std::move(s));
    sessions.clear();
    next_sid = 1;
    dec = HdlcDecoder();
  }
  void crash() { boot(); }  // no report (§7.5)
  // Like the real firmware (§7.5): the REPORT has no "reason", and the old boot runs on
  // for SYSTEM_RESTART_DELAY_MS, taking commands and blocks, before it restarts.
  void reset_with_report() {
    std::vector<uint8_t> m;
    REQUIRE(encode_cmdresp(m, {0, RicMsgType::Report, ric_protocol::kRicRest}, shutdown_report_json(true, "")));
    send(m);
    reported_at = now;
    boot_at = now + restart_delay;
    seen_at_report = commands.size() + blocks.size();
  }
  void tick() {
    if (!boot_at || now < *boot_at) return;
    boot_at.reset();
    booted_at = now;
    seen_at_boot = commands.size() + blocks.size();
    boot();
  }
  // Commands and blocks the old boot took after its REPORT (counted, not timed: the
  // fake clock may not move between the last block and the REPORT).
  size_t after_report_in_old_boot() const {
    if (!reported_at) return 0;
    return (booted_at ? seen_at_boot : commands.size() + blocks.size()) - seen_at_report;
  }

  Session* find_sid(uint8_t sid) {
    for (auto& s : sessions)
      if (sid != 0 && s.sid == sid) return &s;
    return nullptr;
  }
  Session* find_name(const std::string& name) {
    for (auto& s : sessions)
      if (s.file_name == name) return &s;
    return nullptr;
  }
  void remove(uint8_t sid) {
    for (size_t i = 0; i < sessions.size(); ++i) {
      if (sessions[i].sid == sid) {
        ended.push_back(std::move(sessions[i]));
        sessions.erase(sessions.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
    }
  }
  void touch(Session& s) {
    max_idle_gap = std::max(max_idle_gap, std::chrono::duration_cast<std::chrono::milliseconds>(now - s.last));
    s.last = now;
  }
  void expire() {
    for (size_t i = 0; i < sessions.size();) {
      if (now - sessions[i].last > idle) {
        ++expired;
        ended.push_back(std::move(sessions[i]));
        sessions.erase(sessions.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
  }
  // Everything a fileName's endpoint accepted, across sessions, in order.
  Bytes endpoint_data(const std::string& file_name) const {
    Bytes all;
    for (const auto& s : ended)
      if (s.file_name == file_name) all.insert(all.end(), s.data.begin(), s.data.end());
    for (const auto& s : sessions)
      if (s.file_name == file_name) all.insert(all.end(), s.data.begin(), s.data.end());
    return all;
  }
  int count_commands(std::string_view needle) const {
    return static_cast<int>(std::count_if(commands.begin(), commands.end(), [&](const std::string& c) {
      return c.find(needle) != std::string::npos;
    }));
  }

  void send(const std::vector<uint8_t>& message) { hdlc_encode(message, out); }
  void reply(uint8_t msg_num, const std::string& json) {
    std::vector<uint8_t> m;
    REQUIRE(encode_cmdresp(m, {msg_num, RicMsgType::Response, ric_protocol::kRicRest}, json));
    send(m);
  }
  // Device -> gateway stream output (V9 shape).
  void say(uint8_t sid, std::string_view s, std::optional<uint32_t> at = std::nullopt) {
    uint32_t pos = at.value_or(0);
    if (Session* sess = find_sid(sid); sess && !at) pos = sess->tx_pos;
    std::vector<uint8_t> m;
    REQUIRE(encode_file_block(m, sid, pos & kMaxFilePos, text(s)));
    send(m);
    if (Session* sess = find_sid(sid)) sess->tx_pos = pos + static_cast<uint32_t>(s.size());
  }

  // The gateway's bytes.
  void on_wire(std::span<const uint8_t> bytes) {
    while (true) {
      const auto r = dec.next(bytes);
      bytes = bytes.subspan(r.consumed);
      if (r.status == HdlcDecoder::Status::NeedMore) break;
      REQUIRE(r.status == HdlcDecoder::Status::Frame);
      if (drop_frames > 0) {
        --drop_frames;
        continue;
      }
      on_message(Bytes(r.frame.begin(), r.frame.end()));
    }
  }

  void on_message(const Bytes& message) {
    expire();
    auto decoded = decode_message(message);
    auto* msg = std::get_if<RicMessage>(&decoded);
    REQUIRE(msg);
    if (auto* cf = std::get_if<CommandFrameElement>(&msg->body)) return on_command(msg->header.msg_num, cf->json);
    if (auto* fb = std::get_if<FileBlockElement>(&msg->body)) {
      REQUIRE(msg->header.msg_num == 0);  // blocks are unnumbered (§5.4)
      return on_block(*fb);
    }
    if (auto* url = std::get_if<UrlElement>(&msg->body))
      return reply(msg->header.msg_num, R"({"req":")" + std::string(url->url) + R"(","rslt":"fail","error":"failUnknownAPI"})");
    FAIL("unexpected message from the gateway");
  }

  void on_command(uint8_t num, std::string_view json) {
    commands.emplace_back(json);
    command_times.push_back(now);
    rapidjson::Document d;
    d.Parse(json.data(), json.size());
    REQUIRE(d.IsObject());
    const std::string cmd = d["cmdName"].GetString();
    const uint8_t sid = d.HasMember("streamID") ? static_cast<uint8_t>(d["streamID"].GetUint()) : 0;
    if (cmd == "ufStart") {
      const std::string name = d["fileName"].GetString();
      if (fail_ufstart > 0) {
        --fail_ufstart;
        return reply(num, session_not_started_json());
      }
      if (Session* s = find_name(name)) {  // restart: same streamID, position 0
        s->pos = 0;
        touch(*s);
        return reply(num, ufstart_ok_json(s->sid));
      }
      if (sessions.size() > max_sessions - 1) return reply(num, session_not_started_json());
      Session s;
      s.sid = next_sid;
      next_sid = next_sid + 1 >= 255 ? 1 : next_sid + 1;
      s.file_name = name;
      s.endpoint = d["endpoint"].GetString();
      s.last = now;
      sessions.push_back(s);
      return reply(num, ufstart_ok_json(s.sid));
    }
    Session* s = sid ? find_sid(sid) : nullptr;
    if (s) touch(*s);
    reply(num, session_cmd_reply_json(cmd, s ? std::optional<uint8_t>(s->sid) : std::nullopt));
  }

  void on_block(const FileBlockElement& b) {
    REQUIRE_FALSE(b.data.empty());
    REQUIRE(b.data.size() <= kMaxBlockPayload);
    Session* s = find_sid(b.stream_id);
    if (!s) {
      blocks.push_back({now, b.stream_id, b.pos, b.data.size(), "SESSION_NOT_FOUND"});
      return reply(0, block_fail_json(b.stream_id, "SESSION_NOT_FOUND"));
    }
    if (b.pos < s->pos) {  // no idle reset
      blocks.push_back({now, b.stream_id, b.pos, b.data.size(), "POS_MISMATCH"});
      return reply(0, sokto_json(b.stream_id, s->pos, "POS_MISMATCH"));
    }
    if (b.pos > s->pos) ++forward_gaps;
    s->pos = b.pos + static_cast<uint32_t>(b.data.size());  // whatever the callback returns
    touch(*s);
    if (std::find(endpoints.begin(), endpoints.end(), s->endpoint) == endpoints.end()) {
      blocks.push_back({now, b.stream_id, b.pos, b.data.size(), "INVALID_OPERATION"});
      const uint8_t id = s->sid;
      remove(id);
      return reply(0, block_fail_json(id, "INVALID_OPERATION"));
    }
    if (busy > 0) {
      --busy;
      blocks.push_back({now, b.stream_id, b.pos, b.data.size(), "BUSY"});
      return reply(0, sokto_json(b.stream_id, s->pos, "BUSY"));
    }
    blocks.push_back({now, b.stream_id, b.pos, b.data.size(), "OK"});
    s->data.insert(s->data.end(), b.data.begin(), b.data.end());
  }

  int count_blocks(std::string_view outcome) const {
    return static_cast<int>(
        std::count_if(blocks.begin(), blocks.end(), [&](const Block& b) { return b.outcome == outcome; }));
  }
};

struct Rig {
  explicit Rig(DeviceSessionsOptions opts = {}) : sessions(DeviceLinkOptions{}, handlers(), opts) {
    sessions.on_transport_state(true, now);
  }

  DeviceLink::Handlers handlers() {
    DeviceLink::Handlers h;
    h.send = [this](std::span<const uint8_t> frame) {
      if (!transport_up) return false;
      dev.on_wire(frame);
      return true;
    };
    h.on_report = [this](const Report& r, std::string_view) { reports.push_back(r); };
    // What DeviceTransport::deliver_pending() does: hand over what has reached the port.
    h.poll_input = [this]() -> size_t {
      if (hold || dev.out.empty()) return 0;
      Bytes b;
      b.swap(dev.out);
      sessions.on_bytes(b);
      return b.size();
    };
    return h;
  }

  struct Stream {
    RtStream* s = nullptr;
    Bytes received;
    std::vector<std::pair<RtStreamEvent, std::string>> events;
    int writable_calls = 0;
    int count(RtStreamEvent e) const {
      return static_cast<int>(std::count_if(events.begin(), events.end(), [&](const auto& x) { return x.first == e; }));
    }
  };

  Stream& add(const std::string& name, const std::string& endpoint = "upyconsole",
              std::optional<RtStreamOptions> opts = std::nullopt) {
    auto st = std::make_unique<Stream>();
    Stream* raw = st.get();
    RtStreamCallbacks cb;
    cb.on_data = [raw](std::span<const uint8_t> d) { raw->received.insert(raw->received.end(), d.begin(), d.end()); };
    cb.on_event = [raw](RtStreamEvent e, std::string_view detail) { raw->events.emplace_back(e, std::string(detail)); };
    cb.on_writable = [raw] { ++raw->writable_calls; };
    raw->s = sessions.add_stream(name, endpoint, name, cb, opts);
    REQUIRE(raw->s);
    streams.push_back(std::move(st));
    return *raw;
  }

  void deliver() {
    if (hold || starved || dev.out.empty()) return;
    Bytes b;
    b.swap(dev.out);
    sessions.on_bytes(b);
  }

  // Runs the event loop on the fake clock until `end`: deliver the device's bytes,
  // tick, jump to the next deadline. `each` runs on every turn (a producer).
  void run_until(TimePoint end, const std::function<void()>& each = {}) {
    int spins = 0;
    while (true) {
      if (each) each();
      deliver();
      sessions.on_tick(now);
      deliver();
      dev.expire();
      dev.tick();
      const auto due = sessions.next_deadline();
      if (due && *due <= now) {
        REQUIRE(++spins < 1000);  // a due deadline must make progress
        continue;
      }
      spins = 0;
      TimePoint next = due ? std::min(*due, end) : end;
      if (dev.boot_at) next = std::min(next, *dev.boot_at);
      if (next <= now) break;
      now = next;
    }
  }
  void run_for(std::chrono::milliseconds d, const std::function<void()>& each = {}) { run_until(now + d, each); }
  // Writes everything in `data` as the queue accepts it, and runs until it is confirmed.
  void pump(Stream& st, const Bytes& data, std::chrono::milliseconds limit) {
    size_t off = 0;
    const TimePoint end = now + limit;
    while (now < end) {
      run_for(1s, [&] {
        if (off < data.size())
          off += st.s->write(std::span<const uint8_t>(data).subspan(off));
      });
      if (off == data.size() && st.s->queued_bytes() == 0) break;
    }
    REQUIRE(off == data.size());
    REQUIRE(st.s->queued_bytes() == 0);
  }

  TimePoint now = TimePoint{} + 1000h;
  bool transport_up = true;
  bool hold = false;  // keep the device's output on the wire (latency)
  // The device's output has reached the port, but the loop is too busy to run the
  // read: only a tick's poll_input (DeviceTransport::deliver_pending) takes it in.
  bool starved = false;
  FakeDevice dev{now};
  std::vector<Report> reports;
  std::vector<std::unique_ptr<Stream>> streams;
  DeviceSessions sessions;
};

}  // namespace

TEST_CASE("rtstream: open sends exactly the V2 ufStart and learns the streamID", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  CHECK(st.s->state_name() == std::string("closed"));
  st.s->open(rig.now);
  REQUIRE(rig.dev.commands.size() == 1);
  CHECK(rig.dev.commands[0] ==
        R"({"cmdName":"ufStart","reqStr":"ufStart","fileType":"rtstream","fileName":"upyconsole","endpoint":"upyconsole","fileLen":0})");
  CHECK(st.s->state() == RtStreamState::Opening);
  CHECK(st.s->stream_id() == 0);
  rig.run_for(10ms);
  CHECK(st.s->state() == RtStreamState::Open);
  CHECK(st.s->state_name() == std::string("open"));
  CHECK(st.s->stream_id() == 1);
  CHECK(st.count(RtStreamEvent::Opened) == 1);
  CHECK(st.s->counters().opens == 1);
  CHECK(st.s->counters().reopens == 0);

  // A second stream gets the next ID from the device.
  auto& b = rig.add("other", "echo");
  b.s->open(rig.now);
  rig.run_for(10ms);
  CHECK(b.s->stream_id() == 2);
}

TEST_CASE("rtstream: blocks are 1..475 bytes at contiguous positions, one in flight", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  rig.run_for(10ms);
  const Bytes data = pattern(5000, 1);
  REQUIRE(st.s->write(data) == data.size());
  rig.run_for(5s);
  CHECK(rig.dev.endpoint_data("upyconsole") == data);
  REQUIRE(rig.dev.blocks.size() == 11);  // ceil(5000 / 475)
  uint32_t pos = 0;
  for (size_t i = 0; i < rig.dev.blocks.size(); ++i) {
    const auto& b = rig.dev.blocks[i];
    CHECK(b.outcome == "OK");
    CHECK(b.sid == 1);
    CHECK(b.pos == pos);
    CHECK(b.len >= 1);
    CHECK(b.len <= 475);
    pos += static_cast<uint32_t>(b.len);
    // One block in flight: the next one waits out the previous block's window.
    if (i > 0) CHECK(b.at - rig.dev.blocks[i - 1].at >= st.s->options().block_window);
  }
  CHECK(pos == 5000);
  CHECK(st.s->counters().bytes_out == 5000);
  CHECK(st.s->counters().blocks_out == 11);
  CHECK(st.s->tx_position() == 5000);
  CHECK(rig.dev.forward_gaps == 0);
}

TEST_CASE("rtstream: 1 MiB with BUSY episodes arrives intact and in order", "[rtstream]") {
  RtStreamOptions o;
  o.max_queue_bytes = 64 * 1024;  // forces the producer through back-pressure too
  Rig rig;
  auto& st = rig.add("upyconsole", "upyconsole", o);
  st.s->open(rig.now);
  const Bytes data = pattern(1024 * 1024, 2);
  std::mt19937 rng(7);
  size_t off = 0;
  int episodes = 0;
  size_t last_blocks = 0;
  const TimePoint end = rig.now + 2h;
  while (rig.now < end && (off < data.size() || st.s->queued_bytes() > 0)) {
    rig.run_for(1s, [&] {
      if (off < data.size()) off += st.s->write(std::span<const uint8_t>(data).subspan(off));
      // Every ~40 blocks the endpoint chokes for 1..4 blocks.
      if (rig.dev.blocks.size() >= last_blocks + 40 && rig.dev.busy == 0) {
        last_blocks = rig.dev.blocks.size();
        rig.dev.busy = static_cast<int>(rng() % 4) + 1;
        ++episodes;
      }
    });
  }
  REQUIRE(off == data.size());
  CHECK(episodes > 40);
  const int busy_blocks = rig.dev.count_blocks("BUSY");
  CHECK(busy_blocks > 40);
  CHECK(rig.dev.endpoint_data("upyconsole") == data);
  CHECK(st.s->counters().busy == static_cast<uint64_t>(busy_blocks));
  CHECK(st.s->counters().resends == static_cast<uint64_t>(busy_blocks));
  CHECK(st.s->counters().bytes_out == data.size());
  CHECK(rig.dev.count_blocks("POS_MISMATCH") == 0);  // BUSY resends go at sokto, never at the old position
  CHECK(rig.dev.forward_gaps == 0);
  CHECK(rig.dev.expired == 0);
  CHECK(st.count(RtStreamEvent::DataLost) == 0);
  CHECK(st.s->counters().write_refused > 0);
  CHECK(st.writable_calls > 0);
  // After a BUSY the same bytes went again at sokto = pos + len of the dropped block.
  for (size_t i = 0; i + 1 < rig.dev.blocks.size(); ++i) {
    const auto& b = rig.dev.blocks[i];
    if (b.outcome != "BUSY") continue;
    const auto& next = rig.dev.blocks[i + 1];
    CHECK(next.pos == b.pos + b.len);
    CHECK(next.len == b.len);
    CHECK(next.at - b.at >= st.s->options().busy_backoff);
  }
}

TEST_CASE("rtstream: POS_MISMATCH resends the block at sokto", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  const Bytes a = pattern(1000, 3), b = pattern(1000, 4);
  st.s->write(a);
  rig.run_for(2s);
  REQUIRE(rig.dev.endpoint_data("upyconsole") == a);
  // The device's position runs ahead (a stale block from elsewhere, a sim control).
  auto* sess = rig.dev.find_sid(st.s->stream_id());
  REQUIRE(sess);
  sess->pos += 300;
  st.s->write(b);
  rig.run_for(2s);
  CHECK(rig.dev.count_blocks("POS_MISMATCH") == 1);
  CHECK(st.s->counters().pos_mismatch == 1);
  CHECK(st.s->counters().resends == 1);
  Bytes both = a;
  both.insert(both.end(), b.begin(), b.end());
  CHECK(rig.dev.endpoint_data("upyconsole") == both);
  // The resend went at exactly the device's position.
  const auto mismatch = std::find_if(rig.dev.blocks.begin(), rig.dev.blocks.end(),
                                     [](const auto& x) { return x.outcome == "POS_MISMATCH"; });
  REQUIRE(mismatch + 1 < rig.dev.blocks.end());
  CHECK((mismatch + 1)->pos == 1300);
  CHECK((mismatch + 1)->outcome == "OK");
  CHECK(st.count(RtStreamEvent::DataLost) == 0);
}

TEST_CASE("rtstream: SESSION_NOT_FOUND reopens and resends the block", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  const Bytes a = pattern(2000, 5), b = pattern(3000, 6);
  st.s->write(a);
  rig.run_for(2s);
  // The device forgets the session (expired on its side, closed by the endpoint...).
  rig.dev.remove(st.s->stream_id());
  st.s->write(b);
  rig.run_for(3s);
  CHECK(rig.dev.count_blocks("SESSION_NOT_FOUND") == 1);
  CHECK(st.s->counters().session_not_found == 1);
  CHECK(st.s->counters().reopens == 1);
  CHECK(st.count(RtStreamEvent::SessionLost) == 1);
  CHECK(st.count(RtStreamEvent::DataLost) == 0);  // the block was in flight: resent, not lost
  CHECK(st.s->state() == RtStreamState::Open);
  CHECK(st.s->stream_id() == 2);  // a new session
  CHECK(rig.dev.count_commands("ufStart") == 2);
  Bytes both = a;
  both.insert(both.end(), b.begin(), b.end());
  CHECK(rig.dev.endpoint_data("upyconsole") == both);
  CHECK(rig.dev.forward_gaps == 0);
}

TEST_CASE("rtstream: keepalive: an idle session never goes 10 s without activity", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  st.s->write(text("print(1)\r"));
  rig.run_for(1s);
  const uint8_t sid = st.s->stream_id();

  SECTION("clean link") {
    rig.run_for(60s);
    CHECK(rig.dev.expired == 0);
    CHECK(rig.dev.max_idle_gap <= 5100ms);
    CHECK(st.s->counters().keepalives >= 11);
    // Keepalives are ufStart restarts (§6.1.4): same session, same streamID.
    CHECK(rig.dev.count_commands("ufStart") == 1 + static_cast<int>(st.s->counters().keepalives));
    CHECK(st.s->stream_id() == sid);
    CHECK(st.s->counters().reopens == 0);
  }
  SECTION("a keepalive frame is lost: its retry still lands within 10 s") {
    rig.run_for(4500ms);
    rig.dev.drop_frames = 1;
    rig.run_for(60s);
    CHECK(rig.dev.expired == 0);
    CHECK(rig.dev.max_idle_gap <= 7100ms);
    CHECK(st.s->stream_id() == sid);
  }
  // Data still flows in the same session afterwards, from position 0 after the restart.
  const Bytes more = pattern(1000, 8);
  st.s->write(more);
  rig.run_for(2s);
  CHECK(rig.dev.count_blocks("SESSION_NOT_FOUND") == 0);
  Bytes all = text("print(1)\r");
  all.insert(all.end(), more.begin(), more.end());
  CHECK(rig.dev.endpoint_data("upyconsole") == all);
  CHECK(rig.dev.forward_gaps == 0);
}

TEST_CASE("rtstream: restarts before the 24-bit position wraps", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  rig.run_for(10ms);
  const Bytes data = pattern(17 * 1024 * 1024, 9);  // past 2^24
  rig.pump(st, data, 10h);
  CHECK(st.s->counters().wrap_restarts == 1);
  CHECK(st.s->counters().reopens == 0);
  CHECK(st.s->stream_id() == 1);  // a restart keeps the session
  CHECK(rig.dev.count_blocks("POS_MISMATCH") == 0);
  CHECK(rig.dev.forward_gaps == 0);
  uint64_t max_end = 0;
  for (const auto& b : rig.dev.blocks) max_end = std::max<uint64_t>(max_end, uint64_t{b.pos} + b.len);
  CHECK(max_end <= kMaxFilePos);
  CHECK(rig.dev.endpoint_data("upyconsole") == data);
  CHECK(st.s->counters().bytes_out == data.size());
}

TEST_CASE("rtstream: POS_MISMATCH at 2^24 (a device past 24 bits) restarts instead of wrapping", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  st.s->write(text("abc"));
  rig.run_for(1s);
  rig.dev.find_sid(1)->pos = 1u << 24;  // §5.5: sokto reports the 32-bit position
  st.s->write(text("def"));
  rig.run_for(2s);
  CHECK(rig.dev.count_blocks("POS_MISMATCH") == 1);
  CHECK(st.s->counters().wrap_restarts == 1);
  CHECK(rig.dev.endpoint_data("upyconsole") == text("abcdef"));
}

TEST_CASE("rtstream: REPORT mid-stream: the restart is waited out and every byte reaches the endpoint once",
          "[rtstream]") {
  Rig rig;
  auto& a = rig.add("a");
  auto& b = rig.add("b");
  a.s->open(rig.now);
  b.s->open(rig.now);
  rig.run_for(10ms);
  const Bytes da = pattern(20000, 10), db = pattern(20000, 11);
  a.s->write(da);
  b.s->write(db);
  rig.run_for(1s);
  REQUIRE(a.s->stream_id() == 1);
  REQUIRE(b.s->stream_id() == 2);
  REQUIRE(a.s->counters().bytes_out > 0);
  REQUIRE(a.s->counters().bytes_out < da.size());
  // The old boot has taken the block in flight; nothing has confirmed it yet.
  REQUIRE(a.s->block_in_flight());
  REQUIRE(rig.dev.count_blocks("OK") == static_cast<int>(rig.dev.blocks.size()));

  rig.dev.reset_with_report();
  rig.deliver();
  CHECK(rig.reports.size() == 1);
  CHECK(rig.reports[0].reason.empty());  // the real REPORT has none
  CHECK(rig.sessions.device_restarting());
  CHECK(a.s->state_name() == std::string("device restarting"));
  rig.run_for(20s);
  CHECK(rig.dev.booted_at);
  CHECK_FALSE(rig.sessions.device_restarting());
  // Nothing reached the old boot after its REPORT: no ufStart it would forget a second
  // later, no block it would drop.
  CHECK(rig.dev.after_report_in_old_boot() == 0);
  CHECK(rig.sessions.counters().reset_reports == 1);
  CHECK(a.s->counters().device_resets == 1);
  CHECK(b.s->counters().device_resets == 1);
  CHECK(a.s->counters().reopens == 1);
  CHECK(b.s->counters().reopens == 1);
  CHECK(a.s->counters().session_not_found == 0);
  CHECK(b.s->counters().session_not_found == 0);
  CHECK(rig.dev.count_blocks("SESSION_NOT_FOUND") == 0);
  // The device's counter restarted: the two new sessions are 1 and 2 again.
  CHECK(std::min(a.s->stream_id(), b.s->stream_id()) == 1);
  CHECK(std::max(a.s->stream_id(), b.s->stream_id()) == 2);
  CHECK(a.s->queued_bytes() == 0);
  CHECK(b.s->queued_bytes() == 0);
  // Across both boots each endpoint got its bytes exactly once, in order: the block in
  // flight at the REPORT went to the old boot and was not sent again.
  CHECK(rig.dev.endpoint_data("a") == da);
  CHECK(rig.dev.endpoint_data("b") == db);
  CHECK(rig.dev.forward_gaps == 0);
  CHECK(a.count(RtStreamEvent::DataLost) == 0);
}

TEST_CASE("rtstream: REPORT: a block the old boot refused is sent once, in the new boot", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  const Bytes data = pattern(3000, 21);
  st.s->write(data);
  rig.run_for(150ms);
  REQUIRE(st.s->block_in_flight());
  // The next block comes back BUSY, and the REPORT follows it on the wire.
  rig.dev.busy = 1;
  rig.hold = true;
  rig.run_for(60ms);
  REQUIRE(rig.dev.count_blocks("BUSY") == 1);
  rig.dev.reset_with_report();
  rig.hold = false;
  rig.run_for(5s);
  CHECK(st.s->counters().busy == 1);
  CHECK(rig.dev.after_report_in_old_boot() == 0);  // not resent into the dying boot
  CHECK(st.s->state() == RtStreamState::Open);
  CHECK(st.s->queued_bytes() == 0);
  CHECK(rig.dev.endpoint_data("upyconsole") == data);
}

TEST_CASE("rtstream: REPORT: opens wait for the restart; a long block window delays the reopen", "[rtstream]") {
  SECTION("a stream opened during the wait opens in the new boot") {
    Rig rig;
    auto& st = rig.add("upyconsole");
    rig.dev.reset_with_report();
    rig.deliver();
    st.s->open(rig.now);
    st.s->write(text("x = 1\r"));
    rig.run_for(5s);
    CHECK(rig.dev.after_report_in_old_boot() == 0);
    CHECK(rig.dev.count_commands("ufStart") == 1);
    CHECK(rig.dev.endpoint_data("upyconsole") == text("x = 1\r"));
    CHECK(st.s->counters().session_not_found == 0);
  }
  SECTION("a stream added during the wait is held too") {
    Rig rig;
    rig.dev.reset_with_report();
    rig.deliver();
    auto& st = rig.add("late");
    st.s->open(rig.now);
    rig.run_for(500ms);
    CHECK(rig.dev.commands.empty());
    rig.run_for(5s);
    CHECK(st.s->state() == RtStreamState::Open);
    CHECK(rig.dev.after_report_in_old_boot() == 0);
  }
  SECTION("the wait lasts at least until the block in flight is settled") {
    RtStreamOptions slow;
    slow.block_window = 3s;  // a slow console port: longer than the restart wait
    Rig rig;
    auto& st = rig.add("upyconsole", "upyconsole", slow);
    st.s->open(rig.now);
    st.s->write(pattern(600, 22));
    rig.run_for(10ms);
    REQUIRE(st.s->block_in_flight());
    rig.dev.reset_with_report();
    rig.run_for(2500ms);
    CHECK(rig.sessions.device_restarting());
    CHECK(st.s->block_in_flight());
    rig.run_for(10s);
    CHECK(st.s->counters().reopens == 1);
    CHECK(rig.dev.endpoint_data("upyconsole") == pattern(600, 22));
  }
}

TEST_CASE("rtstream: silent crash: a reused streamID resets the other streams", "[rtstream]") {
  Rig rig;
  auto& a = rig.add("a");
  auto& b = rig.add("b");
  a.s->open(rig.now);
  rig.run_for(10ms);
  b.s->open(rig.now);
  rig.run_for(10ms);
  REQUIRE(a.s->stream_id() == 1);
  REQUIRE(b.s->stream_id() == 2);

  rig.dev.crash();  // no REPORT; IDs restart at 1
  b.s->write(text("to b"));
  rig.run_for(2s);
  // b's block got SESSION_NOT_FOUND, b reopened and was given ID 1: a's ID. a must not
  // go on sending with it, or its bytes would land in b's new session.
  CHECK(b.s->counters().session_not_found == 1);
  CHECK(rig.sessions.counters().id_collisions == 1);
  CHECK(a.s->counters().device_resets == 1);
  CHECK(b.s->stream_id() == 1);
  CHECK(a.s->stream_id() == 2);  // a reopened too
  a.s->write(text("to a"));
  rig.run_for(2s);
  CHECK(rig.dev.endpoint_data("b") == text("to b"));
  CHECK(rig.dev.endpoint_data("a") == text("to a"));
  // Device output for b's new ID goes to b only.
  rig.dev.say(1, "for b");
  rig.run_for(10ms);
  CHECK(b.received == text("for b"));
  CHECK(a.received.empty());
}

TEST_CASE("rtstream: ufStart failure and timeout back off and retry", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");

  SECTION("fail replies: 1 s, 2 s, 4 s") {
    rig.dev.fail_ufstart = 3;
    st.s->open(rig.now);
    st.s->write(text("queued before open"));
    rig.run_for(10ms);
    CHECK(st.s->state() == RtStreamState::Waiting);
    CHECK(st.s->state_name() == std::string("retrying"));
    CHECK(st.s->last_error().find("sessionNotStarted") != std::string::npos);
    rig.run_for(10s);
    REQUIRE(rig.dev.command_times.size() == 4);
    const auto& t = rig.dev.command_times;
    CHECK(t[1] - t[0] == 1s);
    CHECK(t[2] - t[1] == 2s);
    CHECK(t[3] - t[2] == 4s);
    CHECK(st.count(RtStreamEvent::OpenFailed) == 3);
    CHECK(st.s->counters().open_failures == 3);
    CHECK(st.s->state() == RtStreamState::Open);
    CHECK(rig.dev.endpoint_data("upyconsole") == text("queued before open"));
  }
  SECTION("the backoff stops doubling at 10 s") {
    rig.dev.fail_ufstart = 7;
    st.s->open(rig.now);
    rig.run_for(60s);
    const auto& t = rig.dev.command_times;
    REQUIRE(t.size() >= 8);  // then keepalives
    CHECK(t[3] - t[2] == 4s);
    CHECK(t[4] - t[3] == 8s);
    CHECK(t[5] - t[4] == 10s);  // 1, 2, 4, 8, 10, 10, 10
    CHECK(t[7] - t[6] == 10s);
    CHECK(st.count(RtStreamEvent::OpenFailed) == 7);
    CHECK(st.s->state() == RtStreamState::Open);
  }
  SECTION("no reply: the link's attempts run out, then the backoff") {
    rig.dev.drop_frames = 5;  // every attempt of the first ufStart
    st.s->open(rig.now);
    rig.run_for(9s);
    CHECK(st.s->state() == RtStreamState::Opening);
    rig.run_for(1500ms);  // 5 attempts x 2 s have run out
    CHECK(st.s->state() == RtStreamState::Waiting);
    CHECK(st.count(RtStreamEvent::OpenFailed) == 1);
    CHECK(st.s->last_error().find("timeout") != std::string::npos);
    rig.run_for(1s);
    CHECK(st.s->state() == RtStreamState::Open);
    CHECK(rig.dev.count_commands("ufStart") == 1);  // the 5 dropped never reached the device's parser
    CHECK(rig.sessions.link().counters().timeouts == 1);
  }
  SECTION("a fail for the first block is an open failure (unknown endpoint)") {
    auto& bad = rig.add("nosuch", "nosuchendpoint");
    bad.s->open(rig.now);
    bad.s->write(text("x"));
    rig.run_for(500ms);
    CHECK(bad.count(RtStreamEvent::Opened) == 1);
    CHECK(bad.count(RtStreamEvent::OpenFailed) == 1);
    CHECK(bad.s->last_error().find("INVALID_OPERATION") != std::string::npos);
    CHECK(bad.s->state() == RtStreamState::Waiting);
    CHECK(bad.s->queued_bytes() == 1);  // kept: nothing reached an endpoint
    rig.run_for(4s);                    // retried at +1 s, +2 s
    CHECK(bad.count(RtStreamEvent::OpenFailed) == 3);
  }
}

TEST_CASE("rtstream: device output is delivered in order; unknown streamIDs are dropped", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  rig.run_for(10ms);
  rig.dev.say(1, "ok\r\n");
  rig.dev.say(1, ">>> ");
  rig.dev.say(99, "stale");  // §5.7: a closed or foreign session
  rig.run_for(10ms);
  CHECK(st.received == text("ok\r\n>>> "));
  CHECK(rig.sessions.counters().blocks_dropped == 1);
  CHECK(st.s->counters().rx_gaps == 0);
  // A gap in the device's positions is counted, never a reason to drop (§5.7).
  rig.dev.say(1, "late", 1000);
  rig.dev.say(1, "!", 1004);
  rig.run_for(10ms);
  CHECK(st.received == text("ok\r\n>>> late!"));
  CHECK(st.s->counters().rx_gaps == 1);
  CHECK(st.s->counters().bytes_in == 13);
  CHECK(st.s->counters().blocks_in == 4);
}

TEST_CASE("rtstream: a full write queue refuses and says when it has room", "[rtstream]") {
  RtStreamOptions o;
  o.max_queue_bytes = 1000;
  Rig rig;
  auto& st = rig.add("upyconsole", "upyconsole", o);
  CHECK(st.s->write(text("x")) == 0);  // closed: refused
  st.s->open(rig.now);
  const Bytes data = pattern(1500, 12);
  CHECK(st.s->write(data) == 1000);
  CHECK_FALSE(st.s->writable());
  CHECK(st.s->queued_bytes() == 1000);
  CHECK(st.s->write(text("more")) == 0);
  CHECK(st.s->counters().write_refused == 1 + 500 + 4);
  CHECK(st.writable_calls == 0);
  rig.run_for(150ms);  // one block confirmed: 525 queued, above half
  CHECK(st.writable_calls == 0);
  rig.run_for(100ms);  // two: 50 queued
  CHECK(st.writable_calls == 1);
  CHECK(st.s->writable());
  CHECK(st.s->write(std::span<const uint8_t>(data).subspan(1000)) == 500);
  rig.run_for(2s);
  CHECK(rig.dev.endpoint_data("upyconsole") == data);
  CHECK(st.writable_calls == 1);
}

TEST_CASE("rtstream: write_all takes a chunk whole or not at all", "[rtstream]") {
  RtStreamOptions o;
  o.max_queue_bytes = 1000;
  Rig rig;
  auto& st = rig.add("upyconsole", "upyconsole", o);
  CHECK_FALSE(st.s->write_all(text("x")));  // closed
  st.s->open(rig.now);
  const Bytes big = pattern(1500, 15), small = pattern(600, 16);
  CHECK(st.s->write_all(big));  // larger than the cap, but the queue is empty
  CHECK_FALSE(st.s->write_all(small));
  CHECK(st.s->queued_bytes() == 1500);
  bool resumed = false;
  rig.run_until(rig.now + 10s, [&] {
    if (!resumed && st.writable_calls == 1) {  // what the bridge's resume_input() does
      REQUIRE(st.s->write_all(small));
      resumed = true;
    }
  });
  CHECK(resumed);
  CHECK(st.writable_calls == 1);
  Bytes all = big;
  all.insert(all.end(), small.begin(), small.end());
  CHECK(rig.dev.endpoint_data("upyconsole") == all);
}

TEST_CASE("rtstream: close sends ufEnd, stops keepalives and drops its output", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  st.s->write(text("hi"));
  rig.run_for(1s);
  st.s->write(text("never sent"));
  st.s->close(rig.now);
  REQUIRE_FALSE(rig.dev.commands.empty());
  CHECK(rig.dev.commands.back() == R"({"cmdName":"ufEnd","reqStr":"ufEnd","streamID":1})");  // V10
  CHECK(st.s->state_name() == std::string("closed"));
  CHECK(st.s->counters().dropped_closed == 10);
  CHECK(st.count(RtStreamEvent::Closed) == 1);
  const size_t commands = rig.dev.commands.size();
  rig.dev.say(1, "after close");
  rig.run_for(30s);
  CHECK(rig.dev.commands.size() == commands);  // no keepalive
  CHECK(st.received.empty());
  CHECK(rig.dev.endpoint_data("upyconsole") == text("hi"));
  CHECK_FALSE(rig.sessions.next_deadline());
  // Reopening the same fileName is a restart on the device (§6.1.5) or a new session.
  st.s->open(rig.now);
  rig.run_for(10ms);
  CHECK(st.s->state() == RtStreamState::Open);
}

TEST_CASE("rtstream: a BUSY after the block's window is reported as loss", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  rig.run_for(10ms);
  st.s->write(pattern(2000, 13));
  rig.dev.busy = 1;
  rig.hold = true;  // the BUSY is slow to come back
  rig.run_for(150ms);
  rig.hold = false;
  rig.run_for(2s);
  CHECK(st.s->counters().late_notices == 1);
  CHECK(st.s->counters().busy == 0);
  CHECK(st.s->counters().dropped_late == 475);
  REQUIRE(st.count(RtStreamEvent::DataLost) == 1);
  CHECK(rig.dev.endpoint_data("upyconsole").size() == 2000 - 475);
}

TEST_CASE("rtstream: a late BUSY raises the block window for the blocks after it", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  rig.run_for(10ms);
  REQUIRE(st.s->turnaround() == 20ms);
  REQUIRE(st.s->block_window() == 100ms);
  const Bytes data = pattern(3000, 21);
  st.s->write(data);

  // Block 0's BUSY comes back after its 100 ms window: lost, and the turnaround doubles.
  rig.dev.busy = 1;
  rig.hold = true;
  rig.run_for(150ms);
  rig.hold = false;
  rig.run_for(1ms);
  CHECK(st.s->counters().late_notices == 1);
  CHECK(st.s->counters().window_grown == 1);
  CHECK(st.s->turnaround() == 40ms);
  CHECK(st.s->block_window() == 120ms);
  REQUIRE(st.count(RtStreamEvent::WindowGrown) == 1);
  CHECK(std::find_if(st.events.begin(), st.events.end(), [](const auto& e) {
          return e.first == RtStreamEvent::WindowGrown &&
                 e.second.find("late BUSY: block window raised to 120 ms") != std::string::npos;
        }) != st.events.end());

  // The block after it gets the longer window, so a BUSY 110 ms after its block, late
  // for the old 100 ms window, now counts and the block is resent.
  const size_t n = rig.dev.blocks.size();
  rig.dev.busy = 1;
  rig.hold = true;
  for (int i = 0; i < 1000 && rig.dev.blocks.size() == n; ++i) rig.run_for(1ms);
  REQUIRE(rig.dev.blocks.size() == n + 1);
  const TimePoint sent = rig.dev.blocks.back().at;
  // Block 1 was in flight when the window grew: it waited the longer window too.
  CHECK(sent - rig.dev.blocks[n - 1].at >= 120ms);
  rig.run_until(sent + 110ms);
  rig.hold = false;
  rig.run_for(3s);
  CHECK(st.s->counters().busy == 1);
  CHECK(st.s->counters().resends == 1);
  CHECK(st.s->counters().late_notices == 1);
  CHECK(st.s->counters().window_grown == 1);
  CHECK(st.count(RtStreamEvent::DataLost) == 1);  // block 0 only
  CHECK(rig.dev.endpoint_data("upyconsole").size() == data.size() - 475);
  CHECK(st.s->queued_bytes() == 0);
}

TEST_CASE("rtstream: late complaints grow the device's turnaround up to its cap, for all its streams",
          "[rtstream]") {
  Rig rig;
  auto& a = rig.add("upyconsole");
  auto& b = rig.add("other", "echo");
  a.s->open(rig.now);
  b.s->open(rig.now);
  rig.run_for(10ms);
  a.s->write(pattern(20 * 475, 22));
  // The next block's BUSY comes back just after its window.
  auto late_busy = [&] {
    const size_t n = rig.dev.blocks.size();
    rig.dev.busy = 1;
    rig.hold = true;
    for (int i = 0; i < 1000 && rig.dev.blocks.size() == n; ++i) rig.run_for(1ms);
    REQUIRE(rig.dev.blocks.size() == n + 1);
    rig.run_until(rig.dev.blocks.back().at + a.s->block_window() + 5ms);
    rig.hold = false;
    rig.run_for(1ms);
  };
  const std::chrono::milliseconds want[] = {40ms, 80ms, 160ms, 250ms, 250ms};
  for (const auto t : want) {
    late_busy();
    CHECK(a.s->turnaround() == t);
    CHECK(b.s->turnaround() == t);  // the device's turnaround, not one stream's
  }
  CHECK(a.s->counters().late_notices == 5);
  CHECK(a.s->counters().window_grown == 4);  // the fifth found it at the cap
  CHECK(a.count(RtStreamEvent::WindowGrown) == 4);
  CHECK(a.s->block_window() == 330ms);
  CHECK(b.s->block_window() == 330ms);
  CHECK(b.s->counters().window_grown == 0);
  CHECK(rig.sessions.turnaround() == 250ms);
  // A stream added later starts with what the device's streams learnt.
  auto& c = rig.add("third", "echo");
  CHECK(c.s->turnaround() == 250ms);

  // With turnaround_max at the turnaround, nothing grows.
  RtStreamOptions fixed;
  fixed.turnaround_max = fixed.turnaround;
  Rig rig2;
  auto& d = rig2.add("upyconsole", "upyconsole", fixed);
  d.s->open(rig2.now);
  rig2.run_for(10ms);
  d.s->write(pattern(2000, 23));
  rig2.dev.busy = 1;
  rig2.hold = true;
  rig2.run_for(150ms);
  rig2.hold = false;
  rig2.run_for(1s);
  CHECK(d.s->counters().late_notices == 1);
  CHECK(d.s->counters().window_grown == 0);
  CHECK(d.s->block_window() == 100ms);
}

TEST_CASE("rtstream: a BUSY already at the port when the window ends counts for its block", "[rtstream]") {
  // A loaded gateway: the device answered BUSY in time, but the loop runs the window's
  // timer before the read that holds the reply. The tick must take that reply in first.
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  rig.run_for(10ms);
  const Bytes data = pattern(2000, 13);
  st.s->write(data);
  rig.dev.busy = 1;
  rig.starved = true;
  rig.run_for(st.s->options().block_window * 3 / 2);
  CHECK(rig.sessions.link().counters().input_at_deadline >= 1);
  rig.starved = false;
  rig.run_for(2s);
  CHECK(st.s->counters().late_notices == 0);
  CHECK(st.s->counters().busy == 1);
  CHECK(st.s->counters().resends == 1);
  CHECK(st.count(RtStreamEvent::DataLost) == 0);
  CHECK(rig.dev.endpoint_data("upyconsole") == data);
  REQUIRE(rig.dev.blocks.size() >= 2);
  CHECK(rig.dev.blocks[0].outcome == "BUSY");
  CHECK(rig.dev.blocks[1].pos == rig.dev.blocks[0].pos + rig.dev.blocks[0].len);  // resent at sokto
  CHECK(rig.dev.blocks[1].len == rig.dev.blocks[0].len);
}

TEST_CASE("rtstream: transport down suspends; up reopens and resends what was not confirmed", "[rtstream]") {
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  const Bytes data = pattern(3000, 14);
  st.s->write(data);
  rig.run_for(250ms);
  const uint64_t confirmed = st.s->counters().bytes_out;
  REQUIRE(confirmed > 0);
  rig.transport_up = false;
  rig.sessions.on_transport_state(false, rig.now);
  CHECK(st.s->state_name() == std::string("suspended"));
  rig.dev.crash();  // the device rebooted meanwhile
  const size_t blocks = rig.dev.blocks.size();
  rig.run_for(30s);
  CHECK(rig.dev.blocks.size() == blocks);  // nothing sent while down
  rig.transport_up = true;
  rig.sessions.on_transport_state(true, rig.now);
  rig.run_for(3s);
  CHECK(st.s->state() == RtStreamState::Open);
  CHECK(st.s->stream_id() == 1);
  CHECK(rig.dev.sessions.size() == 1);
  CHECK(rig.dev.sessions[0].data == Bytes(data.begin() + static_cast<std::ptrdiff_t>(confirmed), data.end()));
}

TEST_CASE("rtstream: REPORT, then the port goes during the restart wait: the wait ends, the new boot gets the rest",
          "[rtstream]") {
  // USB-CDC boards lose their port when they restart: the unplug ends the wait early and
  // the normal reconnect takes over.
  Rig rig;
  auto& st = rig.add("upyconsole");
  st.s->open(rig.now);
  const Bytes data = pattern(3000, 15);
  st.s->write(data);
  rig.run_for(250ms);
  rig.dev.reset_with_report();
  rig.deliver();
  REQUIRE(rig.sessions.device_restarting());
  rig.run_for(100ms);  // the block in flight settles in the old boot
  rig.transport_up = false;
  rig.sessions.on_transport_state(false, rig.now);
  CHECK_FALSE(rig.sessions.device_restarting());
  CHECK(st.s->state_name() == std::string("suspended"));
  const uint64_t confirmed = st.s->counters().bytes_out;
  REQUIRE(confirmed > 0);
  rig.dev.crash();  // the new boot
  rig.run_for(5s);
  rig.transport_up = true;
  rig.sessions.on_transport_state(true, rig.now);
  rig.run_for(3s);
  CHECK(st.s->state() == RtStreamState::Open);
  CHECK(rig.dev.after_report_in_old_boot() == 0);
  REQUIRE(rig.dev.sessions.size() == 1);
  CHECK(rig.dev.sessions[0].data == Bytes(data.begin() + static_cast<std::ptrdiff_t>(confirmed), data.end()));
  CHECK(st.count(RtStreamEvent::DataLost) == 0);
}

TEST_CASE("rtstream: the router keeps to the device's session limit", "[rtstream]") {
  Rig rig;
  for (int i = 0; i < 4; ++i) rig.add("s" + std::to_string(i));
  CHECK(rig.sessions.add_stream("s4", "upyconsole", "s4", {}) == nullptr);
  CHECK(rig.sessions.counters().streams_refused == 1);
  CHECK(rig.sessions.remove_stream("s3", rig.now));
  CHECK(rig.sessions.add_stream("s0", "upyconsole", "x", {}) == nullptr);  // duplicate name
  CHECK(rig.sessions.add_stream("x", "upyconsole", "s0", {}) == nullptr);  // duplicate fileName
  CHECK(rig.sessions.add_stream("s4", "upyconsole", "s4", {}) != nullptr);

  SECTION("slots taken elsewhere: sessionNotStarted until they expire") {
    Rig r2;
    r2.dev.max_sessions = 1;
    FakeDevice::Session foreign;
    foreign.sid = 200;
    foreign.file_name = "other-client";
    foreign.last = r2.now;
    r2.dev.sessions.push_back(foreign);
    auto& st = r2.add("mine");
    st.s->open(r2.now);
    r2.run_for(5s);
    CHECK(st.s->state_name() == std::string("retrying"));
    CHECK(st.count(RtStreamEvent::OpenFailed) >= 2);
    r2.run_for(20s);  // the foreign session's 10 s idle timeout passes
    CHECK(st.s->state() == RtStreamState::Open);
  }
}

#include "edgelink/devices/device_push.hpp"

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "edgelink/devices/hdlc.hpp"
#include "edgelink/devices/ricrest.hpp"

using namespace edgelink::devices;
using namespace std::chrono_literals;

namespace {

using TimePoint = DeviceLink::TimePoint;
using Bytes = std::vector<uint8_t>;

Bytes pattern(size_t n) {
  std::mt19937 rng(7);
  Bytes b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

// The device side of ricrest.md §5.5 (an rtstream endpoint that writes at filePos, like
// the simulator's filesink) and §5.9 (an OKTO upload into a file), with the project's
// codecs. Replies wait in `out` until the rig delivers them.
struct FakeDevice {
  Bytes file;
  Bytes out;
  HdlcDecoder dec;
  std::vector<std::string> commands;
  uint8_t sid = 0;
  uint8_t next_sid = 1;
  bool okto_mode = false;
  uint64_t file_len = 0;
  uint32_t pos = 0;  // rtstream streamPos / OKTO expected position
  uint32_t received_in_batch = 0;
  uint32_t batch = 10;
  int busy = 0;             // the next k rtstream blocks return BUSY
  bool silent_end = false;  // no end-of-stream sokto
  bool fail_write = false;  // the next OKTO block fails to write
  bool refuse_start = false;

  void reply(uint8_t num, const std::string& json) {
    Bytes m;
    REQUIRE(encode_cmdresp(m, {num, RicMsgType::Response, ric_protocol::kRicRest}, json));
    hdlc_encode(m, out);
  }

  void on_wire(std::span<const uint8_t> bytes) {
    while (true) {
      const auto r = dec.next(bytes);
      bytes = bytes.subspan(r.consumed);
      if (r.status == HdlcDecoder::Status::NeedMore) break;
      REQUIRE(r.status == HdlcDecoder::Status::Frame);
      const Bytes frame(r.frame.begin(), r.frame.end());  // the decoded views point into it
      auto decoded = decode_message(frame);
      auto* msg = std::get_if<RicMessage>(&decoded);
      REQUIRE(msg);
      if (auto* cf = std::get_if<CommandFrameElement>(&msg->body)) on_command(msg->header.msg_num, cf->json);
      if (auto* fb = std::get_if<FileBlockElement>(&msg->body)) on_block(*fb);
    }
  }

  void on_command(uint8_t num, std::string_view json) {
    commands.emplace_back(json);
    rapidjson::Document d;
    d.Parse(json.data(), json.size());
    const std::string cmd = d["cmdName"].GetString();
    if (cmd == "ufStart") {
      if (refuse_start) return reply(num, R"({"req":"ufStart","batchMsgSize":500,"batchAckSize":10,"streamID":3,"rslt":"fail","error":"transferInProgress"})");
      okto_mode = std::string(d["fileType"].GetString()) == "fs";
      file_len = d["fileLen"].GetUint64();
      pos = 0;
      if (!sid) sid = next_sid++;  // a restart keeps the streamID (§5.1)
      if (okto_mode) {
        received_in_batch = 0;
        file.clear();
        return reply(num, R"({"req":"ufStart","batchMsgSize":500,"batchAckSize":10,"streamID":)" +
                              std::to_string(sid) + R"(,"rslt":"ok"})");
      }
      return reply(num, ufstart_ok_json(sid));
    }
    if (cmd == "ufEnd") return reply(num, R"({"req":"ufEnd","rslt":"ok"})");
    reply(num, session_cmd_reply_json(cmd, sid));
  }

  void on_block(const FileBlockElement& b) {
    REQUIRE(b.stream_id == sid);
    if (okto_mode) {
      if (fail_write) {
        reply(0, R"({"req":"ufBlock","cmdName":"ufStatus","reason":"FileWriteFailed","rslt":"fail"})");
        return reply(0, R"({"req":"","cmdName":"ufCancel","reason":"failFileWrite","rslt":"ok"})");
      }
      const bool first = pos == 0;
      if (b.pos == pos) {
        file.insert(file.end(), b.data.begin(), b.data.end());
        pos += static_cast<uint32_t>(b.data.size());
      }
      ++received_in_batch;
      if (first || received_in_batch >= batch || pos >= file_len) {
        received_in_batch = 0;
        reply(0, R"({"req":"ufBlock","okto":)" + std::to_string(pos) + R"(,"rslt":"ok"})");
      }
      return;
    }
    if (b.pos < pos) return reply(0, sokto_json(sid, pos, "POS_MISMATCH"));
    if (b.pos == 0) file.clear();
    pos = b.pos + static_cast<uint32_t>(b.data.size());
    if (busy > 0) {
      --busy;
      return reply(0, sokto_json(sid, pos, "BUSY"));
    }
    file.resize(std::max<size_t>(file.size(), b.pos + b.data.size()));
    std::copy(b.data.begin(), b.data.end(), file.begin() + b.pos);
    if (pos >= file_len && !silent_end) reply(0, sokto_json(sid, pos, ""));
  }
};

struct Rig {
  TimePoint now{};
  FakeDevice dev;
  bool up = true;
  DeviceLink link{DeviceLinkOptions{}, handlers()};
  Bytes data;
  std::optional<bool> ok;
  std::string detail;
  std::vector<uint64_t> progress;
  std::unique_ptr<DevicePush> push;

  DeviceLink::Handlers handlers() {
    DeviceLink::Handlers h;
    h.send = [this](std::span<const uint8_t> frame) {
      if (!up) return false;
      dev.on_wire(frame);
      return true;
    };
    h.poll_input = [this]() -> size_t { return deliver(); };
    h.on_notice = [this](const DeviceReply& r, std::string_view) {
      if (push) push->on_notice(r);
    };
    return h;
  }

  size_t deliver() {
    Bytes b;
    b.swap(dev.out);
    link.on_bytes(b);
    return b.size();
  }

  void start(PushType type, size_t size, uint32_t restarts = 3) {
    data = pattern(size);
    DevicePushSpec spec{"mcu1", "up.bin", "filesink", type, size, restarts};
    DevicePushCallbacks cb;
    cb.read = [this](uint64_t off, std::span<uint8_t> out) {
      if (off + out.size() > data.size()) return false;
      std::copy(data.begin() + static_cast<std::ptrdiff_t>(off),
                data.begin() + static_cast<std::ptrdiff_t>(off + out.size()), out.begin());
      return true;
    };
    cb.progress = [this](uint64_t b) { progress.push_back(b); };
    cb.done = [this](bool o, std::string d) {
      ok = o;
      detail = std::move(d);
    };
    push = std::make_unique<DevicePush>(link, spec, DevicePushOptions{}, cb);
    push->start(now);
  }

  // Runs the clock to each deadline until the push ends (or `limit` passes).
  void run(std::chrono::milliseconds limit = 120s) {
    const TimePoint end = now + limit;
    while (!ok && now < end) {
      deliver();
      std::optional<TimePoint> due = push->next_deadline();
      if (auto l = link.next_deadline(); l && (!due || *l < *due)) due = l;
      if (!due) break;
      if (*due != TimePoint::min() && *due > now) now = *due;
      link.on_tick(now);
      push->on_tick(now);
    }
  }
};

}  // namespace

TEST_CASE("rtstream push: blocks at file offsets, done on the end-of-stream sokto", "[devices][push]") {
  Rig rig;
  rig.start(PushType::Rtstream, 2000);
  rig.run();
  REQUIRE(rig.ok == true);
  CHECK(rig.dev.file == rig.data);
  REQUIRE_FALSE(rig.dev.commands.empty());
  CHECK(rig.dev.commands[0] ==
        R"({"cmdName":"ufStart","reqStr":"ufStart","fileType":"rtstream","fileName":"up.bin","endpoint":"filesink","fileLen":2000})");
  CHECK(rig.progress.back() == 2000);
  CHECK(rig.push->restarts_used() == 0);
}

TEST_CASE("rtstream push: a BUSY restarts from offset 0 with the same fileName", "[devices][push]") {
  Rig rig;
  rig.dev.busy = 1;
  rig.start(PushType::Rtstream, 3000);
  rig.run();
  REQUIRE(rig.ok == true);
  CHECK(rig.dev.file == rig.data);
  CHECK(rig.push->restarts_used() == 1);
  int starts = 0;
  for (const auto& c : rig.dev.commands) starts += c.find("\"ufStart\"") != std::string::npos;
  CHECK(starts == 2);
}

TEST_CASE("rtstream push: restarts used up fail the push", "[devices][push]") {
  Rig rig;
  rig.dev.busy = 100;
  rig.start(PushType::Rtstream, 3000, 2);
  rig.run();
  REQUIRE(rig.ok == false);
  CHECK(rig.detail == "device mcu1: BUSY (2 restarts used up)");
}

TEST_CASE("rtstream push: no end-of-stream sokto fails after the end wait", "[devices][push]") {
  Rig rig;
  rig.dev.silent_end = true;
  rig.start(PushType::Rtstream, 500);
  rig.run();
  REQUIRE(rig.ok == false);
  CHECK(rig.detail.find("no end-of-stream sokto") != std::string::npos);
}

TEST_CASE("fs push: OKTO batches, go-back-N, ufEnd", "[devices][push]") {
  Rig rig;
  rig.start(PushType::Fs, 12345);
  rig.run();
  REQUIRE(rig.ok == true);
  CHECK(rig.dev.file == rig.data);
  CHECK(rig.dev.commands.front().find(R"("fileType":"fs","fileName":"up.bin","fileLen":12345,"batchMsgSize":500,"batchAckSize":10)") !=
        std::string::npos);
  CHECK(rig.dev.commands.back().find("\"ufEnd\"") != std::string::npos);
  CHECK(rig.progress.back() == 12345);
}

TEST_CASE("fs push: a write failure ends the push with its reason", "[devices][push]") {
  Rig rig;
  rig.dev.fail_write = true;
  rig.start(PushType::Fs, 5000);
  rig.run();
  REQUIRE(rig.ok == false);
  CHECK(rig.detail == "device mcu1: FileWriteFailed");
}

TEST_CASE("fs push: a refused ufStart ends the push", "[devices][push]") {
  Rig rig;
  rig.dev.refuse_start = true;
  rig.start(PushType::Fs, 5000);
  rig.run();
  REQUIRE(rig.ok == false);
  CHECK(rig.detail == "device mcu1: transferInProgress");
}

TEST_CASE("a push fails when the link goes", "[devices][push]") {
  Rig rig;
  rig.start(PushType::Rtstream, 5000);
  rig.deliver();
  rig.push->on_tick(rig.now);
  rig.push->on_link_lost("offline");
  REQUIRE(rig.ok == false);
  CHECK(rig.detail == "device mcu1: offline");
  // Nothing more happens after the end.
  rig.push->on_link_lost("again");
  CHECK(rig.detail == "device mcu1: offline");
}

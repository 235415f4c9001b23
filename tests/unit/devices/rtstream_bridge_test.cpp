// RtStreamBridge against real loopback sockets: the test plays the session through the
// two callbacks and the TCP client through plain sockets, and runs the io_context
// itself until a condition holds (listeners bind port 0, so nothing clashes).
// Tagged [net]: it needs 127.0.0.1, not a network, and runs in well under a second.

#include "edgelink/devices/rtstream_bridge.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace edgelink::devices;
using namespace std::chrono_literals;
using asio::ip::tcp;

namespace {

// Runs handlers until `done` holds or 5 s pass.
bool run_until(asio::io_context& io, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    if (io.stopped()) io.restart();
    io.run_one_for(5ms);
  }
  return true;
}

// Runs whatever is ready for a while: used to show that something does NOT happen.
void run_for(asio::io_context& io, std::chrono::milliseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
    if (io.stopped()) io.restart();
    io.run_one_for(2ms);
  }
}

// The session side: records what the bridge hands it.
struct Session {
  std::string received;          // bytes taken from the client
  std::vector<bool> in_use;      // every on_in_use() call
  int to_device_calls = 0;
  bool accepting = true;

  RtStreamBridge::ToDevice to_device() {
    return [this](std::span<const uint8_t> b) {
      ++to_device_calls;
      if (!accepting) return false;
      received.append(reinterpret_cast<const char*>(b.data()), b.size());
      return true;
    };
  }
  RtStreamBridge::InUseHandler on_in_use() {
    return [this](bool v) { in_use.push_back(v); };
  }
};

// A TCP client on its own io_context, used synchronously (blocking connect and
// write; non-blocking reads polled while the bridge's io_context runs).
struct Client {
  asio::io_context io;
  tcp::socket socket{io};
  std::string received;
  bool eof = false;

  explicit Client(uint16_t port) {
    socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    socket.non_blocking(true);
  }
  void send(const std::string& s) { asio::write(socket, asio::buffer(s)); }
  // Takes what has arrived; true once `n` bytes are in or the peer closed.
  void poll() {
    char buf[4096];
    while (!eof) {
      asio::error_code ec;
      const size_t n = socket.read_some(asio::buffer(buf), ec);
      if (ec == asio::error::would_block) return;
      if (ec) {
        eof = true;  // eof or reset: either way the bridge closed us
        return;
      }
      received.append(buf, n);
    }
  }
};

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

RtStreamBridgeOptions options(const std::string& name = "console", uint16_t port = 0) {
  RtStreamBridgeOptions o;
  o.name = name;
  o.port = port;
  return o;
}

}  // namespace

TEST_CASE("rtstream bridge: bytes go both ways", "[rtstream][net]") {
  asio::io_context io;
  Session s;
  RtStreamBridge bridge(io, options(), s.to_device(), s.on_in_use());
  REQUIRE(bridge.open().empty());
  REQUIRE(bridge.is_open());
  REQUIRE(bridge.local_port() != 0);
  CHECK_FALSE(bridge.has_client());

  Client c(bridge.local_port());
  REQUIRE(run_until(io, [&] { return bridge.has_client(); }));
  CHECK(s.in_use == std::vector<bool>{true});

  c.send("print('hi')\r\n");
  REQUIRE(run_until(io, [&] { return s.received == "print('hi')\r\n"; }));

  // Binary-safe in both directions.
  const std::string raw("\x00\xff\xe7\x7e\x0d\x0a", 6);
  bridge.from_device(bytes("hi\r\n>>> "));
  bridge.from_device(bytes(raw));
  REQUIRE(run_until(io, [&] {
    c.poll();
    return c.received.size() >= 14;
  }));
  CHECK(c.received == "hi\r\n>>> " + raw);
  c.send(raw);
  REQUIRE(run_until(io, [&] { return s.received.size() == 13 + raw.size(); }));
  CHECK(s.received.substr(13) == raw);

  const auto& st = bridge.stats();
  CHECK(st.clients_accepted == 1);
  CHECK(st.clients_rejected == 0);
  CHECK(st.bytes_in == 13 + raw.size());
  CHECK(st.bytes_out == 14);
  CHECK(st.dropped() == 0);
  CHECK(bridge.queued_bytes() == 0);
}

TEST_CASE("rtstream bridge: a second client is told and closed; the first keeps the port",
          "[rtstream][net]") {
  asio::io_context io;
  Session s;
  RtStreamBridge bridge(io, options("upy"), s.to_device(), s.on_in_use());
  REQUIRE(bridge.open().empty());
  Client first(bridge.local_port());
  REQUIRE(run_until(io, [&] { return bridge.has_client(); }));

  Client second(bridge.local_port());
  REQUIRE(run_until(io, [&] {
    second.poll();
    return second.eof;
  }));
  CHECK(second.received == "edgelink: rtstream upy is in use\n");
  CHECK(bridge.stats().clients_rejected == 1);
  CHECK(bridge.stats().clients_accepted == 1);
  CHECK(s.in_use == std::vector<bool>{true});  // nothing reported for the refused one

  first.send("still here");
  REQUIRE(run_until(io, [&] { return s.received == "still here"; }));
  bridge.from_device(bytes("ok"));
  REQUIRE(run_until(io, [&] {
    first.poll();
    return first.received == "ok";
  }));
}

TEST_CASE("rtstream bridge: a refusing session stops the reads until resume_input", "[rtstream][net]") {
  asio::io_context io;
  Session s;
  RtStreamBridge bridge(io, options(), s.to_device(), s.on_in_use());
  REQUIRE(bridge.open().empty());
  Client c(bridge.local_port());
  REQUIRE(run_until(io, [&] { return bridge.has_client(); }));

  s.accepting = false;
  c.send("abc");
  REQUIRE(run_until(io, [&] { return s.to_device_calls == 1; }));
  CHECK(bridge.input_paused());
  CHECK(bridge.stats().pauses == 1);
  CHECK(s.received.empty());

  // Paused: more bytes from the client stay in the socket; to_device is not called.
  c.send("def");
  run_for(io, 50ms);
  CHECK(s.to_device_calls == 1);

  // Still full: the retry is refused again and the bridge stays paused.
  bridge.resume_input();
  bridge.resume_input();  // coalesced with the first
  CHECK(s.to_device_calls == 1);  // posted, never re-entrant
  REQUIRE(run_until(io, [&] { return s.to_device_calls == 2; }));
  run_for(io, 20ms);
  CHECK(s.to_device_calls == 2);
  CHECK(bridge.input_paused());

  // Room again: the held chunk goes first, then reading picks up the rest, in order.
  s.accepting = true;
  bridge.resume_input();
  REQUIRE(run_until(io, [&] { return s.received == "abcdef"; }));
  CHECK_FALSE(bridge.input_paused());
  CHECK(bridge.stats().bytes_in == 6);
  CHECK(bridge.stats().pauses == 1);
  CHECK(bridge.stats().dropped() == 0);

  // resume_input without a pause does nothing.
  const int calls = s.to_device_calls;
  bridge.resume_input();
  run_for(io, 10ms);
  CHECK(s.to_device_calls == calls);
}

TEST_CASE("rtstream bridge: a client leaving is reported and the port takes the next one",
          "[rtstream][net]") {
  asio::io_context io;
  Session s;
  RtStreamBridge bridge(io, options(), s.to_device(), s.on_in_use());
  REQUIRE(bridge.open().empty());
  {
    Client c(bridge.local_port());
    REQUIRE(run_until(io, [&] { return bridge.has_client(); }));
  }  // closed
  REQUIRE(run_until(io, [&] { return !bridge.has_client(); }));
  CHECK(s.in_use == std::vector<bool>{true, false});

  // Device bytes with nobody connected are dropped and counted.
  bridge.from_device(bytes("lost"));
  CHECK(bridge.stats().dropped_no_client == 4);

  // A client that leaves while its input is held: the held bytes are counted as lost.
  Client c2(bridge.local_port());
  REQUIRE(run_until(io, [&] { return bridge.has_client(); }));
  s.accepting = false;
  c2.send("xyz");
  REQUIRE(run_until(io, [&] { return bridge.input_paused(); }));
  c2.socket.close();
  // A paused bridge does not read, so it sees the close when the session resumes.
  s.accepting = true;
  s.received.clear();
  bridge.resume_input();
  REQUIRE(run_until(io, [&] { return !bridge.has_client(); }));
  CHECK(s.received == "xyz");
  CHECK(s.in_use == std::vector<bool>{true, false, true, false});
  CHECK(bridge.stats().clients_accepted == 2);
}

TEST_CASE("rtstream bridge: a client that does not read is disconnected at the cap", "[rtstream][net]") {
  asio::io_context io;
  Session s;
  RtStreamBridgeOptions o = options();
  o.max_client_queue_bytes = 1000;
  RtStreamBridge bridge(io, o, s.to_device(), s.on_in_use());
  REQUIRE(bridge.open().empty());
  Client c(bridge.local_port());
  REQUIRE(run_until(io, [&] { return bridge.has_client(); }));

  // A write's completion runs only in the io_context, so until then every byte handed
  // over counts against the cap (the first write may already sit in the kernel).
  bridge.from_device(bytes(std::string(600, 'a')));
  CHECK(bridge.queued_bytes() == 600);
  bridge.from_device(bytes(std::string(400, 'b')));  // exactly at the cap: fine
  CHECK(bridge.queued_bytes() == 1000);
  bridge.from_device(bytes("c"));  // past it: the client goes
  CHECK_FALSE(bridge.has_client());
  CHECK(s.in_use == std::vector<bool>{true, false});
  CHECK(bridge.queued_bytes() == 0);
  const auto& st = bridge.stats();
  CHECK(st.slow_client_disconnects == 1);
  CHECK(st.dropped_slow_client == 1001);
  CHECK(st.dropped() == 1001);
  REQUIRE(run_until(io, [&] {
    c.poll();
    return c.eof;
  }));
  // The client sees a clean end after a prefix, not a stream with a hole in it.
  CHECK(c.received.size() <= 600);
  CHECK(c.received.find_first_not_of('a') == std::string::npos);
}

TEST_CASE("rtstream bridge: a port in use is a clear error", "[rtstream][net]") {
  asio::io_context io;
  Session s;
  RtStreamBridge first(io, options("a"), s.to_device(), s.on_in_use());
  REQUIRE(first.open().empty());
  const uint16_t port = first.local_port();

  RtStreamBridge second(io, options("b", port), s.to_device(), s.on_in_use());
  CHECK(second.open() == "rtstream b: cannot listen on 127.0.0.1:" + std::to_string(port) +
                             ": Address already in use");
  CHECK_FALSE(second.is_open());
  CHECK(second.local_port() == 0);

  RtStreamBridgeOptions bad = options("c");
  bad.bind = "::1";
  bad.port = port;
  RtStreamBridge v6(io, bad, s.to_device(), s.on_in_use());
  const std::string err = v6.open();
  // Either ::1 is free on that port (fine) or IPv6 is off on this host: the message
  // brackets the address either way.
  if (!err.empty()) CHECK(err.rfind("rtstream c: cannot listen on [::1]:" + std::to_string(port) + ": ", 0) == 0);

  // Once the first lets go, the port can be taken (SO_REUSEADDR, no TIME_WAIT wait).
  first.close();
  CHECK(second.open().empty());
  CHECK(second.local_port() == port);
}

TEST_CASE("rtstream bridge: close and destruction with a client connected run no handler",
          "[rtstream][net]") {
  asio::io_context io;
  Session s;
  auto bridge = std::make_unique<RtStreamBridge>(io, options(), s.to_device(), s.on_in_use());
  REQUIRE(bridge->open().empty());
  const uint16_t port = bridge->local_port();
  Client c(port);
  REQUIRE(run_until(io, [&] { return bridge->has_client(); }));
  c.send("pending");  // a read completion may already be queued
  bridge->from_device(bytes("queued"));  // and a write in progress

  bridge->close();
  CHECK_FALSE(bridge->is_open());
  CHECK_FALSE(bridge->has_client());
  CHECK(bridge->local_port() == 0);
  run_for(io, 30ms);
  CHECK(s.in_use == std::vector<bool>{true});  // close() does not report
  CHECK(s.received.empty());
  REQUIRE(run_until(io, [&] {
    c.poll();
    return c.eof;
  }));
  // Late calls from the session are harmless.
  bridge->from_device(bytes("x"));
  bridge->resume_input();
  CHECK(bridge->stats().dropped_no_client == 1);

  // It can listen again; then destroy it with a client, a read and a write pending.
  REQUIRE(bridge->open().empty());
  Client c2(bridge->local_port());
  REQUIRE(run_until(io, [&] { return bridge->has_client(); }));
  s.accepting = false;
  c2.send("held");
  REQUIRE(run_until(io, [&] { return bridge->input_paused(); }));
  bridge->resume_input();  // posted: runs after the bridge is gone
  bridge->from_device(bytes("queued"));
  const size_t before = s.in_use.size();
  const int calls = s.to_device_calls;
  bridge.reset();
  run_for(io, 30ms);
  CHECK(s.in_use.size() == before);
  CHECK(s.to_device_calls == calls);
  REQUIRE(run_until(io, [&] {
    c2.poll();
    return c2.eof;
  }));
}

TEST_CASE("rtstream bridge: handlers may close or destroy the bridge", "[rtstream][net]") {
  asio::io_context io;
  std::unique_ptr<RtStreamBridge> bridge;
  int to_device_calls = 0;
  bool close_on_connect = true;
  bridge = std::make_unique<RtStreamBridge>(
      io, options(),
      [&](std::span<const uint8_t>) {
        ++to_device_calls;
        bridge.reset();  // the session tears everything down from inside the callback
        return true;
      },
      [&](bool in_use) {
        if (in_use && close_on_connect) bridge->close();
      });
  REQUIRE(bridge->open().empty());
  const uint16_t port = bridge->local_port();
  {
    Client c(port);
    REQUIRE(run_until(io, [&] { return !bridge->is_open(); }));
    CHECK_FALSE(bridge->has_client());
  }
  close_on_connect = false;
  REQUIRE(bridge->open().empty());
  Client c(bridge->local_port());
  REQUIRE(run_until(io, [&] { return bridge && bridge->has_client(); }));
  c.send("bye");
  REQUIRE(run_until(io, [&] { return !bridge; }));
  run_for(io, 20ms);
  CHECK(to_device_calls == 1);
}

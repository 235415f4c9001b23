// SerialTransport against real pseudo-terminals, which the test creates itself
// (posix_openpt): the transport opens the slave side through a symlink, like a
// /dev/serial/by-id/... path, and the test plays the device on the master side.
// Tagged [pty]: it needs /dev/ptmx, not a network, and runs in well under a second.

#include "edgelink/devices/serial_transport.hpp"
#include "edgelink/util/baud_rates.hpp"

#include <catch2/catch.hpp>

#include "pty_test_util.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace edgelink::devices;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// The device side of one pseudo-terminal pair.
class Pty {
 public:
  Pty() {
    master_ = edgelink::test::open_pty_master(slave_path_);
  }
  ~Pty() { close(); }
  Pty(const Pty&) = delete;
  Pty& operator=(const Pty&) = delete;

  const std::string& slave_path() const { return slave_path_; }
  // Closing the master is an unplug: the slave's reader gets EIO.
  void close() {
    if (master_ >= 0) ::close(master_);
    master_ = -1;
  }
  void write(const std::vector<uint8_t>& bytes) {
    REQUIRE(::write(master_, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  }
  // Appends what has arrived so far to `out`.
  void read_into(std::vector<uint8_t>& out) {
    uint8_t buf[4096];
    while (true) {
      const ssize_t n = ::read(master_, buf, sizeof buf);
      if (n <= 0) return;
      out.insert(out.end(), buf, buf + n);
    }
  }

 private:
  int master_ = -1;
  std::string slave_path_;
};

// A temporary directory holding the "by-id" symlink.
struct LinkDir {
  LinkDir() {
    char tmpl[] = "/tmp/edgelink-serial-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    link = dir / "usb-Raft_SimMCU-if00";
  }
  ~LinkDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  void point_to(const std::string& target) {
    std::error_code ec;
    fs::remove(link, ec);
    fs::create_symlink(target, link);
  }
  void unplug() { fs::remove(link); }  // udev removes the by-id link on unplug
  fs::path dir;
  fs::path link;
};

// These tests give the loop 3 s by default, not the shared 5 s.
bool run_until(asio::io_context& io, const std::function<bool()>& done, std::chrono::milliseconds limit = 3s) {
  return edgelink::test::run_until(io, done, limit);
}

// Every byte value, so raw mode is checked: no echo, no CR/LF mapping, no XON/XOFF.
std::vector<uint8_t> all_bytes(int rounds) {
  std::vector<uint8_t> v;
  for (int r = 0; r < rounds; ++r)
    for (int b = 0; b < 256; ++b) v.push_back(static_cast<uint8_t>(b ^ r));
  return v;
}

struct Events {
  std::vector<uint8_t> in;
  std::vector<std::pair<bool, std::error_code>> states;
  int ups() const {
    int n = 0;
    for (const auto& s : states) n += s.first;
    return n;
  }
  int downs() const { return static_cast<int>(states.size()) - ups(); }
};

SerialOptions fast_options(const fs::path& path) {
  SerialOptions o;
  o.path = path.string();
  o.reconnect_min = 20ms;
  o.reconnect_max = 160ms;
  return o;
}

void check_both_ways(asio::io_context& io, SerialTransport& t, Pty& pty, Events& ev, int rounds) {
  const auto out = all_bytes(rounds);
  REQUIRE(t.write(out));
  std::vector<uint8_t> got;
  REQUIRE(run_until(io, [&] {
    pty.read_into(got);
    return got.size() >= out.size();
  }));
  CHECK(got == out);

  ev.in.clear();
  const auto in = all_bytes(rounds + 1);
  pty.write(in);
  REQUIRE(run_until(io, [&] { return ev.in.size() >= in.size(); }));
  CHECK(ev.in == in);
}

}  // namespace

TEST_CASE("serial transport: baud rates map to termios constants or are refused", "[pty]") {
  // Every rate config accepts opens (config reads the same list, util/baud_rates.hpp).
  for (uint32_t baud : edgelink::kSupportedBaudRates) {
    CAPTURE(baud);
    CHECK(SerialTransport::speed_constant(baud) != 0);
  }
  CHECK(edgelink::supported_baud(921600));
  CHECK_FALSE(edgelink::supported_baud(12345));
  CHECK_FALSE(edgelink::supported_baud(0));
  CHECK(SerialTransport::speed_constant(12345) == 0);

  asio::io_context io;
  SerialOptions o;
  o.path = "/nonexistent";
  o.baud = 12345;
  SerialTransport t(io, o, {}, {});
  CHECK(t.start() == std::make_error_code(std::errc::invalid_argument));
  CHECK(t.stats().open_attempts == 0);
}

TEST_CASE("serial transport: bytes both ways, unplug, backoff, replug at the same path", "[pty]") {
  asio::io_context io;
  LinkDir dir;
  auto pty = std::make_unique<Pty>();
  dir.point_to(pty->slave_path());

  Events ev;
  SerialTransport t(
      io, fast_options(dir.link), [&](std::span<const uint8_t> b) { ev.in.insert(ev.in.end(), b.begin(), b.end()); },
      [&](bool up, std::error_code ec) { ev.states.emplace_back(up, ec); });
  REQUIRE_FALSE(t.start());
  REQUIRE(ev.ups() == 1);  // opened synchronously
  CHECK(t.is_up());
  CHECK(t.stats().opens == 1);

  check_both_ways(io, t, *pty, ev, 4);
  CHECK(t.stats().bytes_out == 4 * 256);
  CHECK(t.stats().bytes_in == 5 * 256);

  // Unplug: the device goes away and so does its by-id link.
  pty->close();
  dir.unplug();
  const auto t_down = std::chrono::steady_clock::now();
  REQUIRE(run_until(io, [&] { return ev.downs() == 1; }));
  CHECK_FALSE(t.is_up());
  CHECK(ev.states.back().second);  // EIO (or eof): the reason is passed on
  CHECK(t.stats().disconnects == 1);
  const uint8_t one = 0x42;
  CHECK_FALSE(t.write({&one, 1}));
  CHECK(t.stats().writes_refused_down == 1);

  // Reopen attempts fail (ENOENT) and back off: 20, 40, 80 ms, then the cap.
  REQUIRE(run_until(io, [&] { return t.stats().open_failures >= 3; }));
  CHECK(std::chrono::steady_clock::now() - t_down >= 140ms);
  CHECK(t.backoff() == 160ms);
  CHECK(t.last_error() == std::errc::no_such_file_or_directory);
  CHECK(ev.downs() == 1);  // failed attempts are counted, not reported as events

  REQUIRE(run_until(io, [&] { return t.stats().open_failures >= 4; }));
  CHECK(t.backoff() == 160ms);  // capped

  // Replug: a new pty appears behind the same path.
  pty = std::make_unique<Pty>();
  dir.point_to(pty->slave_path());
  REQUIRE(run_until(io, [&] { return ev.ups() == 2; }));
  CHECK(t.is_up());
  CHECK(t.stats().opens == 2);
  CHECK(t.backoff() == 20ms);  // reset by the successful open
  CHECK_FALSE(t.last_error());
  check_both_ways(io, t, *pty, ev, 2);

  t.stop();
  CHECK_FALSE(t.is_up());
  const auto attempts = t.stats().open_attempts;
  io.restart();
  io.run_for(50ms);
  CHECK(t.stats().open_attempts == attempts);  // stopped: no reconnecting
  CHECK(ev.downs() == 1);                       // stop() is not reported as a failure
}

TEST_CASE("serial transport: deliver_pending hands over what the port holds, in order, without the loop",
          "[pty]") {
  asio::io_context io;
  LinkDir dir;
  Pty pty;
  dir.point_to(pty.slave_path());
  Events ev;
  SerialTransport t(
      io, fast_options(dir.link), [&](std::span<const uint8_t> b) { ev.in.insert(ev.in.end(), b.begin(), b.end()); },
      [&](bool up, std::error_code ec) { ev.states.emplace_back(up, ec); });
  REQUIRE_FALSE(t.start());
  CHECK(t.deliver_pending() == 0);  // nothing there: returns at once

  // The loop has not run since the device wrote: a starved gateway at a timer's expiry.
  const auto first = all_bytes(3);
  pty.write(first);
  // The pty moves the bytes to the reader through a kernel worker: give it a moment.
  size_t got = 0;
  for (int i = 0; i < 200 && got < first.size(); ++i) {
    got += t.deliver_pending();
    if (got < first.size()) std::this_thread::sleep_for(1ms);
  }
  CHECK(got == first.size());
  CHECK(ev.in == first);
  CHECK(t.stats().bytes_in_pending == first.size());

  // The wakeup for those bytes finds nothing more; later bytes follow them in order.
  const auto second = all_bytes(2);
  pty.write(second);
  REQUIRE(run_until(io, [&] { return ev.in.size() >= first.size() + second.size(); }));
  io.restart();
  io.run_for(20ms);
  std::vector<uint8_t> both = first;
  both.insert(both.end(), second.begin(), second.end());
  CHECK(ev.in == both);
  CHECK(t.stats().bytes_in == both.size());

  // An unplug seen by deliver_pending is reported like one seen by a read.
  pty.close();
  for (int i = 0; i < 200 && t.is_up(); ++i) {
    t.deliver_pending();
    if (t.is_up()) std::this_thread::sleep_for(1ms);
  }
  CHECK_FALSE(t.is_up());
  CHECK(ev.downs() == 1);
  t.stop();
}

TEST_CASE("serial transport: a path that appears after start is opened", "[pty]") {
  asio::io_context io;
  LinkDir dir;
  Events ev;
  SerialTransport t(io, fast_options(dir.link), {}, [&](bool up, std::error_code ec) { ev.states.emplace_back(up, ec); });
  REQUIRE_FALSE(t.start());
  CHECK_FALSE(t.is_up());
  CHECK(t.stats().open_failures == 1);
  REQUIRE(run_until(io, [&] { return t.stats().open_failures >= 2; }));

  Pty pty;
  dir.point_to(pty.slave_path());
  REQUIRE(run_until(io, [&] { return t.is_up(); }));
  CHECK(ev.ups() == 1);
  CHECK(ev.downs() == 0);
}

TEST_CASE("serial transport: a path that is not a tty keeps failing", "[pty]") {
  asio::io_context io;
  LinkDir dir;
  const auto file = dir.dir / "plain-file";
  std::FILE* f = std::fopen(file.c_str(), "w");
  REQUIRE(f);
  std::fclose(f);
  SerialTransport t(io, fast_options(file), {}, {});
  REQUIRE_FALSE(t.start());
  CHECK_FALSE(t.is_up());
  CHECK(t.last_error() == std::error_code(ENOTTY, std::system_category()));
}

TEST_CASE("serial transport: the writer queue has a byte cap", "[pty]") {
  asio::io_context io;
  LinkDir dir;
  Pty pty;
  dir.point_to(pty.slave_path());
  auto o = fast_options(dir.link);
  o.max_queue_bytes = 1024;
  SerialTransport t(io, o, {}, {});
  REQUIRE_FALSE(t.start());
  REQUIRE(t.is_up());

  const std::vector<uint8_t> chunk(1000, 0xAB);
  CHECK(t.write(chunk));
  CHECK(t.queued_bytes() == 1000);
  CHECK_FALSE(t.write(std::vector<uint8_t>(100, 0xCD)));  // would pass 1024
  CHECK(t.stats().writes_refused_full == 1);
  CHECK(t.write(std::vector<uint8_t>(24, 0xEF)));  // exactly at the cap

  std::vector<uint8_t> got;
  REQUIRE(run_until(io, [&] {
    pty.read_into(got);
    return got.size() >= 1024;
  }));
  CHECK(t.queued_bytes() == 0);
  CHECK(got.size() == 1024);
  CHECK(got.back() == 0xEF);
}

TEST_CASE("serial transport: destroying it with operations pending is safe", "[pty]") {
  asio::io_context io;
  LinkDir dir;
  Pty pty;
  dir.point_to(pty.slave_path());
  {
    SerialTransport t(io, fast_options(dir.link), {}, {});
    REQUIRE_FALSE(t.start());
    CHECK(t.write(std::vector<uint8_t>(64, 1)));
  }
  io.restart();
  io.run_for(20ms);  // the cancelled read/write handlers run against a dead object: ignored
  SUCCEED();
}

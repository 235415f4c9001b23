#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include <unistd.h>

#include "edgelink/outbox/disk_spool.hpp"

using namespace edgelink;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = "/tmp/edgelink-disk-spool-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string spool() const { return (path / "spool").string(); }
};

uint64_t disk_bytes(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

OutboxEntry entry(const std::string& stream, int priority, const std::string& payload, uint32_t points = 1,
                  bool retained = false) {
  OutboxEntry e;
  e.stream = stream;
  e.topic = "edgelink/demo/" + stream;
  e.payload = std::make_shared<const std::string>(payload);
  e.points = points;
  e.priority = priority;
  e.retained = retained;
  return e;
}

// Counts what goes through the SpoolIo seam (called on the worker thread).
struct IoHooks {
  std::atomic<int> fsyncs{0};
  std::atomic<bool> fail_writes{false};
  std::atomic<int> failed_writes{0};
  SpoolIo io() {
    SpoolIo io;
    io.write = [this](int fd, const void* data, size_t size) -> ssize_t {
      if (fail_writes) {
        ++failed_writes;
        errno = ENOSPC;
        return -1;
      }
      return ::write(fd, data, size);
    };
    io.fsync = [this](int fd) {
      ++fsyncs;
      return ::fsync(fd);
    };
    return io;
  }
};

// The daemon's arrangement: one loop (this thread), an Outbox, a DiskSpool behind it.
struct Rig {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  Outbox outbox;
  std::vector<std::string> errors;
  std::vector<SpoolDrop> drops;
  std::optional<SpoolRecovery> recovery;
  int ready = 0;
  std::unique_ptr<DiskSpool> spool;

  Rig(DiskSpoolOptions options, uint64_t memory = 1 << 20, size_t prefetch = 128) : outbox(memory, prefetch) {
    DiskSpool::Callbacks cb;
    cb.on_error = [this](const std::string& what) { errors.push_back(what); };
    cb.on_dropped = [this](const std::vector<SpoolDrop>& d) { drops.insert(drops.end(), d.begin(), d.end()); };
    cb.on_recovered = [this](const SpoolRecovery& r) { recovery = r; };
    spool = std::make_unique<DiskSpool>(io, outbox, std::move(options), std::move(cb));
    outbox.set_spool(spool.get(), [this] { ++ready; });
  }
  ~Rig() { spool.reset(); }  // before the Outbox it calls back into

  // Runs the loop until `done` holds (false after a generous timeout).
  template <typename Pred>
  bool run_until(Pred done, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io.run_one_for(5ms);
    }
    return true;
  }
  // Open and wait for the recovery report (the restore is posted to the loop).
  void open() {
    spool->open();
    REQUIRE(run_until([&] { return recovery.has_value() || !errors.empty(); }));
  }
  // Publishes everything that is (or becomes) ready and acknowledges it.
  std::vector<OutboxEntry> publish(size_t n) {
    std::vector<OutboxEntry> out;
    run_until([&] {
      while (const OutboxEntry* e = outbox.next()) {
        out.push_back(*e);
        REQUIRE(outbox.ack(e->id));
      }
      return out.size() >= n;
    });
    return out;
  }
};

DiskSpoolOptions options(const std::string& dir, IoHooks* hooks = nullptr) {
  DiskSpoolOptions o;
  o.dir = dir;
  o.identity = {"demo", "gw-001"};
  o.max_bytes = 1 << 20;
  o.fsync = FsyncPolicy::Batch;
  if (hooks) o.io = hooks->io();
  return o;
}

}  // namespace

TEST_CASE("DiskSpool: open() on an empty directory") {
  TempDir tmp;
  Rig r(options(tmp.spool()));
  r.open();
  CHECK(r.errors.empty());
  REQUIRE(r.recovery);
  CHECK(r.recovery->records == 0);
  CHECK(fs::is_directory(tmp.spool()));
  CHECK(r.run_until([&] { return r.spool->stats().open; }));
  CHECK(r.spool->stats().bytes == 0);
  CHECK(r.spool->stats().records == 0);
  CHECK(r.outbox.empty());
  CHECK(r.outbox.counters().restored == 0);
}

TEST_CASE("DiskSpool: what was spooled offline is restored after a restart and replays in order") {
  TempDir tmp;
  {
    Rig r(options(tmp.spool()));
    r.open();
    r.outbox.set_online(false);
    r.outbox.push(entry("imu", 0, "first", 3));
    r.outbox.push(entry("status", 5, "urgent", 1, true));
    r.outbox.push(entry("imu", 0, "second", 4));
    REQUIRE(r.run_until([&] { return r.outbox.writing() == 0 && r.spool->stats().records == 3; }));
    CHECK(r.outbox.backlog() == 3);
    CHECK(r.outbox.memory_only() == 0);
    CHECK(r.outbox.counters().spooled == 3);
    CHECK(r.spool->stats().bytes > 0);
    CHECK(r.spool->stats().bytes == disk_bytes(tmp.spool()));
    CHECK(r.errors.empty());
  }  // no ack: a restart (or a crash after the sync) must give them back

  {
    Rig r(options(tmp.spool()));
    r.open();
    REQUIRE(r.recovery);
    CHECK(r.recovery->records == 3);
    CHECK(r.outbox.counters().restored == 3);
    CHECK(r.outbox.backlog() == 3);
    std::vector<OutboxEntry> out = r.publish(3);
    REQUIRE(out.size() == 3);
    CHECK(out[0].topic == "edgelink/demo/status");
    CHECK(*out[0].payload == "urgent");
    CHECK(out[0].points == 1);
    CHECK(out[0].retained);
    CHECK(out[0].priority == 5);
    CHECK(out[1].topic == "edgelink/demo/imu");
    CHECK(*out[1].payload == "first");
    CHECK(out[1].points == 3);
    CHECK_FALSE(out[1].retained);
    CHECK(*out[2].payload == "second");
    CHECK(out[2].points == 4);
    CHECK(r.outbox.counters().replayed == 3);
    CHECK(r.outbox.empty());
    // The acks reach the disk: the spool is empty again.
    CHECK(r.run_until([&] { return r.spool->stats().records == 0; }));
    CHECK(r.errors.empty());
  }

  {
    Rig r(options(tmp.spool()));
    r.open();
    REQUIRE(r.recovery);
    CHECK(r.recovery->records == 0);
    CHECK(r.outbox.empty());
    CHECK(r.outbox.counters().restored == 0);
  }
}

TEST_CASE("DiskSpool: fsync policies") {
  TempDir tmp;
  IoHooks hooks;

  SECTION("batch: every run of writes is synced") {
    Rig r(options(tmp.spool(), &hooks));
    r.open();
    r.outbox.set_online(false);
    r.outbox.push(entry("a", 0, "one"));
    REQUIRE(r.run_until([&] { return r.spool->stats().fsyncs == 1; }));
    CHECK(hooks.fsyncs > 0);
    int after_first = hooks.fsyncs;
    r.outbox.push(entry("a", 0, "two"));
    REQUIRE(r.run_until([&] { return r.spool->stats().fsyncs == 2; }));
    CHECK(hooks.fsyncs > after_first);
  }

  SECTION("interval: at most once per interval, and the last write is synced too") {
    DiskSpoolOptions o = options(tmp.spool(), &hooks);
    o.fsync = FsyncPolicy::Interval;
    o.fsync_interval = 1500ms;
    Rig r(std::move(o));
    r.open();
    r.outbox.set_online(false);
    r.outbox.push(entry("a", 0, "one"));
    REQUIRE(r.run_until([&] { return r.spool->stats().fsyncs == 1; }));  // nothing synced yet: at once
    r.outbox.push(entry("a", 0, "two"));
    REQUIRE(r.run_until([&] { return r.spool->stats().records == 2; }));
    CHECK(r.spool->stats().fsyncs == 1);  // within the interval: waits
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(r.run_until([&] { return r.spool->stats().fsyncs == 2; }));
    CHECK(std::chrono::steady_clock::now() - t0 > 100ms);
  }

  SECTION("never: no fsync while running; flush() and shutdown still sync") {
    DiskSpoolOptions o = options(tmp.spool(), &hooks);
    o.fsync = FsyncPolicy::Never;
    {
      Rig r(std::move(o));
      r.open();
      r.outbox.set_online(false);
      r.outbox.push(entry("a", 0, "one"));
      r.outbox.push(entry("a", 0, "two"));
      REQUIRE(r.run_until([&] { return r.outbox.writing() == 0 && r.spool->stats().records == 2; }));
      CHECK(hooks.fsyncs == 0);
      CHECK(r.spool->stats().fsyncs == 0);
      bool flushed = false;
      r.spool->flush([&] { flushed = true; });
      REQUIRE(r.run_until([&] { return flushed; }));
      CHECK(hooks.fsyncs > 0);
      REQUIRE(r.run_until([&] { return r.spool->stats().fsyncs == 1; }));
      hooks.fsyncs = 0;
      r.outbox.push(entry("a", 0, "three"));  // unsynced at shutdown
      REQUIRE(r.run_until([&] { return r.outbox.writing() == 0 && r.spool->stats().records == 3; }));
      CHECK(hooks.fsyncs == 0);
    }
    // The destructor syncs what was written, whatever the policy (disk_spool.hpp).
    CHECK(hooks.fsyncs > 0);
  }
}

TEST_CASE("DiskSpool: a write error is reported once; the entry stays in memory until the spool works again") {
  TempDir tmp;
  IoHooks hooks;
  Rig r(options(tmp.spool(), &hooks));
  r.open();
  r.outbox.set_online(false);
  hooks.fail_writes = true;
  auto a = r.outbox.push(entry("a", 0, "one"));
  REQUIRE(r.run_until([&] { return r.outbox.writing() == 0; }));
  REQUIRE(r.run_until([&] { return !r.errors.empty(); }));
  CHECK(r.errors.size() == 1);
  CHECK(r.errors[0].find("No space left on device") != std::string::npos);
  CHECK(r.errors[0].find(tmp.spool()) != std::string::npos);
  CHECK(hooks.failed_writes > 0);
  CHECK(r.outbox.memory_only() == 1);
  CHECK(r.outbox.counters().write_failures == 1);
  CHECK(r.outbox.counters().spooled == 0);

  // The spool is not tried again until it is declared healthy.
  int failed = hooks.failed_writes;
  auto b = r.outbox.push(entry("a", 0, "two"));
  r.io.poll();
  CHECK(r.outbox.writing() == 0);
  CHECK(r.outbox.memory_only() == 2);
  CHECK(hooks.failed_writes == failed);

  // Declared healthy while the disk is still full: tried, failed, not reported again.
  r.outbox.set_spool_healthy(true);
  REQUIRE(r.run_until([&] { return r.outbox.writing() == 0; }));
  CHECK(hooks.failed_writes > failed);
  CHECK(r.outbox.memory_only() == 2);
  r.io.poll();
  CHECK(r.errors.size() == 1);
  REQUIRE(r.run_until([&] { return r.spool->stats().io_errors >= 2; }));
  CHECK_FALSE(r.spool->stats().last_error.empty());

  hooks.fail_writes = false;
  r.outbox.set_spool_healthy(true);
  REQUIRE(r.run_until([&] { return r.outbox.writing() == 0 && r.outbox.backlog() == 2; }));
  CHECK(r.outbox.memory_only() == 0);
  CHECK(r.outbox.counters().spooled == 2);
  REQUIRE(r.run_until([&] { return r.spool->stats().records == 2; }));
  CHECK(r.errors.size() == 1);

  // A new failure is a new episode: reported again.
  hooks.fail_writes = true;
  r.outbox.push(entry("a", 0, "three"));
  REQUIRE(r.run_until([&] { return r.errors.size() == 2 && r.outbox.writing() == 0; }));
  CHECK(r.outbox.memory_only() == 1);

  r.outbox.set_online(true);
  std::vector<OutboxEntry> out = r.publish(3);
  REQUIRE(out.size() == 3);
  std::vector<uint64_t> spooled;  // the backlog lane, in order; "three" is live
  for (const auto& e : out)
    if (*e.payload != "three") spooled.push_back(e.id);
  CHECK(spooled == std::vector<uint64_t>{a, b});
}

TEST_CASE("DiskSpool: a spool path that is a regular file fails clearly; entries stay in memory") {
  TempDir tmp;
  const std::string file = (tmp.path / "not-a-dir").string();
  std::ofstream(file) << "x";
  DiskSpoolOptions o = options(file);
  o.retry_interval = 0ms;  // every write tries to open it again
  Rig r(std::move(o));
  r.spool->open();
  REQUIRE(r.run_until([&] { return !r.errors.empty(); }));
  CHECK(r.errors.size() == 1);
  CHECK(r.errors[0].find(file) != std::string::npos);
  CHECK_FALSE(r.recovery);
  CHECK(r.run_until([&] { return r.spool->stats().open_failures == 1; }));
  CHECK_FALSE(r.spool->stats().open);

  r.outbox.set_online(false);
  r.outbox.push(entry("a", 0, "one"));
  REQUIRE(r.run_until([&] { return r.outbox.writing() == 0; }));
  CHECK(r.outbox.memory_only() == 1);
  CHECK(r.outbox.counters().write_failures == 1);
  r.outbox.set_spool_healthy(true);  // tried (and opened) again: fails the same way
  REQUIRE(r.run_until([&] { return r.outbox.writing() == 0 && r.spool->stats().open_failures == 2; }));
  CHECK(r.outbox.counters().write_failures == 2);
  CHECK(r.outbox.memory_only() == 1);
  r.io.poll();
  CHECK(r.errors.size() == 1);  // one episode, one log line
  CHECK(fs::is_regular_file(file));

  r.outbox.set_online(true);
  std::vector<OutboxEntry> out = r.publish(1);
  REQUIRE(out.size() == 1);
  CHECK(*out[0].payload == "one");
}

TEST_CASE("DiskSpool: a smaller budget drops the oldest records, reported and counted") {
  TempDir tmp;
  Rig r(options(tmp.spool()));
  r.open();
  r.outbox.set_online(false);
  // 64 KiB segments (the minimum): three 20 KB records per segment.
  for (int i = 0; i < 9; ++i) r.outbox.push(entry("imu", 0, std::string(20000, char('a' + i))));
  REQUIRE(r.run_until([&] { return r.outbox.writing() == 0 && r.spool->stats().records == 9; }));
  REQUIRE(r.spool->stats().segments == 3);

  r.spool->set_max_bytes(100000);
  CHECK(r.spool->stats().max_bytes == 100000);
  REQUIRE(r.run_until([&] { return !r.drops.empty(); }));
  CHECK(r.drops.size() == 6);  // the two oldest segments
  for (const auto& d : r.drops) {
    CHECK(d.stream == "imu");
    CHECK(d.reason == SpoolDropReason::SpoolFull);
  }
  CHECK(r.outbox.counters().dropped.at({"imu", "spool_full"}) == 6);
  CHECK(r.outbox.backlog() == 3);
  REQUIRE(r.run_until([&] { return r.spool->stats().records == 3; }));
  CHECK(r.spool->stats().bytes <= 100000);

  r.outbox.set_online(true);
  std::vector<OutboxEntry> out = r.publish(3);
  REQUIRE(out.size() == 3);
  CHECK(*out[0].payload == std::string(20000, 'g'));  // the newest ones are kept
  CHECK(*out[2].payload == std::string(20000, 'i'));
  CHECK(r.outbox.counters().pushed == r.outbox.counters().acked + r.outbox.counters().dropped_total());
  CHECK(r.errors.empty());
}

TEST_CASE("DiskSpool: records dropped while their replay is under way neither stall it nor look like errors") {
  TempDir tmp;
  {
    Rig r(options(tmp.spool()));
    r.open();
    r.outbox.set_online(false);
    for (int i = 0; i < 9; ++i) r.outbox.push(entry("imu", 0, std::string(20000, char('a' + i))));
    REQUIRE(r.run_until([&] { return r.outbox.writing() == 0 && r.spool->stats().records == 9; }));
  }
  // Restart with a small read-ahead: the heads of the backlog are read, then a smaller
  // budget drops them (and the records being read after them).
  Rig r(options(tmp.spool()), 1 << 20, 2);
  r.open();
  REQUIRE(r.outbox.backlog() == 9);
  REQUIRE(r.run_until([&] { return r.outbox.counters().loads == 2; }));
  r.spool->set_max_bytes(100000);
  // Taking the head asks for the next record, which the worker reads after the cut.
  const OutboxEntry* first = r.outbox.next();
  REQUIRE(first);
  const uint64_t first_id = first->id;
  CHECK(*first->payload == std::string(20000, 'a'));
  REQUIRE(r.run_until([&] { return r.drops.size() == 6; }));
  // The first record was in flight: kept, in memory only. The other five are lost.
  CHECK(r.outbox.counters().dropped.at({"imu", "spool_full"}) == 5);
  CHECK(r.outbox.memory_only() == 1);
  REQUIRE(r.outbox.ack(first_id));
  std::vector<OutboxEntry> out = r.publish(3);
  REQUIRE(out.size() == 3);
  CHECK(*out[0].payload == std::string(20000, 'g'));
  CHECK(*out[2].payload == std::string(20000, 'i'));
  r.io.poll();
  CHECK(r.errors.empty());
  CHECK(r.spool->stats().io_errors == 0);
}

TEST_CASE("DiskSpool: flush(done) syncs and runs done on the loop") {
  TempDir tmp;
  IoHooks hooks;
  DiskSpoolOptions o = options(tmp.spool(), &hooks);
  o.fsync = FsyncPolicy::Never;
  Rig r(std::move(o));
  r.open();
  r.outbox.set_online(false);
  r.outbox.push(entry("a", 0, "one"));
  REQUIRE(r.run_until([&] { return r.outbox.writing() == 0; }));
  REQUIRE(hooks.fsyncs == 0);
  std::thread::id ran_on;
  bool done = false;
  r.spool->flush([&] {
    done = true;
    ran_on = std::this_thread::get_id();
    CHECK(hooks.fsyncs > 0);  // synced before done runs
  });
  CHECK_FALSE(done);  // never inline
  REQUIRE(r.run_until([&] { return done; }));
  CHECK(ran_on == std::this_thread::get_id());

  // Nothing to sync: done still runs.
  done = false;
  hooks.fsyncs = 0;
  r.spool->flush([&] { done = true; });
  REQUIRE(r.run_until([&] { return done; }));
  CHECK(hooks.fsyncs == 0);
}

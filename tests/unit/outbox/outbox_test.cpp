#include <catch2/catch.hpp>

#include <algorithm>
#include <deque>
#include <map>
#include <random>

#include "edgelink/outbox/outbox.hpp"

using namespace edgelink;

namespace {
OutboxEntry entry(const std::string& stream, int priority, size_t bytes = 10) {
  OutboxEntry e;
  e.stream = stream;
  e.topic = "t/" + stream;
  e.payload = std::make_shared<const std::string>(bytes, 'x');
  e.priority = priority;
  return e;
}
std::vector<uint64_t> drain_ids(Outbox& o) {
  std::vector<uint64_t> ids;
  while (const OutboxEntry* e = o.next()) ids.push_back(e->id);
  return ids;
}
}  // namespace

TEST_CASE("higher priority goes first; FIFO within a priority") {
  Outbox o(1 << 20);
  auto a1 = o.push(entry("a", 0));
  auto b1 = o.push(entry("b", 5));
  auto a2 = o.push(entry("a", 0));
  auto s1 = o.push(entry("action_status", 256));
  auto b2 = o.push(entry("b", 5));
  CHECK(drain_ids(o) == std::vector<uint64_t>{s1, b1, b2, a1, a2});
  CHECK(o.in_flight() == 5);
  CHECK(o.queued() == 0);
}

TEST_CASE("an entry leaves only on ack; stale acks are ignored") {
  Outbox o(1 << 20);
  auto id = o.push(entry("a", 0));
  REQUIRE(o.next()->id == id);
  CHECK_FALSE(o.empty());
  CHECK(o.ack(id));
  CHECK(o.empty());
  CHECK(o.bytes() == 0);
  CHECK_FALSE(o.ack(id));
  CHECK_FALSE(o.ack(999));
  CHECK(o.counters().acked == 1);
}

TEST_CASE("requeue_all puts in-flight entries back in their original order, ahead of newer ones") {
  Outbox o(1 << 20);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(o.push(entry("a", 0)));
  o.next();
  o.next();
  o.next();  // ids[0..2] in flight
  auto later = o.push(entry("a", 0));
  o.ack(ids[1]);
  o.requeue_all();
  CHECK(o.in_flight() == 0);
  CHECK(drain_ids(o) == std::vector<uint64_t>{ids[0], ids[2], ids[3], later});
  CHECK(o.counters().requeued == 2);
}

TEST_CASE("requeue of one entry and then of all keeps id order") {
  Outbox o(1 << 20);
  auto a = o.push(entry("a", 0));
  auto b = o.push(entry("a", 0));
  auto c = o.push(entry("a", 0));
  o.next();
  o.next();
  o.next();
  o.requeue(b);
  o.requeue_all();
  CHECK(drain_ids(o) == std::vector<uint64_t>{a, b, c});
}

TEST_CASE("PUBACKs are counted per stream; a stream's batches and points are pending until acknowledged") {
  Outbox o(1 << 20);
  auto with_points = [](const std::string& stream, uint32_t points) {
    OutboxEntry e = entry(stream, 0);
    e.points = points;
    return e;
  };
  auto a1 = o.push(with_points("a", 3));
  o.push(with_points("a", 2));
  o.push(with_points("b", 5));
  auto pending = o.pending_by_stream();
  CHECK(pending.size() == 2);
  CHECK((pending["a"].batches == 2 && pending["a"].points == 5));
  CHECK((pending["b"].batches == 1 && pending["b"].points == 5));

  REQUIRE(o.next()->id == a1);
  o.next();
  CHECK(o.pending_by_stream()["a"].points == 5);  // in flight is still pending
  CHECK(o.ack(a1));
  CHECK_FALSE(o.ack(a1));  // a stale PUBACK counts nothing
  CHECK(o.counters().acked_by_stream == std::map<std::string, uint64_t>{{"a", 1}});
  pending = o.pending_by_stream();
  CHECK((pending["a"].batches == 1 && pending["a"].points == 2));
  o.requeue_all();
  CHECK(o.pending_by_stream()["a"].points == 2);
  for (const uint64_t id : drain_ids(o)) o.ack(id);
  CHECK(o.pending_by_stream().empty());
  CHECK(o.counters().acked_by_stream == std::map<std::string, uint64_t>{{"a", 2}, {"b", 1}});
}

TEST_CASE("the memory budget turns accepting off and back on below the low-water mark") {
  Outbox o(1000);
  CHECK(o.accepting());
  std::vector<uint64_t> ids;
  while (o.accepting()) ids.push_back(o.push(entry("a", 0, 100)));
  // push never refuses: the budget is soft, back-pressure does the rest
  ids.push_back(o.push(entry("a", 0, 100)));
  CHECK_FALSE(o.accepting());
  CHECK_FALSE(o.below_low_water());
  while (o.next()) {
  }
  size_t i = 0;
  while (!o.below_low_water()) REQUIRE(o.ack(ids[i++]));
  CHECK(o.accepting());
  CHECK(o.bytes() < 750);
}

// ---- With a disk spool -------------------------------------------------------------

namespace {

// What Outbox::cost() charges for an entry holding its payload (kept in step with it).
uint64_t cost_of(const OutboxEntry& e) { return e.payload->size() + e.topic.size() + 64; }

// A SpoolBackend that records every call and answers only when the test says so, in
// the order the calls were made (as DiskSpool's worker does). Its "disk" keeps what was
// written, so loads give back the same bytes. Protocol violations fail the test.
class FakeSpool : public SpoolBackend {
 public:
  struct Record {
    int priority = 0;
    std::string stream, topic;
    std::shared_ptr<const std::string> payload;
    uint32_t points = 0;
    bool retained = false;
  };
  struct Op {
    bool is_write;
    uint64_t id;   // outbox id
    uint64_t sid;  // loads
    Record rec;    // writes
  };

  explicit FakeSpool(Outbox& o) : outbox_(o) {}

  void write(const OutboxEntry& e) override {
    if (!e.payload) FAIL_CHECK("write of entry " << e.id << " without its payload");
    writes.push_back(e.id);
    pending.push_back({true, e.id, 0, {e.priority, e.stream, e.topic, e.payload, e.points, e.retained}});
  }
  void ack(uint64_t sid) override {
    acks.push_back(sid);
    if (disk.erase(sid) == 0) FAIL_CHECK("ack of spool id " << sid << " that is not on disk");
  }
  void load(uint64_t id, uint64_t sid) override {
    loads.push_back(id);
    for (const Op& op : pending)
      if (!op.is_write && op.id == id) FAIL_CHECK("second load of entry " << id << " while one is pending");
    pending.push_back({false, id, sid, {}});
  }

  // A record that was on disk before this start; returns its spool id.
  uint64_t put(const Record& r) {
    disk[next_sid_] = r;
    return next_sid_++;
  }
  RestoredEntry restored(uint64_t sid) const {
    const Record& r = disk.at(sid);
    return {sid, r.priority, r.payload->size() + 40, r.stream};
  }

  // Answers the oldest pending call successfully. False when nothing is pending.
  bool step() {
    if (pending.empty()) return false;
    Op op = std::move(pending.front());
    pending.pop_front();
    complete(op);
    return true;
  }
  void run() {
    while (step()) {
    }
  }
  // Answers the oldest pending write with a failure.
  void fail_write(bool refused) {
    auto it = std::find_if(pending.begin(), pending.end(), [](const Op& op) { return op.is_write; });
    REQUIRE(it != pending.end());
    uint64_t id = it->id;
    pending.erase(it);
    outbox_.on_write_failed(id, refused);
  }
  // Answers the pending load of `id` (out of order, as a test of next()).
  void finish_load(uint64_t id) {
    auto it = std::find_if(pending.begin(), pending.end(), [&](const Op& op) { return !op.is_write && op.id == id; });
    REQUIRE(it != pending.end());
    Op op = std::move(*it);
    pending.erase(it);
    complete(op);
  }
  // The spool evicted `sid` (a full disk, a smaller budget).
  void drop(uint64_t sid, const std::string& reason = "spool_full") {
    auto it = disk.find(sid);
    REQUIRE(it != disk.end());
    std::string stream = it->second.stream;
    disk.erase(it);
    outbox_.on_dropped(sid, stream, reason);
  }
  size_t pending_writes() const {
    return std::count_if(pending.begin(), pending.end(), [](const Op& op) { return op.is_write; });
  }
  size_t pending_loads() const { return pending.size() - pending_writes(); }
  // Spool id -> outbox id, for the writes answered so far.
  std::map<uint64_t, uint64_t> written_as;

  std::vector<uint64_t> writes;  // outbox ids, in call order
  std::vector<uint64_t> loads;   // outbox ids, in call order
  std::vector<uint64_t> acks;    // spool ids, in call order
  std::map<uint64_t, Record> disk;
  std::deque<Op> pending;

 private:
  void complete(Op& op) {
    if (op.is_write) {
      uint64_t sid = put(op.rec);
      written_as[sid] = op.id;
      outbox_.on_written(op.id, sid);
      return;
    }
    auto it = disk.find(op.sid);
    if (it == disk.end()) {
      // Dropped since the load was asked for: DiskSpool answers this way.
      outbox_.on_load_failed(op.id, "unreadable");
      return;
    }
    const Record& r = it->second;
    outbox_.on_loaded(op.id, r.topic, r.payload, r.points, r.retained);
  }

  Outbox& outbox_;
  uint64_t next_sid_ = 1000;
};

struct Rig {
  explicit Rig(uint64_t max_bytes = 1 << 20, size_t prefetch = 128) : o(max_bytes, prefetch), spool(o) {
    o.set_spool(&spool, [this] { ++ready; });
  }
  Outbox o;
  FakeSpool spool;
  int ready = 0;
};

FakeSpool::Record record(const std::string& stream, int priority, size_t bytes = 10, char fill = 'r') {
  return {priority, stream, "t/" + stream, std::make_shared<const std::string>(bytes, fill), 1, false};
}

// Publishes and acknowledges everything, one at a time, answering every spool call
// before each next() so the order does not depend on the timing of reads.
std::vector<uint64_t> publish_all(Rig& r) {
  std::vector<uint64_t> ids;
  for (;;) {
    r.spool.run();
    const OutboxEntry* e = r.o.next();
    if (!e) break;
    REQUIRE(e->payload);
    ids.push_back(e->id);
    REQUIRE(r.o.ack(e->id));
  }
  return ids;
}

}  // namespace

TEST_CASE("Outbox spool: offline writes every entry, highest priority first and oldest first within one") {
  Rig r;
  auto a1 = r.o.push(entry("a", 0));
  auto b1 = r.o.push(entry("b", 5));
  auto a2 = r.o.push(entry("a", 0));
  auto b2 = r.o.push(entry("b", 5));
  CHECK(r.spool.writes.empty());  // online and under budget: memory only
  CHECK(r.o.memory_only() == 4);

  r.o.set_online(false);
  CHECK(r.spool.writes == std::vector<uint64_t>{b1, b2, a1, a2});
  CHECK(r.o.writing() == 4);
  CHECK(r.o.memory_only() == 0);

  auto a3 = r.o.push(entry("a", 0));  // pushed while offline: written at once
  CHECK(r.spool.writes.back() == a3);
  CHECK(r.o.writing() == 5);
  // Not yet on disk: still pinned, still in the live lane.
  CHECK(r.o.pinned_bytes() == r.o.bytes());
  CHECK(r.o.backlog() == 0);
}

TEST_CASE("Outbox spool: written entries move to the backlog lane and ack their spool id") {
  Rig r;
  r.o.set_online(false);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(r.o.push(entry("a", 0)));
  r.spool.run();
  CHECK(r.o.writing() == 0);
  CHECK(r.o.backlog() == 3);
  CHECK(r.o.counters().spooled == 3);
  CHECK(r.o.pinned_bytes() == 0);
  CHECK(r.o.bytes() > 0);          // under budget: the payloads stay in memory
  CHECK(r.spool.loads.empty());    // ... so nothing has to be read back
  CHECK(r.o.accepting());

  r.o.set_online(true);
  const OutboxEntry* e = r.o.next();
  REQUIRE(e);
  CHECK(e->id == ids[0]);
  CHECK(e->disk == OutboxEntry::Disk::Written);
  uint64_t sid = e->spool_id;
  CHECK(r.spool.written_as.at(sid) == ids[0]);
  CHECK(r.o.ack(ids[0]));
  CHECK(r.spool.acks == std::vector<uint64_t>{sid});
  CHECK(r.o.counters().replayed == 1);
  CHECK(publish_all(r) == std::vector<uint64_t>{ids[1], ids[2]});
  CHECK(r.spool.disk.empty());
  CHECK(r.o.empty());
  CHECK(r.o.bytes() == 0);
}

TEST_CASE("Outbox spool: connected with no backlog, the memory budget is back-pressure and nothing is written") {
  Rig r(1000);
  std::vector<uint64_t> ids;
  while (r.o.accepting()) ids.push_back(r.o.push(entry("a", 0, 100)));
  CHECK(r.spool.writes.empty());
  CHECK(r.o.pinned_bytes() >= 1000);
  CHECK(r.o.counters().spooled == 0);
  // The broker takes some: accepting again below the low-water mark only.
  REQUIRE(ids.size() == 6);  // 6 x 167 bytes (100 + "t/a" + 64)
  REQUIRE(r.o.ack(r.o.next()->id));
  CHECK_FALSE(r.o.below_low_water());  // 835 of 1000
  REQUIRE(r.o.ack(r.o.next()->id));
  CHECK(r.o.below_low_water());  // 668
  std::vector<uint64_t> out = publish_all(r);
  CHECK(out == std::vector<uint64_t>(ids.begin() + 2, ids.end()));
  CHECK(r.spool.loads.empty());
}

TEST_CASE("Outbox spool: over budget while online and live first, the lowest-priority newest entries are written") {
  // 8 entries of 167 bytes each (100 + "t/x" + 64) against a budget of 1000.
  Rig r(1000);
  r.o.set_live_first(true);
  std::vector<uint64_t> high, low;
  for (int i = 0; i < 3; ++i) high.push_back(r.o.push(entry("h", 5, 100)));
  for (int i = 0; i < 5; ++i) low.push_back(r.o.push(entry("l", 0, 100)));
  REQUIRE_FALSE(r.spool.writes.empty());
  std::set<uint64_t> written(r.spool.writes.begin(), r.spool.writes.end());
  for (uint64_t id : high) CHECK(written.count(id) == 0);
  // Every low-priority entry written is newer than every one kept in memory.
  uint64_t newest_kept = 0, oldest_written = UINT64_MAX;
  for (uint64_t id : low) {
    if (written.count(id)) oldest_written = std::min(oldest_written, id);
    else newest_kept = std::max(newest_kept, id);
  }
  CHECK(newest_kept < oldest_written);
  // Down to 3/4 of the budget of what cannot leave memory, counting the writes.
  CHECK(r.o.pinned_bytes() - 167 * r.o.writing() <= 750);
  CHECK(r.o.pinned_bytes() - 167 * r.o.writing() + 167 > 750);
  r.spool.run();
  CHECK(r.o.pinned_bytes() <= 750);
  CHECK(r.o.accepting());
  // Everything still goes out, high priority first, each lane in order.
  std::vector<uint64_t> out = publish_all(r);
  REQUIRE(out.size() == 8);
  CHECK(std::vector<uint64_t>(out.begin(), out.begin() + 3) == high);
  std::vector<uint64_t> rest(out.begin() + 3, out.end());
  std::vector<uint64_t> live_order, backlog_order;
  for (uint64_t id : rest) (written.count(id) ? backlog_order : live_order).push_back(id);
  CHECK(std::is_sorted(live_order.begin(), live_order.end()));
  CHECK(std::is_sorted(backlog_order.begin(), backlog_order.end()));
  CHECK(r.spool.disk.empty());
}

TEST_CASE("Outbox spool: payloads on disk leave memory lowest priority and newest first, never in flight") {
  Rig r(1 << 20, 1);  // one entry of each backlog lane is kept loaded
  r.o.set_online(false);
  std::vector<uint64_t> h, l;
  for (int i = 0; i < 3; ++i) h.push_back(r.o.push(entry("h", 5, 100)));
  for (int i = 0; i < 3; ++i) l.push_back(r.o.push(entry("l", 0, 100)));
  r.spool.run();
  REQUIRE(r.o.backlog() == 6);
  CHECK(r.o.bytes() == 6 * 167);
  r.o.set_online(true);
  const OutboxEntry* first = r.o.next();
  REQUIRE(first);
  REQUIRE(first->id == h[0]);

  r.o.set_max_bytes(700);  // two payloads must go
  CHECK(r.o.counters().evicted_payloads == 2);
  CHECK(r.o.bytes() == 4 * 167);
  CHECK(r.spool.loads.empty());  // the lane heads are still loaded
  CHECK(r.o.accepting());        // what is on disk does not count

  r.o.set_max_bytes(0);  // everything that may go, goes
  REQUIRE(first->payload);  // in flight: kept
  CHECK(first->payload->size() == 100);
  CHECK(r.o.bytes() >= 167);

  // The replay reads back exactly what was evicted: l[2] and l[1] for 700, then h[2]
  // for 0 (h[1] and l[0] are the heads of their lanes; h[0] was in flight).
  REQUIRE(r.o.ack(h[0]));
  r.o.set_max_bytes(1 << 20);
  std::vector<uint64_t> out = publish_all(r);
  CHECK(out == std::vector<uint64_t>{h[1], h[2], l[0], l[1], l[2]});
  std::vector<uint64_t> loads = r.spool.loads;
  std::sort(loads.begin(), loads.end());
  CHECK(loads == std::vector<uint64_t>{h[2], l[1], l[2]});
  CHECK(r.spool.disk.empty());
  CHECK(r.o.bytes() == 0);
}

TEST_CASE("Outbox spool: eviction under a small budget takes the newest lowest-priority payload first") {
  Rig r(1 << 20, 1);
  r.o.set_online(false);
  std::vector<uint64_t> h, l;
  for (int i = 0; i < 3; ++i) h.push_back(r.o.push(entry("h", 5, 100)));
  for (int i = 0; i < 3; ++i) l.push_back(r.o.push(entry("l", 0, 100)));
  r.spool.run();
  r.o.set_online(true);
  // 6 x 167 = 1002: one eviction gets under 900, and it must be l[2].
  r.o.set_max_bytes(900);
  CHECK(r.o.counters().evicted_payloads == 1);
  std::vector<uint64_t> out = publish_all(r);
  CHECK(out == std::vector<uint64_t>{h[0], h[1], h[2], l[0], l[1], l[2]});
  CHECK(r.spool.loads == std::vector<uint64_t>{l[2]});
}

TEST_CASE("Outbox spool: next() waits for the backlog head; prefetch is bounded per lane") {
  Rig r(1 << 20, 2);
  std::vector<RestoredEntry> restored;
  for (int i = 0; i < 5; ++i) restored.push_back(r.spool.restored(r.spool.put(record("a", 0, 10, char('0' + i)))));
  r.o.restore(restored);
  CHECK(r.o.backlog() == 5);
  CHECK(r.o.counters().restored == 5);
  REQUIRE(r.spool.loads == std::vector<uint64_t>{1, 2});  // restored entries get ids 1..5
  CHECK(r.o.next() == nullptr);

  r.spool.finish_load(2);
  CHECK(r.ready == 1);
  CHECK(r.o.next() == nullptr);  // the head (1) is still being read
  CHECK(r.spool.loads.size() == 2);

  r.spool.finish_load(1);
  const OutboxEntry* e = r.o.next();
  REQUIRE(e);
  CHECK(e->id == 1);
  CHECK(*e->payload == std::string(10, '0'));
  CHECK(e->topic == "t/a");
  CHECK(r.spool.loads == std::vector<uint64_t>{1, 2, 3});  // the window moved by one
  e = r.o.next();
  REQUIRE(e);
  CHECK(e->id == 2);
  CHECK(r.spool.loads == std::vector<uint64_t>{1, 2, 3, 4});
  CHECK(r.o.next() == nullptr);
  CHECK(r.o.bytes() == 2 * (10 + 3 + 64));  // only the in-flight ones
}

TEST_CASE("Outbox spool: each backlog lane keeps its own head loaded") {
  Rig r(1 << 20, 2);
  std::vector<RestoredEntry> restored;
  for (int i = 0; i < 3; ++i) restored.push_back(r.spool.restored(r.spool.put(record("h", 5))));
  for (int i = 0; i < 3; ++i) restored.push_back(r.spool.restored(r.spool.put(record("l", 0))));
  r.o.restore(restored);
  // ids 1..3 are priority 5, 4..6 priority 0: at most two of each lane.
  size_t high = 0, low = 0;
  for (uint64_t id : r.spool.loads) (id <= 3 ? high : low)++;
  CHECK(high <= 2);
  CHECK(low <= 2);
  CHECK(std::count(r.spool.loads.begin(), r.spool.loads.end(), 1) == 1);
  CHECK(publish_all(r) == std::vector<uint64_t>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("Outbox spool: a backlog head whose payload was evicted is read back (requeue over budget)") {
  // Regression: with the prefetch window full of entries behind it, an evicted head
  // was never loaded again and the whole backlog stalled.
  Rig r(100, 2);
  std::vector<RestoredEntry> restored;
  for (int i = 0; i < 4; ++i) restored.push_back(r.spool.restored(r.spool.put(record("a", 0, 100))));
  r.o.restore(restored);
  r.spool.run();
  const OutboxEntry* e = r.o.next();
  REQUIRE(e);
  REQUIRE(e->id == 1);
  r.spool.run();
  r.o.requeue_all();  // connection lost while 1 was in flight
  r.spool.run();
  std::vector<uint64_t> out = publish_all(r);
  CHECK(out == std::vector<uint64_t>{1, 2, 3, 4});
  CHECK(r.spool.disk.empty());
}

TEST_CASE("Outbox spool: a backlog head written online and evicted later is read back") {
  // Regression: eviction takes the newest first, so the lane's head (written to disk
  // while still in memory) went last, after the entries behind it had filled the
  // prefetch window; nothing loaded it again.
  Rig r(1000, 1);
  r.o.set_live_first(true);  // writes while online without a backlog
  std::vector<uint64_t> ids;
  for (int i = 0; i < 12; ++i) {
    ids.push_back(r.o.push(entry("a", 0, 100)));
    r.spool.run();
  }
  CHECK(r.o.backlog() > 2);
  std::vector<uint64_t> out = publish_all(r);
  CHECK(out.size() == ids.size());
  CHECK(std::set<uint64_t>(out.begin(), out.end()) == std::set<uint64_t>(ids.begin(), ids.end()));
  CHECK(r.spool.disk.empty());
  CHECK(r.o.empty());
}

TEST_CASE("Outbox spool: in order by default, whatever is on disk; a priority waits for its head, others go on") {
  Rig r(1 << 20, 1);
  std::vector<RestoredEntry> restored;
  for (int i = 0; i < 3; ++i) restored.push_back(r.spool.restored(r.spool.put(record("a", 0))));
  r.o.restore(restored);  // backlog 1, 2, 3 (only 1 being read)
  std::vector<uint64_t> live;
  for (int i = 0; i < 2; ++i) live.push_back(r.o.push(entry("a", 0)));  // 4, 5
  auto high = r.o.push(entry("h", 5));                                  // 6
  // The priority-0 head is still being read: its live entries wait, priority 5 goes.
  CHECK(drain_ids(r.o) == std::vector<uint64_t>{high});
  r.spool.run();
  CHECK(publish_all(r) == std::vector<uint64_t>{1, 2, 3, 4, 5});

  // Interleaved on disk and in memory (offline, then back with a backlog and over the
  // budget): the broker still gets every entry in push order.
  Rig q(1000, 2);
  q.o.set_online(false);
  std::vector<uint64_t> pushed;
  for (int i = 0; i < 5; ++i) pushed.push_back(q.o.push(entry("a", 0, 100)));
  q.spool.run();
  q.o.set_online(true);
  for (int i = 0; i < 12; ++i) {
    pushed.push_back(q.o.push(entry("a", 0, 100)));
    if (i % 3 == 0) q.spool.step();
  }
  CHECK(q.o.counters().spooled > 5);  // some of the live ones went behind the backlog
  CHECK(publish_all(q) == pushed);
  CHECK(q.spool.disk.empty());
}

TEST_CASE("Outbox spool: live first alternates backlog and live within a priority; higher priority first") {
  Rig r;
  r.o.set_live_first(true);
  std::vector<RestoredEntry> restored;
  for (int i = 0; i < 3; ++i) restored.push_back(r.spool.restored(r.spool.put(record("a", 0))));
  r.o.restore(restored);  // backlog 1, 2, 3
  r.spool.run();
  std::vector<uint64_t> live;
  for (int i = 0; i < 4; ++i) live.push_back(r.o.push(entry("a", 0)));  // 4..7
  std::vector<uint64_t> out;
  while (const OutboxEntry* e = r.o.next()) out.push_back(e->id);
  CHECK(out == std::vector<uint64_t>{4, 1, 5, 2, 6, 3, 7});

  // Across priorities: a higher priority's live entry beats a lower priority's backlog,
  // and a higher priority's backlog beats a lower priority's live entry.
  Rig q;
  q.o.set_live_first(true);
  restored.clear();
  restored.push_back(q.spool.restored(q.spool.put(record("h", 5))));  // id 1
  restored.push_back(q.spool.restored(q.spool.put(record("l", 0))));  // id 2
  q.o.restore(restored);
  q.spool.run();
  auto low_live = q.o.push(entry("l", 0));   // 3
  auto high_live = q.o.push(entry("h", 5));  // 4
  out.clear();
  while (const OutboxEntry* e = q.o.next()) out.push_back(e->id);
  REQUIRE(out.size() == 4);
  CHECK(std::set<uint64_t>(out.begin(), out.begin() + 2) == std::set<uint64_t>{1, high_live});
  CHECK(std::set<uint64_t>(out.begin() + 2, out.end()) == std::set<uint64_t>{2, low_live});
}

TEST_CASE("Outbox spool: an ack while the write is pending acks the spool id when it is written") {
  Rig r;
  r.o.set_online(false);
  auto id = r.o.push(entry("a", 0));
  r.o.set_online(true);
  const OutboxEntry* e = r.o.next();
  REQUIRE(e);
  REQUIRE(e->disk == OutboxEntry::Disk::Writing);
  CHECK(r.o.ack(id));
  CHECK(r.o.empty());
  CHECK(r.o.writing() == 1);  // the write itself is still out there
  CHECK(r.o.bytes() == 0);
  CHECK(r.o.pinned_bytes() == 0);
  r.spool.run();
  REQUIRE(r.spool.acks.size() == 1);
  CHECK(r.spool.written_as.at(r.spool.acks[0]) == id);
  CHECK(r.spool.disk.empty());
  CHECK(r.o.writing() == 0);

  SECTION("or fails: nothing else happens") {
    r.o.set_online(false);
    auto id2 = r.o.push(entry("a", 0));
    r.o.set_online(true);
    REQUIRE(r.o.next()->id == id2);
    CHECK(r.o.ack(id2));
    r.spool.fail_write(false);
    CHECK(r.o.writing() == 0);
    CHECK(r.o.empty());
    CHECK(r.spool.acks.size() == 1);
    CHECK(r.o.bytes() == 0);
    CHECK(r.o.pinned_bytes() == 0);
    CHECK(r.o.counters().acked == 2);
  }
}

TEST_CASE("Outbox spool: a disk error stops writing until the spool is healthy again") {
  Rig r(1000);
  r.o.set_online(false);
  auto a = r.o.push(entry("a", 0, 100));
  auto b = r.o.push(entry("a", 0, 100));
  REQUIRE(r.spool.writes == std::vector<uint64_t>{a, b});
  r.spool.fail_write(false);
  r.spool.fail_write(false);
  CHECK(r.o.counters().write_failures == 2);
  CHECK(r.o.writing() == 0);
  CHECK(r.o.memory_only() == 2);
  CHECK(r.o.pinned_bytes() == 2 * 167);

  // Further pushes stay in memory and count against the budget.
  std::vector<uint64_t> more;
  while (r.o.accepting()) more.push_back(r.o.push(entry("a", 0, 100)));
  CHECK(r.spool.writes.size() == 2);
  CHECK(r.o.memory_only() == 2 + more.size());
  CHECK(r.o.pinned_bytes() >= 1000);
  r.o.set_online(true);
  r.o.set_online(false);
  CHECK(r.spool.writes.size() == 2);  // going offline again does not write either

  r.o.set_spool_healthy(true);
  CHECK(r.spool.writes.size() == 4 + more.size());
  r.spool.run();
  CHECK(r.o.memory_only() == 0);
  CHECK(r.o.pinned_bytes() == 0);
  CHECK(r.o.accepting());
  r.o.set_online(true);
  CHECK(publish_all(r).size() == 2 + more.size());
}

TEST_CASE("Outbox spool: a refused entry stays in memory and is never written again") {
  Rig r;
  r.o.set_online(false);
  auto id = r.o.push(entry("a", 0, 100));
  r.spool.fail_write(true);
  CHECK(r.o.memory_only() == 1);
  CHECK(r.o.pinned_bytes() == 167);
  CHECK(r.o.counters().write_failures == 1);
  auto other = r.o.push(entry("a", 0));  // the spool is still healthy
  CHECK(r.spool.writes == std::vector<uint64_t>{id, other});
  r.o.spool_all();
  r.o.set_online(true);
  r.o.set_online(false);
  r.o.set_online(true);
  const OutboxEntry* e = r.o.next();
  REQUIRE(e);
  CHECK(e->id == id);
  CHECK(e->payload);
  r.o.set_online(false);
  r.o.requeue_all();
  r.o.spool_all();
  CHECK(std::count(r.spool.writes.begin(), r.spool.writes.end(), id) == 1);
  r.o.set_online(true);
  std::vector<uint64_t> out = publish_all(r);
  std::sort(out.begin(), out.end());
  CHECK(out == std::vector<uint64_t>{id, other});
  CHECK(r.spool.disk.empty());
}

TEST_CASE("Outbox spool: a record the spool drops is dropped and counted; in flight it is kept") {
  Rig r;
  r.o.set_online(false);
  auto a = r.o.push(entry("a", 0));
  auto b = r.o.push(entry("b", 0));
  r.spool.run();
  uint64_t sid_a = 0, sid_b = 0;
  for (auto [sid, id] : r.spool.written_as) (id == a ? sid_a : sid_b) = sid;
  r.o.set_online(true);
  const OutboxEntry* e = r.o.next();
  REQUIRE(e);
  REQUIRE(e->id == a);

  r.spool.drop(sid_b);  // queued: lost
  CHECK(r.o.counters().dropped.at({"b", "spool_full"}) == 1);
  CHECK(r.o.counters().dropped_total() == 1);
  CHECK(r.o.backlog() == 0);
  CHECK(r.o.queued() == 0);

  r.spool.drop(sid_a);  // in flight: it is in memory, simply no longer on disk
  CHECK(r.o.counters().dropped_total() == 1);
  CHECK(r.o.in_flight() == 1);
  CHECK(r.o.memory_only() == 1);
  CHECK(r.o.pinned_bytes() == cost_of(*e));
  CHECK(e->disk == OutboxEntry::Disk::None);

  r.o.on_dropped(sid_b, "b", "spool_full");  // stale: nothing more is lost
  CHECK(r.o.counters().dropped_total() == 1);

  SECTION("acked: no spool ack for the dropped record") {
    CHECK(r.o.ack(a));
    CHECK(r.spool.acks.empty());
  }
  SECTION("requeued while offline: written again") {
    r.o.set_online(false);
    r.o.requeue_all();
    CHECK(r.spool.writes == std::vector<uint64_t>{a, b, a});
    r.spool.run();
    CHECK(r.o.backlog() == 1);
    r.o.set_online(true);
    CHECK(publish_all(r) == std::vector<uint64_t>{a});
    CHECK(r.spool.disk.empty());
  }
  CHECK(r.o.counters().pushed == r.o.counters().acked + r.o.counters().dropped_total());
}

TEST_CASE("Outbox spool: records dropped from the backlog head do not stall the replay") {
  // Regression: a smaller spool budget drops the oldest records, which are the loaded
  // heads of the backlog; nothing asked for the next ones.
  Rig r(1 << 20, 2);
  std::vector<RestoredEntry> restored;
  std::vector<uint64_t> sids;
  for (int i = 0; i < 4; ++i) {
    sids.push_back(r.spool.put(record("a", 0)));
    restored.push_back(r.spool.restored(sids.back()));
  }
  r.o.restore(restored);
  r.spool.run();
  REQUIRE(r.spool.loads == std::vector<uint64_t>{1, 2});
  int ready = r.ready;
  r.spool.drop(sids[0]);
  r.spool.drop(sids[1]);
  CHECK(r.o.counters().dropped.at({"a", "spool_full"}) == 2);
  CHECK(r.ready == ready + 2);
  CHECK(publish_all(r) == std::vector<uint64_t>{3, 4});
}

TEST_CASE("Outbox spool: a record that cannot be read back is dropped with its reason") {
  Rig r(1 << 20, 1);
  std::vector<RestoredEntry> restored;
  for (int i = 0; i < 3; ++i) restored.push_back(r.spool.restored(r.spool.put(record("a", 0))));
  r.o.restore(restored);
  REQUIRE(r.spool.pending_loads() == 1);
  r.spool.pending.clear();
  r.spool.disk.erase(restored[0].spool_id);  // the real store forgets a corrupt record
  int ready = r.ready;
  r.o.on_load_failed(1, "corrupt");
  CHECK(r.o.counters().dropped.at({"a", "corrupt"}) == 1);
  CHECK(r.ready == ready + 1);
  CHECK(r.spool.loads == std::vector<uint64_t>{1, 2});  // the next one is asked for
  CHECK(r.o.backlog() == 2);
  CHECK(publish_all(r) == std::vector<uint64_t>{2, 3});
}

TEST_CASE("Outbox spool: restored entries keep their order and publish after loading") {
  Rig r;
  std::vector<RestoredEntry> restored;
  // Replay order from SpoolStore::pending(): higher priority first, then oldest.
  restored.push_back(r.spool.restored(r.spool.put(record("h", 5, 10, 'x'))));
  restored.push_back(r.spool.restored(r.spool.put(record("h", 5, 10, 'y'))));
  restored.push_back(r.spool.restored(r.spool.put(record("l", 0, 10, 'z'))));
  r.o.restore(restored);
  CHECK(r.o.next() == nullptr);  // nothing loaded yet
  // New data of a restored stream waits for the backlog before it (in order).
  auto live = r.o.push(entry("l", 0));
  CHECK(live == 4);
  CHECK(r.o.next() == nullptr);
  r.spool.run();
  CHECK(r.ready == 3);
  std::vector<std::string> payloads;
  std::vector<uint64_t> out;
  const OutboxEntry* e;
  while ((e = r.o.next())) {
    out.push_back(e->id);
    payloads.push_back(*e->payload);
  }
  CHECK(out == std::vector<uint64_t>{1, 2, 3, live});
  REQUIRE(payloads.size() == 4);
  CHECK(payloads[0] == std::string(10, 'x'));
  CHECK(payloads[1] == std::string(10, 'y'));
  CHECK(payloads[2] == std::string(10, 'z'));
  CHECK(r.o.counters().loads == 3);

  // Live first: live data is not held back by a backlog that is still being read.
  Rig q;
  q.o.set_live_first(true);
  restored.clear();
  restored.push_back(q.spool.restored(q.spool.put(record("l", 0))));
  q.o.restore(restored);
  auto now = q.o.push(entry("l", 0));
  CHECK(drain_ids(q.o) == std::vector<uint64_t>{now});
}

TEST_CASE("Outbox spool: a restored batch is pending at once, its points once read back") {
  Rig r;
  FakeSpool::Record rec = record("l", 0);
  rec.points = 4;
  r.o.restore({r.spool.restored(r.spool.put(rec))});
  auto pending = r.o.pending_by_stream();
  CHECK((pending["l"].batches == 1 && pending["l"].points == 0));  // not known before the read
  r.spool.run();
  CHECK(r.o.pending_by_stream()["l"].points == 4);
  CHECK(publish_all(r).size() == 1);
  CHECK(r.o.pending_by_stream().empty());
  CHECK(r.o.counters().acked_by_stream.at("l") == 1);
}

TEST_CASE("Outbox spool: requeue_all keeps id order within each lane") {
  Rig r;
  std::vector<RestoredEntry> restored;
  for (int i = 0; i < 3; ++i) restored.push_back(r.spool.restored(r.spool.put(record("a", 0))));
  r.o.restore(restored);
  r.spool.run();
  for (int i = 0; i < 3; ++i) r.o.push(entry("a", 0));  // 4, 5, 6
  std::vector<uint64_t> first;
  while (const OutboxEntry* e = r.o.next()) first.push_back(e->id);
  REQUIRE(first.size() == 6);
  r.o.requeue_all();
  std::vector<uint64_t> again;
  while (const OutboxEntry* e = r.o.next()) again.push_back(e->id);
  REQUIRE(again.size() == 6);
  std::vector<uint64_t> backlog, live;
  for (uint64_t id : again) (id <= 3 ? backlog : live).push_back(id);
  CHECK(backlog == std::vector<uint64_t>{1, 2, 3});
  CHECK(live == std::vector<uint64_t>{4, 5, 6});
  CHECK(r.o.counters().requeued == 6);
}

TEST_CASE("Outbox spool: accepting() and below_low_water() against the memory and spool budgets") {
  Rig r(1000);
  CHECK(r.o.accepting());
  CHECK(r.o.below_low_water());
  r.o.set_spool_usage(899, 1000);
  CHECK(r.o.accepting());
  CHECK_FALSE(r.o.below_low_water());  // over 3/4
  r.o.set_spool_usage(900, 1000);
  CHECK_FALSE(r.o.accepting());  // online: the backlog drains, apps wait
  r.o.set_online(false);
  CHECK(r.o.accepting());  // offline: the spool drops its oldest instead
  CHECK(r.o.below_low_water());
  r.o.set_online(true);
  CHECK_FALSE(r.o.accepting());
  r.o.set_spool_usage(749, 1000);
  CHECK(r.o.accepting());
  CHECK(r.o.below_low_water());

  // Memory: only what cannot leave (not on disk) counts.
  r.o.set_spool_healthy(false);  // nothing can be written
  std::vector<uint64_t> ids;
  while (r.o.pinned_bytes() < 750) ids.push_back(r.o.push(entry("a", 0, 100)));
  CHECK(r.o.accepting());
  CHECK_FALSE(r.o.below_low_water());
  while (r.o.accepting()) ids.push_back(r.o.push(entry("a", 0, 100)));
  CHECK(r.o.pinned_bytes() >= 1000);
  CHECK(r.spool.writes.empty());
  // Back on: written, no longer pinned.
  r.o.set_online(false);
  r.o.set_spool_healthy(true);
  r.spool.run();
  CHECK(r.o.pinned_bytes() == 0);
  CHECK(r.o.accepting());
  CHECK(r.o.below_low_water());
}

TEST_CASE("Outbox spool: invariants hold under random operations") {
  for (uint32_t seed : {1u, 2u, 3u, 42u, 1234u, 7u, 8u, 9u, 10u, 11u}) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    const bool live_first = seed % 2 == 0;
    auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
    const uint64_t budgets[] = {400, 2000, 1 << 20};
    Rig r(2000, 1 + pick(4));
    r.o.set_live_first(live_first);
    std::map<uint64_t, const OutboxEntry*> flight;
    // In order: within a priority every next() is newer than the one before, until a
    // requeue sends an older entry again.
    std::map<int, uint64_t> last_out;
    auto took = [&](const OutboxEntry* e) {
      if (!live_first) {
        REQUIRE(e->id > last_out[e->priority]);
        last_out[e->priority] = e->id;
      }
      REQUIRE(flight.emplace(e->id, e).second);
    };
    std::set<uint64_t> acked;
    bool online = true;

    // With nothing queued every entry is in flight and holds its payload: bytes() and
    // pinned_bytes() must be the sums over them.
    auto check_accounting = [&] {
      INFO("check_accounting");
      REQUIRE(r.o.bytes() >= r.o.pinned_bytes());
      if (r.o.queued() != 0) return;
      uint64_t sum = 0, pinned = 0;
      for (auto [id, e] : flight) {
        REQUIRE(e->payload);
        sum += cost_of(*e);
        if (e->disk != OutboxEntry::Disk::Written) pinned += cost_of(*e);
      }
      CHECK(r.o.bytes() == sum);
      CHECK(r.o.pinned_bytes() == pinned);
      CHECK(r.o.in_flight() == flight.size());
    };

    for (int step = 0; step < 3000; ++step) {
      switch (pick(14)) {
        case 0:
        case 1:
        case 2: {
          // One pick per statement: argument evaluation order is unspecified.
          const std::string stream(1, char('a' + pick(3)));
          const int priority = int(pick(3)) * 3;
          r.o.push(entry(stream, priority, pick(200)));
          break;
        }
        case 3:
        case 4:
          if (const OutboxEntry* e = r.o.next()) {
            REQUIRE(e->payload);
            took(e);
          }
          break;
        case 5:
          if (!flight.empty()) {
            auto it = std::next(flight.begin(), long(pick(flight.size())));
            REQUIRE(r.o.ack(it->first));
            REQUIRE(acked.insert(it->first).second);
            flight.erase(it);
          }
          break;
        case 6:
          if (!flight.empty()) {
            auto it = std::next(flight.begin(), long(pick(flight.size())));
            r.o.requeue(it->first);
            flight.erase(it);
            last_out.clear();
          }
          break;
        case 7:
          if (pick(4) == 0) {
            r.o.requeue_all();
            flight.clear();
            last_out.clear();
          }
          break;
        case 8:
          online = !online;
          r.o.set_online(online);
          break;
        case 9:
        case 10: r.spool.step(); break;
        case 11:
          if (r.spool.pending_writes() && pick(3) == 0) r.spool.fail_write(pick(2) == 0);
          else r.o.set_spool_healthy(true);
          break;
        case 12:
          if (!r.spool.disk.empty() && pick(2) == 0) {
            auto it = std::next(r.spool.disk.begin(), long(pick(r.spool.disk.size())));
            r.spool.drop(it->first);
          } else {
            r.o.set_max_bytes(budgets[pick(3)]);
          }
          break;
        case 13:
          if (pick(10) == 0) r.o.spool_all();
          // Everything to the broker that can go.
          for (;;) {
            if (const OutboxEntry* e = r.o.next()) {
              took(e);
            } else if (r.spool.pending_loads()) {
              r.spool.step();
            } else {
              break;
            }
          }
          REQUIRE(r.o.queued() == 0);  // every backlog head was read: nothing stalls
          check_accounting();
          break;
      }
      REQUIRE(r.o.bytes() >= r.o.pinned_bytes());
      REQUIRE(r.o.in_flight() == flight.size());
      REQUIRE(r.o.writing() == r.spool.pending_writes());
    }

    // Drain: online, healthy, every answer given, everything published and acked.
    r.o.set_online(true);
    r.o.set_spool_healthy(true);
    r.o.set_max_bytes(1 << 20);
    for (auto [id, e] : flight) {
      REQUIRE(r.o.ack(id));
      REQUIRE(acked.insert(id).second);
    }
    flight.clear();
    for (;;) {
      if (const OutboxEntry* e = r.o.next()) {
        const uint64_t id = e->id;  // e dies with the ack
        REQUIRE(r.o.ack(id));
        REQUIRE(acked.insert(id).second);
      } else if (!r.spool.step()) {
        break;
      }
    }
    CHECK(r.o.empty());
    CHECK(r.o.bytes() == 0);
    CHECK(r.o.pinned_bytes() == 0);
    CHECK(r.o.writing() == 0);
    CHECK(r.o.backlog() == 0);
    const OutboxCounters& c = r.o.counters();
    CHECK(c.acked == acked.size());
    CHECK(c.pushed == c.acked + c.dropped_total());  // nothing lost uncounted
    // Every record written was acked exactly once, or dropped by the spool.
    CHECK(r.spool.disk.empty());
    std::set<uint64_t> spool_acks(r.spool.acks.begin(), r.spool.acks.end());
    CHECK(spool_acks.size() == r.spool.acks.size());
  }
}

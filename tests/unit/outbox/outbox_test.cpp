#include <catch2/catch.hpp>

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

#include <catch2/catch.hpp>

#include "edgelink/rtio/heartbeat.hpp"

using edgelink::rtio::Heartbeat;
using namespace std::chrono_literals;

TEST_CASE("heartbeat: cut off after 1.5 x the interval of silence", "[rtio]") {
  const Heartbeat::TimePoint t0{};
  Heartbeat hb(t0);
  CHECK(hb.interval() == 300s);
  CHECK(hb.deadline() == t0 + 450s);
  CHECK_FALSE(hb.expired(t0 + 450s));
  CHECK(hb.expired(t0 + 450s + 1ms));
}

TEST_CASE("heartbeat: a ping sets the interval, every message restarts the wait", "[rtio]") {
  const Heartbeat::TimePoint t0{};
  Heartbeat hb(t0);
  hb.set_interval(30s);  // 1.5 x 30 s = 45 s
  CHECK_FALSE(hb.expired(t0 + 45s));
  CHECK(hb.expired(t0 + 46s));
  hb.seen(t0 + 40s);
  CHECK_FALSE(hb.expired(t0 + 85s));
  CHECK(hb.expired(t0 + 85s + 1ms));
  // A longer interval set later moves the deadline out from the last message.
  hb.set_interval(43200s);
  CHECK(hb.deadline() == t0 + 40s + 64800s);
}

#include <catch2/catch.hpp>

#include "edgelink/actions/action_tracker.hpp"

using namespace edgelink;
using namespace std::chrono_literals;
using TP = std::chrono::steady_clock::time_point;

namespace {
TrackedAction action(const std::string& id, TP deadline) { return {id, "reboot", "app", deadline, {}}; }
}  // namespace

TEST_CASE("deadlines expire in order at the injected time, not before") {
  ActionTracker t;
  TP t0{};
  REQUIRE(t.add(action("a", t0 + 5s)));
  REQUIRE(t.add(action("b", t0 + 2s)));
  REQUIRE(t.add(action("c", t0 + 9s)));
  CHECK(t.next_deadline() == t0 + 2s);
  CHECK(t.expire(t0 + 1s).empty());
  auto expired = t.expire(t0 + 5s);
  REQUIRE(expired.size() == 2);
  CHECK(expired[0].id == "b");
  CHECK(expired[1].id == "a");
  CHECK(t.size() == 1);
  CHECK(t.next_deadline() == t0 + 9s);
}

TEST_CASE("a redelivered id in flight is refused") {
  ActionTracker t;
  REQUIRE(t.add(action("a", TP{} + 1s)));
  CHECK_FALSE(t.add(action("a", TP{} + 2s)));
  CHECK(t.size() == 1);
  CHECK(t.next_deadline() == TP{} + 1s);
}

TEST_CASE("statuses: forwarded while in flight, late after timeout or terminal") {
  ActionTracker t;
  t.add(action("a", TP{} + 1s));
  t.add(action("b", TP{} + 10s));
  CHECK(t.on_status("a", false) == ActionTracker::Verdict::Forward);
  t.expire(TP{} + 1s);
  CHECK(t.on_status("a", false) == ActionTracker::Verdict::Late);
  CHECK(t.on_status("a", true) == ActionTracker::Verdict::Late);
  CHECK(t.on_status("b", true) == ActionTracker::Verdict::Forward);  // Completed ends it
  CHECK(t.on_status("b", false) == ActionTracker::Verdict::Late);
  CHECK_FALSE(t.next_deadline().has_value());
  // An id edgelink never dispatched (the app's own action) is forwarded.
  CHECK(t.on_status("zzz", false) == ActionTracker::Verdict::Forward);
}

TEST_CASE("a finished id can be dispatched again and is then in flight") {
  ActionTracker t;
  t.add(action("a", TP{} + 1s));
  t.expire(TP{} + 1s);
  REQUIRE(t.add(action("a", TP{} + 5s)));
  CHECK(t.on_status("a", false) == ActionTracker::Verdict::Forward);
}

TEST_CASE("the memory of finished ids is bounded") {
  ActionTracker t(2);
  for (const char* id : {"a", "b", "c"}) {
    t.add(action(id, TP{} + 1s));
    t.on_status(id, true);
  }
  CHECK(t.on_status("a", false) == ActionTracker::Verdict::Forward);  // forgotten
  CHECK(t.on_status("b", false) == ActionTracker::Verdict::Late);
  CHECK(t.on_status("c", false) == ActionTracker::Verdict::Late);
}

TEST_CASE("take_cancellations ends the cancel_actions of a target, and only those") {
  ActionTracker t;
  t.add(action("a", TP{} + 5s));
  t.add(action("b", TP{} + 5s));
  t.add(TrackedAction{"c1", "cancel_action", "app", TP{} + 6s, "a"});
  t.add(TrackedAction{"c2", "cancel_action", "app", TP{} + 6s, "a"});
  t.add(TrackedAction{"c3", "cancel_action", "app", TP{} + 6s, "b"});
  REQUIRE(t.find("c1"));
  CHECK(t.find("c1")->cancels == "a");
  CHECK(t.find("zzz") == nullptr);

  auto ended = t.take_cancellations("a");
  REQUIRE(ended.size() == 2);
  CHECK(((ended[0].id == "c1" && ended[1].id == "c2") || (ended[0].id == "c2" && ended[1].id == "c1")));
  CHECK(t.size() == 3);
  CHECK(t.on_status("c1", false) == ActionTracker::Verdict::Late);  // ended: a late answer is dropped
  CHECK(t.take_cancellations("a").empty());
  CHECK(t.take_cancellations("").empty());  // plain actions cancel nothing
  CHECK(t.size() == 3);
  // The deadlines of the ended ones are gone with them.
  auto expired = t.expire(TP{} + 6s);
  REQUIRE(expired.size() == 3);
  CHECK(expired[2].id == "c3");
}

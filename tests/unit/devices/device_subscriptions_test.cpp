// DeviceSubscriptions: one device's StatePublisher subscriptions shared by HTTP
// observers and configured mappings (http-api.md §5.3, ricrest.md §7.3–§7.4).

#include "edgelink/devices/device_subscriptions.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace edgelink;
using namespace edgelink::devices;
using http::Code;
using Kind = SubscriptionEvent::Kind;

namespace {

RequestResult ok_reply(std::vector<TopicIndex> topics) {
  RequestResult r;
  std::string list;
  for (const auto& t : topics)
    list += (list.empty() ? "" : ",") + std::string(R"({"name":")") + t.name + R"(","idx":)" + std::to_string(t.idx) + "}";
  r.json = R"({"req":"subscription","rslt":"ok","topics":[)" + list + "]}";
  r.reply.req = "subscription";
  r.reply.rslt = Rslt::Ok;
  r.reply.topics = std::move(topics);
  return r;
}

RequestResult fail_reply() {
  RequestResult r;
  r.json = R"({"req":"subscription","rslt":"fail","error":"busy"})";
  r.reply.req = "subscription";
  r.reply.rslt = Rslt::Fail;
  r.reply.error = "busy";
  return r;
}

RequestResult link_error(LinkError e) {
  RequestResult r;
  r.error = e;
  return r;
}

std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

std::string kinds(const std::vector<SubscriptionEvent>& events) {
  std::string out;
  for (const auto& e : events) {
    out += out.empty() ? "" : " ";
    out += (e.kind == Kind::Established ? "E" : e.kind == Kind::Ended ? "X" : "F") + std::to_string(e.user);
  }
  return out;
}

}  // namespace

TEST_CASE("subscriptions: the update JSON asks for the highest rate, the lowest minMs and the first trigger",
          "[devices][subscriptions]") {
  DeviceSubscriptions subs;
  CHECK_FALSE(subs.next_update());
  subs.add(1, "devjson", {1.0, 50, "timeorchange"}, false);
  auto u = subs.next_update();
  REQUIRE(u);
  CHECK(u->topic == "devjson");
  CHECK(u->json ==
        R"({"cmdName":"subscription","action":"update","pubRecs":[{"name":"devjson","trigger":"timeorchange","rateHz":1,"minMs":50}]})");
  CHECK_FALSE(subs.next_update());  // one update in flight per topic
  subs.on_update_result(u->token, ok_reply({{"devjson", 0}}));
  CHECK(kinds(subs.take_events()) == "E1");
  CHECK(subs.established(1));
  REQUIRE(subs.standing("devjson"));
  CHECK(subs.topic_index("devjson") == 0);
  CHECK_FALSE(subs.next_update());

  // A second user at 10 Hz with minMs 20 and another trigger: the device is asked for 10.
  subs.add(2, "devjson", {10.0, 20, "change"}, false);
  CHECK(subs.take_events().empty());  // 1 Hz does not serve 10 Hz
  u = subs.next_update();
  REQUIRE(u);
  CHECK(u->json ==
        R"({"cmdName":"subscription","action":"update","pubRecs":[{"name":"devjson","trigger":"timeorchange","rateHz":10,"minMs":20}]})");
  subs.on_update_result(u->token, ok_reply({{"devjson", 0}}));
  CHECK(kinds(subs.take_events()) == "E2");

  // A third user at 2.5 Hz is served at once by the standing 10 Hz.
  subs.add(3, "devjson", {2.5, 100, "time"}, false);
  CHECK(kinds(subs.take_events()) == "E3");
  CHECK_FALSE(subs.next_update());

  // Cancels: the effective values follow the remaining users, then rateHz 0.
  CHECK(subs.remove(2));
  u = subs.next_update();
  REQUIRE(u);
  CHECK(u->rec.rate_hz == 2.5);
  CHECK(u->rec.min_ms == 50);
  CHECK(u->rec.trigger == "timeorchange");
  subs.on_update_result(u->token, ok_reply({{"devjson", 0}}));
  CHECK(subs.take_events().empty());  // nobody was waiting
  CHECK(subs.remove(1));
  u = subs.next_update();
  REQUIRE(u);
  CHECK(u->rec.trigger == "time");  // user 3 is the first now
  subs.on_update_result(u->token, ok_reply({{"devjson", 0}}));
  CHECK(subs.remove(3));
  CHECK_FALSE(subs.remove(3));
  u = subs.next_update();
  REQUIRE(u);
  CHECK(u->json ==
        R"({"cmdName":"subscription","action":"update","pubRecs":[{"name":"devjson","trigger":"time","rateHz":0,"minMs":100}]})");
  subs.on_update_result(u->token, ok_reply({{"devjson", 0}}));
  CHECK_FALSE(subs.standing("devjson"));
  CHECK_FALSE(subs.next_update());
  CHECK(subs.user_count() == 0);
  CHECK(subs.counters().updates == 5);
}

TEST_CASE("subscriptions: a user joining while an update is in flight", "[devices][subscriptions]") {
  DeviceSubscriptions subs;
  subs.add(1, "devjson", {5.0, 50, "timeorchange"}, false);
  auto first = subs.next_update();
  REQUIRE(first);
  subs.add(2, "devjson", {1.0, 50, "timeorchange"}, false);  // nothing stands yet: it waits
  subs.add(3, "devjson", {20.0, 50, "timeorchange"}, false);
  CHECK(subs.take_events().empty());
  subs.on_update_result(first->token, ok_reply({{"devjson", 4}}));
  CHECK(kinds(subs.take_events()) == "E1 E2");  // 5 Hz serves 1 and 2, not 3
  auto second = subs.next_update();
  REQUIRE(second);
  CHECK(second->rec.rate_hz == 20);
  // The second update fails: user 3 (waiting) ends; 1 and 2 keep the standing 5 Hz.
  subs.on_update_result(second->token, fail_reply());
  const auto events = subs.take_events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == Kind::Ended);
  CHECK(events[0].user == 3);
  CHECK(events[0].code == Code::InternalServerError);
  CHECK(events[0].data == R"({"req":"subscription","rslt":"fail","error":"busy"})");
  CHECK(subs.established(1));
  CHECK(subs.established(2));
  CHECK_FALSE(subs.has_user(3));
  CHECK(subs.standing("devjson")->rate_hz == 5);
  CHECK_FALSE(subs.next_update());  // 5 Hz is what the remaining users want

  // A user joining while a lower rate is on its way is not established on the old one.
  CHECK(subs.remove(1));
  subs.remove(2);
  auto off = subs.next_update();
  REQUIRE(off);
  CHECK(off->rec.rate_hz == 0);
  subs.add(4, "devjson", {1.0, 50, "timeorchange"}, false);
  CHECK(subs.take_events().empty());
  subs.on_update_result(off->token, ok_reply({{"devjson", 4}}));
  auto again = subs.next_update();
  REQUIRE(again);
  CHECK(again->rec.rate_hz == 1);
  subs.on_update_result(again->token, ok_reply({{"devjson", 4}}));
  CHECK(kinds(subs.take_events()) == "E4");
}

TEST_CASE("subscriptions: failures end the waiting users with the right code", "[devices][subscriptions]") {
  DeviceSubscriptions subs;
  SECTION("ok without the topic: NOT_FOUND") {
    subs.add(1, "nosuch", {}, false);
    auto u = subs.next_update();
    subs.on_update_result(u->token, ok_reply({}));
    const auto e = subs.take_events();
    REQUIRE(e.size() == 1);
    CHECK(e[0].kind == Kind::Ended);
    CHECK(e[0].code == Code::NotFound);
    CHECK(subs.counters().not_found == 1);
  }
  SECTION("the link gave up: DEVICEID_TIMEOUT") {
    subs.add(1, "devjson", {}, false);
    auto u = subs.next_update();
    subs.on_update_result(u->token, link_error(LinkError::Timeout));
    const auto e = subs.take_events();
    REQUIRE(e.size() == 1);
    CHECK(e[0].code == Code::DeviceIdTimeout);
    CHECK(e[0].data.empty());
  }
  SECTION("not JSON: INTERNAL_SERVER_ERROR with the bytes") {
    subs.add(1, "devjson", {}, false);
    auto u = subs.next_update();
    RequestResult r = link_error(LinkError::BadReply);
    r.json = "garbage";
    subs.on_update_result(u->token, r);
    const auto e = subs.take_events();
    REQUIRE(e.size() == 1);
    CHECK(e[0].code == Code::InternalServerError);
    CHECK(e[0].data == "garbage");
  }
  SECTION("refused by the link: TOO_MANY_REQUESTS") {
    subs.add(1, "devjson", {}, false);
    auto u = subs.next_update();
    subs.on_update_refused(u->token, LinkError::TooManyPending);
    const auto e = subs.take_events();
    REQUIRE(e.size() == 1);
    CHECK(e[0].code == Code::TooManyRequests);
  }
  CHECK(subs.user_count() == 0);
  CHECK_FALSE(subs.next_update());
}

TEST_CASE("subscriptions: a persistent user is never ended and is not retried in a loop",
          "[devices][subscriptions]") {
  DeviceSubscriptions subs;
  subs.add(100, "nosuch", {5.0, 50, "timeorchange"}, true);
  auto u = subs.next_update();
  REQUIRE(u);
  subs.on_update_result(u->token, ok_reply({}));
  auto e = subs.take_events();
  REQUIRE(e.size() == 1);
  CHECK(e[0].kind == Kind::Failed);
  CHECK(e[0].code == Code::NotFound);
  CHECK(subs.has_user(100));
  CHECK_FALSE(subs.next_update());  // blocked until something changes
  // An observer joining asks again; its failure ends it, the mapping stays.
  subs.add(1, "nosuch", {}, false);
  u = subs.next_update();
  REQUIRE(u);
  subs.on_update_result(u->token, ok_reply({}));
  CHECK(kinds(subs.take_events()) == "F100 X1");
  CHECK_FALSE(subs.next_update());
  // A reset asks again.
  subs.on_device_reset();
  u = subs.next_update();
  REQUIRE(u);
  subs.on_update_result(u->token, ok_reply({{"nosuch", 3}}));
  CHECK(kinds(subs.take_events()) == "E100");
}

TEST_CASE("subscriptions: device reset and link down", "[devices][subscriptions]") {
  DeviceSubscriptions subs;
  subs.add(1, "devjson", {10.0, 50, "timeorchange"}, false);
  subs.add(100, "devjson", {5.0, 50, "timeorchange"}, true);
  auto u = subs.next_update();
  subs.on_update_result(u->token, ok_reply({{"devjson", 0}}));
  CHECK(kinds(subs.take_events()) == "E1 E100");

  // A reset (restart, reconnect): nothing stands; the same update goes again; the users
  // stay established and get no event.
  auto pending = subs.next_update();
  CHECK_FALSE(pending);
  subs.on_device_reset();
  CHECK_FALSE(subs.standing("devjson"));
  u = subs.next_update();
  REQUIRE(u);
  CHECK(u->rec.rate_hz == 10);
  CHECK(subs.established(1));
  subs.add(2, "devjson", {1.0, 50, "timeorchange"}, false);  // nothing stands: waits
  CHECK(subs.take_events().empty());
  subs.on_update_result(u->token, ok_reply({{"devjson", 0}}));
  CHECK(kinds(subs.take_events()) == "E2");

  // A reply to an update sent before a reset is stale.
  subs.on_device_reset();
  auto before = subs.next_update();
  REQUIRE(before);
  subs.on_device_reset();
  subs.on_update_result(before->token, ok_reply({{"devjson", 0}}));
  CHECK_FALSE(subs.standing("devjson"));
  u = subs.next_update();
  REQUIRE(u);

  // After a reset the re-subscription fails: nothing stands, so even established
  // observers end (they would wait for ever); the mapping stays.
  subs.on_update_result(u->token, link_error(LinkError::Timeout));
  CHECK(kinds(subs.take_events()) == "X1 F100 X2");
  CHECK(subs.user_count() == 1);

  // Link down: observers end with DEVICEID_OFFLINE; the mapping waits for the link.
  subs.on_device_reset();
  u = subs.next_update();
  subs.on_update_result(u->token, ok_reply({{"devjson", 0}}));
  subs.add(3, "devjson", {1.0, 50, "timeorchange"}, false);
  CHECK(kinds(subs.take_events()) == "E100 E3");
  subs.on_link_down();
  const auto e = subs.take_events();
  REQUIRE(e.size() == 1);
  CHECK(e[0].kind == Kind::Ended);
  CHECK(e[0].user == 3);
  CHECK(e[0].code == Code::DeviceIdOffline);
  CHECK_FALSE(subs.established(100));
  CHECK(subs.next_update());  // the owner asks only once the link is up
}

TEST_CASE("subscriptions: publishes are routed by topic index", "[devices][subscriptions]") {
  DeviceSubscriptions subs;
  subs.add(1, "devjson", {}, false);
  subs.add(2, "devbin", {}, false);
  subs.add(3, "devjson", {}, true);
  subs.add(4, "other", {}, false);  // never established: gets nothing
  while (auto u = subs.next_update()) {
    if (u->topic == "other") continue;
    subs.on_update_result(u->token, ok_reply({{u->topic, u->topic == "devjson" ? 0 : 1}}));
  }
  subs.take_events();
  auto route = [&](std::vector<uint8_t> payload) { return subs.route(payload); };
  CHECK(route(bytes(R"({"_t":0,"_v":1,"1":{}})")) == std::vector<uint64_t>{1, 3});
  CHECK(route({0xDB, 0x01, 0x00, 0x00}) == std::vector<uint64_t>{2});
  CHECK(route({0xDF, 0x00}) == std::vector<uint64_t>{1, 3});
  // No readable index: every topic's established users.
  CHECK(route(bytes(R"({"_v":1})")) == std::vector<uint64_t>{2, 1, 3});
  CHECK(route(bytes(R"({"_t":"0"})")) == std::vector<uint64_t>{2, 1, 3});
  CHECK(route(bytes("{broken")) == std::vector<uint64_t>{2, 1, 3});
  CHECK(route({0xDB, 0xFF}) == std::vector<uint64_t>{2, 1, 3});
  CHECK(route({0xDB}) == std::vector<uint64_t>{2, 1, 3});
  CHECK(route({0x01, 0x02}) == std::vector<uint64_t>{2, 1, 3});
  // An index no topic has: nobody.
  CHECK(route(bytes(R"({"_t":7})")).empty());
  CHECK(subs.counters().unrouted == 1);
  CHECK(publish_topic_index(bytes(R"({"_t":2147483647})")) == 2147483647);
  CHECK_FALSE(publish_topic_index(bytes(R"({"_t":2147483648})")));
  CHECK_FALSE(publish_topic_index({}));
}

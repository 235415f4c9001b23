#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include "edgelink/actions/action_router.hpp"

using namespace edgelink;

TEST_CASE("parse_action reads id (or its alias), name and a string payload unchanged") {
  auto r = parse_action(R"({"action_id":"842","name":"update_firmware","payload":"{\"url\": \"x\"}"})");
  REQUIRE(std::holds_alternative<CloudAction>(r));
  auto& a = std::get<CloudAction>(r);
  CHECK(a.id == "842");
  CHECK(a.name == "update_firmware");
  CHECK(a.payload == "{\"url\": \"x\"}");

  auto alias = parse_action(R"({"id":17,"name":"reboot"})");
  REQUIRE(std::holds_alternative<CloudAction>(alias));
  CHECK(std::get<CloudAction>(alias).id == "17");
  CHECK(std::get<CloudAction>(alias).payload.empty());

  auto obj = parse_action(R"({"id":"1","name":"n","payload":{"k":[1,2]}})");
  CHECK(std::get<CloudAction>(obj).payload == R"({"k":[1,2]})");
}

TEST_CASE("parse_action rejects bad input with a reason, and the id when it could be read") {
  auto not_json = parse_action("reboot now");
  REQUIRE(std::holds_alternative<InvalidAction>(not_json));
  CHECK(std::get<InvalidAction>(not_json).id.empty());
  CHECK(std::get<InvalidAction>(not_json).why.find("not JSON") == 0);

  CHECK(std::get<InvalidAction>(parse_action("[1,2]")).why == "not a JSON object");
  CHECK(std::get<InvalidAction>(parse_action(R"({"name":"x"})")).why == "no action_id");
  CHECK(std::get<InvalidAction>(parse_action(R"({"action_id":"","name":"x"})")).id.empty());
  CHECK(std::get<InvalidAction>(parse_action(R"({"action_id":[1],"name":"x"})")).id.empty());

  auto no_name = std::get<InvalidAction>(parse_action(R"({"action_id":"9"})"));
  CHECK(no_name.id == "9");
  CHECK(no_name.why == "no name");
  CHECK(std::get<InvalidAction>(parse_action(R"({"action_id":"9","name":5})")).why ==
        "name must be a non-empty string");

  std::string huge = R"({"action_id":"1","name":"x","payload":")" + std::string(kMaxActionBytes, 'a') + "\"}";
  CHECK(std::get<InvalidAction>(parse_action(huge)).why.find("limit") != std::string::npos);
  CHECK(std::holds_alternative<InvalidAction>(parse_action("{\"action_id\":\"\xff\",\"name\":\"x\"}")));
  // A lone surrogate escape would reach the app as bytes that are not UTF-8.
  CHECK(std::holds_alternative<InvalidAction>(parse_action(R"({"action_id":"1","name":"x","payload":"\ude8d"})")));
  CHECK(std::holds_alternative<CloudAction>(parse_action(R"({"action_id":"1","name":"x","payload":"\ud83d\ude00"})")));
}

TEST_CASE("action_line is the uplink shape, one line, escapes preserved") {
  std::string line = action_line(CloudAction{"7", "run", "{\"cmd\":\"a\\nb\"}"});
  REQUIRE(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  rapidjson::Document d;
  d.Parse(line.c_str(), line.size() - 1);
  REQUIRE(d.IsObject());
  CHECK(std::string(d["action_id"].GetString()) == "7");
  CHECK(std::string(d["name"].GetString()) == "run");
  CHECK(std::string(d["payload"].GetString()) == "{\"cmd\":\"a\\nb\"}");
}

TEST_CASE("status_payload is a one-element array in the spec's shape") {
  CHECK(status_payload(3, 1732180000456, "842", "Failed", 100, {"Action timed out"}) ==
        R"([{"sequence":3,"timestamp":1732180000456,"action_id":"842","state":"Failed","progress":100,"errors":["Action timed out"]}])");
  CHECK(status_payload(1, 5, "a\"b", "Received", 0, {}) ==
        R"([{"sequence":1,"timestamp":5,"action_id":"a\"b","state":"Received","progress":0,"errors":[]}])");
}

TEST_CASE("the router maps each action name to the app that lists it, with its timeout") {
  Config c;
  AppConfig a;
  a.name = "a";
  a.actions = {{"reboot", Millis(5000)}, {"update", Millis(300000)}};
  AppConfig b;
  b.name = "b";
  b.actions = {{"ping", Millis(60000)}};
  c.tcpapps = {{"a", a}, {"b", b}};
  ActionRouter r(c);
  REQUIRE(r.route("reboot"));
  CHECK(r.route("reboot")->app == "a");
  CHECK(r.route("update")->timeout == Millis(300000));
  CHECK(r.route("ping")->app == "b");
  CHECK(r.route("fly") == nullptr);
}

TEST_CASE("route_cancel sends uplink's cancel_action to the app running its target") {
  using namespace std::chrono_literals;
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  ActionTracker tracker;
  REQUIRE(tracker.add(TrackedAction{"842", "update_firmware", "fw", t0, {}}));
  auto cancel = [&](std::string payload) {
    return route_cancel(CloudAction{"c-1", kCancelActionName, std::move(payload)}, tracker);
  };

  // As the Bytebeam cloud sends it: the payload names the target by id and name.
  auto routed = cancel(R"({"action_id": "842", "name": "update_firmware"})");
  REQUIRE(std::holds_alternative<CancelRoute>(routed));
  const auto& to = std::get<CancelRoute>(routed);
  CHECK(to.app == "fw");
  CHECK(to.target == "842");
  CHECK(to.deadline == t0 + kCancelGrace);  // ends after its target, which decides first
  // An integer id, and a name from before a redirection, still find the target.
  CHECK(std::get<CancelRoute>(cancel(R"({"action_id": 842, "name": "send_file"})")).app == "fw");

  auto failure = [&](std::string payload) {
    auto r = cancel(std::move(payload));
    REQUIRE(std::holds_alternative<std::string>(r));
    return std::get<std::string>(r);
  };
  CHECK(failure(R"({"action_id": "9", "name": "reboot"})") ==
        "Cannot cancel action 9: it is not in flight (it finished, timed out or never arrived)");
  CHECK(failure("842").find("Invalid cancel_action: payload must be a JSON object") == 0);
  CHECK(failure("").find("Invalid cancel_action: payload must be a JSON object") == 0);
  CHECK(failure(R"({"name": "update_firmware"})") ==
        "Invalid cancel_action: payload has no action_id naming the action to cancel");
  CHECK(failure(R"({"action_id": ""})") ==
        "Invalid cancel_action: payload has no action_id naming the action to cancel");
}

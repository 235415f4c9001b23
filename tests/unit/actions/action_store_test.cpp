#include <catch2/catch.hpp>

#include "edgelink/actions/action_store.hpp"

using namespace edgelink;

TEST_CASE("in-flight actions survive an encode/parse round trip", "[action_store]") {
  std::vector<PersistedAction> in{{"42", "reboot", "app", 1700000000123},
                                  {"id \"quoted\"\n", "update_firmware", "ota", UINT64_MAX}};
  auto r = parse_actions(encode_actions(in));
  CHECK(r.error.empty());
  CHECK(r.skipped == 0);
  CHECK(r.actions == in);
  CHECK(parse_actions(encode_actions({})).actions.empty());
}

TEST_CASE("a file that is not an actions file is an error with nothing restored", "[action_store]") {
  for (std::string_view bad : {"", "{", "[1,2]", "{\"actions\":[]}", "{\"version\":\"1\",\"actions\":[]}",
                               "{\"version\":1,\"actions\":{}}", "\x00\xff"}) {
    auto r = parse_actions(bad);
    CAPTURE(bad);
    CHECK_FALSE(r.error.empty());
    CHECK(r.actions.empty());
  }
  auto newer = parse_actions(R"({"version":2,"actions":[{"id":"1","name":"a","app":"b","deadline_ms":1}]})");
  CHECK(newer.error.find("version 2") != std::string::npos);
  CHECK(newer.actions.empty());
  CHECK(parse_actions("{\"vers").error.find("not JSON") == 0);
}

TEST_CASE("a bad entry is skipped and counted, the others are kept", "[action_store]") {
  auto r = parse_actions(R"({"version":1,"actions":[
      {"id":"1","name":"a","app":"x","deadline_ms":5},
      {"id":"","name":"a","app":"x","deadline_ms":5},
      {"id":"2","name":"a","deadline_ms":5},
      {"id":"3","name":"a","app":"x","deadline_ms":-5},
      {"id":"4","name":"a","app":"x","deadline_ms":"5"},
      7,
      {"id":"5","name":"b","app":"y","deadline_ms":6}]})");
  CHECK(r.error.empty());
  CHECK(r.skipped == 5);
  REQUIRE(r.actions.size() == 2);
  CHECK(r.actions[0] == PersistedAction{"1", "a", "x", 5});
  CHECK(r.actions[1] == PersistedAction{"5", "b", "y", 6});
}

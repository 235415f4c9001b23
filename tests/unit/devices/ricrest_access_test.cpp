// The pure RICREST side of the HTTP API's device requests (http-api.md §5.1–§5.4):
// copost translation, reply mapping, obget uri and data.

#include "edgelink/devices/ricrest_access.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace edgelink;
using namespace edgelink::devices;
using http::Code;

namespace {

// The code for a refused copost, or Ok.
Code code_of(std::string_view uri, std::string_view data) {
  const auto r = translate_copost(uri, data);
  if (const auto* c = std::get_if<Code>(&r)) return *c;
  return Code::Ok;
}

CopostRequest request_of(std::string_view uri, std::string_view data) {
  const auto r = translate_copost(uri, data);
  REQUIRE(std::holds_alternative<CopostRequest>(r));
  return std::get<CopostRequest>(r);
}

RequestResult reply(std::string json, LinkError error = LinkError::None) {
  RequestResult r;
  r.error = error;
  r.json = std::move(json);
  return r;
}

}  // namespace

TEST_CASE("copost: empty data is a URL element with the path as given", "[devices][ricrest_access]") {
  CHECK(request_of("/v", "").kind == RequestKind::Url);
  CHECK(request_of("/v", "").text == "v");
  CHECK(request_of("/devman/typeinfo?type=X", "").text == "devman/typeinfo?type=X");
  CHECK(request_of("/sim/say?text=a%20b", "").text == "sim/say?text=a%20b");  // the device decodes %xx
  CHECK(request_of("/a/", "").text == "a/");
  CHECK(request_of("/~!\"#$%&'()*+,-.:;<=>?@[\\]^_`{|}", "").text == "~!\"#$%&'()*+,-.:;<=>?@[\\]^_`{|}");
}

TEST_CASE("copost: a JSON object is a command frame with cmdName first and the members in order",
          "[devices][ricrest_access]") {
  const auto r = request_of("/sim/say", R"({"text":"hi"})");
  CHECK(r.kind == RequestKind::CommandFrame);
  CHECK(r.text == R"({"cmdName":"sim/say","text":"hi"})");
  // Compacted; order, nesting and types kept; strings escaped again.
  CHECK(request_of("/x", " { \"b\" : 1 , \"a\" : [true, null, {\"c\": -2.5}], \"s\": \"q\\\"\\u0001\" } ").text ==
        R"({"cmdName":"x","b":1,"a":[true,null,{"c":-2.5}],"s":"q\"\u0001"})");
  CHECK(request_of("/x", "{}").text == R"({"cmdName":"x"})");
  // A path with a quote or a backslash is escaped inside cmdName.
  CHECK(request_of("/a\"b\\c", "{}").text == R"({"cmdName":"a\"b\\c"})");
  // \u0000 inside a string stays escaped: the element text never holds a 0x00.
  CHECK(request_of("/x", R"({"z":"a\u0000b"})").text == R"({"cmdName":"x","z":"a\u0000b"})");
}

TEST_CASE("copost: what a RICREST device cannot express is BAD_REQUEST", "[devices][ricrest_access]") {
  CHECK(code_of("", "") == Code::BadRequest);
  CHECK(code_of("/", "") == Code::BadRequest);    // empty path
  CHECK(code_of("v", "") == Code::BadRequest);    // no leading '/'
  CHECK(code_of("/a b", "") == Code::BadRequest);  // 0x20
  CHECK(code_of("/a\tb", "") == Code::BadRequest);
  CHECK(code_of("/a\x7f", "") == Code::BadRequest);
  CHECK(code_of("/caf\xc3\xa9", "") == Code::BadRequest);
  CHECK(code_of(std::string_view("/a\0b", 4), "") == Code::BadRequest);
  // Data that is not a JSON object.
  CHECK(code_of("/sim/say", "hello") == Code::BadRequest);
  CHECK(code_of("/sim/say", "[1]") == Code::BadRequest);
  CHECK(code_of("/sim/say", "\"s\"") == Code::BadRequest);
  CHECK(code_of("/sim/say", "1") == Code::BadRequest);
  CHECK(code_of("/sim/say", " ") == Code::BadRequest);
  CHECK(code_of("/sim/say", "{\"a\":1} x") == Code::BadRequest);
  CHECK(code_of("/sim/say", "{\"a\":\"\xff\"}") == Code::BadRequest);  // not UTF-8
  // A query with an object; an object with its own cmdName.
  CHECK(code_of("/sim/say?x=1", "{}") == Code::BadRequest);
  CHECK(code_of("/sim/say", R"({"cmdName":"other"})") == Code::BadRequest);
  // File and stream sessions are edgelink's.
  CHECK(code_of("/ufStart", "{}") == Code::BadRequest);
  CHECK(code_of("/UFEND", "{}") == Code::BadRequest);
  CHECK(code_of("/dfStart", "{}") == Code::BadRequest);
  CHECK(code_of("/ufStart", "") == Code::Ok);  // a URL element is no session command
  CHECK(code_of("/u", "{}") == Code::Ok);
}

TEST_CASE("copost: the subscription endpoint is reserved for obget", "[devices][ricrest_access]") {
  CHECK(code_of("/subscription", "") == Code::MethodNotAllowed);
  CHECK(code_of("/Subscription?action=update&topic=devjson", "") == Code::MethodNotAllowed);
  CHECK(code_of("/SUBSCRIPTION/x", "") == Code::MethodNotAllowed);
  CHECK(code_of("/subscription", R"({"action":"update"})") == Code::MethodNotAllowed);
  CHECK(code_of("/subscriptions", "") == Code::Ok);
  CHECK(code_of("/x/subscription", "") == Code::Ok);
  CHECK(code_of("/subscriptio", "") == Code::Ok);
}

TEST_CASE("copost: reply mapping", "[devices][ricrest_access]") {
  auto check = [](const RequestResult& r, Code code, std::string_view data) {
    const http::Frame f = copost_reply(r);
    CHECK(f.code == code);
    CHECK(f.data == data);
  };
  const std::string ok = R"({"req":"v","rslt":"ok","SystemName":"SimMCU"})";
  check(reply(ok), Code::Ok, ok);
  check(reply(R"({"rslt":"ok","topics":[]})"), Code::Ok, R"({"rslt":"ok","topics":[]})");  // no req
  check(reply(R"({"req":"x"})"), Code::Ok, R"({"req":"x"})");                                 // no rslt: ok
  const std::string unknown = R"({"req":"nosuch","rslt":"fail","error":"failUnknownAPI"})";
  check(reply(unknown), Code::NotFound, unknown);
  const std::string fail = R"({"req":"devman/x","rslt":"fail","error":"failDeviceNotFound"})";
  check(reply(fail), Code::InternalServerError, fail);
  check(reply(R"({"req":"x","rslt":"fail"})"), Code::InternalServerError, R"({"req":"x","rslt":"fail"})");
  check(reply(R"({"req":"x","rslt":"busy"})"), Code::InternalServerError, R"({"req":"x","rslt":"busy"})");
  // The link's parser finds a field odd (BadReply), but it is JSON with rslt ok.
  check(reply(R"({"req":"x","streamID":"abc","rslt":"ok"})", LinkError::BadReply), Code::Ok,
        R"({"req":"x","streamID":"abc","rslt":"ok"})");
  // Not JSON (or not an object): the bytes as they came.
  check(reply("not json \x01", LinkError::BadReply), Code::InternalServerError, "not json \x01");
  check(reply("[1]", LinkError::BadReply), Code::InternalServerError, "[1]");
  check(reply("", LinkError::Timeout), Code::RequestTimeout, "");
  check(reply("", LinkError::DeviceReset), Code::DeviceIdOffline, "");
  check(reply("", LinkError::TooManyPending), Code::TooManyRequests, "");
  check(reply("", LinkError::Unencodable), Code::BadRequest, "");
}

TEST_CASE("obget: /pub/<topic> and /rtstreams/<name>", "[devices][ricrest_access]") {
  auto target = [](std::string_view uri) {
    const auto r = parse_obget_uri(uri);
    REQUIRE(std::holds_alternative<ObgetTarget>(r));
    return std::get<ObgetTarget>(r);
  };
  auto code = [](std::string_view uri) {
    const auto r = parse_obget_uri(uri);
    REQUIRE(std::holds_alternative<Code>(r));
    return std::get<Code>(r);
  };
  CHECK(target("/pub/devjson").kind == ObgetTarget::Kind::Publish);
  CHECK(target("/pub/devjson").name == "devjson");
  CHECK(target("/pub/a.b-c_D9").name == "a.b-c_D9");
  CHECK(target("/pub/" + std::string(64, 't')).name.size() == 64);
  CHECK(target("/rtstreams/console").kind == ObgetTarget::Kind::RtStream);
  CHECK(target("/rtstreams/console").name == "console");
  CHECK(code("/pub/") == Code::BadRequest);
  CHECK(code("/pub/" + std::string(65, 't')) == Code::BadRequest);
  CHECK(code("/pub/a/b") == Code::BadRequest);
  CHECK(code("/pub/devjson?rate=1") == Code::BadRequest);
  CHECK(code("/pub") == Code::NotFound);
  CHECK(code("/PUB/devjson") == Code::NotFound);
  CHECK(code("/v") == Code::NotFound);
  CHECK(code("/rtstreams/") == Code::NotFound);
  CHECK(code("/rtstreams/a.b") == Code::NotFound);  // no rtstream can be named so
  CHECK(code("/rtstreams/console/x") == Code::NotFound);
  CHECK(code("") == Code::NotFound);
}

TEST_CASE("obget: /pub data", "[devices][ricrest_access]") {
  auto ask = [](std::string_view data) {
    const auto r = parse_publish_options(data);
    REQUIRE(std::holds_alternative<SubscriptionAsk>(r));
    return std::get<SubscriptionAsk>(r);
  };
  auto code = [](std::string_view data) {
    const auto r = parse_publish_options(data);
    return std::holds_alternative<Code>(r) ? std::get<Code>(r) : Code::Ok;
  };
  CHECK(ask("") == SubscriptionAsk{1.0, 50, "timeorchange"});
  CHECK(ask("{}") == SubscriptionAsk{1.0, 50, "timeorchange"});
  CHECK(ask(R"({"rateHz":10})") == SubscriptionAsk{10.0, 50, "timeorchange"});
  CHECK(ask(R"({"trigger":"change","minMs":0,"rateHz":0.5})") == SubscriptionAsk{0.5, 0, "change"});
  CHECK(ask(R"({"rateHz":1000,"minMs":4294967295})") == SubscriptionAsk{1000.0, 4294967295u, "timeorchange"});
  CHECK(ask(R"({"trigger":""})").trigger.empty());
  for (const char* bad : {R"({"rateHz":0})", R"({"rateHz":-1})", R"({"rateHz":1000.01})", R"({"rateHz":"10"})",
                          R"({"rateHz":null})", R"({"minMs":-1})", R"({"minMs":1.5})", R"({"minMs":4294967296})",
                          R"({"minMs":"50"})", R"({"trigger":1})", R"({"trigger":"time&change"})",
                          R"({"trigger":"a%22"})", R"({"rate":1})", R"({"rateHz":1,"rateHz":2})", "[]", "x",
                          "null", R"({"rateHz":1e999})"}) {
    INFO(bad);
    CHECK(code(bad) == Code::BadRequest);
  }
}

TEST_CASE("topics: 1..64 of [A-Za-z0-9._-]", "[devices][ricrest_access]") {
  CHECK(valid_topic("devjson"));
  CHECK(valid_topic("a"));
  CHECK(valid_topic(std::string(64, 'x')));
  CHECK_FALSE(valid_topic(""));
  CHECK_FALSE(valid_topic(std::string(65, 'x')));
  CHECK_FALSE(valid_topic("a b"));
  CHECK_FALSE(valid_topic("a/b"));
  CHECK_FALSE(valid_topic("a+"));
}

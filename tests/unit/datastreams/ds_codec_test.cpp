#include "edgelink/datastreams/ds_codec.hpp"
#include "edgelink/http/base64.hpp"

#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <cstdint>
#include <set>
#include <string>
#include <variant>

using namespace edgelink;
using namespace edgelink::datastreams;

namespace {

std::string base64_of(const std::string& bytes) { return http::base64_encode(bytes); }

constexpr const char* kId = "6f1c9e2a-5b7d-4c1e-9a43-2f0e8b7d1c55";

// The parsed line as T; fails the test when the line is not a ds line or is another kind.
template <class T>
T as(const std::string& line) {
  INFO(line);
  auto parsed = parse_ds_line(line);
  REQUIRE(parsed.has_value());
  if (auto* e = std::get_if<LineError>(&*parsed)) FAIL("error " << to_string(e->code) << ": " << e->message);
  REQUIRE(std::holds_alternative<T>(*parsed));
  return std::get<T>(*parsed);
}

LineError error_of(const std::string& line) {
  INFO(line);
  auto parsed = parse_ds_line(line);
  REQUIRE(parsed.has_value());
  REQUIRE(std::holds_alternative<LineError>(*parsed));
  return std::get<LineError>(*parsed);
}

void bad_request(const std::string& line) {
  INFO(line);
  const auto e = error_of(line);
  CHECK(e.code == ErrorCode::BadRequest);
  CHECK_FALSE(e.message.empty());
}

void too_large(const std::string& line) {
  INFO(line);
  CHECK(error_of(line).code == ErrorCode::HeaderTooLarge);
}

void not_ds(const std::string& line) {
  INFO(line);
  CHECK_FALSE(parse_ds_line(line).has_value());
}

// {"ds":"open","topic":"t","kind":"<kind>",<extra>}
std::string open_with(const std::string& kind, const std::string& extra) {
  return R"({"ds":"open","req":7,"topic":"t","kind":")" + kind + "\"" + (extra.empty() ? "" : "," + extra) + "}";
}

std::string attributes_of(int pairs, size_t key_len = 1, size_t value_len = 1) {
  std::string out = "{";
  for (int i = 0; i < pairs; ++i) {
    if (i) out += ',';
    out += "\"" + std::string(key_len - 1, 'k') + static_cast<char>('A' + i) + "\":\"" + std::string(value_len, 'v') +
           "\"";
  }
  return out + "}";
}

rapidjson::Document json(const std::string& text) {
  INFO(text);
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  return doc;
}

template <class T>
T inbound(const std::string& payload) {
  INFO(payload);
  auto m = parse_inbound(payload);
  if (auto* i = std::get_if<Invalid>(&m)) FAIL("invalid: " << i->why);
  REQUIRE(std::holds_alternative<T>(m));
  return std::get<T>(m);
}

Invalid invalid(const std::string& payload) {
  INFO(payload);
  auto m = parse_inbound(payload);
  REQUIRE(std::holds_alternative<Invalid>(m));
  return std::get<Invalid>(m);
}

Header spec_header() {
  Header h;
  h.stream_id = kId;
  h.timestamp = 1732180000123;
  h.topic = "camera/snapshot";
  h.mime_type = "image/jpeg";
  h.total_length = 48213;
  h.name = "snap.jpg";
  h.attributes = {{"cam", "front"}};
  h.sender = "app:main_app";
  return h;
}

// 0xFF D8 FF E0 00 10 'J' 'F' 'I' 'F': the start of a JPEG, "/9j/4AAQSkZJRg==".
const std::string kJpeg("\xFF\xD8\xFF\xE0\x00\x10JFIF", 10);

}  // namespace

// ---- §2 control lines ----

TEST_CASE("parse_ds_line: open with every field", "[datastreams]") {
  const auto o = as<OpenLine>(
      R"({"ds":"open","req":7,"topic":"camera/snapshot","kind":"byte","mime_type":"image/jpeg","total_length":48213,"name":"snap.jpg","attributes":{"cam":"front"}})");
  REQUIRE(o.req);
  CHECK(*o.req == 7);
  CHECK(o.topic == "camera/snapshot");
  CHECK_FALSE(o.text);
  CHECK(o.mime_type == "image/jpeg");
  REQUIRE(o.total_length);
  CHECK(*o.total_length == 48213);
  REQUIRE(o.name);
  CHECK(*o.name == "snap.jpg");
  REQUIRE(o.attributes.size() == 1);
  CHECK(o.attributes[0] == std::pair<std::string, std::string>{"cam", "front"});
  CHECK_FALSE(o.text_meta);

  const auto t = as<OpenLine>(
      R"({"ds":"open","topic":"chat/a","kind":"text","mime_type":"text/markdown","total_length":0,"text_meta":{"operation":"reaction","version":-3,"reply_to":"r1","attached":["a1","a2"],"generated":true}})");
  CHECK_FALSE(t.req);
  CHECK(t.text);
  CHECK(t.mime_type == "text/markdown");
  REQUIRE(t.total_length);
  CHECK(*t.total_length == 0);
  REQUIRE(t.text_meta);
  CHECK(t.text_meta->operation == "reaction");
  CHECK(t.text_meta->version == -3);
  CHECK(t.text_meta->reply_to == "r1");
  CHECK(t.text_meta->attached == std::vector<std::string>{"a1", "a2"});
  CHECK(t.text_meta->generated);
}

TEST_CASE("parse_ds_line: open defaults", "[datastreams]") {
  const auto b = as<OpenLine>(R"({"ds":"open","topic":"t","kind":"byte"})");
  CHECK_FALSE(b.req);
  CHECK_FALSE(b.text);
  CHECK(b.mime_type == "application/octet-stream");
  CHECK_FALSE(b.total_length);
  CHECK_FALSE(b.name);
  CHECK(b.attributes.empty());
  CHECK_FALSE(b.text_meta);

  const auto t = as<OpenLine>(R"({"ds":"open","topic":"t","kind":"text","attributes":{}})");
  CHECK(t.text);
  CHECK(t.mime_type == "text/plain");
  CHECK(t.attributes.empty());
  CHECK_FALSE(t.text_meta);

  // Missing text_meta members default to create, 0, "", [], false.
  const auto m = as<OpenLine>(open_with("text", R"("text_meta":{})"));
  REQUIRE(m.text_meta);
  CHECK(m.text_meta->operation == "create");
  CHECK(m.text_meta->version == 0);
  CHECK(m.text_meta->reply_to.empty());
  CHECK(m.text_meta->attached.empty());
  CHECK_FALSE(m.text_meta->generated);
  for (const char* op : {"create", "update", "delete", "reaction"})
    CHECK(as<OpenLine>(open_with("text", std::string(R"("text_meta":{"operation":")") + op + "\"}")).text_meta->operation ==
          op);

  // Bounds that are still accepted.
  CHECK(*as<OpenLine>(R"({"ds":"open","req":0,"topic":"t","kind":"byte"})").req == 0);
  CHECK(*as<OpenLine>(R"({"ds":"open","req":4294967295,"topic":"t","kind":"byte"})").req == 4294967295u);
  CHECK(*as<OpenLine>(open_with("byte", R"("total_length":9007199254740992)")).total_length == kMaxTotalLength);
  CHECK(as<OpenLine>(open_with("byte", "\"mime_type\":\"" + std::string(255, 'm') + "\"")).mime_type.size() == 255);
  CHECK(as<OpenLine>(open_with("byte", "\"name\":\"" + std::string(255, 'n') + "\"")).name->size() == 255);
  CHECK(as<OpenLine>(R"({"ds":"open","topic":")" + std::string(128, 't') + R"(","kind":"byte"})").topic.size() == 128);
  // 128 bytes of two-byte characters; '/' is allowed.
  std::string e64;
  for (int i = 0; i < 64; ++i) e64 += "\xC3\xA9";
  CHECK(as<OpenLine>(R"({"ds":"open","topic":")" + e64 + R"(","kind":"byte"})").topic == e64);
  CHECK(as<OpenLine>(R"({"ds":"open","topic":"/a/b/","kind":"byte"})").topic == "/a/b/");
  CHECK(as<OpenLine>(open_with("byte", "\"attributes\":" + attributes_of(16, 64, 512))).attributes.size() == 16);
}

TEST_CASE("parse_ds_line: write with data and with text", "[datastreams]") {
  auto w = as<WriteLine>(std::string(R"({"ds":"write","stream_id":")") + kId + R"(","data":"/9j/4AAQSkZJRg=="})");
  CHECK(w.stream_id == kId);
  CHECK_FALSE(w.text);
  CHECK(w.bytes == kJpeg);
  CHECK_FALSE(w.decode_failed);

  w = as<WriteLine>(R"({"ds":"write","stream_id":"s","data":""})");
  CHECK(w.bytes.empty());
  CHECK_FALSE(w.decode_failed);

  w = as<WriteLine>(R"({"ds":"write","stream_id":"s","text":"h\u00e9 \"q\"\n"})");
  CHECK(w.text);
  CHECK(w.bytes == "h\xC3\xA9 \"q\"\n");
  CHECK_FALSE(w.decode_failed);

  // A valid surrogate pair is U+1F600.
  w = as<WriteLine>(R"({"ds":"write","stream_id":"s","text":"\ud83d\ude00"})");
  CHECK(w.bytes == "\xF0\x9F\x98\x80");
  CHECK_FALSE(w.decode_failed);

  w = as<WriteLine>(R"({"ds":"write","stream_id":"s","text":""})");
  CHECK(w.text);
  CHECK(w.bytes.empty());
  CHECK_FALSE(w.decode_failed);
}

TEST_CASE("parse_ds_line: close and abort", "[datastreams]") {
  auto c = as<CloseLine>(std::string(R"({"ds":"close","stream_id":")") + kId + R"(","attributes":{"end":"1732180009000"}})");
  CHECK(c.stream_id == kId);
  REQUIRE(c.attributes.size() == 1);
  CHECK(c.attributes[0] == std::pair<std::string, std::string>{"end", "1732180009000"});
  CHECK(as<CloseLine>(R"({"ds":"close","stream_id":"s"})").attributes.empty());

  auto a = as<AbortLine>(std::string(R"({"ds":"abort","stream_id":")") + kId + R"(","reason":"UserStop"})");
  CHECK(a.stream_id == kId);
  CHECK(a.reason == "UserStop");
  CHECK(as<AbortLine>(R"({"ds":"abort","stream_id":"s"})").reason == "Cancelled");
  CHECK(as<AbortLine>(R"({"ds":"abort","stream_id":"s","reason":"aZ09_-aZ09_-aZ0"})").reason == "aZ09_-aZ09_-aZ0");
}

TEST_CASE("parse_ds_line: subscribe and unsubscribe", "[datastreams]") {
  auto s = as<SubscribeLine>(R"({"ds":"subscribe","req":3,"topic":"config/blob"})");
  REQUIRE(s.req);
  CHECK(*s.req == 3);
  CHECK(s.topic == "config/blob");
  CHECK(s.subscribe);
  s = as<SubscribeLine>(R"({"ds":"unsubscribe","req":4,"topic":"config/blob"})");
  CHECK(*s.req == 4);
  CHECK_FALSE(s.subscribe);
  s = as<SubscribeLine>(R"({"ds":"subscribe","topic":"x"})");
  CHECK_FALSE(s.req);
}

TEST_CASE("parse_ds_line: JSON-escaped keys and values are read as their text", "[datastreams]") {
  CHECK(may_be_ds_line(R"({"d\u0073":"open"})"));
  CHECK(as<OpenLine>(R"({"d\u0073":"open","topic":"t","kind":"byte"})").topic == "t");
  CHECK(as<OpenLine>(R"({"ds":"\u006fpen","t\u006fpic":"t","kind":"b\u0079te"})").topic == "t");
  CHECK(as<WriteLine>(R"({"ds":"write","stream_id":"s","d\u0061ta":"QQ=="})").bytes == "A");
  // "\u0073tream" is "stream": a data point.
  not_ds(R"({"ds":"open","\u0073tream":"x","topic":"t","kind":"byte"})");
}

TEST_CASE("parse_ds_line: lines that are not data-stream lines", "[datastreams]") {
  not_ds(R"({"value":1})");
  not_ds(R"({"stream":"s","value":1})");
  not_ds(R"({"ds":1})");
  not_ds(R"({"ds":null})");
  not_ds(R"({"ds":{"x":"open"}})");
  not_ds(R"({"ds":"open","stream":"x","topic":"t","kind":"byte"})");
  not_ds(R"({"ds":"write","stream":null,"stream_id":"s","data":""})");
  not_ds(R"({"ds":"open","topic":"t")");
  not_ds(R"({"ds":"open","topic":"t","kind":"byte"}})");
  not_ds(R"(not json "ds")");
  not_ds(R"(["ds","open"])");
  not_ds(R"("ds")");
  not_ds("");
  not_ds("{}");
  CHECK_FALSE(may_be_ds_line(R"({"stream":"s","value":1})"));
}

TEST_CASE("parse_ds_line: unknown ds value is BadRequest with req", "[datastreams]") {
  auto e = error_of(R"({"ds":"opne","req":5})");
  CHECK(e.code == ErrorCode::BadRequest);
  REQUIRE(e.req);
  CHECK(*e.req == 5);
  bad_request(R"({"ds":""})");
  bad_request(R"({"ds":"OPEN","topic":"t","kind":"byte"})");
  bad_request(R"({"ds":"opened","stream_id":"s"})");
}

TEST_CASE("parse_ds_line: open topic rules", "[datastreams]") {
  bad_request(R"({"ds":"open","kind":"byte"})");
  bad_request(R"({"ds":"open","topic":5,"kind":"byte"})");
  bad_request(R"({"ds":"open","topic":null,"kind":"byte"})");
  bad_request(R"({"ds":"open","topic":"","kind":"byte"})");
  bad_request(R"({"ds":"open","topic":"a+b","kind":"byte"})");
  bad_request(R"({"ds":"open","topic":"a/#","kind":"byte"})");
  bad_request(R"({"ds":"open","topic":"+","kind":"byte"})");
  bad_request(R"({"ds":"open","topic":"a\u0000b","kind":"byte"})");
  bad_request(R"({"ds":"open","topic":")" + std::string(129, 't') + R"(","kind":"byte"})");
  std::string e129 = "x";  // 129 bytes: 'x' and 64 two-byte characters
  for (int i = 0; i < 64; ++i) e129 += "\xC3\xA9";
  bad_request(R"({"ds":"open","topic":")" + e129 + R"(","kind":"byte"})");
  bad_request("{\"ds\":\"open\",\"topic\":\"a\xFF\",\"kind\":\"byte\"}");
  // The req is echoed in the error.
  auto e = error_of(R"({"ds":"open","req":9,"topic":"a+b","kind":"byte"})");
  REQUIRE(e.req);
  CHECK(*e.req == 9);
  CHECK_FALSE(e.stream_id);
}

TEST_CASE("parse_ds_line: open field rules", "[datastreams]") {
  // kind
  bad_request(R"({"ds":"open","topic":"t"})");
  bad_request(open_with("blob", ""));
  bad_request(open_with("Text", ""));
  bad_request(R"({"ds":"open","topic":"t","kind":1})");
  // mime_type
  bad_request(open_with("byte", "\"mime_type\":\"" + std::string(256, 'm') + "\""));
  bad_request(open_with("text", R"("mime_type":5)"));
  bad_request(open_with("byte", R"("mime_type":null)"));
  // total_length 0..2^53
  bad_request(open_with("byte", R"("total_length":9007199254740993)"));
  bad_request(open_with("byte", R"("total_length":18446744073709551615)"));
  bad_request(open_with("byte", R"("total_length":-1)"));
  bad_request(open_with("byte", R"("total_length":1.5)"));
  bad_request(open_with("byte", R"("total_length":"10")"));
  // name: byte streams only, <= 255 bytes
  bad_request(open_with("text", R"("name":"a.txt")"));
  bad_request(open_with("byte", "\"name\":\"" + std::string(256, 'n') + "\""));
  bad_request(open_with("byte", R"("name":1)"));
  // text_meta: text streams only, well-formed members
  bad_request(open_with("byte", R"("text_meta":{})"));
  bad_request(open_with("text", R"("text_meta":[])"));
  bad_request(open_with("text", R"("text_meta":"create")"));
  bad_request(open_with("text", R"("text_meta":{"operation":"edit"})"));
  bad_request(open_with("text", R"("text_meta":{"operation":1})"));
  bad_request(open_with("text", R"("text_meta":{"version":"1"})"));
  bad_request(open_with("text", R"("text_meta":{"version":1.5})"));
  bad_request(open_with("text", R"("text_meta":{"reply_to":5})"));
  bad_request(open_with("text", R"("text_meta":{"attached":"a1"})"));
  bad_request(open_with("text", R"("text_meta":{"attached":["a1",2]})"));
  bad_request(open_with("text", R"("text_meta":{"generated":"true"})"));
  bad_request(open_with("text", R"("text_meta":{"generated":1})"));
  // attributes: an object of strings
  bad_request(open_with("byte", R"("attributes":[])"));
  bad_request(open_with("byte", R"("attributes":"a=b")"));
  bad_request(open_with("byte", R"("attributes":{"a":1})"));
  bad_request(open_with("byte", R"("attributes":{"a":null})"));
  // a lone surrogate anywhere in an open line
  bad_request(open_with("byte", R"("attributes":{"a":"\ud800"})"));
  bad_request(open_with("byte", R"("name":"\udc00")"));
  // Errors keep the req.
  auto e = error_of(open_with("blob", ""));
  REQUIRE(e.req);
  CHECK(*e.req == 7);
}

TEST_CASE("parse_ds_line: req must be an integer 0..4294967295", "[datastreams]") {
  for (const char* req : {"-1", "4294967296", "\"7\"", "1.5", "null", "true"}) {
    INFO("req " << req);
    for (const std::string& line :
         {std::string(R"({"ds":"open","topic":"t","kind":"byte","req":)") + req + "}",
          std::string(R"({"ds":"subscribe","topic":"t","req":)") + req + "}",
          std::string(R"({"ds":"unsubscribe","topic":"t","req":)") + req + "}"}) {
      const auto e = error_of(line);
      CHECK(e.code == ErrorCode::BadRequest);
      CHECK_FALSE(e.req);
    }
  }
}

TEST_CASE("parse_ds_line: subscribe topic rules", "[datastreams]") {
  auto e = error_of(R"({"ds":"subscribe","req":3})");
  CHECK(e.code == ErrorCode::BadRequest);
  CHECK(*e.req == 3);
  bad_request(R"({"ds":"subscribe","topic":"a/#"})");
  bad_request(R"({"ds":"unsubscribe","topic":"a/+/b"})");
  bad_request(R"({"ds":"subscribe","topic":""})");
  bad_request(R"({"ds":"subscribe","topic":")" + std::string(129, 't') + "\"}");
  bad_request(R"({"ds":"subscribe","topic":["t"]})");
}

TEST_CASE("parse_ds_line: abort reason is 1..15 of [A-Za-z0-9_-]", "[datastreams]") {
  for (const char* reason : {"\"ABCDEFGHIJKLMNOP\"", "\"\"", "\"User Stop\"", "\"User.Stop\"", "\"caf\\u00e9\"",
                             "\"a\\u0000\"", "5", "null"}) {
    INFO("reason " << reason);
    const auto e = error_of(std::string(R"({"ds":"abort","stream_id":"s1","reason":)") + reason + "}");
    CHECK(e.code == ErrorCode::BadRequest);
    REQUIRE(e.stream_id);
    CHECK(*e.stream_id == "s1");
  }
}

TEST_CASE("parse_ds_line: write needs exactly one of data and text", "[datastreams]") {
  for (const char* body : {R"("data":"QQ==","text":"a")", "", R"("data":5)", R"("text":null)", R"("data":["QQ=="])"}) {
    INFO(body);
    std::string line = R"({"ds":"write","stream_id":"s1")";
    if (*body) line += std::string(",") + body;
    const auto e = error_of(line + "}");
    CHECK(e.code == ErrorCode::BadRequest);
    REQUIRE(e.stream_id);
    CHECK(*e.stream_id == "s1");
  }
}

TEST_CASE("parse_ds_line: stream_id is required on write, close and abort", "[datastreams]") {
  for (const char* kind : {"write", "close", "abort"}) {
    INFO(kind);
    const std::string head = std::string(R"({"ds":")") + kind + "\"";
    bad_request(head + R"(,"data":"QQ=="})");
    bad_request(head + R"(,"stream_id":5,"data":"QQ=="})");
    bad_request(head + R"(,"stream_id":"","data":"QQ=="})");
    bad_request(head + R"(,"stream_id":")" + std::string(65, 'i') + R"(","data":"QQ=="})");
  }
  CHECK(as<CloseLine>(R"({"ds":"close","stream_id":")" + std::string(64, 'i') + "\"}").stream_id.size() == 64);
}

TEST_CASE("parse_ds_line: attribute limits are HeaderTooLarge", "[datastreams]") {
  too_large(open_with("byte", "\"attributes\":" + attributes_of(17)));
  too_large(open_with("byte", "\"attributes\":" + attributes_of(1, 65)));
  too_large(open_with("byte", "\"attributes\":" + attributes_of(1, 1, 513)));
  too_large(open_with("byte", R"("attributes":{"":"v"})"));
  auto e = error_of(open_with("byte", "\"attributes\":" + attributes_of(17)));
  CHECK(*e.req == 7);

  too_large(R"({"ds":"close","stream_id":"s1","attributes":)" + attributes_of(17) + "}");
  too_large(R"({"ds":"close","stream_id":"s1","attributes":)" + attributes_of(1, 65) + "}");
  e = error_of(R"({"ds":"close","stream_id":"s1","attributes":)" + attributes_of(1, 1, 513) + "}");
  CHECK(e.code == ErrorCode::HeaderTooLarge);
  CHECK(*e.stream_id == "s1");
  bad_request(R"({"ds":"close","stream_id":"s1","attributes":{"a":1}})");
  CHECK(as<CloseLine>(R"({"ds":"close","stream_id":"s1","attributes":)" + attributes_of(16, 64, 512) + "}")
            .attributes.size() == 16);
}

TEST_CASE("parse_ds_line: decode failures end the stream, not the line", "[datastreams]") {
  for (const char* data : {"!!!!", "QQ=", "Q", "QQ==QQ==", "=QQQ", "QQ\\u0021="}) {
    INFO("data " << data);
    const auto w = as<WriteLine>(std::string(R"({"ds":"write","stream_id":"s1","data":")") + data + "\"}");
    CHECK(w.stream_id == "s1");
    CHECK_FALSE(w.text);
    CHECK(w.decode_failed);
  }
  for (const char* text : {"\\ud800", "\\udc00", "a\\ud800b", "\\udbff\\u0041", "\\ude00\\ud83d", "\\ud83d\\ud83d\\ude00"}) {
    INFO("text " << text);
    const auto w = as<WriteLine>(std::string(R"({"ds":"write","stream_id":"s1","text":")") + text + "\"}");
    CHECK(w.stream_id == "s1");
    CHECK(w.text);
    CHECK(w.decode_failed);
  }
  // Raw bytes that are not UTF-8.
  auto w = as<WriteLine>("{\"ds\":\"write\",\"stream_id\":\"s1\",\"text\":\"a\xC0\x80\"}");
  CHECK(w.decode_failed);
  // An escaped backslash before "ud800" is text, not an escape.
  w = as<WriteLine>(R"({"ds":"write","stream_id":"s1","text":"\\ud800"})");
  CHECK_FALSE(w.decode_failed);
  CHECK(w.bytes == "\\ud800");
  // Valid pairs, upper-case hex.
  w = as<WriteLine>(R"({"ds":"write","stream_id":"s1","text":"\uD83D\uDE00\udbff\udfff"})");
  CHECK_FALSE(w.decode_failed);
  CHECK(w.bytes == "\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF");
}

// ---- replies ----

TEST_CASE("parse_ds_line: a long base64 write reads as the whole-line parse does", "[datastreams]") {
  // A write with a long "data" value has its value found by hand and the rest parsed;
  // every line here must give what parsing the whole line gives.
  std::string raw;
  for (int i = 0; i < 3000; ++i) raw += static_cast<char>(i * 31 + 7);
  const std::string b64 = base64_of(raw);
  auto same = [](const std::string& line) {
    INFO(line.substr(0, 160));
    const auto fast = parse_ds_line(line);
    const auto whole = parse_ds_line_whole(line);
    REQUIRE(fast.has_value() == whole.has_value());
    if (!fast) return;
    REQUIRE(fast->index() == whole->index());
    if (const auto* w = std::get_if<WriteLine>(&*fast)) {
      const auto& v = std::get<WriteLine>(*whole);
      CHECK(w->stream_id == v.stream_id);
      CHECK(w->text == v.text);
      CHECK(w->decode_failed == v.decode_failed);
      CHECK(w->bytes == v.bytes);
    } else if (const auto* e = std::get_if<LineError>(&*fast)) {
      const auto& v = std::get<LineError>(*whole);
      CHECK(e->code == v.code);
      CHECK(e->message == v.message);
      CHECK(e->stream_id == v.stream_id);
    }
  };
  const std::string d = "\"" + b64 + "\"";
  // The usual shapes: compact, Python's json.dumps spacing, data first or last.
  same(R"({"ds":"write","stream_id":"s","data":)" + d + "}");
  same(R"({"ds": "write", "stream_id": "s", "data": )" + d + "}");
  same(R"({"data":)" + d + R"(,"ds":"write","stream_id":"s"})");
  same(R"({ "data" :  )" + d + R"( , "stream_id":"s","ds":"write"})");
  CHECK(as<WriteLine>(R"({"ds":"write","stream_id":"s","data":)" + d + "}").bytes == raw);
  // A "data" inside a nested object or a string value comes first: still the object's own.
  same(R"({"ds":"write","stream_id":"s","x":{"data":)" + d + R"(},"data":"QUJD"})");
  same(R"({"ds":"write","stream_id":"s","x":{"data":"QUJD"},"data":)" + d + "}");
  same(R"({"ds":"write","stream_id":"s","x":"\"data\":\"","data":)" + d + "}");
  same(R"({"ds":"write","stream_id":"s","x":{"data":)" + d + R"(},"data":""})");
  // Escapes in the value: '\/' is '/', valid JSON; a lone '\' or a raw CR is not.
  std::string slashed = b64;
  for (size_t i = 0; (i = slashed.find('/', i)) != std::string::npos; i += 2) slashed.insert(i, "\\");
  REQUIRE(slashed != b64);
  same(R"({"ds":"write","stream_id":"s","data":")" + slashed + "\"}");
  CHECK(as<WriteLine>(R"({"ds":"write","stream_id":"s","data":")" + slashed + "\"}").bytes == raw);
  same(R"({"ds":"write","stream_id":"s","data":")" + b64.substr(0, 400) + "\r" + b64.substr(400) + "\"}");
  same(R"({"ds":"write","stream_id":"s","data":")" + b64.substr(0, 400) + "\\" + b64.substr(400) + "\"}");
  same(R"({"ds":"write","stream_id":"s","data":")" + b64.substr(0, 400) + "\n" + b64.substr(400) + "\"}");
  // Not base64, not a write, both data and text, two "data" keys, broken JSON after it.
  same(R"({"ds":"write","stream_id":"s","data":")" + b64.substr(0, 401) + "\"}");
  same(R"({"ds":"close","stream_id":"s","data":)" + d + "}");
  same(R"({"ds":"write","stream_id":"s","text":"a","data":)" + d + "}");
  same(R"({"ds":"write","stream_id":"s","data":)" + d + R"(,"data":"QUJD"})");
  same(R"({"ds":"write","stream_id":"s","data":)" + d + R"(,})");
  same(R"({"ds":"write","stream_id":"s","data":)" + d);
  same(R"({"ds":"write","stream":"s","data":)" + d + "}");
  same(R"({"ds":"write","data":)" + d + "}");
}

TEST_CASE("reply lines are exact", "[datastreams]") {
  CHECK(opened_line(7, kId) == std::string(R"({"ds":"opened","req":7,"stream_id":")") + kId + "\"}\n");
  CHECK(opened_line(std::nullopt, "abc") == "{\"ds\":\"opened\",\"stream_id\":\"abc\"}\n");
  CHECK(opened_line(4294967295u, "abc") == "{\"ds\":\"opened\",\"req\":4294967295,\"stream_id\":\"abc\"}\n");

  CHECK(closed_line(kId, 48213, 4, "") ==
        std::string(R"({"ds":"closed","stream_id":")") + kId + R"(","bytes":48213,"chunks":4,"reason":""})" + "\n");
  CHECK(closed_line("s", 10, 1, "LengthExceeded") ==
        "{\"ds\":\"closed\",\"stream_id\":\"s\",\"bytes\":10,\"chunks\":1,\"reason\":\"LengthExceeded\",\"code\":3}\n");
  CHECK(closed_line("s", 0, 0, "Cancelled") ==
        "{\"ds\":\"closed\",\"stream_id\":\"s\",\"bytes\":0,\"chunks\":0,\"reason\":\"Cancelled\",\"code\":22}\n");
  CHECK(closed_line("s", 0, 0, "UserStop") ==
        "{\"ds\":\"closed\",\"stream_id\":\"s\",\"bytes\":0,\"chunks\":0,\"reason\":\"UserStop\"}\n");

  CHECK(error_line(LineError{ErrorCode::Full, "", 7, std::nullopt}) == "{\"ds\":\"error\",\"req\":7,\"reason\":\"Full\",\"code\":3}\n");
  CHECK(error_line(LineError{ErrorCode::UnknownStream, "", std::nullopt, std::string("s1")}) ==
        "{\"ds\":\"error\",\"stream_id\":\"s1\",\"reason\":\"UnknownStream\",\"code\":6}\n");
  // stream_id instead of req for lines about a stream.
  CHECK(error_line(LineError{ErrorCode::Closed, "ended \"x\"", 7, std::string("s1")}) ==
        "{\"ds\":\"error\",\"stream_id\":\"s1\",\"reason\":\"Closed\",\"code\":5,\"message\":\"ended \\\"x\\\"\"}\n");
  CHECK(error_line(LineError{ErrorCode::BadRequest, "bad", std::nullopt, std::nullopt}) ==
        "{\"ds\":\"error\",\"reason\":\"BadRequest\",\"code\":1,\"message\":\"bad\"}\n");
  CHECK(error_line(LineError{ErrorCode::HandlerAlreadyRegistered, "", 0, std::nullopt}) ==
        "{\"ds\":\"error\",\"req\":0,\"reason\":\"HandlerAlreadyRegistered\",\"code\":7}\n");
  CHECK(error_line(LineError{ErrorCode::HeaderTooLarge, "", 1, std::nullopt}) ==
        "{\"ds\":\"error\",\"req\":1,\"reason\":\"HeaderTooLarge\",\"code\":9}\n");
  // A parse error turned into its line.
  const auto bad = error_line(error_of(R"({"ds":"open","req":7,"topic":"a+b","kind":"byte"})"));
  CHECK(bad.rfind("{\"ds\":\"error\",\"req\":7,\"reason\":\"BadRequest\",\"code\":1,\"message\":\"", 0) == 0);
  CHECK(bad.back() == '\n');

  CHECK(subscribed_line(3, "config/blob", true) == "{\"ds\":\"subscribed\",\"req\":3,\"topic\":\"config/blob\"}\n");
  CHECK(subscribed_line(4, "config/blob", false) == "{\"ds\":\"unsubscribed\",\"req\":4,\"topic\":\"config/blob\"}\n");
  CHECK(subscribed_line(std::nullopt, "a", true) == "{\"ds\":\"subscribed\",\"topic\":\"a\"}\n");
}

TEST_CASE("to_string and reason_code follow §6", "[datastreams]") {
  CHECK(std::string(to_string(ErrorCode::BadRequest)) == "BadRequest");
  CHECK(std::string(to_string(ErrorCode::Full)) == "Full");
  CHECK(std::string(to_string(ErrorCode::Closed)) == "Closed");
  CHECK(std::string(to_string(ErrorCode::UnknownStream)) == "UnknownStream");
  CHECK(std::string(to_string(ErrorCode::HandlerAlreadyRegistered)) == "HandlerAlreadyRegistered");
  CHECK(std::string(to_string(ErrorCode::HeaderTooLarge)) == "HeaderTooLarge");

  CHECK_FALSE(reason_code(""));
  CHECK(reason_code("AbnormalEnd") == 1);
  CHECK(reason_code("DecodeFailed") == 2);
  CHECK(reason_code("LengthExceeded") == 3);
  CHECK(reason_code("Incomplete") == 4);
  CHECK(reason_code("Timeout") == 20);
  CHECK(reason_code("Shutdown") == 21);
  CHECK(reason_code("Cancelled") == 22);
  CHECK(reason_code("Overflow") == 23);
  CHECK_FALSE(reason_code("UserStop"));
  CHECK_FALSE(reason_code("AlreadyOpened"));
  CHECK_FALSE(reason_code("timeout"));
}

// ---- §3 MQTT payloads ----

TEST_CASE("encode_header/chunk/trailer give §3's examples", "[datastreams]") {
  CHECK(encode_header(spec_header()) ==
        std::string(R"({"t":"header","stream_id":")") + kId +
            R"(","timestamp":1732180000123,"topic":"camera/snapshot","kind":"byte","mime_type":"image/jpeg","total_length":48213,"name":"snap.jpg","attributes":{"cam":"front"},"sender":"app:main_app"})");
  CHECK(encode_chunk(kId, 0, kJpeg) ==
        std::string(R"({"t":"chunk","stream_id":")") + kId + R"(","chunk_index":0,"content":"/9j/4AAQSkZJRg==","version":0})");
  const std::string sha(64, 'e');
  CHECK(encode_trailer(kId, "", {{"bytes", "48213"}, {"chunks", "4"}, {"sha256", sha}}) ==
        std::string(R"({"t":"trailer","stream_id":")") + kId + R"(","reason":"","attributes":{"bytes":"48213","chunks":"4","sha256":")" +
            sha + "\"}}");
  // Payloads are single messages, not lines.
  CHECK(encode_trailer("s", "AbnormalEnd", {}) == R"({"t":"trailer","stream_id":"s","reason":"AbnormalEnd","attributes":{}})");
  CHECK(encode_chunk("s", UINT64_MAX, "") == R"({"t":"chunk","stream_id":"s","chunk_index":18446744073709551615,"content":"","version":0})");
}

TEST_CASE("encode_header: a text stream, attributes always present, text_meta all five members", "[datastreams]") {
  Header h;
  h.stream_id = "s";
  h.timestamp = 5;
  h.topic = "chat";
  h.text = true;
  h.mime_type = "text/plain";
  h.sender = "app:a";
  CHECK(encode_header(h) ==
        R"({"t":"header","stream_id":"s","timestamp":5,"topic":"chat","kind":"text","mime_type":"text/plain","attributes":{},"sender":"app:a"})");
  h.text_meta = TextMeta{};
  CHECK(encode_header(h) ==
        R"({"t":"header","stream_id":"s","timestamp":5,"topic":"chat","kind":"text","mime_type":"text/plain","attributes":{},"text_meta":{"operation":"create","version":0,"reply_to":"","attached":[],"generated":false},"sender":"app:a"})");
  h.text_meta->operation = "update";
  h.text_meta->version = 2;
  h.text_meta->reply_to = "r";
  h.text_meta->attached = {"x", "y"};
  h.text_meta->generated = true;
  const auto doc = json(encode_header(h));
  const auto& tm = doc["text_meta"];
  CHECK(std::string(tm["operation"].GetString()) == "update");
  CHECK(tm["version"].GetInt64() == 2);
  CHECK(std::string(tm["reply_to"].GetString()) == "r");
  CHECK(tm["attached"].Size() == 2);
  CHECK(tm["generated"].GetBool());
  // Special characters are escaped.
  h.attributes = {{"k\"", "v\n\\"}};
  const auto esc = json(encode_header(h));
  CHECK(std::string(esc["attributes"]["k\""].GetString()) == "v\n\\");
}

TEST_CASE("parse_inbound: header, chunk and trailer", "[datastreams]") {
  const auto h = inbound<InHeader>(encode_header(spec_header()));
  CHECK(h.header.stream_id == kId);
  CHECK(h.header.timestamp == 1732180000123);
  CHECK(h.header.topic == "camera/snapshot");
  CHECK_FALSE(h.header.text);
  CHECK(h.header.mime_type == "image/jpeg");
  CHECK(*h.header.total_length == 48213);
  CHECK(*h.header.name == "snap.jpg");
  CHECK(h.header.attributes == Attributes{{"cam", "front"}});
  CHECK(h.header.sender == "app:main_app");
  CHECK(h.raw_text_meta.empty());

  const auto t = inbound<InHeader>(
      R"({"t":"header","stream_id":"x","kind":"text","text_meta":{ "operation" : "update", "attached":[]}})");
  CHECK(t.header.text);
  CHECK(t.header.mime_type == "text/plain");
  CHECK_FALSE(t.header.total_length);
  CHECK(t.header.timestamp == 0);
  CHECK(t.header.sender.empty());
  CHECK(t.raw_text_meta == R"({"operation":"update","attached":[]})");
  CHECK(inbound<InHeader>(R"({"t":"header","stream_id":"x","kind":"byte"})").header.mime_type == "application/octet-stream");

  auto c = inbound<InChunk>(encode_chunk(kId, 3, kJpeg));
  CHECK(c.stream_id == kId);
  CHECK(c.index == 3);
  CHECK(c.content == kJpeg);
  CHECK(c.version == 0);
  c = inbound<InChunk>(R"({"t":"chunk","stream_id":"x","chunk_index":0,"content":"QQ==","version":1})");
  CHECK(c.version == 1);
  CHECK(c.content == "A");
  c = inbound<InChunk>(R"({"t":"chunk","stream_id":"x","chunk_index":1,"content":""})");
  CHECK(c.content.empty());
  CHECK(c.version == 0);
  // Huge chunk_index: 2^64-1 is a number like any other.
  c = inbound<InChunk>(R"({"t":"chunk","stream_id":"x","chunk_index":18446744073709551615,"content":"QQ=="})");
  CHECK(c.index == UINT64_MAX);

  auto tr = inbound<InTrailer>(encode_trailer(kId, "", {{"bytes", "48213"}, {"chunks", "4"}}));
  CHECK(tr.stream_id == kId);
  CHECK(tr.reason.empty());
  CHECK(tr.attributes == Attributes{{"bytes", "48213"}, {"chunks", "4"}});
  tr = inbound<InTrailer>(R"({"t":"trailer","stream_id":"x","reason":"AbnormalEnd"})");
  CHECK(tr.reason == "AbnormalEnd");
  CHECK(tr.attributes.empty());
  CHECK(inbound<InTrailer>(R"({"t":"trailer","stream_id":"x","reason":"ABCDEFGHIJKLMNO"})").reason.size() == 15);
}

TEST_CASE("parse_inbound: what §7 drops as invalid", "[datastreams]") {
  // Not an object with t and a string stream_id.
  for (const char* p : {"", "null", "[]", R"(["header"])", R"("header")", R"({"t":"header","stream_id":"x","kind":"byte")",
                        R"({"stream_id":"x","kind":"byte"})", R"({"t":5,"stream_id":"x"})", R"({"t":"header","kind":"byte"})",
                        R"({"t":"header","stream_id":5,"kind":"byte"})", R"({"t":"header","stream_id":"","kind":"byte"})",
                        R"({"t":"Header","stream_id":"x","kind":"byte"})", R"({"t":"end","stream_id":"x"})",
                        R"({"t":"header","stream_id":null,"kind":"byte"})"}) {
    const auto i = invalid(p);
    CHECK(i.stream_id.empty());
  }
  invalid(R"({"t":"trailer","stream_id":")" + std::string(65, 'i') + "\"}");
  inbound<InTrailer>(R"({"t":"trailer","stream_id":")" + std::string(64, 'i') + "\"}");

  // Headers: kind, limits of §5, 4096 bytes.
  for (const std::string& extra :
       {std::string(), std::string(R"(,"kind":"blob")"), std::string(R"(,"kind":1)"),
        std::string(R"(,"kind":"byte","total_length":9007199254740993)"), std::string(R"(,"kind":"byte","total_length":-1)"),
        std::string(R"(,"kind":"byte","mime_type":")") + std::string(256, 'm') + "\"",
        std::string(R"(,"kind":"byte","name":5)"), std::string(R"(,"kind":"byte","attributes":)") + attributes_of(17),
        std::string(R"(,"kind":"byte","attributes":)") + attributes_of(1, 65),
        std::string(R"(,"kind":"byte","attributes":{"a":1})")}) {
    const auto i = invalid(R"({"t":"header","stream_id":"h1")" + extra + "}");
    CHECK(i.stream_id == "h1");
  }
  // Attributes within §5 but an encoded header over 4096 bytes.
  const std::string big = R"({"t":"header","stream_id":"h1","kind":"byte","attributes":)" + attributes_of(9, 10, 450) + "}";
  REQUIRE(big.size() > 4096);
  invalid(big);
  const std::string small = R"({"t":"header","stream_id":"h1","kind":"byte","attributes":)" + attributes_of(8, 10, 450) + "}";
  REQUIRE(small.size() <= 4096);
  inbound<InHeader>(small);

  // Chunks.
  for (const char* p : {R"({"t":"chunk","stream_id":"c1","content":"QQ=="})",
                        R"({"t":"chunk","stream_id":"c1","chunk_index":-1,"content":"QQ=="})",
                        R"({"t":"chunk","stream_id":"c1","chunk_index":1.0,"content":"QQ=="})",
                        R"({"t":"chunk","stream_id":"c1","chunk_index":1e3,"content":"QQ=="})",
                        R"({"t":"chunk","stream_id":"c1","chunk_index":"0","content":"QQ=="})",
                        R"({"t":"chunk","stream_id":"c1","chunk_index":18446744073709551616,"content":"QQ=="})",
                        R"({"t":"chunk","stream_id":"c1","chunk_index":0})",
                        R"({"t":"chunk","stream_id":"c1","chunk_index":0,"content":null})",
                        R"({"t":"chunk","stream_id":"c1","chunk_index":0,"content":"QQ==","version":-1})",
                        R"({"t":"chunk","stream_id":"c1","chunk_index":0,"content":"QQ==","version":"1"})"})
    invalid(p);
  // Content that is not base64 ends its stream: the id is kept.
  for (const char* content : {"!!!!", "QQ=", "Q", "QQ==QQ=="}) {
    const auto i = invalid(std::string(R"({"t":"chunk","stream_id":"c1","chunk_index":0,"content":")") + content + "\"}");
    CHECK(i.stream_id == "c1");
  }
  // Trailer reason: at most 15 characters.
  invalid(R"({"t":"trailer","stream_id":"x","reason":"ABCDEFGHIJKLMNOP"})");
  invalid(R"({"t":"trailer","stream_id":"x","reason":5})");
}

// ---- lines to a subscribed app ----

TEST_CASE("rx_open_line carries the header fields present", "[datastreams]") {
  InHeader in;
  in.header = spec_header();
  in.header.stream_id = "s1";
  CHECK(rx_open_line(in, "config/blob") ==
        R"({"ds":"rx_open","stream_id":"s1","topic":"config/blob","kind":"byte","timestamp":1732180000123,"mime_type":"image/jpeg","total_length":48213,"name":"snap.jpg","attributes":{"cam":"front"},"sender":"app:main_app"})"
        "\n");
  // Parsed from the spec's example of §2.4.
  const auto h = inbound<InHeader>(
      R"({"t":"header","stream_id":"s2","timestamp":1732180000123,"topic":"other","kind":"byte","mime_type":"application/octet-stream","total_length":30000,"name":"blob.bin","attributes":{},"sender":"cloud"})");
  CHECK(rx_open_line(h, "config/blob") ==
        R"({"ds":"rx_open","stream_id":"s2","topic":"config/blob","kind":"byte","timestamp":1732180000123,"mime_type":"application/octet-stream","total_length":30000,"name":"blob.bin","attributes":{},"sender":"cloud"})"
        "\n");
  // text_meta passes through; absent fields are absent.
  const auto t = inbound<InHeader>(R"({"t":"header","stream_id":"s3","kind":"text","text_meta":{"operation":"update","x":[1]}})");
  CHECK(rx_open_line(t, "chat") ==
        R"({"ds":"rx_open","stream_id":"s3","topic":"chat","kind":"text","timestamp":0,"mime_type":"text/plain","attributes":{},"text_meta":{"operation":"update","x":[1]}})"
        "\n");
}

TEST_CASE("rx_chunk_line and rx_close_line", "[datastreams]") {
  CHECK(rx_chunk_line("s", 0, kJpeg, false, std::nullopt) ==
        "{\"ds\":\"rx_chunk\",\"stream_id\":\"s\",\"chunk_index\":0,\"data\":\"/9j/4AAQSkZJRg==\"}\n");
  CHECK(rx_chunk_line("s", 2, "h\xC3\xA9\n", true, std::nullopt) ==
        "{\"ds\":\"rx_chunk\",\"stream_id\":\"s\",\"chunk_index\":2,\"text\":\"h\xC3\xA9\\n\"}\n");
  // version and replace only on replacements.
  CHECK(rx_chunk_line("s", 0, "A", false, 1) ==
        "{\"ds\":\"rx_chunk\",\"stream_id\":\"s\",\"chunk_index\":0,\"data\":\"QQ==\",\"version\":1,\"replace\":true}\n");
  CHECK(rx_chunk_line("s", 0, "A", true, 7) ==
        "{\"ds\":\"rx_chunk\",\"stream_id\":\"s\",\"chunk_index\":0,\"text\":\"A\",\"version\":7,\"replace\":true}\n");

  CHECK(rx_close_line("s", "", {}) == "{\"ds\":\"rx_close\",\"stream_id\":\"s\",\"reason\":\"\",\"attributes\":{}}\n");
  CHECK(rx_close_line("s", "Incomplete", {{"bytes", "3"}}) ==
        "{\"ds\":\"rx_close\",\"stream_id\":\"s\",\"reason\":\"Incomplete\",\"attributes\":{\"bytes\":\"3\"},\"code\":4}\n");
  CHECK(rx_close_line("s", "Overflow", {}) ==
        "{\"ds\":\"rx_close\",\"stream_id\":\"s\",\"reason\":\"Overflow\",\"attributes\":{},\"code\":23}\n");
  CHECK(rx_close_line("s", "UserStop", {}) == "{\"ds\":\"rx_close\",\"stream_id\":\"s\",\"reason\":\"UserStop\",\"attributes\":{}}\n");
}

// ---- §4 chunking ----

TEST_CASE("cut_point: byte streams cut at max", "[datastreams]") {
  const std::string b15000(15000, 'x'), b15001(15001, 'x');
  CHECK(cut_point(b15000, 15000, false) == 15000);
  CHECK(cut_point(b15001, 15000, false) == 15000);
  CHECK(cut_point(std::string_view(b15001).substr(15000), 15000, false) == 1);
  CHECK(cut_point("", 15000, false) == 0);
  CHECK(cut_point("abc", 0, false) == 0);
  // Byte streams do not care about UTF-8.
  CHECK(cut_point("\xE2\x82\xAC\xE2\x82\xAC", 4, false) == 4);

  // 1 MiB -> 70 chunks, 69 x 15000 + 13576.
  const std::string mib(1 << 20, 'x');
  std::string_view rest = mib;
  std::vector<size_t> cuts;
  while (!rest.empty()) {
    const size_t n = cut_point(rest, 15000, false);
    REQUIRE(n > 0);
    cuts.push_back(n);
    rest.remove_prefix(n);
  }
  REQUIRE(cuts.size() == 70);
  CHECK(cuts.back() == 13576);
}

TEST_CASE("cut_point: text streams never split a UTF-8 sequence", "[datastreams]") {
  const std::string text = std::string(14999, 'a') + "\xE2\x82\xAC";  // 14999 x a, then €
  CHECK(cut_point(text, 15000, true) == 14999);
  CHECK(cut_point(std::string_view(text).substr(14999), 15000, true) == 3);
  CHECK(cut_point(text, 15002, true) == 15002);
  CHECK(cut_point(text, 14999, true) == 14999);

  const std::string emoji = "ab\xF0\x9F\x98\x80" "c";  // a 4-byte character at 2..5
  for (size_t max = 3; max <= 5; ++max) {
    INFO("max " << max);
    CHECK(cut_point(emoji, max, true) == 2);
  }
  CHECK(cut_point(emoji, 2, true) == 2);
  CHECK(cut_point(emoji, 6, true) == 6);
  CHECK(cut_point(emoji, 100, true) == 7);
  CHECK(cut_point(emoji, 0, true) == 0);
  CHECK(cut_point("", 5, true) == 0);
  // A character at the start that does not fit: no 0-byte cut while max > 0.
  CHECK(cut_point("\xF0\x9F\x98\x80", 2, true) == 2);
  // Garbage of continuation bytes only: still progress, at most max.
  const std::string cont(10, '\x80');
  CHECK(cut_point(cont, 4, true) == 4);
  CHECK(cut_point(cont, 1, true) == 1);
  CHECK(cut_point(cont, 20, true) == 10);
}

TEST_CASE("valid_utf8", "[datastreams]") {
  for (const char* ok : {"", "a", "h\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80",
                         "\xED\x9F\xBF", "\xEE\x80\x80", "\xEF\xBF\xBF", "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF"}) {
    INFO(ok);
    CHECK(valid_utf8(ok));
  }
  CHECK(valid_utf8(std::string_view("a\0b", 3)));
  for (const char* bad : {"\x80", "\xBF", "\xFF", "\xFE", "\xC0\x80", "\xC1\xBF",  // lone continuation, overlong 2
                          "\xE0\x80\x80", "\xE0\x9F\xBF",                           // overlong 3
                          "\xF0\x80\x80\x80", "\xF0\x8F\xBF\xBF",                   // overlong 4
                          "\xED\xA0\x80", "\xED\xBF\xBF", "\xED\xA0\xBD\xED\xB8\x80",  // surrogates (CESU-8 too)
                          "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xF7\xBF\xBF\xBF",  // > U+10FFFF
                          "\xF8\x88\x80\x80\x80", "\xFC\x84\x80\x80\x80\x80",           // 5- and 6-byte forms
                          "\xC3", "\xE2\x82", "\xF0\x9F\x98", "a\xC3", "\xC3" "a", "\xE2\x82" "a", "\xF0\x9F\x98" "a",
                          "\xE2\x28\xA1", "\xC3\xA9\x80"}) {
    INFO(bad);
    CHECK_FALSE(valid_utf8(bad));
  }
}

TEST_CASE("valid_topic", "[datastreams]") {
  CHECK(valid_topic("a"));
  CHECK(valid_topic(std::string(128, 'a')));
  CHECK(valid_topic("camera/snapshot"));
  CHECK_FALSE(valid_topic(""));
  CHECK_FALSE(valid_topic(std::string(129, 'a')));
  CHECK_FALSE(valid_topic("a+"));
  CHECK_FALSE(valid_topic("#"));
  CHECK_FALSE(valid_topic(std::string_view("a\0", 2)));
  CHECK_FALSE(valid_topic("\xC3"));
}

TEST_CASE("new_stream_id is a lowercase UUIDv4", "[datastreams]") {
  std::set<std::string> seen;
  for (int n = 0; n < 200; ++n) {
    const std::string id = new_stream_id();
    INFO(id);
    REQUIRE(id.size() == 36);
    for (size_t i = 0; i < id.size(); ++i) {
      if (i == 8 || i == 13 || i == 18 || i == 23)
        CHECK(id[i] == '-');
      else
        CHECK(((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')));
    }
    CHECK(id[14] == '4');
    CHECK((id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b'));
    seen.insert(id);
  }
  CHECK(seen.size() == 200);
}

// Found by this file (fixed): a lone surrogate escape in a subscribe topic or a close
// attribute was accepted, the escape replaced by '?'. The topic and attributes must be
// UTF-8 (§2.1, §2.4, §5), which "\ud800" cannot be.
TEST_CASE("parse_ds_line: a lone surrogate in subscribe/close is BadRequest", "[datastreams]") {
  const auto is_bad_request = [](const std::string& line) {
    const auto parsed = parse_ds_line(line);
    const auto* e = parsed ? std::get_if<LineError>(&*parsed) : nullptr;
    return e != nullptr && e->code == ErrorCode::BadRequest;
  };
  CHECK(is_bad_request(R"({"ds":"subscribe","req":3,"topic":"a\ud800"})"));
  CHECK(is_bad_request(R"({"ds":"unsubscribe","topic":"\udc00"})"));
  CHECK(is_bad_request(R"({"ds":"close","stream_id":"s1","attributes":{"a":"\ud800"}})"));
}

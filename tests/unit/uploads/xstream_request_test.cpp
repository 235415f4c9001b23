#include "edgelink/uploads/xstream_request.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

using namespace edgelink;
using namespace edgelink::uploads;

namespace {

constexpr const char* kKey = "q3JxVb0cT1m2Yk8wZr7e4A";

// A file route, a device route with an endpoint and a file name, one without either (its
// requests must name both or use fs), one whose default is fs, and a datastream route.
std::vector<UploadRouteConfig> routes() {
  UploadRouteConfig file;
  file.route = "/upload-file";
  file.kind = UploadKind::File;
  file.max_total_bytes = 1000000;
  UploadRouteConfig dev;
  dev.route = "/device/mcu1/file";
  dev.kind = UploadKind::Device;
  dev.device = "mcu1";
  dev.max_total_bytes = kMaxDeviceUploadBytes;
  dev.endpoint = "filesink";
  dev.file_name = "upload.bin";
  UploadRouteConfig bare = dev;
  bare.route = "/device/mcu2/file";
  bare.device = "mcu2";
  bare.endpoint.clear();
  bare.file_name.clear();
  UploadRouteConfig fs = dev;
  fs.route = "/device/mcu3/file";
  fs.device = "mcu3";
  fs.file_type = DeviceFileType::Fs;
  fs.endpoint.clear();
  UploadRouteConfig ds;
  ds.route = "/ds/camera/video";
  ds.kind = UploadKind::Datastream;
  ds.mime_type = "video/mp4";
  ds.max_total_bytes = 5000;
  return {file, dev, bare, fs, ds};
}

const std::vector<UploadRouteConfig>& the_routes() {
  static const auto r = routes();
  return r;
}

// The request parsed against routes(); fails the test when the line is not a request.
std::variant<StreamRequest, Refusal> request(const std::string& line) {
  INFO(line);
  auto parsed = parse_stream_request(line, the_routes());
  REQUIRE(parsed.has_value());
  return *parsed;
}

Refusal refusal(const std::string& line) {
  INFO(line);
  auto v = request(line);
  if (auto* r = std::get_if<StreamRequest>(&v)) FAIL("accepted, total " << r->total << " name " << r->name);
  return std::get<Refusal>(v);
}

Status refused(const std::string& line) { return refusal(line).status; }

StreamRequest accepted(const std::string& line) {
  INFO(line);
  auto v = request(line);
  if (auto* r = std::get_if<Refusal>(&v)) FAIL("refused: " << to_string(r->status) << " " << r->detail);
  return std::get<StreamRequest>(v);
}

// {"route":"/upload-file","x-stream":"10","name":"<name>"}
std::string file_request(const std::string& name) {
  return R"({"route":"/upload-file","x-stream":"10","name":")" + name + R"("})";
}

std::string device_request(const std::string& route, const std::string& extra) {
  return R"({"route":")" + route + R"(","x-stream":"10")" + (extra.empty() ? "" : "," + extra) + "}";
}

void value_ok(std::string_view text, uint64_t total, uint32_t bufsize) {
  INFO("x-stream \"" << text << "\"");
  auto v = parse_xstream_value(text);
  REQUIRE(std::holds_alternative<XStreamValue>(v));
  CHECK(std::get<XStreamValue>(v).total == total);
  CHECK(std::get<XStreamValue>(v).bufsize == bufsize);
}

void value_bad(std::string_view text, Status status) {
  INFO("x-stream \"" << text << "\"");
  auto v = parse_xstream_value(text);
  REQUIRE(std::holds_alternative<Status>(v));
  CHECK(std::get<Status>(v) == status);
}

KeyRecord sample_record() {
  KeyRecord r;
  r.key = kKey;
  r.app = "main_app";
  r.route = "/device/mcu1/file";
  r.kind = UploadKind::Device;
  r.name = "fw \"1\"\\\n.bin";
  r.total = 1048576;
  r.offset = 65536;
  r.sha256 = std::string(64, 'a');
  r.created = 1732180000123;
  r.last_activity = 1732180001000;
  r.dir = "/var/lib/edgelink/uploads/main_app";
  r.device = "mcu1";
  r.file_type = DeviceFileType::Fs;
  r.endpoint = "filesink";
  r.mime_type = "video/mp4";
  r.attributes = R"({"camera":"front"})";
  r.result_sha256 = std::string(64, 'b');
  r.path = "/var/lib/edgelink/uploads/main_app/fw.bin";
  r.detail = "device mcu1: offline";
  return r;
}

void check_same(const KeyRecord& a, const KeyRecord& b) {
  CHECK(a.key == b.key);
  CHECK(a.app == b.app);
  CHECK(a.route == b.route);
  CHECK(a.kind == b.kind);
  CHECK(a.name == b.name);
  CHECK(a.total == b.total);
  CHECK(a.offset == b.offset);
  CHECK(a.sha256 == b.sha256);
  CHECK(a.state == b.state);
  CHECK(a.created == b.created);
  CHECK(a.last_activity == b.last_activity);
  CHECK(a.dir == b.dir);
  CHECK(a.device == b.device);
  CHECK(a.file_type == b.file_type);
  CHECK(a.endpoint == b.endpoint);
  CHECK(a.mime_type == b.mime_type);
  CHECK(a.attributes == b.attributes);
  CHECK(a.result_sha256 == b.result_sha256);
  CHECK(a.path == b.path);
  CHECK(a.detail == b.detail);
}

}  // namespace

// ---- the "x-stream" value (§3, §12 item 12) ----

TEST_CASE("parse_xstream_value: the values of §12 item 12", "[uploads][xstream]") {
  value_ok("20000:4096", 20000, 4096);
  value_ok("20000", 20000, 4096);  // bufsize defaults to 4096
  value_bad("0", Status::BadRequest);
  value_bad("-1", Status::BadRequest);
  value_bad("1:0", Status::BadRequest);
  value_bad("20000:", Status::BadRequest);
  value_bad(":4096", Status::BadRequest);
  value_bad("+5", Status::BadRequest);
  value_bad("99999999999999999999", Status::TooLarge);
  value_bad("\xd9\xa3", Status::BadRequest);            // U+0663 ARABIC-INDIC DIGIT THREE
  value_bad("\xef\xbc\x91", Status::BadRequest);        // U+FF11 FULLWIDTH DIGIT ONE
  value_bad("1\xef\xbc\x91", Status::BadRequest);       // an ASCII digit, then a fullwidth one
  value_bad("20000:\xd9\xa3", Status::BadRequest);      // in the bufsize
  value_bad("\xd9\xa3:4096", Status::BadRequest);
}

TEST_CASE("parse_xstream_value: bufsize 1..16777216, leading zeros, empty parts", "[uploads][xstream]") {
  value_ok("1:1", 1, 1);
  value_ok("20000:16777216", 20000, 16777216);
  value_bad("20000:16777217", Status::BadRequest);
  value_bad("20000:99999999999999999999", Status::BadRequest);  // bufsize out of range, not TooLarge
  value_ok("007", 7, 4096);
  value_ok("007:016777216", 7, 16777216);
  value_ok("1:00001", 1, 1);
  value_bad("000", Status::BadRequest);  // still total 0
  value_bad("1:000", Status::BadRequest);
  value_bad("", Status::BadRequest);
  value_bad(":", Status::BadRequest);
  value_bad("1 ", Status::BadRequest);
  value_bad(" 1", Status::BadRequest);
  value_bad("1:2:3", Status::BadRequest);
  value_bad("1.5", Status::BadRequest);
  value_bad("1e3", Status::BadRequest);
  value_bad("0x10", Status::BadRequest);
  value_bad("1:-1", Status::BadRequest);
  value_bad("1:+1", Status::BadRequest);
  value_bad(std::string_view("1\0", 2), Status::BadRequest);
}

TEST_CASE("parse_xstream_value: totals up to 2^63, more is TooLarge", "[uploads][xstream]") {
  value_ok("9223372036854775807", 9223372036854775807ull, 4096);
  value_ok("9223372036854775808", 9223372036854775808ull, 4096);  // 2^63
  value_bad("9223372036854775809", Status::TooLarge);
  value_bad("18446744073709551615", Status::TooLarge);  // 2^64 - 1
  value_bad("18446744073709551616", Status::TooLarge);  // 2^64: no wrap to 0
  value_bad("99999999999999999999:4096", Status::TooLarge);
  value_bad(std::string(400, '9'), Status::TooLarge);
  value_ok("00000000000000000000000000000001", 1, 4096);  // many digits, small value
  // Too many digits with a malformed rest: the syntax error wins (fields before size, §3).
  value_bad("99999999999999999999:0", Status::BadRequest);
  value_bad("99999999999999999999:", Status::BadRequest);
  value_bad("99999999999999999999:16777217", Status::BadRequest);
  value_bad("99999999999999999999x", Status::BadRequest);
  value_bad("99999999999999999999:4096:1", Status::BadRequest);
}

TEST_CASE("advised_bufsize clamps the request to 512..65536", "[uploads][xstream]") {
  CHECK(advised_bufsize(1) == 512);
  CHECK(advised_bufsize(511) == 512);
  CHECK(advised_bufsize(512) == 512);
  CHECK(advised_bufsize(4096) == 4096);
  CHECK(advised_bufsize(65536) == 65536);
  CHECK(advised_bufsize(65537) == 65536);
  CHECK(advised_bufsize(16777216) == 65536);
}

// ---- the request line (§3) ----

TEST_CASE("parse_stream_request: what is not a stream request is left alone", "[uploads][xstream]") {
  const auto& r = the_routes();
  CHECK_FALSE(parse_stream_request(R"({"stream":"imu","sequence":1,"timestamp":1})", r));
  CHECK_FALSE(parse_stream_request(R"({"route":"/upload-file","x-stream":"1","stream":"imu"})", r));
  CHECK_FALSE(parse_stream_request(R"({"route":"/upload-file","x-stream":"1","stream":null})", r));
  CHECK_FALSE(parse_stream_request(R"({"route":"/upload-file","name":"x-stream"})", r));  // no route key
  CHECK_FALSE(parse_stream_request(R"({"x-stream":"10","name":"a"})", r));                // no route key
  CHECK_FALSE(parse_stream_request(R"({"route":"/upload-file"})", r));
  CHECK_FALSE(parse_stream_request(R"(["route","x-stream"])", r));
  CHECK_FALSE(parse_stream_request(R"([{"route":"/upload-file","x-stream":"10","name":"a"}])", r));
  CHECK_FALSE(parse_stream_request(R"("x-stream")", r));
  CHECK_FALSE(parse_stream_request("route /upload-file x-stream 10", r));  // not JSON
  CHECK_FALSE(parse_stream_request(R"({"route":"/upload-file","x-stream":"1")", r));  // truncated
  CHECK_FALSE(parse_stream_request(R"({"route":"/upload-file","x-stream":"1"} {})", r));  // trailing garbage
  CHECK_FALSE(parse_stream_request("", r));
  // Keys are case-sensitive.
  CHECK_FALSE(parse_stream_request(R"({"Route":"/upload-file","X-Stream":"10","name":"a"})", r));
  // A request, even for an app without upload routes: it is refused, not published.
  CHECK(parse_stream_request(R"({"route":"/upload-file","x-stream":"10","name":"a"})", {}));
}

TEST_CASE("parse_stream_request: keys written with JSON escapes are the same keys (§3)", "[uploads][xstream]") {
  const auto& r = the_routes();
  // §3 speaks of the object's keys, not of the line's text: "x\u002dstream" is "x-stream".
  auto escaped = parse_stream_request(R"({"route":"/upload-file","x\u002dstream":"10","name":"a"})", r);
  CHECK(escaped.has_value());
  auto route = parse_stream_request(R"({"\u0072oute":"/upload-file","x-stream":"10","name":"a"})", r);
  REQUIRE(route.has_value());
  CHECK(std::holds_alternative<StreamRequest>(*route));
  CHECK_FALSE(parse_stream_request(R"({"route":"/upload-file","x-stream":"10","\u0073tream":"imu"})", r));
}

TEST_CASE("parse_stream_request: checks in the order route (2), fields (1), size (3)", "[uploads][xstream]") {
  // The route first, whatever else is wrong.
  CHECK(refused(R"({"route":"/nope","x-stream":"10"})") == Status::UnknownRoute);
  CHECK(refused(R"({"route":"/nope","x-stream":"abc"})") == Status::UnknownRoute);
  CHECK(refused(R"({"route":"/nope","x-stream":"99999999999999999999"})") == Status::UnknownRoute);
  CHECK(refused(R"({"route":"/nope","x-stream":10,"data-format":"text"})") == Status::UnknownRoute);
  CHECK(refused(R"({"route":7,"x-stream":"10"})") == Status::UnknownRoute);
  CHECK(refused(R"({"route":null,"x-stream":"10"})") == Status::UnknownRoute);
  CHECK(refused(R"({"route":"/UPLOAD-FILE","x-stream":"10","name":"a"})") == Status::UnknownRoute);  // exact match
  CHECK(refused(R"({"route":"/upload-file/","x-stream":"10","name":"a"})") == Status::UnknownRoute);

  // Then syntax and fields, before the size.
  CHECK(refused(R"({"route":"/upload-file","x-stream":"abc","name":"a"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":10,"name":"a"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":null,"name":"a"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"0","name":"a"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10:0","name":"a"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"2000000","name":".a"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"2000000"})") == Status::BadRequest);  // no name
  CHECK(refused(R"({"route":"/upload-file","x-stream":"2000000","name":"a","data-format":"text"})") ==
        Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"2000000","name":"a","sha256":"abc"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"2000000","name":"a","x-stream-key":5})") ==
        Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"99999999999999999999","name":".a"})") ==
        Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"99999999999999999999:0","name":"a"})") ==
        Status::BadRequest);
  CHECK(refused(R"({"route":"/device/mcu1/file","x-stream":"99999999999999999999","fileType":"zip"})") ==
        Status::BadRequest);
  CHECK(refused(R"({"route":"/device/mcu2/file","x-stream":"16777216","name":"a"})") ==
        Status::BadRequest);  // no endpoint for rtstream, and too large

  // Then the size.
  CHECK(refused(R"({"route":"/upload-file","x-stream":"2000000","name":"a"})") == Status::TooLarge);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"1000001:4096","name":"a"})") == Status::TooLarge);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"99999999999999999999","name":"a"})") == Status::TooLarge);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"99999999999999999999:4096","name":"a"})") ==
        Status::TooLarge);
  CHECK(accepted(R"({"route":"/upload-file","x-stream":"1000000","name":"a"})").total == 1000000);
}

TEST_CASE("parse_stream_request: refusals echo the request's key", "[uploads][xstream]") {
  for (const std::string line : {
           R"({"route":"/nope","x-stream":"10","x-stream-key":"q3JxVb0cT1m2Yk8wZr7e4A"})",
           R"({"route":"/upload-file","x-stream":"0","x-stream-key":"q3JxVb0cT1m2Yk8wZr7e4A"})",
           R"({"route":"/upload-file","x-stream":"10","data-format":"x","x-stream-key":"q3JxVb0cT1m2Yk8wZr7e4A"})",
           R"({"route":"/upload-file","x-stream":"2000000","x-stream-key":"q3JxVb0cT1m2Yk8wZr7e4A"})",
       }) {
    const Refusal r = refusal(line);
    REQUIRE(r.key.has_value());
    CHECK(*r.key == kKey);
    CHECK_FALSE(r.detail.empty());
    CHECK(refusal_reply(r).find(R"("x-stream-key":"q3JxVb0cT1m2Yk8wZr7e4A")") != std::string::npos);
  }
  const Refusal none = refusal(R"({"route":"/nope","x-stream":"10"})");
  CHECK_FALSE(none.key.has_value());
  CHECK(refusal_reply(none).find("x-stream-key") == std::string::npos);
  // A key that is not a string is not echoed (there is nothing to echo).
  const Refusal bad = refusal(R"({"route":"/upload-file","x-stream":"10","name":"a","x-stream-key":5})");
  CHECK(bad.status == Status::BadRequest);
  CHECK_FALSE(bad.key.has_value());
}

TEST_CASE("parse_stream_request: data-format is \"bytes\" or absent", "[uploads][xstream]") {
  CHECK(accepted(R"({"route":"/upload-file","x-stream":"10","name":"a"})").total == 10);
  CHECK(accepted(R"({"route":"/upload-file","x-stream":"10","name":"a","data-format":"bytes"})").total == 10);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","data-format":"text"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","data-format":"Bytes"})") ==
        Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","data-format":""})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","data-format":null})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","data-format":["bytes"]})") ==
        Status::BadRequest);
  // Also on a resume: it is syntax, not one of the original's fields.
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","x-stream-key":"k","data-format":"text"})") ==
        Status::BadRequest);
}

TEST_CASE("parse_stream_request: a file route's name", "[uploads][xstream]") {
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10"})") == Status::BadRequest);  // required
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":null})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":5})") == Status::BadRequest);
  CHECK(refused(file_request("")) == Status::BadRequest);
  CHECK(refused(file_request(".hidden")) == Status::BadRequest);
  CHECK(refused(file_request(".")) == Status::BadRequest);
  CHECK(refused(file_request("..")) == Status::BadRequest);
  CHECK(refused(file_request(std::string(129, 'a'))) == Status::BadRequest);
  CHECK(accepted(file_request(std::string(128, 'a'))).name == std::string(128, 'a'));
  for (const std::string bad : {"a/b", "../x", "a b", "a\\\\b", "a:b", "a*", "caf\xc3\xa9", "a\\u0000b", "a\\tb"})
    CHECK(refused(file_request(bad)) == Status::BadRequest);
  const auto req = accepted(file_request("fw-1.0_A.bin"));
  CHECK(req.name == "fw-1.0_A.bin");
  CHECK(req.route == &the_routes()[0]);
  CHECK_FALSE(req.key.has_value());
  CHECK(req.sha256.empty());
  CHECK(accepted(file_request("a.")).name == "a.");
  CHECK(accepted(file_request("-")).name == "-");
}

TEST_CASE("parse_stream_request: sha256 is 64 hex digits, kept in lower case", "[uploads][xstream]") {
  auto with_sha = [](const std::string& sha) {
    return R"({"route":"/upload-file","x-stream":"10","name":"a","sha256":")" + sha + R"("})";
  };
  const std::string mixed = "9F86D081884C7D659A2FEAA0C55AD015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  CHECK(accepted(with_sha(mixed)).sha256 == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
  CHECK(accepted(with_sha(std::string(64, 'F'))).sha256 == std::string(64, 'f'));
  CHECK(accepted(with_sha(std::string(64, '0'))).sha256 == std::string(64, '0'));
  CHECK(refused(with_sha("")) == Status::BadRequest);
  CHECK(refused(with_sha("abc")) == Status::BadRequest);
  CHECK(refused(with_sha(std::string(63, 'a'))) == Status::BadRequest);
  CHECK(refused(with_sha(std::string(65, 'a'))) == Status::BadRequest);
  CHECK(refused(with_sha(std::string(64, 'g'))) == Status::BadRequest);
  CHECK(refused(with_sha(std::string(63, 'a') + " ")) == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","sha256":null})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","sha256":12})") == Status::BadRequest);
}

TEST_CASE("parse_stream_request: total and bufsize of an accepted request", "[uploads][xstream]") {
  const auto req = accepted(R"({"route":"/upload-file","x-stream":"1000000:1","name":"a","data-format":"bytes"})");
  CHECK(req.total == 1000000);
  CHECK(req.bufsize == 1);  // as requested; the reply advises advised_bufsize()
  CHECK(accepted(R"({"route":"/upload-file","x-stream":"1","name":"a"})").bufsize == 4096);
  CHECK(accepted(R"({"route":"/upload-file","x-stream":"5:16777216","name":"a"})").bufsize == 16777216);
}

TEST_CASE("parse_stream_request: a resume takes the original's fields (§5)", "[uploads][xstream]") {
  // Name, sha256, fileType and endpoint are not looked at.
  auto resume = accepted(R"({"route":"/upload-file","x-stream":"10","x-stream-key":"k","name":".bad"})");
  CHECK(resume.key == "k");
  CHECK(accepted(R"({"route":"/upload-file","x-stream":"10","x-stream-key":"q3JxVb0cT1m2Yk8wZr7e4A"})").key == kKey);
  CHECK(accepted(R"({"route":"/upload-file","x-stream":"10","x-stream-key":"k","sha256":"zz"})").sha256.empty());
  CHECK(accepted(R"({"route":"/upload-file","x-stream":"10","x-stream-key":"k","name":7})").key == "k");
  CHECK(accepted(device_request("/device/mcu2/file", R"("x-stream-key":"k")")).key == "k");  // no name, no endpoint
  CHECK(accepted(device_request("/device/mcu1/file", R"("x-stream-key":"k","fileType":"zip")")).key == "k");
  // The key's shape, its existence and route/total are the store's (5), not the parser's.
  CHECK(accepted(R"({"route":"/upload-file","x-stream":"10","x-stream-key":""})").key == "");
  // Route, syntax and size still apply.
  CHECK(refused(R"({"route":"/nope","x-stream":"10","x-stream-key":"k"})") == Status::UnknownRoute);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"abc","x-stream-key":"k"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"2000000","x-stream-key":"k"})") == Status::TooLarge);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"99999999999999999999","x-stream-key":"k"})") ==
        Status::TooLarge);
}

TEST_CASE("parse_stream_request: a device route's name", "[uploads][xstream]") {
  auto req = accepted(device_request("/device/mcu1/file", ""));
  CHECK(req.name == "upload.bin");  // the route's file_name
  CHECK(req.route == &the_routes()[1]);
  CHECK(accepted(device_request("/device/mcu1/file", R"("name":"fw 2.bin")")).name == "fw 2.bin");
  CHECK(accepted(device_request("/device/mcu1/file", R"("name":"~!@#$%^&*() /\\")")).name == "~!@#$%^&*() /\\");
  CHECK(accepted(device_request("/device/mcu1/file", R"("name":".x")")).name == ".x");
  CHECK(accepted(device_request("/device/mcu1/file", "\"name\":\"" + std::string(128, 'n') + "\"")).name.size() ==
        128);
  CHECK(refused(device_request("/device/mcu1/file", "\"name\":\"" + std::string(129, 'n') + "\"")) ==
        Status::BadRequest);
  CHECK(refused(device_request("/device/mcu1/file", R"("name":"")")) == Status::BadRequest);
  CHECK(refused(device_request("/device/mcu1/file", R"("name":"caf\u00e9")")) == Status::BadRequest);
  CHECK(refused(device_request("/device/mcu1/file", R"("name":"a\tb")")) == Status::BadRequest);
  CHECK(refused(device_request("/device/mcu1/file", R"("name":"a\u007f")")) == Status::BadRequest);
  CHECK(refused(device_request("/device/mcu1/file", R"("name":5)")) == Status::BadRequest);
  // Neither the request nor the route names the file.
  CHECK(refused(device_request("/device/mcu2/file", R"("endpoint":"filesink")")) == Status::BadRequest);
  CHECK(refused(device_request("/device/mcu2/file", R"("fileType":"fs")")) == Status::BadRequest);
  CHECK(accepted(device_request("/device/mcu2/file", R"("name":"a","endpoint":"filesink")")).name == "a");
}

TEST_CASE("parse_stream_request: a device route's fileType and endpoint", "[uploads][xstream]") {
  auto req = accepted(device_request("/device/mcu1/file", ""));
  CHECK(req.file_type == DeviceFileType::Rtstream);
  CHECK(req.endpoint == "filesink");
  req = accepted(device_request("/device/mcu1/file", R"("fileType":"fs")"));
  CHECK(req.file_type == DeviceFileType::Fs);
  req = accepted(device_request("/device/mcu1/file", R"("endpoint":"other")"));
  CHECK(req.endpoint == "other");
  CHECK(req.file_type == DeviceFileType::Rtstream);
  // The route's default is fs; a request may ask for rtstream, and must then name an endpoint.
  CHECK(accepted(device_request("/device/mcu3/file", "")).file_type == DeviceFileType::Fs);
  req = accepted(device_request("/device/mcu3/file", R"("fileType":"rtstream","endpoint":"sink2")"));
  CHECK(req.file_type == DeviceFileType::Rtstream);
  CHECK(req.endpoint == "sink2");
  CHECK(refused(device_request("/device/mcu3/file", R"("fileType":"rtstream")")) == Status::BadRequest);
  // rtstream without an endpoint anywhere.
  CHECK(refused(device_request("/device/mcu2/file", R"("name":"a")")) == Status::BadRequest);
  CHECK(refused(device_request("/device/mcu2/file", R"("name":"a","fileType":"rtstream")")) == Status::BadRequest);
  CHECK(accepted(device_request("/device/mcu2/file", R"("name":"a","fileType":"fs")")).file_type ==
        DeviceFileType::Fs);
  // Other fileType values and bad endpoints.
  for (const std::string ft : {R"("zip")", R"("FS")", R"("")", "null", "1", R"(["fs"])"})
    CHECK(refused(device_request("/device/mcu1/file", "\"fileType\":" + ft)) == Status::BadRequest);
  CHECK(refused(device_request("/device/mcu1/file", R"("endpoint":"")")) == Status::BadRequest);
  CHECK(refused(device_request("/device/mcu1/file", R"("endpoint":5)")) == Status::BadRequest);
  CHECK(refused(device_request("/device/mcu1/file", "\"endpoint\":\"" + std::string(129, 'e') + "\"")) ==
        Status::BadRequest);
  CHECK(refused(device_request("/device/mcu1/file", R"("endpoint":"a\nb")")) == Status::BadRequest);
}

TEST_CASE("parse_stream_request: a device route takes at most max_total_bytes", "[uploads][xstream]") {
  CHECK(refused(R"({"route":"/device/mcu1/file","x-stream":"16777216"})") == Status::TooLarge);
  CHECK(accepted(R"({"route":"/device/mcu1/file","x-stream":"16777215"})").total == 16777215);
  CHECK(refused(R"({"route":"/ds/camera/video","x-stream":"5001"})") == Status::TooLarge);
  CHECK(accepted(R"({"route":"/ds/camera/video","x-stream":"5000"})").total == 5000);
}

TEST_CASE("parse_stream_request: a datastream route's fields", "[uploads][xstream]") {
  auto req = accepted(R"({"route":"/ds/camera/video","x-stream":"10"})");
  CHECK(req.name.empty());
  CHECK(req.mime_type == "video/mp4");  // the route's
  CHECK(req.attributes.empty());
  req = accepted(
      R"({"route":"/ds/camera/video","x-stream":"10","name":"clip 1","mime_type":"video/webm","attributes":{"a":"1"}})");
  CHECK(req.name == "clip 1");
  CHECK(req.mime_type == "video/webm");
  CHECK(req.attributes == R"({"a":"1"})");
  CHECK(refused(R"({"route":"/ds/camera/video","x-stream":"10","attributes":{"a":1}})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/ds/camera/video","x-stream":"10","attributes":"a"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/ds/camera/video","x-stream":"10","mime_type":""})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/ds/camera/video","x-stream":"10","name":")" + std::string(257, 'n') + "\"}") ==
        Status::BadRequest);
}

TEST_CASE("valid_key: 22 characters of base64url", "[uploads][xstream]") {
  CHECK(valid_key(kKey));
  CHECK(valid_key("-_-_-_-_-_-_-_-_-_-_-_"));
  CHECK(valid_key("AAAAAAAAAAAAAAAAAAAAAA"));
  CHECK(valid_key("0123456789zzzzzzzzzzzz"));
  CHECK_FALSE(valid_key(""));
  CHECK_FALSE(valid_key("q3JxVb0cT1m2Yk8wZr7e4"));     // 21
  CHECK_FALSE(valid_key("q3JxVb0cT1m2Yk8wZr7e4AA"));   // 23
  CHECK_FALSE(valid_key("q3JxVb0cT1m2Yk8wZr7e4="));    // padding
  CHECK_FALSE(valid_key("q3JxVb0cT1m2Yk8wZr7e+A"));    // the standard alphabet
  CHECK_FALSE(valid_key("q3JxVb0cT1m2Yk8wZr7e/A"));
  CHECK_FALSE(valid_key("q3JxVb0cT1m2Yk8wZr7e.A"));
  CHECK_FALSE(valid_key("../../../../etc/passwd"));  // 22 characters, used in a path
  CHECK_FALSE(valid_key(std::string_view("q3JxVb0cT1m2Yk8wZr7e\0A", 22)));
}

TEST_CASE("valid_file_name: 1..128 of [A-Za-z0-9._-], not starting with '.'", "[uploads][xstream]") {
  CHECK(valid_file_name("fw.bin"));
  CHECK(valid_file_name("a"));
  CHECK(valid_file_name("A-Z_a-z.0-9"));
  CHECK(valid_file_name("a.."));
  CHECK(valid_file_name("_"));
  CHECK(valid_file_name(std::string(128, 'x')));
  CHECK_FALSE(valid_file_name(std::string(129, 'x')));
  CHECK_FALSE(valid_file_name(""));
  CHECK_FALSE(valid_file_name(".fw"));
  CHECK_FALSE(valid_file_name("."));
  CHECK_FALSE(valid_file_name(".."));
  CHECK_FALSE(valid_file_name("a b"));
  CHECK_FALSE(valid_file_name("../x"));
  CHECK_FALSE(valid_file_name("a/b"));
  CHECK_FALSE(valid_file_name("a\\b"));
  CHECK_FALSE(valid_file_name("caf\xc3\xa9"));
  CHECK_FALSE(valid_file_name(std::string_view("a\0b", 3)));
}

// ---- lines edgelink sends (§3.1, §3.3, §6) ----

TEST_CASE("negotiation_reply: \"0:<bufsize>\" for all, \"<n>:<bufsize>\" for a part", "[uploads][xstream]") {
  CHECK(negotiation_reply(kKey, 1048576, 1048576, 65536, 0) ==
        "{\"status\":0,\"x-stream\":\"0:65536\",\"x-stream-key\":\"q3JxVb0cT1m2Yk8wZr7e4A\","
        "\"data-format\":\"bytes\",\"x-stream-offset\":0}\n");
  CHECK(negotiation_reply("K", 600000, 1048576, 4096, 0) ==
        "{\"status\":0,\"x-stream\":\"600000:4096\",\"x-stream-key\":\"K\",\"data-format\":\"bytes\","
        "\"x-stream-offset\":0}\n");
  // A resume: the remaining bytes after the durable offset.
  CHECK(negotiation_reply("K", 748576, 748576, 512, 300000) ==
        "{\"status\":0,\"x-stream\":\"0:512\",\"x-stream-key\":\"K\",\"data-format\":\"bytes\","
        "\"x-stream-offset\":300000}\n");
  // A resume of a fully stored key: nothing to send.
  CHECK(negotiation_reply("K", 0, 0, 4096, 1048576) ==
        "{\"status\":0,\"x-stream\":\"0:4096\",\"x-stream-key\":\"K\",\"data-format\":\"bytes\","
        "\"x-stream-offset\":1048576}\n");
  CHECK(negotiation_reply("K", 1, 2, 4096, 0).find("\"x-stream\":\"1:4096\"") != std::string::npos);
}

TEST_CASE("refusal_reply: status, \"-1\", the error name, key and detail when there", "[uploads][xstream]") {
  CHECK(refusal_reply({Status::UnknownRoute, "", std::nullopt}) ==
        "{\"status\":2,\"x-stream\":\"-1\",\"error\":\"UnknownRoute\"}\n");
  CHECK(refusal_reply({Status::BadRequest, "bad", std::nullopt}) ==
        "{\"status\":1,\"x-stream\":\"-1\",\"error\":\"BadRequest\",\"detail\":\"bad\"}\n");
  CHECK(refusal_reply({Status::UnknownKey, "", std::string("K")}) ==
        "{\"status\":5,\"x-stream\":\"-1\",\"error\":\"UnknownKey\",\"x-stream-key\":\"K\"}\n");
  CHECK(refusal_reply({Status::Busy, "in use", std::string("K")}) ==
        "{\"status\":8,\"x-stream\":\"-1\",\"error\":\"Busy\",\"x-stream-key\":\"K\",\"detail\":\"in use\"}\n");
  CHECK(refusal_reply({Status::TooLarge, "a \"b\"\n", std::nullopt}) ==
        "{\"status\":3,\"x-stream\":\"-1\",\"error\":\"TooLarge\",\"detail\":\"a \\\"b\\\"\\n\"}\n");
  CHECK(refusal_reply({Status::NoSpace, "", std::nullopt}) ==
        "{\"status\":4,\"x-stream\":\"-1\",\"error\":\"NoSpace\"}\n");
}

TEST_CASE("final replies: done (with and without path), partial, error", "[uploads][xstream]") {
  const std::string sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  CHECK(final_done(kKey, sha, "/var/lib/edgelink/uploads/main_app/fw.bin") ==
        "{\"status\":0,\"x-stream-key\":\"q3JxVb0cT1m2Yk8wZr7e4A\",\"x-stream\":\"0:0\",\"sha256\":\"" + sha +
            "\",\"path\":\"/var/lib/edgelink/uploads/main_app/fw.bin\"}\n");
  CHECK(final_done("K", "ab", "") == "{\"status\":0,\"x-stream-key\":\"K\",\"x-stream\":\"0:0\",\"sha256\":\"ab\"}\n");
  CHECK(final_partial("K", 448576) ==
        "{\"status\":10,\"x-stream-key\":\"K\",\"x-stream\":\"448576:0\",\"error\":\"Partial\"}\n");
  CHECK(final_error(Status::Timeout, "K", 5, "idle") ==
        "{\"status\":6,\"x-stream-key\":\"K\",\"x-stream\":\"5:0\",\"error\":\"Timeout\",\"detail\":\"idle\"}\n");
  CHECK(final_error(Status::ChecksumMismatch, "K", 1048576, "") ==
        "{\"status\":7,\"x-stream-key\":\"K\",\"x-stream\":\"1048576:0\",\"error\":\"ChecksumMismatch\"}\n");
  CHECK(final_error(Status::Internal, "K", 0, "device mcu1: offline") ==
        "{\"status\":9,\"x-stream-key\":\"K\",\"x-stream\":\"0:0\",\"error\":\"Internal\","
        "\"detail\":\"device mcu1: offline\"}\n");
  CHECK(final_error(Status::NoSpace, "K", 18446744073709551615ull, "") ==
        "{\"status\":4,\"x-stream-key\":\"K\",\"x-stream\":\"18446744073709551615:0\",\"error\":\"NoSpace\"}\n");
}

TEST_CASE("progress_line (§6)", "[uploads][xstream]") {
  CHECK(progress_line(kKey, "/upload-file", "receive", 524288, 1048576, 50) ==
        "{\"edgelink\":{\"progress\":{\"x-stream-key\":\"q3JxVb0cT1m2Yk8wZr7e4A\",\"route\":\"/upload-file\","
        "\"phase\":\"receive\",\"bytes\":524288,\"total\":1048576,\"percent\":50}}}\n");
  CHECK(progress_line("K", "/device/mcu1/file", "device", 10, 10, 100) ==
        "{\"edgelink\":{\"progress\":{\"x-stream-key\":\"K\",\"route\":\"/device/mcu1/file\",\"phase\":\"device\","
        "\"bytes\":10,\"total\":10,\"percent\":100}}}\n");
}

TEST_CASE("every line ends with exactly one newline", "[uploads][xstream]") {
  for (const std::string& line : {negotiation_reply("K", 1, 1, 512, 0), refusal_reply({}),
                                  final_done("K", "a", "p"), final_partial("K", 1),
                                  final_error(Status::Busy, "K", 1, "d"), progress_line("K", "/r", "receive", 1, 2, 5)}) {
    REQUIRE_FALSE(line.empty());
    CHECK(line.back() == '\n');
    CHECK(line.find('\n') == line.size() - 1);
  }
}

TEST_CASE("to_string(Status) gives the wire names of §4", "[uploads][xstream]") {
  const char* names[] = {"OK",      "BadRequest", "UnknownRoute",     "TooLarge", "NoSpace", "UnknownKey",
                         "Timeout", "ChecksumMismatch", "Busy", "Internal", "Partial"};
  static_assert(static_cast<int>(std::size(names)) == kStatusCount);
  for (int s = 0; s < kStatusCount; ++s) CHECK(std::string(to_string(static_cast<Status>(s))) == names[s]);
}

TEST_CASE("progress_step: floor(20 x bytes / total), 20 at the end", "[uploads][xstream]") {
  CHECK(progress_step(0, 100) == 0);
  CHECK(progress_step(4, 100) == 0);
  CHECK(progress_step(5, 100) == 1);    // exactly 5 %
  CHECK(progress_step(50, 100) == 10);  // exactly 50 %
  CHECK(progress_step(95, 100) == 19);
  CHECK(progress_step(99, 100) == 19);
  CHECK(progress_step(100, 100) == 20);
  CHECK(progress_step(19, 20) == 19);  // 19 of 20
  CHECK(progress_step(20, 20) == 20);
  CHECK(progress_step(1, 20) == 1);
  CHECK(progress_step(0, 1) == 0);
  CHECK(progress_step(1, 1) == 20);
  CHECK(progress_step(1, 3) == 6);
  CHECK(progress_step(2, 3) == 13);
  CHECK(progress_step(1048575, 1048576) == 19);
  CHECK(progress_step(524288, 1048576) == 10);
  // Bytes past the total and an empty phase are at the end, not beyond it.
  CHECK(progress_step(101, 100) == 20);
  CHECK(progress_step(UINT64_MAX, 1) == 20);
  CHECK(progress_step(0, 0) == 20);
  CHECK(progress_step(5, 0) == 20);
  // No overflow in 20 x bytes.
  CHECK(progress_step(uint64_t{1} << 62, uint64_t{1} << 63) == 10);
  CHECK(progress_step((uint64_t{1} << 63) - 1, uint64_t{1} << 63) == 19);
  CHECK(progress_step(UINT64_MAX - 1, UINT64_MAX) == 19);
  // Every step from 0 to 20 is reached, once each, in order.
  for (uint64_t total : {20u, 21u, 37u, 100u, 1000u}) {
    INFO("total " << total);
    int last = 0;
    int steps = 0;
    for (uint64_t b = 0; b <= total; ++b) {
      const int s = progress_step(b, total);
      REQUIRE(s >= last);
      CHECK(s - last <= 1 + static_cast<int>(20 / total));
      CHECK(uint64_t(s) * total <= 20 * b);
      if (b < total) CHECK(20 * b < uint64_t(s + 1) * total);
      steps += s - last;
      last = s;
    }
    CHECK(last == 20);
    CHECK(steps == 20);
  }
}

// ---- key records (§9) ----

TEST_CASE("a file record whose name could leave its directory is no record", "[uploads][xstream]") {
  KeyRecord r = sample_record();
  r.kind = UploadKind::File;
  for (const char* name : {"fw.bin", "../etc/passwd", "a/b", ".hidden", ""}) {
    r.name = name;
    INFO(name);
    CHECK(decode_record(encode_record(r)).has_value() == (std::string(name) == "fw.bin"));
  }
}

TEST_CASE("key records round-trip for every state, kind and file type", "[uploads][xstream]") {
  KeyRecord r = sample_record();
  for (KeyState s : {KeyState::Receiving, KeyState::Stored, KeyState::Pushing, KeyState::Done, KeyState::Failed})
    for (UploadKind k : {UploadKind::File, UploadKind::Datastream, UploadKind::Device})
      for (DeviceFileType t : {DeviceFileType::Rtstream, DeviceFileType::Fs}) {
        r.state = s;
        r.kind = k;
        r.file_type = t;
        // A file record's name follows the request's rules (it becomes a path); the
        // others may hold any bytes.
        r.name = k == UploadKind::File ? "fw-1.0.bin" : sample_record().name;
        const std::string text = encode_record(r);
        INFO(text);
        CHECK(text.find(std::string("\"state\":\"") + to_string(s) + "\"") != std::string::npos);
        CHECK(text.find(std::string("\"kind\":\"") + to_string(k) + "\"") != std::string::npos);
        CHECK(text.find(std::string("\"file_type\":\"") + to_string(t) + "\"") != std::string::npos);
        auto back = decode_record(text);
        REQUIRE(back);
        check_same(*back, r);
        CHECK(encode_record(*back) == text);
      }
  CHECK(std::string(to_string(KeyState::Receiving)) == "receiving");
  CHECK(std::string(to_string(KeyState::Stored)) == "stored");
  CHECK(std::string(to_string(KeyState::Pushing)) == "pushing");
  CHECK(std::string(to_string(KeyState::Done)) == "done");
  CHECK(std::string(to_string(KeyState::Failed)) == "failed");
}

TEST_CASE("key records keep any bytes in their strings and the full number range", "[uploads][xstream]") {
  KeyRecord r = sample_record();
  const char raw[] = "nul\0 tab\t quote\" backslash\\ \xc3\xa9 \x01";
  r.name = std::string(raw, sizeof raw - 1);
  r.detail = std::string(1000, 'd');
  r.sha256.clear();
  r.total = UINT64_MAX;
  r.offset = UINT64_MAX;
  r.created = 0;
  r.last_activity = UINT64_MAX;
  const std::string text = encode_record(r);
  CHECK(text.find('\n') == std::string::npos);  // one line
  auto back = decode_record(text);
  REQUIRE(back);
  check_same(*back, r);
  // offset == total (all bytes stored) and offset 0 are records too.
  r.total = 1;
  r.offset = 1;
  CHECK(decode_record(encode_record(r)));
  r.offset = 0;
  CHECK(decode_record(encode_record(r)));
}

TEST_CASE("decode_record refuses what is not a complete record", "[uploads][xstream]") {
  const std::string good = encode_record(sample_record());
  REQUIRE(decode_record(good));
  auto broken = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    INFO(text);
    return decode_record(text).has_value();
  };
  CHECK_FALSE(decode_record(""));
  CHECK_FALSE(decode_record("not json"));
  CHECK_FALSE(decode_record("{}"));
  CHECK_FALSE(decode_record("[" + good + "]"));
  CHECK_FALSE(decode_record(good.substr(0, good.size() - 1)));  // truncated
  CHECK_FALSE(decode_record(good + "x"));
  // Every field is required.
  for (const char* field : {"key", "app", "route", "kind", "name", "total", "offset", "sha256", "state", "created",
                            "last_activity", "dir", "device", "file_type", "endpoint", "mime_type", "attributes",
                            "result_sha256", "path", "detail"}) {
    INFO(field);
    CHECK_FALSE(broken(std::string("\"") + field + "\":", "\"x_" + std::string(field) + "\":"));
  }
  // Values.
  CHECK_FALSE(broken("\"offset\":65536", "\"offset\":2000000"));  // above total
  CHECK_FALSE(broken("\"total\":1048576", "\"total\":0"));
  CHECK_FALSE(broken("\"total\":1048576", "\"total\":-1"));
  CHECK_FALSE(broken("\"total\":1048576", "\"total\":1048576.0"));
  CHECK_FALSE(broken("\"total\":1048576", "\"total\":\"1048576\""));
  CHECK_FALSE(broken("\"created\":1732180000123", "\"created\":null"));
  CHECK_FALSE(broken("\"key\":\"q3JxVb0cT1m2Yk8wZr7e4A\"", "\"key\":\"short\""));
  CHECK_FALSE(broken("\"key\":\"q3JxVb0cT1m2Yk8wZr7e4A\"", "\"key\":\"../../../../etc/passwd\""));
  CHECK_FALSE(broken("\"key\":\"q3JxVb0cT1m2Yk8wZr7e4A\"", "\"key\":5"));
  CHECK_FALSE(broken("\"kind\":\"device\"", "\"kind\":\"tape\""));
  CHECK_FALSE(broken("\"kind\":\"device\"", "\"kind\":\"Device\""));
  CHECK_FALSE(broken("\"file_type\":\"fs\"", "\"file_type\":\"ftp\""));
  CHECK_FALSE(broken("\"state\":\"receiving\"", "\"state\":\"lost\""));
  CHECK_FALSE(broken("\"state\":\"receiving\"", "\"state\":\"\""));
  CHECK_FALSE(broken("\"name\":", "\"name\":1,\"y\":"));
  // Unknown extra fields are fine (a newer version may add some).
  CHECK(broken("{\"key\"", "{\"extra\":[1,2],\"key\""));
}

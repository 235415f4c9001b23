#include "edgelink/uploads/xstream_request.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace edgelink;
using namespace edgelink::uploads;

namespace {

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
  UploadRouteConfig bare = dev;  // no endpoint, no file name
  bare.route = "/device/mcu2/file";
  bare.device = "mcu2";
  bare.endpoint.clear();
  bare.file_name.clear();
  return {file, dev, bare};
}

// The request parsed against routes(); fails the test when the line is not a request.
std::variant<StreamRequest, Refusal> request(const std::string& line) {
  static const auto r = routes();
  auto parsed = parse_stream_request(line, r);
  REQUIRE(parsed.has_value());
  return *parsed;
}

Status refused(const std::string& line) {
  auto v = request(line);
  REQUIRE(std::holds_alternative<Refusal>(v));
  return std::get<Refusal>(v).status;
}

StreamRequest accepted(const std::string& line) {
  auto v = request(line);
  if (auto* r = std::get_if<Refusal>(&v)) FAIL("refused: " << to_string(r->status) << " " << r->detail);
  return std::get<StreamRequest>(v);
}

}  // namespace

TEST_CASE("x-stream values (§12 item 12)", "[uploads]") {
  auto ok = [](std::string_view text, uint64_t total, uint32_t bufsize) {
    auto v = parse_xstream_value(text);
    REQUIRE(std::holds_alternative<XStreamValue>(v));
    CHECK(std::get<XStreamValue>(v).total == total);
    CHECK(std::get<XStreamValue>(v).bufsize == bufsize);
  };
  auto bad = [](std::string_view text, Status status) {
    INFO(text);
    auto v = parse_xstream_value(text);
    REQUIRE(std::holds_alternative<Status>(v));
    CHECK(std::get<Status>(v) == status);
  };
  ok("20000:4096", 20000, 4096);
  ok("20000", 20000, 4096);
  ok("007:16777216", 7, 16777216);
  bad("0", Status::BadRequest);
  bad("-1", Status::BadRequest);
  bad("1:0", Status::BadRequest);
  bad("20000:", Status::BadRequest);
  bad(":4096", Status::BadRequest);
  bad("+5", Status::BadRequest);
  bad("99999999999999999999", Status::TooLarge);
  bad("99999999999999999999:4096", Status::TooLarge);
  bad("99999999999999999999:0", Status::BadRequest);
  bad("\xd9\xa3", Status::BadRequest);      // ARABIC-INDIC DIGIT THREE
  bad("\xef\xbc\x91", Status::BadRequest);  // FULLWIDTH DIGIT ONE
  bad("1:16777217", Status::BadRequest);
  bad("", Status::BadRequest);
  bad("1 ", Status::BadRequest);
  bad("1:2:3", Status::BadRequest);
  CHECK(advised_bufsize(1) == 512);
  CHECK(advised_bufsize(4096) == 4096);
  CHECK(advised_bufsize(16777216) == 65536);
}

TEST_CASE("what is a stream request (§3)", "[uploads]") {
  const auto r = routes();
  CHECK_FALSE(parse_stream_request(R"({"stream":"imu","sequence":1,"timestamp":1})", r));
  CHECK_FALSE(parse_stream_request(R"({"route":"/upload-file","x-stream":"1","stream":"imu"})", r));
  CHECK_FALSE(parse_stream_request(R"({"route":"/upload-file"})", r));
  CHECK_FALSE(parse_stream_request(R"({"x-stream":"10"})", r));
  CHECK_FALSE(parse_stream_request(R"(["route","x-stream"])", r));
  CHECK_FALSE(parse_stream_request(R"({"route":"/upload-file","x-stream":"1")", r));
}

TEST_CASE("refusals in the order of §3: route, fields, size", "[uploads]") {
  CHECK(refused(R"({"route":"/nope","x-stream":"abc"})") == Status::UnknownRoute);
  CHECK(refused(R"({"route":7,"x-stream":"10"})") == Status::UnknownRoute);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"abc","name":"a"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":10,"name":"a"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"2000000","name":".a"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"2000000","name":"a"})") == Status::TooLarge);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"99999999999999999999","name":"a"})") == Status::TooLarge);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","data-format":"text"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","x-stream-key":5})") == Status::BadRequest);
  // The key is echoed in a refusal.
  auto v = request(R"({"route":"/nope","x-stream":"10","x-stream-key":"AAAAAAAAAAAAAAAAAAAAAA"})");
  REQUIRE(std::get<Refusal>(v).key == "AAAAAAAAAAAAAAAAAAAAAA");
  CHECK(refusal_reply(std::get<Refusal>(v)).find(R"("x-stream-key":"AAAAAAAAAAAAAAAAAAAAAA")") != std::string::npos);
}

TEST_CASE("file route fields", "[uploads]") {
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10"})") == Status::BadRequest);  // name required
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a/b"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":""})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":")" + std::string(129, 'a') + R"("})") ==
        Status::BadRequest);
  CHECK(accepted(R"({"route":"/upload-file","x-stream":"10","name":")" + std::string(128, 'a') + R"("})").name.size() ==
        128);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","sha256":"abc"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/upload-file","x-stream":"10","name":"a","sha256":")" + std::string(64, 'g') + R"("})") ==
        Status::BadRequest);
  const auto req = accepted(R"({"route":"/upload-file","x-stream":"1000000:1","name":"fw-1.0_a.bin","sha256":")" +
                            std::string(64, 'F') + R"(","data-format":"bytes"})");
  CHECK(req.total == 1000000);
  CHECK(req.bufsize == 1);
  CHECK(req.sha256 == std::string(64, 'f'));  // lower-cased
  CHECK(req.route->route == "/upload-file");
  // A resume takes the original's fields: a bad name is not looked at.
  const auto resume = accepted(R"({"route":"/upload-file","x-stream":"10","x-stream-key":"k","name":".bad"})");
  CHECK(resume.key == "k");
}

TEST_CASE("device route fields", "[uploads]") {
  auto req = accepted(R"({"route":"/device/mcu1/file","x-stream":"10"})");
  CHECK(req.name == "upload.bin");  // the route's file_name
  CHECK(req.endpoint == "filesink");
  CHECK(req.file_type == DeviceFileType::Rtstream);
  req = accepted(R"({"route":"/device/mcu1/file","x-stream":"10","name":"fw 2.bin","fileType":"fs"})");
  CHECK(req.name == "fw 2.bin");
  CHECK(req.file_type == DeviceFileType::Fs);
  CHECK(refused(R"({"route":"/device/mcu1/file","x-stream":"10","fileType":"zip"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/device/mcu2/file","x-stream":"10","endpoint":"filesink"})") == Status::BadRequest);
  CHECK(refused(R"({"route":"/device/mcu2/file","x-stream":"10","name":"a"})") == Status::BadRequest);  // no endpoint
  CHECK(accepted(R"({"route":"/device/mcu2/file","x-stream":"10","name":"a","fileType":"fs"})").file_type ==
        DeviceFileType::Fs);
  CHECK(refused(R"({"route":"/device/mcu1/file","x-stream":"16777216"})") == Status::TooLarge);
  CHECK(accepted(R"({"route":"/device/mcu1/file","x-stream":"16777215"})").total == 16777215);
}

TEST_CASE("keys and file names", "[uploads]") {
  CHECK(valid_key("q3JxVb0cT1m2Yk8wZr7e4A"));
  CHECK(valid_key("-_-_-_-_-_-_-_-_-_-_-_"));
  CHECK_FALSE(valid_key("q3JxVb0cT1m2Yk8wZr7e4"));
  CHECK_FALSE(valid_key("q3JxVb0cT1m2Yk8wZr7e4A="));
  CHECK_FALSE(valid_key("q3JxVb0cT1m2Yk8wZr7e+A"));
  CHECK(valid_file_name("fw.bin"));
  CHECK_FALSE(valid_file_name(".fw"));
  CHECK_FALSE(valid_file_name("a b"));
  CHECK_FALSE(valid_file_name("../x"));
}

TEST_CASE("reply lines (§3.1, §3.3, §6)", "[uploads]") {
  CHECK(negotiation_reply("K", 100, 100, 4096, 0) ==
        "{\"status\":0,\"x-stream\":\"0:4096\",\"x-stream-key\":\"K\",\"data-format\":\"bytes\",\"x-stream-offset\":0}\n");
  CHECK(negotiation_reply("K", 600000, 1048576, 4096, 0) ==
        "{\"status\":0,\"x-stream\":\"600000:4096\",\"x-stream-key\":\"K\",\"data-format\":\"bytes\",\"x-stream-offset\":0}\n");
  CHECK(refusal_reply({Status::UnknownRoute, "", std::nullopt}) ==
        "{\"status\":2,\"x-stream\":\"-1\",\"error\":\"UnknownRoute\"}\n");
  CHECK(refusal_reply({Status::Busy, "in use", std::string("K")}) ==
        "{\"status\":8,\"x-stream\":\"-1\",\"error\":\"Busy\",\"x-stream-key\":\"K\",\"detail\":\"in use\"}\n");
  CHECK(final_done("K", "ab", "/p/f") ==
        "{\"status\":0,\"x-stream-key\":\"K\",\"x-stream\":\"0:0\",\"sha256\":\"ab\",\"path\":\"/p/f\"}\n");
  CHECK(final_done("K", "ab", "") == "{\"status\":0,\"x-stream-key\":\"K\",\"x-stream\":\"0:0\",\"sha256\":\"ab\"}\n");
  CHECK(final_partial("K", 448576) ==
        "{\"status\":10,\"x-stream-key\":\"K\",\"x-stream\":\"448576:0\",\"error\":\"Partial\"}\n");
  CHECK(final_error(Status::Timeout, "K", 5, "idle") ==
        "{\"status\":6,\"x-stream-key\":\"K\",\"x-stream\":\"5:0\",\"error\":\"Timeout\",\"detail\":\"idle\"}\n");
  CHECK(progress_line("K", "/r", "receive", 50, 100, 50) ==
        "{\"edgelink\":{\"progress\":{\"x-stream-key\":\"K\",\"route\":\"/r\",\"phase\":\"receive\",\"bytes\":50,"
        "\"total\":100,\"percent\":50}}}\n");
  for (int s = 0; s < kStatusCount; ++s) CHECK(std::string(to_string(static_cast<Status>(s))) != "");
}

TEST_CASE("progress steps: floor(20 x bytes / total)", "[uploads]") {
  CHECK(progress_step(0, 100) == 0);
  CHECK(progress_step(4, 100) == 0);
  CHECK(progress_step(5, 100) == 1);
  CHECK(progress_step(99, 100) == 19);
  CHECK(progress_step(100, 100) == 20);
  CHECK(progress_step(1, 3) == 6);
  CHECK(progress_step(uint64_t{1} << 62, uint64_t{1} << 63) == 10);  // no overflow
}

TEST_CASE("key records round-trip and refuse what is not one (§9)", "[uploads]") {
  KeyRecord r;
  r.key = "q3JxVb0cT1m2Yk8wZr7e4A";
  r.app = "main_app";
  r.route = "/device/mcu1/file";
  r.kind = UploadKind::Device;
  r.name = "fw \"1\".bin";
  r.total = 1048576;
  r.offset = 65536;
  r.sha256 = std::string(64, 'a');
  r.created = 1732180000123;
  r.last_activity = 1732180001000;
  r.device = "mcu1";
  r.file_type = DeviceFileType::Fs;
  r.endpoint = "filesink";
  r.detail = "device mcu1: offline";
  for (KeyState s : {KeyState::Receiving, KeyState::Stored, KeyState::Pushing, KeyState::Done, KeyState::Failed}) {
    r.state = s;
    auto back = decode_record(encode_record(r));
    REQUIRE(back);
    CHECK(encode_record(*back) == encode_record(r));
    CHECK(back->state == s);
  }
  const std::string good = encode_record(r);
  auto broken = [&](std::string from, std::string to) {
    std::string text = good;
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    return decode_record(text).has_value();
  };
  CHECK_FALSE(decode_record("not json"));
  CHECK_FALSE(decode_record("{}"));
  CHECK_FALSE(broken("\"offset\":65536", "\"offset\":2000000"));
  CHECK_FALSE(broken("\"total\":1048576", "\"total\":0"));
  CHECK_FALSE(broken("q3JxVb0cT1m2Yk8wZr7e4A", "short"));
  CHECK_FALSE(broken("\"kind\":\"device\"", "\"kind\":\"tape\""));
  CHECK_FALSE(broken("\"file_type\":\"fs\"", "\"file_type\":\"ftp\""));
  CHECK_FALSE(broken("\"state\":\"failed\"", "\"state\":\"lost\""));
  CHECK_FALSE(broken("\"app\":\"main_app\",", ""));
}

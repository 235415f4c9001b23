#include "edgelink/devices/ricrest.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "edgelink/devices/hdlc.hpp"
#include "spec_vectors.hpp"

using namespace edgelink::devices;
using edgelink::devices::test::bytes;
using edgelink::devices::test::hex;
using edgelink::devices::test::SpecVector;

namespace {

std::vector<uint8_t> framed(const std::vector<uint8_t>& message) {
  std::vector<uint8_t> out;
  hdlc_encode(message, out);
  return out;
}

// The message inside a vector's frame (vectors without a "raw" line).
std::vector<uint8_t> message_of(const SpecVector& v) {
  HdlcDecoder dec;
  const auto f = hex(v.framed);
  const auto r = dec.next(f);
  REQUIRE(r.status == HdlcDecoder::Status::Frame);
  return {r.frame.begin(), r.frame.end()};
}

RicMessage decode_ok(const std::vector<uint8_t>& message) {
  auto r = decode_message(message);
  if (const auto* e = std::get_if<RicError>(&r)) FAIL("decode failed: " << to_string(e->code) << " " << e->what);
  return std::get<RicMessage>(r);
}
// The decoded views point into `message`: refuse temporaries.
RicMessage decode_ok(std::vector<uint8_t>&& message) = delete;

RicErrorCode decode_error(const std::vector<uint8_t>& message) {
  auto r = decode_message(message);
  REQUIRE(std::holds_alternative<RicError>(r));
  return std::get<RicError>(r).code;
}

template <typename T>
T ok(std::variant<T, RicError> r) {
  if (const auto* e = std::get_if<RicError>(&r)) FAIL("failed: " << to_string(e->code) << " " << e->what);
  return std::get<T>(std::move(r));
}

template <typename T>
RicError err(std::variant<T, RicError> r) {
  REQUIRE(std::holds_alternative<RicError>(r));
  return std::get<RicError>(r);
}

std::string_view text_of(const RicMessage& m) {
  if (const auto* j = std::get_if<CmdRespJsonElement>(&m.body)) return j->json;
  if (const auto* c = std::get_if<CommandFrameElement>(&m.body)) return c->json;
  FAIL("not a JSON element");
  return {};
}

DeviceReply reply_of(const SpecVector& v) {
  const auto message = message_of(v);
  return ok(parse_reply(text_of(decode_ok(message))));
}

std::vector<uint8_t> to_vec(std::span<const uint8_t> s) { return {s.begin(), s.end()}; }

}  // namespace

TEST_CASE("V1 URL request v", "[ricrest][vector]") {
  std::vector<uint8_t> m;
  REQUIRE(encode_url(m, 1, "v"));
  CHECK(m == hex(test::kV1.raw));
  CHECK(framed(m) == hex(test::kV1.framed));
  const auto d = decode_ok(m);
  CHECK(d.header.msg_num == 1);
  CHECK(d.header.msg_type == RicMsgType::Command);
  CHECK(d.header.protocol == ric_protocol::kRicRest);
  REQUIRE(std::holds_alternative<UrlElement>(d.body));
  CHECK(std::get<UrlElement>(d.body).url == "v");
}

TEST_CASE("V2 ufStart for an rtstream", "[ricrest][vector]") {
  const std::string json = ufstart_rtstream_json("upyconsole", "upyconsole");
  CHECK(json == test::kV2.json);
  std::vector<uint8_t> m;
  REQUIRE(encode_command_frame(m, 2, json));
  CHECK(framed(m) == hex(test::kV2.framed));
  const auto d = decode_ok(m);
  CHECK(d.header.msg_num == 2);
  REQUIRE(std::holds_alternative<CommandFrameElement>(d.body));
  CHECK(std::get<CommandFrameElement>(d.body).json == json);
  CHECK(std::get<CommandFrameElement>(d.body).tail.empty());
}

TEST_CASE("V3 ufStart reply", "[ricrest][vector]") {
  CHECK(ufstart_ok_json(1) == test::kV3.json);
  std::vector<uint8_t> m;
  REQUIRE(encode_cmdresp(m, {2, RicMsgType::Response, ric_protocol::kRicRest}, ufstart_ok_json(1)));
  CHECK(framed(m) == hex(test::kV3.framed));
  const auto d = decode_ok(m);
  CHECK(d.header.msg_num == 2);
  CHECK(d.header.msg_type == RicMsgType::Response);
  const auto reply = reply_of(test::kV3);
  CHECK(reply.ok());
  const auto start = ok(parse_ufstart_reply(reply));
  CHECK(start.ok);
  CHECK(start.stream_id == 1);
  CHECK(start.max_block_size == 475);  // no maxBlockSize in the reply
}

TEST_CASE("V4 FILEBLOCK streamID 1 pos 0x400 hello", "[ricrest][vector]") {
  std::vector<uint8_t> m;
  REQUIRE(encode_file_block(m, 1, 0x400, bytes("hello")));
  CHECK(m == hex(test::kV4.raw));
  CHECK(framed(m) == hex(test::kV4.framed));
  const auto d = decode_ok(m);
  CHECK(d.header.msg_num == 0);
  const auto& fb = std::get<FileBlockElement>(d.body);
  CHECK(fb.stream_id == 1);
  CHECK(fb.pos == 1024);
  CHECK(to_vec(fb.data) == bytes("hello"));
}

TEST_CASE("V5 FILEBLOCK with escaped payload bytes", "[ricrest][vector]") {
  std::vector<uint8_t> m;
  REQUIRE(encode_file_block(m, 1, 0, hex("E7 D7 41")));
  CHECK(m == hex(test::kV5.raw));
  CHECK(framed(m) == hex(test::kV5.framed));
  CHECK(to_vec(std::get<FileBlockElement>(decode_ok(m).body).data) == hex("E7 D7 41"));
}

TEST_CASE("V6 escaped CRC byte", "[ricrest][vector]") {
  std::vector<uint8_t> m;
  REQUIRE(encode_file_block(m, 1, 0, hex("54")));
  CHECK(m == hex(test::kV6.raw));
  CHECK(crc16_ccitt(m) == 0xE75C);
  CHECK(framed(m) == hex(test::kV6.framed));
}

TEST_CASE("V7 sokto BUSY", "[ricrest][vector]") {
  CHECK(sokto_json(1, 10, "BUSY") == test::kV7.json);
  std::vector<uint8_t> m;
  REQUIRE(encode_cmdresp(m, {0, RicMsgType::Response, ric_protocol::kRicRest}, sokto_json(1, 10, "BUSY")));
  CHECK(framed(m) == hex(test::kV7.framed));
  const auto n = ok(parse_block_notice(reply_of(test::kV7)));
  CHECK(n.kind == BlockNoticeKind::Busy);
  CHECK(n.stream_id == 1);
  CHECK(n.position == 10);
  CHECK(n.reason == StreamReason::Busy);
}

TEST_CASE("V8 sokto POS_MISMATCH", "[ricrest][vector]") {
  CHECK(sokto_json(1, 10, "POS_MISMATCH") == test::kV8.json);
  std::vector<uint8_t> m;
  REQUIRE(encode_cmdresp(m, {0, RicMsgType::Response, ric_protocol::kRicRest}, sokto_json(1, 10, "POS_MISMATCH")));
  CHECK(framed(m) == hex(test::kV8.framed));
  const auto n = ok(parse_block_notice(reply_of(test::kV8)));
  CHECK(n.kind == BlockNoticeKind::PosMismatch);
  CHECK(n.stream_id == 1);
  CHECK(n.position == 10);
}

TEST_CASE("V9 device-to-client rtstream data", "[ricrest][vector]") {
  std::vector<uint8_t> m;
  REQUIRE(encode_file_block(m, 1, 0, bytes("ok\r\n>>> ")));
  CHECK(m == hex(test::kV9.raw));
  CHECK(framed(m) == hex(test::kV9.framed));
  const auto raw = hex(test::kV9.raw);
  const auto d = decode_ok(raw);
  CHECK(d.header.msg_type == RicMsgType::Command);  // device blocks use COMMAND too
  const auto& fb = std::get<FileBlockElement>(d.body);
  CHECK(fb.stream_id == 1);
  CHECK(fb.pos == 0);
  CHECK(to_vec(fb.data) == bytes("ok\r\n>>> "));
}

TEST_CASE("V10 ufEnd for streamID 1", "[ricrest][vector]") {
  CHECK(ufend_json(1) == test::kV10.json);
  std::vector<uint8_t> m;
  REQUIRE(encode_command_frame(m, 3, ufend_json(1)));
  CHECK(framed(m) == hex(test::kV10.framed));
}

TEST_CASE("V10 reply ufEnd reply keeps the streamID", "[ricrest][vector]") {
  CHECK(session_cmd_reply_json("ufEnd", 1) == test::kV10Reply.json);
  std::vector<uint8_t> m;
  REQUIRE(encode_cmdresp(m, {3, RicMsgType::Response, ric_protocol::kRicRest}, session_cmd_reply_json("ufEnd", 1)));
  CHECK(framed(m) == hex(test::kV10Reply.framed));
  const auto r = reply_of(test::kV10Reply);
  CHECK(r.req == "ufEnd");
  CHECK(r.rslt == Rslt::Ok);
  CHECK(r.stream_id == 1);  // present: the session is alive

  // The additional check value: a ufEnd for a session that no longer exists.
  CHECK(session_cmd_reply_json("ufEnd", std::nullopt) == R"({"req":"ufEnd","rslt":"ok"})");
  const auto gone = ok(parse_reply(R"({"req":"ufEnd","rslt":"ok"})"));
  CHECK(gone.ok());
  CHECK_FALSE(gone.stream_id.has_value());
}

TEST_CASE("V11 block for an unknown streamID", "[ricrest][vector]") {
  CHECK(block_fail_json(9, "SESSION_NOT_FOUND") == test::kV11.json);
  std::vector<uint8_t> m;
  REQUIRE(encode_cmdresp(m, {0, RicMsgType::Response, ric_protocol::kRicRest},
                         block_fail_json(9, "SESSION_NOT_FOUND")));
  CHECK(framed(m) == hex(test::kV11.framed));
  const auto n = ok(parse_block_notice(reply_of(test::kV11)));
  CHECK(n.kind == BlockNoticeKind::Failed);
  CHECK(n.stream_id == 9);
  CHECK(n.reason == StreamReason::SessionNotFound);
  CHECK(n.reason_text == "SESSION_NOT_FOUND");
}

TEST_CASE("V12 publish frame devjson", "[ricrest][vector]") {
  std::vector<uint8_t> m;
  encode_publish(m, bytes(R"({"_t":0,"_v":1})"));
  CHECK(m == hex(test::kV12.raw));
  CHECK(framed(m) == hex(test::kV12.framed));
  const auto d = decode_ok(m);
  CHECK(d.header.msg_type == RicMsgType::Publish);
  CHECK(d.header.protocol == ric_protocol::kRosSerial);
  const auto& raw = std::get<RawPayload>(d.body);
  const auto p = ok(parse_publish(raw.bytes));
  CHECK(p.format == PublishFormat::Json);
  CHECK(p.topic_idx == 0);
  CHECK(p.version == 1);
}

TEST_CASE("V13 shutdown report", "[ricrest][vector]") {
  CHECK(shutdown_report_json(true, "RestartRequested") == test::kV13.json);
  std::vector<uint8_t> m;
  REQUIRE(encode_cmdresp(m, {0, RicMsgType::Report, ric_protocol::kRicRest},
                         shutdown_report_json(true, "RestartRequested")));
  CHECK(m[1] == 0xC2);
  CHECK(framed(m) == hex(test::kV13.framed));
  const auto message = message_of(test::kV13);
  const auto d = decode_ok(message);
  CHECK(d.header.msg_type == RicMsgType::Report);
  const auto r = ok(parse_report(text_of(d)));
  CHECK(r.is_shutdown());
  CHECK(r.is_restart);
  CHECK(r.reason == "RestartRequested");
}

TEST_CASE("V14 subscription command frame", "[ricrest][vector]") {
  const PubRec rec{"devjson", "timeorchange", 0.1, 10};
  const std::string json = subscription_json(std::span<const PubRec>(&rec, 1));
  CHECK(json == test::kV14.json);
  std::vector<uint8_t> m;
  REQUIRE(encode_command_frame(m, 4, json));
  CHECK(framed(m) == hex(test::kV14.framed));
}

TEST_CASE("every framed spec vector decodes as a RICSerial message", "[ricrest][vector]") {
  for (const SpecVector* v : test::kAllFramedVectors) {
    INFO(v->name);
    const auto message = message_of(*v);
    const auto d = decode_ok(message);
    std::vector<uint8_t> again;
    REQUIRE(encode_message(again, d));
    CHECK(again == message);
  }
}

TEST_CASE("header byte values of §4.1", "[ricrest]") {
  struct Case {
    uint8_t byte;
    RicMsgType type;
    uint8_t protocol;
  };
  for (const Case c : {Case{0x02, RicMsgType::Command, 2}, Case{0x42, RicMsgType::Response, 2},
                       Case{0xC2, RicMsgType::Report, 2}, Case{0x80, RicMsgType::Publish, 0},
                       Case{0x03, RicMsgType::Command, 3}}) {
    const std::vector<uint8_t> m = {7, c.byte, 0xAA};
    auto r = decode_message(m);
    if (c.protocol == ric_protocol::kRicRest) {
      // 0xAA is no element code: the header still has to parse first.
      CHECK(std::get<RicError>(r).code == RicErrorCode::UnknownElement);
      continue;
    }
    const auto d = std::get<RicMessage>(r);
    CHECK(d.header.msg_num == 7);
    CHECK(d.header.msg_type == c.type);
    CHECK(d.header.protocol == c.protocol);
    CHECK(to_vec(std::get<RawPayload>(d.body).bytes) == std::vector<uint8_t>{0xAA});
  }
}

TEST_CASE("malformed messages give typed errors", "[ricrest]") {
  CHECK(decode_error({}) == RicErrorCode::Truncated);
  CHECK(decode_error({0x01}) == RicErrorCode::Truncated);
  CHECK(decode_error({0x01, 0x02}) == RicErrorCode::Truncated);              // no element code
  CHECK(decode_error({0x01, 0x02, 0x05}) == RicErrorCode::UnknownElement);   // code 5
  CHECK(decode_error({0x01, 0x02, 0x00, 'v'}) == RicErrorCode::MissingTerminator);
  CHECK(decode_error({0x01, 0x42, 0x01, '{', '}'}) == RicErrorCode::MissingTerminator);
  CHECK(decode_error({0x01, 0x02, 0x03}) == RicErrorCode::MissingTerminator);
  CHECK(decode_error({0x00, 0x02, 0x04, 0x01, 0x00, 0x00}) == RicErrorCode::Truncated);  // 3 of 4 position bytes
  CHECK(decode_error({0x00, 0x02, 0x02, 0, 0, 0, 0, 0, 0, 0}) == RicErrorCode::Truncated);  // BODY needs 8
}

TEST_CASE("edge cases that decode", "[ricrest]") {
  SECTION("an empty block decodes (the device answers INVALID_DATA)") {
    const std::vector<uint8_t> m = {0x00, 0x02, 0x04, 0x01, 0x00, 0x00, 0x05};
    const auto d = decode_ok(m);
    const auto& fb = std::get<FileBlockElement>(d.body);
    CHECK(fb.stream_id == 1);
    CHECK(fb.pos == 5);
    CHECK(fb.data.empty());
  }
  SECTION("position and streamID split from one BE u32") {
    const std::vector<uint8_t> m = {0x00, 0x02, 0x04, 0xFE, 0xFF, 0xFF, 0xFF, 0x42};
    const auto d = decode_ok(m);
    const auto& fb = std::get<FileBlockElement>(d.body);
    CHECK(fb.stream_id == 254);
    CHECK(fb.pos == 0xFFFFFF);
  }
  SECTION("text stops at the first 0x00; a command frame keeps its binary tail") {
    const std::vector<uint8_t> m1 = {0x05, 0x02, 0x00, 'v', 0x00, 'x', 0x00};
    const auto url = decode_ok(m1);
    CHECK(std::get<UrlElement>(url.body).url == "v");
    const std::vector<uint8_t> m2 = {0x05, 0x02, 0x03, '{', '}', 0x00, 0x01, 0x02};
    const auto cf = decode_ok(m2);
    CHECK(std::get<CommandFrameElement>(cf.body).json == "{}");
    CHECK(to_vec(std::get<CommandFrameElement>(cf.body).tail) == std::vector<uint8_t>{1, 2});
  }
  SECTION("BODY element") {
    const std::vector<uint8_t> m = {0x05, 0x02, 0x02, 0, 0, 0, 9, 0, 0, 1, 0, 0xAB};
    const auto d = decode_ok(m);
    const auto& b = std::get<BodyElement>(d.body);
    CHECK(b.buffer_pos == 9);
    CHECK(b.total_bytes == 256);
    CHECK(to_vec(b.data) == std::vector<uint8_t>{0xAB});
  }
}

TEST_CASE("encoders refuse what the wire cannot carry and append nothing", "[ricrest]") {
  std::vector<uint8_t> out = {0x99};
  CHECK_FALSE(encode_url(out, 1, std::string_view("a\0b", 3)));
  CHECK_FALSE(encode_command_frame(out, 1, std::string_view("{\0}", 3)));
  CHECK_FALSE(encode_file_block(out, 1, 0x1000000, bytes("x")));  // 25-bit position
  CHECK_FALSE(encode_file_block(out, 1, 0, {}));                   // empty block
  CHECK_FALSE(encode_file_block(out, 0, 0, bytes("x")));           // stream 0 on data
  CHECK_FALSE(encode_cmdresp(out, {0, RicMsgType::Response, 0x40}, "{}"));
  CHECK_FALSE(encode_cmdresp(out, {0, RicMsgType::Response, ric_protocol::kRosSerial}, "{}"));
  CHECK_FALSE(encode_message(out, {{0, RicMsgType::Command, ric_protocol::kRicRest}, RawPayload{}}));
  CHECK_FALSE(encode_message(out, {{0, RicMsgType::Publish, 0}, UrlElement{"v"}}));
  CHECK(out == std::vector<uint8_t>{0x99});
  // The largest position still fits.
  CHECK(encode_file_block(out, 254, 0xFFFFFF, bytes("x")));
  CHECK(out == std::vector<uint8_t>{0x99, 0x00, 0x02, 0x04, 0xFE, 0xFF, 0xFF, 0xFF, 'x'});
}

TEST_CASE("reply JSON: fields, key order independence and bad input", "[ricrest]") {
  SECTION("fields in any order") {
    const auto r = ok(parse_reply(R"({"rslt":"ok","sokto":16777216,"streamID":3,"req":"ufBlock","reason":"POS_MISMATCH"})"));
    CHECK(r.req == "ufBlock");
    CHECK(r.stream_id == 3);
    CHECK(r.sokto == 16777216u);
    CHECK(ok(parse_block_notice(r)).kind == BlockNoticeKind::PosMismatch);
  }
  SECTION("rslt absent counts as ok; unknown rslt does not") {
    CHECK(ok(parse_reply(R"({"topics":[]})")).ok());
    CHECK(ok(parse_reply(R"({"rslt":"maybe"})")).rslt == Rslt::Other);
    CHECK_FALSE(ok(parse_reply(R"({"rslt":"maybe"})")).ok());
    CHECK(ok(parse_reply(R"({"req":"x","rslt":"fail","error":"failUnknownAPI"})")).error == "failUnknownAPI");
  }
  SECTION("subscription topics") {
    const auto r = ok(parse_reply(R"({"req":"subscription","rslt":"ok","topics":[{"name":"devjson","idx":0},{"name":"devbin","idx":1}]})"));
    REQUIRE(r.topics.size() == 2);
    CHECK(r.topics[1].name == "devbin");
    CHECK(r.topics[1].idx == 1);
  }
  SECTION("malformed") {
    CHECK(err(parse_reply("")).code == RicErrorCode::BadJson);
    CHECK(err(parse_reply("{\"req\":")).code == RicErrorCode::BadJson);
    CHECK(err(parse_reply("{} trailing")).code == RicErrorCode::BadJson);
    CHECK(err(parse_reply("\"\xff\"")).code == RicErrorCode::BadJson);  // invalid UTF-8
    CHECK(err(parse_reply("[1,2]")).code == RicErrorCode::NotAnObject);
    CHECK(err(parse_reply(R"({"req":5})")).what == "req");
    CHECK(err(parse_reply(R"({"streamID":"1"})")).code == RicErrorCode::BadField);
    CHECK(err(parse_reply(R"({"streamID":256})")).code == RicErrorCode::BadField);
    CHECK(err(parse_reply(R"({"streamID":-1})")).code == RicErrorCode::BadField);
    CHECK(err(parse_reply(R"({"sokto":4294967296})")).code == RicErrorCode::BadField);
    CHECK(err(parse_reply(R"({"sokto":1.5})")).code == RicErrorCode::BadField);
    CHECK(err(parse_reply(R"({"topics":[{"name":"x"}]})")).what == "topics");
  }
  SECTION("deep nesting neither crashes nor recurses") {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    CHECK(err(parse_reply(deep)).code == RicErrorCode::NotAnObject);
  }
}

TEST_CASE("block notices of §5.4 and §5.5", "[ricrest]") {
  SECTION("end-of-stream sokto") {
    const auto n = ok(parse_block_notice(ok(parse_reply(sokto_json(2, 100, "")))));
    CHECK(n.kind == BlockNoticeKind::EndOfStream);
    CHECK(n.position == 100);
  }
  SECTION("empty block: INVALID_DATA without a streamID") {
    const auto n = ok(parse_block_notice(ok(parse_reply(empty_block_json()))));
    CHECK(n.kind == BlockNoticeKind::Failed);
    CHECK(n.reason == StreamReason::InvalidData);
    CHECK_FALSE(n.stream_id.has_value());
  }
  SECTION("hard failure with any reason string") {
    const auto n = ok(parse_block_notice(ok(parse_reply(block_fail_json(4, "INSUFFICIENT_RESOURCE")))));
    CHECK(n.kind == BlockNoticeKind::Failed);
    CHECK(n.reason == StreamReason::Other);
    CHECK(n.reason_text == "INSUFFICIENT_RESOURCE");
    CHECK(ok(parse_block_notice(ok(parse_reply(block_fail_json(4, "INVALID_OPERATION"))))).reason ==
          StreamReason::InvalidOperation);
  }
  SECTION("OKTO acknowledgement") {
    const auto n = ok(parse_block_notice(ok(parse_reply(R"({"req":"ufBlock","okto":800,"rslt":"ok"})"))));
    CHECK(n.kind == BlockNoticeKind::Okto);
    CHECK(n.position == 800);
  }
  SECTION("unexpected sokto reason is kept") {
    const auto n = ok(parse_block_notice(ok(parse_reply(sokto_json(1, 5, "OTHER_FAILURE")))));
    CHECK(n.kind == BlockNoticeKind::SoktoOther);
  }
  SECTION("not block notices") {
    CHECK(err(parse_block_notice(ok(parse_reply(ufstart_ok_json(1))))).what == "req");
    CHECK(err(parse_block_notice(ok(parse_reply(R"({"req":"ufBlock","streamID":1,"rslt":"ok"})")))).what ==
          "sokto");
    CHECK(err(parse_block_notice(ok(parse_reply(R"({"req":"ufBlock","sokto":3,"rslt":"ok"})")))).what ==
          "streamID");
    CHECK(err(parse_block_notice(ok(parse_reply(R"({"req":"ufBlock","reason":"BUSY","rslt":"fail"})")))).what ==
          "streamID");
    CHECK(err(parse_block_notice(ok(parse_reply(R"({"req":"ufBlock","streamID":1,"sokto":3})")))).what == "rslt");
  }
}

TEST_CASE("ufStart replies", "[ricrest]") {
  SECTION("session limit") {
    CHECK(session_not_started_json() == R"({"req":"ufStart","reason":"sessionNotStarted","rslt":"fail"})");
    const auto r = ok(parse_ufstart_reply(ok(parse_reply(session_not_started_json()))));
    CHECK_FALSE(r.ok);
    CHECK(r.reason == StreamReason::SessionNotStarted);
  }
  SECTION("a smaller maxBlockSize is honoured, a larger one is not") {
    CHECK(ok(parse_ufstart_reply(ok(parse_reply(R"({"req":"ufStart","streamID":3,"maxBlockSize":200,"rslt":"ok"})"))))
              .max_block_size == 200);
    CHECK(ok(parse_ufstart_reply(ok(parse_reply(R"({"req":"ufStart","streamID":3,"maxBlockSize":4000,"rslt":"ok"})"))))
              .max_block_size == 475);
  }
  SECTION("bad ok replies") {
    CHECK(err(parse_ufstart_reply(ok(parse_reply(R"({"req":"ufStart","rslt":"ok"})")))).code ==
          RicErrorCode::MissingField);
    CHECK(err(parse_ufstart_reply(ok(parse_reply(R"({"req":"ufStart","streamID":0,"rslt":"ok"})")))).code ==
          RicErrorCode::BadField);
    CHECK(err(parse_ufstart_reply(ok(parse_reply(R"({"req":"ufStart","streamID":255,"rslt":"ok"})")))).code ==
          RicErrorCode::BadField);
    CHECK(err(parse_ufstart_reply(ok(parse_reply(R"({"req":"ufEnd","streamID":1,"rslt":"ok"})")))).what == "req");
  }
  SECTION("no rslt is not an open") {
    CHECK_FALSE(ok(parse_ufstart_reply(ok(parse_reply(R"({"req":"ufStart","streamID":1})")))).ok);
  }
}

TEST_CASE("reports", "[ricrest]") {
  CHECK(shutdown_report_json(false, "") == R"({"msgType":"sysevent","msgName":"shutdown","isRestart":0})");
  const auto r = ok(parse_report(R"({"msgType":"sysevent","msgName":"shutdown","isRestart":true})"));
  CHECK(r.is_restart);
  CHECK(r.is_shutdown());
  CHECK_FALSE(ok(parse_report(R"({"msgType":"other","msgName":"shutdown"})")).is_shutdown());
  CHECK(err(parse_report(R"({"msgName":"shutdown"})")).what == "msgType");
  CHECK(err(parse_report(R"({"msgType":"sysevent","isRestart":"yes"})")).what == "isRestart");
  CHECK(err(parse_report("nope")).code == RicErrorCode::BadJson);
}

TEST_CASE("publish payloads: devjson and devbin", "[ricrest]") {
  SECTION("devbin records") {
    // magic v1, topic 2, one online record on bus 1 addr 0x48 type 7 with 2 data bytes
    const auto payload = hex("DB 02  00 09  81 00 00 00 48 00 07 AB CD");
    const auto p = ok(parse_publish(payload));
    CHECK(p.format == PublishFormat::DevBin);
    CHECK(p.version == 1);
    CHECK(p.topic_idx == 2);
    REQUIRE(p.records.size() == 1);
    CHECK(p.records[0].bus == 1);
    CHECK(p.records[0].online);
    CHECK(p.records[0].addr == 0x48);
    CHECK(p.records[0].dev_type_idx == 7);
    CHECK(to_vec(p.records[0].data) == hex("AB CD"));
    CHECK_FALSE(ok(parse_publish(hex("DF FF"))).topic_idx.has_value());
  }
  SECTION("malformed") {
    CHECK(err(parse_publish({})).code == RicErrorCode::Truncated);
    CHECK(err(parse_publish(hex("DA 00"))).code == RicErrorCode::BadField);
    CHECK(err(parse_publish(hex("DB"))).code == RicErrorCode::Truncated);
    CHECK(err(parse_publish(hex("DB 00 00 09 81 00"))).code == RicErrorCode::Truncated);
    CHECK(err(parse_publish(hex("DB 00 00 02 81 00"))).code == RicErrorCode::Truncated);  // len < 7
    CHECK(err(parse_publish(bytes("{\"_t\":"))).code == RicErrorCode::BadJson);
    CHECK(err(parse_publish(bytes("{\"_t\":\"0\"}"))).what == "_t");
  }
}

TEST_CASE("JSON and URL text helpers", "[ricrest]") {
  CHECK(json_quote("a\"b\\c\n\x01") == R"("a\"b\\c\u000a\u0001")");
  CHECK(ufstart_rtstream_json("a\"b", "e", 12) ==
        R"({"cmdName":"ufStart","reqStr":"ufStart","fileType":"rtstream","fileName":"a\"b","endpoint":"e","fileLen":12})");
  CHECK(ok(parse_reply(R"({"req":"a\"b"})")).req == "a\"b");
  CHECK(url_encode_component("print(1 & 2)%#\r") == "print%281%20%26%202%29%25%23%0D");
  CHECK(url_encode_component("Az09-_.~") == "Az09-_.~");
  CHECK(ufcancel_json(7) == R"({"cmdName":"ufCancel","reqStr":"ufCancel","streamID":7})");
  const PubRec recs[] = {{"a", "change", 2.5, 0}, {"b", "time", 0, 50}};
  CHECK(subscription_json(recs) ==
        R"({"cmdName":"subscription","action":"update","pubRecs":[{"name":"a","trigger":"change","rateHz":2.5,"minMs":0},{"name":"b","trigger":"time","rateHz":0,"minMs":50}]})");
  CHECK(subscription_json({}) == R"({"cmdName":"subscription","action":"update","pubRecs":[]})");
}

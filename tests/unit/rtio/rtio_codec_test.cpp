// Tests for the RTIO codecs: the vectors R1–R9 of spec/http-api.md §6.7 byte for byte,
// the stream decoder's bounds and slicing, and the verify/ping body rules (§6.2).

#include "edgelink/rtio/rtio_codec.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace edgelink::rtio;
using edgelink::http::Code;
using namespace std::string_literals;

namespace {

// "71 00 01 00 0a" -> the bytes. Spaces are ignored; the texts are lower-case hex.
// (No REQUIRE here: kR6Body is built before any test runs.)
std::string hex(std::string_view text) {
  std::string out;
  int high = -1;
  for (const char c : text) {
    if (c == ' ') continue;
    const int v = c >= '0' && c <= '9' ? c - '0' : c - 'a' + 10;
    if (high < 0) {
      high = v;
    } else {
      out += static_cast<char>(high << 4 | v);
      high = -1;
    }
  }
  return out;
}

std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

constexpr const char* kR6Text = "cfa09baa-4913-4ad7-a936-3e26f9671b09:example-secret-0123456789";

// R6's 63-byte body: CL byte 0, then the id, ':' and the secret, as ASCII hex.
const std::string kR6Body = hex(
    "00"
    "63 66 61 30 39 62 61 61 2d 34 39 31 33 2d 34 61 64 37 2d 61 39 33 36 2d 33 65 32 36 66 39 36 37 31 62 30 39"
    "3a"
    "65 78 61 6d 70 6c 65 2d 73 65 63 72 65 74 2d 30 31 32 33 34 35 36 37 38 39");

// Every message of `stream` with one decoder fed in pieces of `piece` bytes.
std::vector<Message> decode_all(std::string_view stream, size_t piece, size_t capacity = kDefaultCapacity,
                                bool* too_long = nullptr) {
  StreamDecoder dec(capacity);
  std::vector<Message> out;
  for (size_t at = 0; at < stream.size(); at += piece) {
    dec.append(bytes(stream.substr(at, piece)));
    Message m;
    for (;;) {
      const auto r = dec.next(m);
      if (r == StreamDecoder::Result::NeedMore) break;
      if (r == StreamDecoder::Result::BodyTooLong) {
        if (too_long) *too_long = true;
        return out;
      }
      out.push_back(m);
    }
  }
  return out;
}

Message decode_one(std::string_view wire) {
  const auto all = decode_all(wire, wire.size());
  REQUIRE(all.size() == 1);
  return all[0];
}

void check_header(const Header& h, uint8_t type, uint8_t code, uint16_t id, uint16_t len) {
  CHECK(int(h.type) == type);
  CHECK_FALSE(h.v);
  CHECK(int(h.code) == code);
  CHECK(h.id == id);
  CHECK(h.body_len == len);
}

constexpr uint8_t kSendReq = static_cast<uint8_t>(MsgType::ServerSendReq);
constexpr uint8_t kSendResp = static_cast<uint8_t>(MsgType::ServerSendResp);
constexpr uint8_t kDevReq = static_cast<uint8_t>(MsgType::DeviceSendReq);
constexpr uint8_t kDevResp = static_cast<uint8_t>(MsgType::DeviceSendResp);
constexpr uint8_t kOk = static_cast<uint8_t>(Status::Ok);
constexpr uint8_t kContinue = static_cast<uint8_t>(Status::Continue);
constexpr uint8_t kTerminate = static_cast<uint8_t>(Status::Terminate);
constexpr uint8_t kSuccess = static_cast<uint8_t>(RespCode::Success);

}  // namespace

TEST_CASE("rtio: R1 R2 CRC-32 digests and the check value", "[rtio]") {
  CHECK(crc32("/greeter") == 0xE5DCC140u);
  CHECK(crc32("/rainbow") == 0xD5A7ABDBu);
  CHECK(crc32("/aa/bb") == 0xA796D057u);
  CHECK(crc32("123456789") == 0xCBF43926u);
  CHECK(crc32("") == 0u);
  CHECK(crc32("\0"s) == 0xD202EF8Du);  // a NUL byte counts like any other
  CHECK(crc32("rainbow") != crc32("/rainbow"));  // the leading '/' is part of the digest
}

TEST_CASE("rtio: R3 ServerSendReq copost /rainbow hello", "[rtio]") {
  const std::string wire = hex("71 00 01 00 0a 20 d5 a7 ab db 68 65 6c 6c 6f");
  CHECK(encode_message(kSendReq, kSuccess, 1, encode_co_req(2, crc32("/rainbow"), "hello")) == wire);

  const Message m = decode_one(wire);
  check_header(m.header, kSendReq, 1, 1, 10);
  const auto req = decode_co_req(m.body);
  REQUIRE(req);
  CHECK(int(req->method) == 2);
  CHECK(req->digest == 0xD5A7ABDBu);
  CHECK(req->data == "hello");
}

TEST_CASE("rtio: R4 ServerSendResp OK world", "[rtio]") {
  const std::string wire = hex("81 00 01 00 06 22 77 6f 72 6c 64");
  CHECK(encode_message(kSendResp, kSuccess, 1, encode_co_resp(2, kOk, "world")) == wire);

  const Message m = decode_one(wire);
  check_header(m.header, kSendResp, 1, 1, 6);
  const auto resp = decode_co_resp(m.body);
  REQUIRE(resp);
  CHECK(int(resp->method) == 2);
  CHECK(int(resp->status) == kOk);
  CHECK(resp->data == "world");
  CHECK(code_of(resp->status) == Code::Ok);
}

TEST_CASE("rtio: R5 DevicePingReq 60 s and its response", "[rtio]") {
  const std::string req = hex("31 00 05 00 02 00 3c");
  const std::string resp = hex("41 00 05 00 00");
  CHECK(encode_message(static_cast<uint8_t>(MsgType::DevicePingReq), 1, 5, hex("00 3c")) == req);
  CHECK(encode_message(static_cast<uint8_t>(MsgType::DevicePingResp), kSuccess, 5, "") == resp);

  const Message m = decode_one(req);
  check_header(m.header, 3, 1, 5, 2);
  const Ping p = parse_ping(m.body);
  CHECK(p.kind == Ping::Kind::Set);
  CHECK(p.seconds == 60);
  check_header(decode_one(resp).header, 4, 1, 5, 0);
}

TEST_CASE("rtio: R6 DeviceVerifyReq and both responses", "[rtio]") {
  REQUIRE(kR6Body.size() == 63);
  CHECK(kR6Body == "\0"s + kR6Text);
  const std::string req = hex("11 00 01 00 3f") + kR6Body;
  CHECK(encode_message(static_cast<uint8_t>(MsgType::DeviceVerifyReq), 1, 1, kR6Body) == req);
  CHECK(encode_message(static_cast<uint8_t>(MsgType::DeviceVerifyResp), kSuccess, 1, "") == hex("21 00 01 00 00"));
  CHECK(encode_message(static_cast<uint8_t>(MsgType::DeviceVerifyResp),
                       static_cast<uint8_t>(RespCode::VerifyFailed), 1, "") == hex("23 00 01 00 00"));

  const Message m = decode_one(req);
  check_header(m.header, 1, 1, 1, 63);
  const auto v = parse_verify(m.body);
  REQUIRE(v);
  CHECK(int(v->level) == 0);
  CHECK(v->capacity == 512);
  CHECK(v->id == "cfa09baa-4913-4ad7-a936-3e26f9671b09");
  CHECK(v->secret == "example-secret-0123456789");
  check_header(decode_one(hex("23 00 01 00 00")).header, 2, 3, 1, 0);
}

TEST_CASE("rtio: R7 obget establish and the device's Continue", "[rtio]") {
  const std::string req = hex("71 00 02 00 07 30 00 01 d5 a7 ab db");
  const std::string resp = hex("81 00 02 00 03 33 00 01");
  CHECK(encode_message(kSendReq, kSuccess, 2, encode_obget_estab_req(1, crc32("/rainbow"), "")) == req);
  CHECK(encode_message(kSendResp, kSuccess, 2, encode_obget_estab_resp(1, kContinue)) == resp);

  const Message mreq = decode_one(req);
  check_header(mreq.header, kSendReq, 1, 2, 7);
  const auto e = decode_obget_estab_req(mreq.body);
  REQUIRE(e);
  CHECK(int(e->method) == 3);
  CHECK(e->observer == 1);
  CHECK(e->digest == 0xD5A7ABDBu);
  CHECK(e->data.empty());

  const Message mresp = decode_one(resp);
  check_header(mresp.header, kSendResp, 1, 2, 3);
  const auto o = decode_obget(mresp.body);
  REQUIRE(o);
  CHECK(int(o->method) == 3);
  CHECK(int(o->status) == kContinue);
  CHECK(o->observer == 1);
  CHECK(o->data.empty());
}

TEST_CASE("rtio: R8 notify and both notify responses", "[rtio]") {
  const std::string req = hex("51 00 07 00 05 33 00 01 01 02");
  const std::string cont = hex("61 00 07 00 03 33 00 01");
  const std::string term = hex("61 00 07 00 03 34 00 01");
  CHECK(encode_message(kDevReq, 1, 7, encode_obget_notify_req(1, kContinue, "\x01\x02")) == req);
  CHECK(encode_message(kDevResp, kSuccess, 7, encode_obget_notify_resp(1, kContinue)) == cont);
  CHECK(encode_message(kDevResp, kSuccess, 7, encode_obget_notify_resp(1, kTerminate)) == term);

  const Message m = decode_one(req);
  check_header(m.header, kDevReq, 1, 7, 5);
  const auto n = decode_obget(m.body);
  REQUIRE(n);
  CHECK(int(n->method) == 3);
  CHECK(int(n->status) == kContinue);
  CHECK(n->observer == 1);
  CHECK(n->data == "\x01\x02");
  const auto t = decode_obget(decode_one(term).body);
  REQUIRE(t);
  CHECK(int(t->status) == kTerminate);
  CHECK(code_of(t->status) == Code::Terminate);
}

TEST_CASE("rtio: R9 device copost /aa/bb hi and both responses", "[rtio]") {
  const std::string req = hex("51 00 09 00 07 20 a7 96 d0 57 68 69");
  CHECK(encode_message(kDevReq, 1, 9, encode_co_req(2, crc32("/aa/bb"), "hi")) == req);
  CHECK(encode_message(kDevResp, kSuccess, 9, encode_co_resp(2, kOk, "")) == hex("61 00 09 00 01 22"));
  CHECK(encode_message(kDevResp, kSuccess, 9, encode_co_resp(2, static_cast<uint8_t>(Status::NotFound), "")) ==
        hex("61 00 09 00 01 25"));

  const Message m = decode_one(req);
  check_header(m.header, kDevReq, 1, 9, 7);
  const auto c = decode_co_req(m.body);
  REQUIRE(c);
  CHECK(int(c->method) == 2);
  CHECK(c->digest == 0xA796D057u);
  CHECK(c->data == "hi");
  const auto nf = decode_co_resp(decode_one(hex("61 00 09 00 01 25")).body);
  REQUIRE(nf);
  CHECK(int(nf->status) == 5);
  CHECK(nf->data.empty());
}

TEST_CASE("rtio: header fields, V and Code are reported as sent", "[rtio]") {
  // Type 7, V set, Code 5: decoding reports them; acting on them is the server's business.
  const uint8_t raw[5] = {0x7D, 0xAB, 0xCD, 0x01, 0x02};
  const Header h = decode_header(raw);
  CHECK(int(h.type) == 7);
  CHECK(h.v);
  CHECK(int(h.code) == 5);
  CHECK(h.id == 0xABCD);
  CHECK(h.body_len == 0x0102);

  // Code in a request does not change what the body decodes to.
  const std::string a = hex("70 00 01 00 0a 20 d5 a7 ab db 68 65 6c 6c 6f");
  const std::string b = hex("7f 00 01 00 0a 20 d5 a7 ab db 68 65 6c 6c 6f");
  const Message ma = decode_one(a), mb = decode_one(b);
  CHECK(int(ma.header.type) == int(mb.header.type));
  CHECK(ma.body == mb.body);
  CHECK(mb.header.v);
  CHECK(int(mb.header.code) == 7);

  // The encoder never sets V and masks out-of-range fields.
  CHECK(encode_message(0x1F, 0x0F, 0xFFFF, "") == hex("f7 ff ff 00 00"));
  // Types the enum does not name are still delivered, for the server to refuse.
  check_header(decode_one(hex("00 00 00 00 00")).header, 0, 0, 0, 0);
  check_header(decode_one(hex("f0 00 00 00 01 ff")).header, 15, 0, 0, 1);
}

TEST_CASE("rtio: StreamDecoder bounds the body by the capacity", "[rtio]") {
  const std::string at_cap = encode_message(5, 1, 1, std::string(512, 'x'));
  const std::string over = encode_message(5, 1, 2, std::string(513, 'x'));

  SECTION("exactly the capacity is accepted") {
    const auto all = decode_all(at_cap, at_cap.size());
    REQUIRE(all.size() == 1);
    CHECK(all[0].body == std::string(512, 'x'));
  }
  SECTION("one byte more is refused on the header alone") {
    StreamDecoder dec;
    dec.append(bytes(std::string_view(over).substr(0, kHeaderBytes)));  // no body at all yet
    Message m;
    CHECK(dec.next(m) == StreamDecoder::Result::BodyTooLong);
    CHECK(m.header.body_len == 513);
    CHECK(m.header.id == 2);
    CHECK(m.body.empty());
    // The state sticks: more bytes, even a valid message, change nothing.
    dec.append(bytes(at_cap));
    CHECK(dec.next(m) == StreamDecoder::Result::BodyTooLong);
    CHECK(dec.buffered() == 0);
  }
  SECTION("a valid message before the long one is still delivered") {
    bool too_long = false;
    const auto all = decode_all(at_cap + over, 1, kDefaultCapacity, &too_long);
    CHECK(all.size() == 1);
    CHECK(too_long);
  }
  SECTION("the largest BodyLength is refused without waiting for 64 KiB") {
    StreamDecoder dec(4096);
    dec.append(bytes(hex("51 00 01 ff ff")));
    Message m;
    CHECK(dec.next(m) == StreamDecoder::Result::BodyTooLong);
  }
  SECTION("set_capacity applies to the next header") {
    StreamDecoder dec;
    const std::string big = encode_message(5, 1, 3, std::string(1024, 'y'));
    dec.set_capacity(1024);
    CHECK(dec.capacity() == 1024);
    dec.append(bytes(big));
    Message m;
    REQUIRE(dec.next(m) == StreamDecoder::Result::Message);
    CHECK(m.body.size() == 1024);
    CHECK(dec.next(m) == StreamDecoder::Result::NeedMore);
    dec.append(bytes(encode_message(5, 1, 4, std::string(1025, 'y'))));
    CHECK(dec.next(m) == StreamDecoder::Result::BodyTooLong);
  }
  SECTION("a partial message waits, then completes") {
    StreamDecoder dec;
    dec.append(bytes(std::string_view(at_cap).substr(0, 100)));
    Message m;
    CHECK(dec.next(m) == StreamDecoder::Result::NeedMore);
    CHECK(dec.buffered() == 100);
    dec.append(bytes(std::string_view(at_cap).substr(100)));
    CHECK(dec.next(m) == StreamDecoder::Result::Message);
    CHECK(dec.buffered() == 0);
  }
}

TEST_CASE("rtio: any slicing of the stream yields the same messages", "[rtio]") {
  std::string stream = hex("11 00 01 00 3f") + kR6Body + hex("31 00 05 00 02 00 3c") +
                       hex("51 00 07 00 05 33 00 01 01 02") + hex("30 00 06 00 00") +
                       hex("81 00 01 00 06 22 77 6f 72 6c 64") + hex("51 00 09 00 07 20 a7 96 d0 57 68 69");
  for (int i = 0; i < 20; ++i) {
    const std::string body(static_cast<size_t>(i) * 25, static_cast<char>('a' + i));
    stream += encode_message(5, 1, static_cast<uint16_t>(100 + i), body);
  }
  const auto whole = decode_all(stream, stream.size());
  REQUIRE(whole.size() == 26);
  CHECK(whole[0].body == kR6Body);
  CHECK(whole[3].body.empty());
  CHECK(whole[25].body == std::string(19 * 25, 't'));
  for (const size_t piece : {1, 2, 3, 4, 5, 6, 7, 13, 64, 511, 4096}) {
    INFO("piece " << piece);
    const auto sliced = decode_all(stream, piece);
    REQUIRE(sliced.size() == whole.size());
    for (size_t i = 0; i < whole.size(); ++i) {
      CHECK(sliced[i].header.id == whole[i].header.id);
      CHECK(int(sliced[i].header.type) == int(whole[i].header.type));
      CHECK(sliced[i].body == whole[i].body);
    }
  }
  // Re-encoding what was decoded gives the stream back.
  std::string again;
  for (const Message& m : whole) again += encode_message(m.header.type, m.header.code, m.header.id, m.body);
  CHECK(again == stream);
}

TEST_CASE("rtio: REST-like decoders refuse short bodies", "[rtio]") {
  CHECK_FALSE(decode_co_req(hex("20 d5 a7 ab")));
  REQUIRE(decode_co_req(hex("20 d5 a7 ab db")));
  CHECK(decode_co_req(hex("20 d5 a7 ab db"))->data.empty());
  CHECK(int(decode_co_req(hex("1f 00 00 00 00"))->method) == 1);  // status nibble not reported
  CHECK_FALSE(decode_co_resp(""));
  REQUIRE(decode_co_resp(hex("21")));
  CHECK(int(decode_co_resp(hex("21"))->status) == 1);
  CHECK_FALSE(decode_obget(hex("33 00")));
  REQUIRE(decode_obget(hex("3f ff fe")));
  CHECK(decode_obget(hex("3f ff fe"))->observer == 0xFFFE);
  CHECK(int(decode_obget(hex("3f ff fe"))->status) == 15);
  CHECK_FALSE(decode_obget_estab_req(hex("30 00 01 d5 a7 ab")));
  REQUIRE(decode_obget_estab_req(hex("30 00 01 d5 a7 ab db 09")));
  CHECK(decode_obget_estab_req(hex("30 00 01 d5 a7 ab db 09"))->data == "\x09");
  // Encoders keep method and status to their nibbles.
  CHECK(encode_co_resp(0x12, 0x1A, "") == hex("2a"));
  CHECK(encode_co_req(0x21, 0, "") == hex("10 00 00 00 00"));
  CHECK(encode_obget_notify_req(0x1234, 4, "z") == hex("34 12 34 7a"));
  CHECK(encode_obget_estab_req(0xFFFF, 0x01020304, "d") == hex("30 ff ff 01 02 03 04 64"));
}

TEST_CASE("rtio: code_of maps every status like the §6.4 table", "[rtio]") {
  CHECK(code_of(0) == Code::InternalServerError);
  CHECK(code_of(1) == Code::InternalServerError);
  CHECK(code_of(2) == Code::Ok);
  CHECK(code_of(3) == Code::Continue);
  CHECK(code_of(4) == Code::Terminate);
  CHECK(code_of(5) == Code::NotFound);
  CHECK(code_of(6) == Code::BadRequest);
  CHECK(code_of(7) == Code::MethodNotAllowed);
  CHECK(code_of(8) == Code::TooManyRequests);
  CHECK(code_of(9) == Code::TooManyObservers);
  for (int s = 10; s <= 255; ++s) CHECK(code_of(static_cast<uint8_t>(s)) == Code::InternalServerError);
}

TEST_CASE("rtio: parse_verify lengths, split and capacity level", "[rtio]") {
  const std::string id(36, 'a');
  auto body = [](uint8_t cl, std::string_view id, std::string_view secret) {
    return std::string(1, static_cast<char>(cl)) + std::string(id) + ":" + std::string(secret);
  };

  SECTION("body 61 and 103 are refused, 62 and 102 accepted") {
    CHECK_FALSE(parse_verify(body(0, id, std::string(23, 's'))));  // 61 bytes
    const std::string b62 = body(0, id, std::string(24, 's'));
    REQUIRE(b62.size() == 62);
    REQUIRE(parse_verify(b62));
    CHECK(parse_verify(b62)->secret.size() == 24);
    const std::string b102 = body(0, id, std::string(64, 's'));
    REQUIRE(b102.size() == 102);
    REQUIRE(parse_verify(b102));
    CHECK(parse_verify(b102)->secret.size() == 64);
    CHECK_FALSE(parse_verify(body(0, id, std::string(65, 's'))));  // 103 bytes
    CHECK_FALSE(parse_verify(""));
    CHECK_FALSE(parse_verify(std::string(62, ':')));
  }
  SECTION("the id must be exactly 36 bytes") {
    CHECK_FALSE(parse_verify(body(0, std::string(35, 'a'), std::string(30, 's'))));
    CHECK_FALSE(parse_verify(body(0, std::string(37, 'a'), std::string(30, 's'))));
    CHECK(parse_verify(body(0, std::string(36, 'a'), std::string(30, 's'))));
  }
  SECTION("without ':' the body is malformed") {
    CHECK_FALSE(parse_verify(std::string(1, '\0') + std::string(70, 'a')));
  }
  SECTION("split at the first ':'; the secret may hold more") {
    const std::string b = body(0, id, "abc:def:ghijklmnopqrstuvwxyz");  // the result views into it
    const auto v = parse_verify(b);
    REQUIRE(v);
    CHECK(v->id == id);
    CHECK(v->secret == "abc:def:ghijklmnopqrstuvwxyz");
    // A ':' inside the first 36 bytes makes the id short.
    CHECK_FALSE(parse_verify(body(0, std::string(20, 'a') + ":" + std::string(15, 'a'), std::string(30, 's'))));
  }
  SECTION("CL in the top two bits gives the capacity; the others are ignored") {
    const std::string secret(30, 's');
    const std::pair<uint8_t, size_t> cases[] = {{0x00, 512}, {0x40, 1024}, {0x80, 2048}, {0xC0, 4096},
                                                {0x3F, 512}, {0x7F, 1024}, {0xBF, 2048}, {0xFF, 4096}};
    for (const auto& [first, capacity] : cases) {
      INFO("first byte " << int(first));
      const std::string b = body(first, id, secret);
      const auto v = parse_verify(b);
      REQUIRE(v);
      CHECK(v->capacity == capacity);
      CHECK(int(v->level) == first >> 6);
    }
  }
}

TEST_CASE("rtio: parse_ping", "[rtio]") {
  auto u16 = [](unsigned v) { return std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)}; };
  CHECK(parse_ping("").kind == Ping::Kind::Keep);
  CHECK(parse_ping(u16(0)).kind == Ping::Kind::Keep);
  CHECK(parse_ping(u16(29)).kind == Ping::Kind::OutOfRange);
  CHECK(parse_ping(u16(29)).seconds == 29);
  CHECK(parse_ping(u16(30)).kind == Ping::Kind::Set);
  CHECK(parse_ping(u16(30)).seconds == 30);
  CHECK(parse_ping(u16(43200)).kind == Ping::Kind::Set);
  CHECK(parse_ping(u16(43200)).seconds == 43200);
  CHECK(parse_ping(u16(43201)).kind == Ping::Kind::OutOfRange);
  CHECK(parse_ping(u16(65535)).kind == Ping::Kind::OutOfRange);
  CHECK(parse_ping(u16(1)).kind == Ping::Kind::OutOfRange);
  CHECK(parse_ping("\x00\x3c\x00"s).kind == Ping::Kind::BadLength);
  CHECK(parse_ping("\x01"s).kind == Ping::Kind::BadLength);
}

TEST_CASE("rtio: secrets_equal", "[rtio]") {
  CHECK(secrets_equal("example-secret-0123456789", "example-secret-0123456789"));
  CHECK_FALSE(secrets_equal("example-secret-0123456789", "example-secret-0123456788"));
  CHECK_FALSE(secrets_equal("Xxample-secret-0123456789", "example-secret-0123456789"));
  CHECK_FALSE(secrets_equal("example-secret-012345678", "example-secret-0123456789"));
  CHECK_FALSE(secrets_equal("", "x"));
  CHECK(secrets_equal("", ""));
  CHECK_FALSE(secrets_equal("a\0b"s, "a\0c"s));
}

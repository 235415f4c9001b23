// libFuzzer target for the RTIO codecs. Beyond "no crash": the stream decoder gives the
// same messages however the input is sliced, never delivers a body above its capacity,
// accounts for every byte; every body goes through all the REST-like decoders and the
// verify/ping parsers, and whatever decodes re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "edgelink/rtio/rtio_codec.hpp"

using namespace edgelink::rtio;

namespace {

void check(bool ok) {
  if (!ok) abort();
}

struct Run {
  std::vector<Message> messages;
  bool too_long = false;
  size_t buffered = 0;
};

// Feeds `input` in pieces from `pieces` (0: all at once). With `follow_verify`, a valid
// verify request raises the capacity to the declared one, as the server does.
Run run(std::string_view input, size_t capacity, bool follow_verify, std::minstd_rand* pieces) {
  StreamDecoder dec(capacity);
  Run r;
  size_t at = 0;
  while (at < input.size() && !r.too_long) {
    const size_t n = pieces ? 1 + (*pieces)() % 64 : input.size();
    const std::string_view piece = input.substr(at, n);
    at += piece.size();
    dec.append({reinterpret_cast<const uint8_t*>(piece.data()), piece.size()});
    for (;;) {
      Message m;
      const auto res = dec.next(m);
      if (res == StreamDecoder::Result::NeedMore) break;
      if (res == StreamDecoder::Result::BodyTooLong) {
        check(m.header.body_len > dec.capacity());
        check(m.body.empty());
        check(dec.next(m) == StreamDecoder::Result::BodyTooLong);
        r.too_long = true;
        break;
      }
      check(m.body.size() == m.header.body_len);
      check(m.body.size() <= dec.capacity());
      if (follow_verify && m.header.type == static_cast<uint8_t>(MsgType::DeviceVerifyReq)) {
        if (const auto v = parse_verify(m.body)) dec.set_capacity(v->capacity);
      }
      r.messages.push_back(std::move(m));
    }
  }
  r.buffered = dec.buffered();
  return r;
}

void check_body(std::string_view body) {
  const uint8_t first = body.empty() ? 0 : static_cast<uint8_t>(body[0]);
  if (const auto c = decode_co_req(body)) {
    check(body.size() >= 5);
    check(c->method == first >> 4);
    // The status nibble of a request is not reported, so it re-encodes as 0.
    std::string expect(body);
    expect[0] = static_cast<char>(first & 0xF0);
    check(encode_co_req(c->method, c->digest, c->data) == expect);
  } else {
    check(body.size() < 5);
  }
  if (const auto c = decode_co_resp(body)) {
    check(encode_co_resp(c->method, c->status, c->data) == body);
    (void)code_of(c->status);
  } else {
    check(body.empty());
  }
  if (const auto o = decode_obget(body)) {
    check(o->method == first >> 4 && o->status == (first & 0x0F));
    if (o->method == static_cast<uint8_t>(Method::ObservedGet)) {
      check(encode_obget_notify_req(o->observer, o->status, o->data) == body);
      if (o->data.empty()) {
        check(encode_obget_estab_resp(o->observer, o->status) == body);
        check(encode_obget_notify_resp(o->observer, o->status) == body);
      }
    }
  } else {
    check(body.size() < 3);
  }
  if (const auto e = decode_obget_estab_req(body)) {
    if (first == 0x30) check(encode_obget_estab_req(e->observer, e->digest, e->data) == body);
  } else {
    check(body.size() < 7);
  }
  if (const auto v = parse_verify(body)) {
    check(body.size() >= 62 && body.size() <= 102);
    check(v->id.size() == kDeviceIdBytes);
    check(v->secret.size() >= kMinSecretBytes && v->secret.size() <= kMaxSecretBytes);
    check(v->level == first >> 6 && v->capacity == kDefaultCapacity << v->level);
    check(std::string(v->id) + ":" + std::string(v->secret) == body.substr(1));
    check(v->id.find(':') == std::string_view::npos);
    check(secrets_equal(v->secret, v->secret));
  }
  const Ping p = parse_ping(body);
  switch (p.kind) {
    case Ping::Kind::Keep:
      check(body.empty() || (p.seconds == 0 && body == std::string(2, '\0')));
      break;
    case Ping::Kind::Set: check(body.size() == 2 && p.seconds >= 30 && p.seconds <= 43200); break;
    case Ping::Kind::OutOfRange:
      check(body.size() == 2 && p.seconds != 0 && (p.seconds < 30 || p.seconds > 43200));
      break;
    case Ping::Kind::BadLength: check(body.size() != 0 && body.size() != 2); break;
  }
  (void)crc32(body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // First byte: bits 0-1 the capacity level, bit 2 whether a verify raises it, the rest
  // seeds the slicing.
  const size_t capacity = kDefaultCapacity << (data[0] & 3);
  const bool follow_verify = (data[0] & 4) != 0;
  std::minstd_rand pieces(1 + (data[0] >> 3));
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  const Run whole = run(input, capacity, follow_verify, nullptr);
  const Run sliced = run(input, capacity, follow_verify, &pieces);
  check(whole.too_long == sliced.too_long);
  check(whole.messages.size() == sliced.messages.size());
  size_t consumed = 0;
  for (size_t i = 0; i < whole.messages.size(); ++i) {
    const Message& a = whole.messages[i];
    const Message& b = sliced.messages[i];
    check(a.body == b.body && a.header.type == b.header.type && a.header.id == b.header.id &&
          a.header.code == b.header.code && a.header.v == b.header.v && a.header.body_len == b.header.body_len);
    // The message re-encodes to its bytes in the input, V aside (the encoder never sets it).
    std::string wire = encode_message(a.header.type, a.header.code, a.header.id, a.body);
    std::string original(input.substr(consumed, kHeaderBytes + a.body.size()));
    original[0] = static_cast<char>(original[0] & ~0x08);
    check(wire == original);
    consumed += wire.size();
    check_body(a.body);
  }
  if (!whole.too_long) check(consumed + whole.buffered == input.size());
  check_body(input);
  return 0;
}

#include "edgelink/devices/hdlc.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "spec_vectors.hpp"

using namespace edgelink::devices;
using edgelink::devices::test::bytes;
using edgelink::devices::test::feed_in_chunks;
using edgelink::devices::test::hex;
using edgelink::devices::test::SpecVector;

namespace {

struct Event {
  HdlcDecoder::Status status;
  std::vector<uint8_t> frame;
  bool operator==(const Event&) const = default;
};

// Feeds `input` in pieces of at most `chunk` bytes and records every event.
std::vector<Event> decode_all(HdlcDecoder& dec, const std::vector<uint8_t>& input, size_t chunk = SIZE_MAX) {
  std::vector<Event> events;
  feed_in_chunks(dec, input, chunk, [&](const auto& r) { events.push_back({r.status, {r.frame.begin(), r.frame.end()}}); });
  return events;
}

std::vector<Event> decode_all(const std::vector<uint8_t>& input, size_t chunk = SIZE_MAX,
                              const HdlcOptions& options = {}) {
  HdlcDecoder dec(options);
  return decode_all(dec, input, chunk);
}

Event frame_event(std::vector<uint8_t> f) { return {HdlcDecoder::Status::Frame, std::move(f)}; }
Event bad_crc() { return {HdlcDecoder::Status::BadCrc, {}}; }

// The framing half of a spec vector: decoding gives the message with the spec's CRC,
// and encoding that message gives the framed bytes back exactly.
void check_vector_framing(const SpecVector& v) {
  const auto framed = hex(v.framed);
  HdlcDecoder dec;
  const auto events = decode_all(dec, framed);
  REQUIRE(events.size() == 1);
  REQUIRE(events[0].status == HdlcDecoder::Status::Frame);
  const auto& message = events[0].frame;
  if (*v.raw) CHECK(message == hex(v.raw));
  CHECK(crc16_ccitt(message) == v.crc);
  std::vector<uint8_t> encoded;
  hdlc_encode(message, encoded);
  CHECK(encoded == framed);
  CHECK(encoded.size() <= hdlc_max_encoded_size(message.size()));
  CHECK(dec.stats().frames == 1);
  CHECK(dec.stats().bad_crc == 0);
}

std::vector<uint8_t> all_vectors_concatenated() {
  std::vector<uint8_t> all;
  for (const SpecVector* v : test::kAllFramedVectors) {
    const auto f = hex(v->framed);
    all.insert(all.end(), f.begin(), f.end());
  }
  return all;
}

std::vector<Event> all_vector_frames() {
  std::vector<Event> out;
  for (const SpecVector* v : test::kAllFramedVectors) out.push_back(decode_all(hex(v->framed)).at(0));
  return out;
}

}  // namespace

TEST_CASE("CRC-16/CCITT-FALSE check value over 123456789 is 0x29B1", "[hdlc]") {
  CHECK(crc16_ccitt(bytes("123456789")) == 0x29B1);
  CHECK(crc16_ccitt({}) == 0xFFFF);
  // Continuing over pieces equals one pass.
  const auto data = bytes("123456789");
  const uint16_t first = crc16_ccitt(std::span<const uint8_t>(data).first(4));
  CHECK(crc16_ccitt(std::span<const uint8_t>(data).subspan(4), first) == 0x29B1);
}

TEST_CASE("V1 URL request v: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV1); }
TEST_CASE("V2 ufStart rtstream: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV2); }
TEST_CASE("V3 ufStart reply: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV3); }
TEST_CASE("V4 FILEBLOCK hello at 0x400: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV4); }
TEST_CASE("V5 FILEBLOCK with escaped payload bytes: HDLC framing", "[hdlc][vector]") {
  check_vector_framing(test::kV5);
}
TEST_CASE("V6 escaped CRC byte: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV6); }
TEST_CASE("V7 sokto BUSY: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV7); }
TEST_CASE("V8 sokto POS_MISMATCH: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV8); }
TEST_CASE("V9 device-to-client rtstream data: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV9); }
TEST_CASE("V10 ufEnd: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV10); }
TEST_CASE("V10 reply ufEnd reply: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV10Reply); }
TEST_CASE("V11 SESSION_NOT_FOUND: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV11); }
TEST_CASE("V12 publish frame: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV12); }
TEST_CASE("V13 shutdown report: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV13); }
TEST_CASE("V14 subscription command frame: HDLC framing", "[hdlc][vector]") { check_vector_framing(test::kV14); }
// V15 (the console form of V1) is in over_ascii_test.cpp.

TEST_CASE("worst-case message needs 2n+6 bytes and round-trips", "[hdlc]") {
  // §3.2: this 11-byte message has CRC 0xD7D7 and needs 28 bytes (raftjs allocates 26).
  const auto message = hex("D7 D7 D7 E7 E7 E7 E7 E7 D7 E7 D7");
  CHECK(crc16_ccitt(message) == 0xD7D7);
  std::vector<uint8_t> out;
  hdlc_encode(message, out);
  CHECK(out.size() == 28);
  CHECK(out.size() == hdlc_max_encoded_size(message.size()));
  CHECK(decode_all(out) == std::vector<Event>{frame_event(message)});
}

TEST_CASE("encoder appends to the caller's buffer", "[hdlc]") {
  std::vector<uint8_t> out = {0xAA};
  hdlc_encode(hex("01 02 00 76 00"), out);
  hdlc_encode(hex("01 02 00 76 00"), out);
  auto expected = hex("AA E7 01 02 00 76 00 F4 CA E7 E7 01 02 00 76 00 F4 CA E7");
  CHECK(out == expected);
}

TEST_CASE("all spec frames in one read decode in order", "[hdlc]") {
  HdlcDecoder dec;
  const auto events = decode_all(dec, all_vectors_concatenated());
  CHECK(events == all_vector_frames());
  CHECK(dec.stats().frames == std::size(test::kAllFramedVectors));
  CHECK(dec.stats().bad_crc == 0);
}

TEST_CASE("a split at every byte boundary gives the same frames", "[hdlc]") {
  const auto all = all_vectors_concatenated();
  const auto expected = all_vector_frames();
  for (size_t cut = 0; cut <= all.size(); ++cut) {
    HdlcDecoder dec;
    std::vector<uint8_t> a(all.begin(), all.begin() + static_cast<long>(cut));
    std::vector<uint8_t> b(all.begin() + static_cast<long>(cut), all.end());
    auto events = decode_all(dec, a);
    const auto rest = decode_all(dec, b);
    events.insert(events.end(), rest.begin(), rest.end());
    INFO("cut at " << cut);
    REQUIRE(events == expected);
  }
  for (size_t chunk : {1, 2, 3, 7, 20, 182, 244}) {
    INFO("chunk " << chunk);
    CHECK(decode_all(all, chunk) == expected);
  }
}

TEST_CASE("junk before the first flag is dropped and the next frame decodes", "[hdlc]") {
  SECTION("several junk bytes fail their CRC at the first flag") {
    auto input = bytes("boot junk");
    const auto v1 = hex(test::kV1.framed);
    input.insert(input.end(), v1.begin(), v1.end());
    HdlcDecoder dec;
    CHECK(decode_all(dec, input) == std::vector<Event>{bad_crc(), frame_event(hex(test::kV1.raw))});
    CHECK(dec.stats().bad_crc == 1);
  }
  SECTION("a single junk byte is ignored like an empty frame") {
    auto input = hex("41");
    const auto v1 = hex(test::kV1.framed);
    input.insert(input.end(), v1.begin(), v1.end());
    HdlcDecoder dec;
    CHECK(decode_all(dec, input) == std::vector<Event>{frame_event(hex(test::kV1.raw))});
    CHECK(dec.stats().bad_crc == 0);
  }
}

TEST_CASE("a flag right after an escape ends the frame and clears the escape", "[hdlc]") {
  // "41 D7" then V1's opening flag: if the escape survived the flag, V1's first
  // byte would be XORed and V1 would fail its CRC.
  auto input = hex("E7 41 42 D7");
  const auto v1 = hex(test::kV1.framed);
  input.insert(input.end(), v1.begin(), v1.end());
  HdlcDecoder dec;
  // "41 42" are taken as a CRC over an empty message and fail; V1 then decodes.
  CHECK(decode_all(dec, input) == std::vector<Event>{bad_crc(), frame_event(hex(test::kV1.raw))});
  CHECK(dec.stats().bad_crc == 1);
  CHECK(dec.stats().frames == 1);
}

TEST_CASE("an escape split from its byte across reads", "[hdlc]") {
  const auto v5 = hex(test::kV5.framed);  // contains D7 C7 D7 F7
  for (size_t cut = 1; cut < v5.size(); ++cut) {
    HdlcDecoder dec;
    auto events = decode_all(dec, std::vector<uint8_t>(v5.begin(), v5.begin() + static_cast<long>(cut)));
    const auto rest = decode_all(dec, std::vector<uint8_t>(v5.begin() + static_cast<long>(cut), v5.end()));
    events.insert(events.end(), rest.begin(), rest.end());
    REQUIRE(events == std::vector<Event>{frame_event(hex(test::kV5.raw))});
  }
}

TEST_CASE("empty frames and back-to-back flags are ignored", "[hdlc]") {
  HdlcDecoder dec;
  CHECK(decode_all(dec, hex("E7 E7 E7 E7 E7")).empty());
  CHECK(dec.stats().frames == 0);
  CHECK(dec.stats().bad_crc == 0);
  // A 2-byte frame is a CRC over an empty message: FF FF matches and yields an empty
  // message, as on the device (the RICSerial layer then rejects it as truncated).
  CHECK(decode_all(dec, hex("E7 FF FF E7")) == std::vector<Event>{frame_event({})});
}

TEST_CASE("bad CRC frames are dropped, counted, and do not disturb the next frame", "[hdlc]") {
  auto corrupt = hex(test::kV4.framed);
  corrupt[9] ^= 0x01;  // a payload byte
  auto input = corrupt;
  const auto v1 = hex(test::kV1.framed);
  input.insert(input.end(), v1.begin(), v1.end());
  input.insert(input.end(), corrupt.begin(), corrupt.end());
  HdlcDecoder dec;
  CHECK(decode_all(dec, input) == std::vector<Event>{bad_crc(), frame_event(hex(test::kV1.raw)), bad_crc()});
  CHECK(dec.stats().bad_crc == 2);
  CHECK(dec.stats().frames == 1);

  // A wrong CRC byte (not the payload) is caught too.
  auto bad_tail = hex(test::kV1.framed);
  bad_tail[bad_tail.size() - 2] ^= 0x80;
  CHECK(decode_all(bad_tail) == std::vector<Event>{bad_crc()});
}

TEST_CASE("oversize frames are thrown away up to the next flag, counted and sized", "[hdlc]") {
  // V1 is 5 message bytes + 2 CRC bytes = 7 unescaped bytes.
  const auto v1 = hex(test::kV1.framed);
  SECTION("exactly the maximum is accepted") {
    CHECK(decode_all(v1, SIZE_MAX, HdlcOptions{.max_frame_len = 7}) ==
          std::vector<Event>{frame_event(hex(test::kV1.raw))});
  }
  SECTION("one byte over is rejected, then resyncs on the next frame") {
    HdlcDecoder dec(HdlcOptions{.max_frame_len = 6});
    auto input = v1;
    const auto small = hex("E7 FF FF E7");  // 2 bytes: fits
    input.insert(input.end(), small.begin(), small.end());
    const auto events = decode_all(dec, input);
    CHECK(events == std::vector<Event>{{HdlcDecoder::Status::Oversize, {}}, frame_event({})});
    CHECK(dec.stats().oversize == 1);
    CHECK(dec.stats().bad_crc == 0);
  }
  SECTION("a long frame is reported once, at its closing flag, with its unescaped length") {
    std::vector<uint8_t> message(12000, 0x41);
    message[100] = kHdlcFlag;  // escaped on the wire, one byte here
    std::vector<uint8_t> input;
    hdlc_encode(message, input);
    hdlc_encode(hex(test::kV1.raw), input);
    for (size_t chunk : {size_t{1}, size_t{7}, SIZE_MAX}) {
      HdlcDecoder dec(HdlcOptions{.max_frame_len = kDeviceMaxRxFrame});
      std::vector<HdlcDecoder::Result> results;
      std::vector<Event> events;
      feed_in_chunks(dec, input, chunk, [&](const auto& r) {
        results.push_back(r);
        events.push_back({r.status, {r.frame.begin(), r.frame.end()}});
        // Never more than the limit held, whatever the frame's length.
        CHECK(dec.buffered() <= kDeviceMaxRxFrame);
      });
      REQUIRE(events.size() == 2);
      CHECK(events[0].status == HdlcDecoder::Status::Oversize);
      CHECK(results[0].dropped_len == 12002);  // the message and its 2 CRC bytes
      CHECK(events[1] == frame_event(hex(test::kV1.raw)));
      CHECK(dec.stats().oversize == 1);
      CHECK(dec.stats().bad_crc == 0);
    }
  }
  SECTION("the largest message a non-PSRAM device accepts is 4998 bytes") {
    std::vector<uint8_t> input;
    hdlc_encode(std::vector<uint8_t>(4998, 0x55), input);
    hdlc_encode(std::vector<uint8_t>(4999, 0x55), input);
    HdlcDecoder dec(HdlcOptions{.max_frame_len = kDeviceMaxRxFrame});
    const auto events = decode_all(dec, input);
    REQUIRE(events.size() == 2);
    CHECK(events[0].status == HdlcDecoder::Status::Frame);
    CHECK(events[0].frame.size() == 4998);
    CHECK(events[1].status == HdlcDecoder::Status::Oversize);
    CHECK(dec.stats().bad_crc == 0);
  }
  SECTION("by default a PSRAM board's frames fit: a 200000-byte text and its reply header") {
    std::vector<uint8_t> input;
    const std::vector<uint8_t> big(200000 + 64, 0x7B);
    hdlc_encode(big, input);
    HdlcDecoder dec;
    const auto events = decode_all(dec, input);
    REQUIRE(events.size() == 1);
    CHECK(events[0].status == HdlcDecoder::Status::Frame);
    CHECK(events[0].frame.size() == big.size());
  }
  SECTION("reset in the middle of an oversized frame forgets it") {
    HdlcDecoder dec(HdlcOptions{.max_frame_len = 6});
    CHECK(decode_all(dec, std::vector<uint8_t>(v1.begin(), v1.end() - 1)).empty());
    dec.reset();
    // Without the reset, V1's opening flag would end the old frame: two Oversize events.
    CHECK(decode_all(dec, v1) == std::vector<Event>{{HdlcDecoder::Status::Oversize, {}}});
    CHECK(dec.stats().oversize == 1);
  }
}

TEST_CASE("reset drops a partial frame", "[hdlc]") {
  HdlcDecoder dec;
  const auto v1 = hex(test::kV1.framed);
  CHECK(decode_all(dec, std::vector<uint8_t>(v1.begin(), v1.begin() + 4)).empty());
  CHECK(dec.buffered() == 3);
  dec.reset();
  CHECK(dec.buffered() == 0);
  // The rest of V1 alone is now junk: it fails its CRC.
  CHECK(decode_all(dec, std::vector<uint8_t>(v1.begin() + 4, v1.end())) == std::vector<Event>{bad_crc()});
}

TEST_CASE("configured flag and escape bytes", "[hdlc]") {
  const HdlcOptions opts{.flag = 0x7E, .escape = 0x7D};
  const auto message = hex("01 7E 7D E7 D7 02");
  std::vector<uint8_t> out;
  hdlc_encode(message, out, opts);
  CHECK(out.front() == 0x7E);
  CHECK(out.back() == 0x7E);
  // E7/D7 are ordinary bytes under these options; 7E/7D are escaped.
  CHECK(std::vector<uint8_t>(out.begin() + 1, out.begin() + 8) == hex("01 7D 5E 7D 5D E7 D7"));
  CHECK(decode_all(out, SIZE_MAX, opts) == std::vector<Event>{frame_event(message)});
}

TEST_CASE("random messages round-trip through encode and decode", "[hdlc]") {
  uint32_t seed = 12345;
  auto rnd = [&seed] {
    seed = seed * 1103515245u + 12345u;
    return seed >> 16;
  };
  std::vector<uint8_t> stream;
  std::vector<Event> expected;
  for (int i = 0; i < 200; ++i) {
    std::vector<uint8_t> m(rnd() % 64);
    // Bias towards the special bytes so escapes are common.
    for (auto& b : m) b = (rnd() % 3 == 0) ? ((rnd() & 1) ? 0xE7 : 0xD7) : static_cast<uint8_t>(rnd());
    if (m.empty()) continue;  // an empty message encodes as a 2-byte frame, covered above
    const size_t before = stream.size();
    hdlc_encode(m, stream);
    REQUIRE(stream.size() - before <= hdlc_max_encoded_size(m.size()));
    expected.push_back(frame_event(m));
  }
  CHECK(decode_all(stream) == expected);
  CHECK(decode_all(stream, 5) == expected);
}

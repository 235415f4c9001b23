#include "edgelink/devices/over_ascii.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "spec_vectors.hpp"

using namespace edgelink::devices;
using edgelink::devices::test::bytes;
using edgelink::devices::test::feed_in_chunks;
using edgelink::devices::test::hex;

namespace {

struct Event {
  ConsoleDemux::Status status;
  std::vector<uint8_t> frame;
  std::string line;
  bool truncated = false;
  bool operator==(const Event&) const = default;
};

std::vector<Event> demux_all(ConsoleDemux& d, const std::vector<uint8_t>& input, size_t chunk = SIZE_MAX) {
  std::vector<Event> events;
  feed_in_chunks(d, input, chunk, [&](const auto& r) { events.push_back({r.status, {r.frame.begin(), r.frame.end()}, std::string(r.line), r.line_truncated}); });
  return events;
}

std::vector<Event> demux_all(const std::vector<uint8_t>& input, size_t chunk = SIZE_MAX, size_t max_line = 1024) {
  ConsoleDemux d(max_line);
  return demux_all(d, input, chunk);
}

Event frame(std::vector<uint8_t> f) { return {ConsoleDemux::Status::Frame, std::move(f), {}, false}; }
Event line(std::string s, bool truncated = false) { return {ConsoleDemux::Status::LogLine, {}, std::move(s), truncated}; }

void append(std::vector<uint8_t>& to, const std::vector<uint8_t>& from) { to.insert(to.end(), from.begin(), from.end()); }

std::vector<uint8_t> decode_over_ascii(const std::vector<uint8_t>& in) {
  OverAsciiDecoder dec;
  std::vector<uint8_t> out;
  for (uint8_t b : in) {
    if (auto d = dec.push(b)) out.push_back(*d);
  }
  return out;
}

}  // namespace

TEST_CASE("V15 V1 on a console-mode port: OverAscii encoding", "[over_ascii][vector]") {
  std::vector<uint8_t> out;
  over_ascii_encode(hex(test::kV15Hdlc), out);
  CHECK(out == hex(test::kV15OverAscii));

  std::vector<uint8_t> framed;
  encode_console_frame(hex(test::kV1.raw), framed);
  CHECK(framed == hex(test::kV15OverAscii));
}

TEST_CASE("V15 V1 on a console-mode port: demultiplexed back to the V1 message", "[over_ascii][vector]") {
  CHECK(decode_over_ascii(hex(test::kV15OverAscii)) == hex(test::kV15Hdlc));
  CHECK(demux_all(hex(test::kV15OverAscii)) == std::vector<Event>{frame(hex(test::kV1.raw))});
}

TEST_CASE("OverAscii table: every range of §3.4", "[over_ascii]") {
  const std::pair<uint8_t, std::vector<uint8_t>> table[] = {
      {0x00, {0x85, 0xA0}}, {0x0F, {0x85, 0xAF}}, {0x10, {0x90}},       {0x41, {0xC1}},
      {0x7F, {0xFF}},       {0x80, {0x8E, 0xA0}}, {0x8F, {0x8E, 0xAF}}, {0x90, {0x8F, 0x90}},
      {0xE7, {0x8F, 0xE7}}, {0xFF, {0x8F, 0xFF}},
  };
  for (const auto& [in, expected] : table) {
    INFO("byte " << int(in));
    std::vector<uint8_t> out;
    over_ascii_encode(std::vector<uint8_t>{in}, out);
    CHECK(out == expected);
  }
}

TEST_CASE("OverAscii round-trips every byte value and never emits ASCII", "[over_ascii]") {
  std::vector<uint8_t> all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<uint8_t>(i));
  std::vector<uint8_t> enc;
  over_ascii_encode(all, enc);
  for (uint8_t b : enc) REQUIRE(b >= 0x80);
  CHECK(decode_over_ascii(enc) == all);
}

TEST_CASE("console stream: log lines and frames interleaved", "[over_ascii]") {
  std::vector<uint8_t> input = bytes("I (120) SysManager: boot\r\n");
  std::vector<uint8_t> v1;
  encode_console_frame(hex(test::kV1.raw), v1);
  append(input, v1);
  append(input, bytes("W (130) x: two\n\n"));
  std::vector<uint8_t> v9;
  encode_console_frame(hex(test::kV9.raw), v9);
  append(input, v9);
  append(input, bytes(">>> "));  // a prompt without newline stays partial

  const std::vector<Event> expected = {line("I (120) SysManager: boot"), frame(hex(test::kV1.raw)),
                                       line("W (130) x: two"), line(""), frame(hex(test::kV9.raw))};
  ConsoleDemux d;
  CHECK(demux_all(d, input) == expected);
  CHECK(d.partial_line() == ">>> ");
  CHECK(d.take_partial_line() == ">>> ");
  CHECK(d.partial_line().empty());
  CHECK(d.stats().lines == 3);

  SECTION("the same events at every split point") {
    for (size_t cut = 0; cut <= input.size(); ++cut) {
      ConsoleDemux d2;
      auto events = demux_all(d2, std::vector<uint8_t>(input.begin(), input.begin() + static_cast<long>(cut)));
      const auto rest = demux_all(d2, std::vector<uint8_t>(input.begin() + static_cast<long>(cut), input.end()));
      events.insert(events.end(), rest.begin(), rest.end());
      INFO("cut at " << cut);
      REQUIRE(events == expected);
      REQUIRE(d2.partial_line() == ">>> ");
    }
    CHECK(demux_all(input, 1) == expected);
  }
}

TEST_CASE("log text inside a frame does not break the frame", "[over_ascii]") {
  // The routing rule sends bytes < 0x80 to text wherever they fall, even between an
  // OverAscii escape and its byte, so a frame survives interleaved text.
  const auto enc = hex(test::kV15OverAscii);  // starts 8F E7 85 A1 ...
  std::vector<uint8_t> input = {enc[0]};
  append(input, bytes("hi\n"));
  input.insert(input.end(), enc.begin() + 1, enc.begin() + 4);
  append(input, bytes("there\n"));
  input.insert(input.end(), enc.begin() + 4, enc.end());
  CHECK(demux_all(input) == std::vector<Event>{line("hi"), line("there"), frame(hex(test::kV1.raw))});
}

TEST_CASE("long log lines are cut at the cap, nothing is lost", "[over_ascii]") {
  ConsoleDemux d(4);
  const auto events = demux_all(d, bytes("abcdefghij\nxy\n"));
  CHECK(events == std::vector<Event>{line("abcd", true), line("efgh", true), line("ij"), line("xy")});
  CHECK(d.stats().long_lines == 2);
}

TEST_CASE("console frames with a bad CRC are dropped and counted", "[over_ascii]") {
  auto enc = hex(test::kV15OverAscii);
  enc[8] ^= 0x01;  // F6 -> F7: the 'v' byte changes
  std::vector<uint8_t> input = enc;
  append(input, hex(test::kV15OverAscii));
  ConsoleDemux d;
  CHECK(demux_all(d, input) ==
        std::vector<Event>{{ConsoleDemux::Status::BadCrc, {}, {}, false}, frame(hex(test::kV1.raw))});
  CHECK(d.hdlc_stats().bad_crc == 1);
  CHECK(d.hdlc_stats().frames == 1);
}

TEST_CASE("raw HDLC on a console port does not produce frames", "[over_ascii]") {
  // A misconfigured port (raw frames where OverAscii is expected): the E7 flags
  // decode as 0x67, so no frame can be delimited; the ASCII bytes come out as text.
  auto input = hex(test::kV4.framed);
  ConsoleDemux d;
  const auto events = demux_all(d, input);
  for (const auto& e : events) CHECK(e.status != ConsoleDemux::Status::Frame);
  CHECK(d.hdlc_stats().frames == 0);
}

TEST_CASE("oversize console frames are reported once, with their length, between log lines", "[over_ascii]") {
  std::vector<uint8_t> input = bytes("before\n");
  encode_console_frame(std::vector<uint8_t>(40, 0x30), input);
  append(input, bytes("after\n"));
  encode_console_frame(hex(test::kV1.raw), input);
  ConsoleDemux d(1024, HdlcOptions{.max_frame_len = 16});
  std::vector<size_t> dropped;
  std::vector<Event> events;
  feed_in_chunks(d, input, 5, [&](const auto& r) {
    if (r.status == ConsoleDemux::Status::Oversize) dropped.push_back(r.dropped_len);
    events.push_back({r.status, {r.frame.begin(), r.frame.end()}, std::string(r.line), r.line_truncated});
  });
  CHECK(events == std::vector<Event>{line("before"), {ConsoleDemux::Status::Oversize, {}, {}, false}, line("after"),
                                     frame(hex(test::kV1.raw))});
  CHECK(dropped == std::vector<size_t>{42});
  CHECK(d.hdlc_stats().oversize == 1);
}

TEST_CASE("reset forgets partial text and frames", "[over_ascii]") {
  ConsoleDemux d;
  const auto enc = hex(test::kV15OverAscii);
  std::vector<uint8_t> input = bytes("part");
  input.insert(input.end(), enc.begin(), enc.begin() + 6);
  CHECK(demux_all(d, input).empty());
  d.reset();
  CHECK(d.partial_line().empty());
  CHECK(demux_all(d, std::vector<uint8_t>(enc.begin() + 6, enc.end())) ==
        std::vector<Event>{{ConsoleDemux::Status::BadCrc, {}, {}, false}});
}

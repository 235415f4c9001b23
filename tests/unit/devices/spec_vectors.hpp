#pragma once
// Test vectors V1..V15 of spec/ricrest.md §10, transcribed from the spec text.
// "framed" is what goes on a raw-HDLC link; "raw" is the unescaped RICSerial message
// (given in the spec for some vectors); "json" is the element text, without its 0x00.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgelink::devices::test {

// Feeds `input` to an incremental decoder (HdlcDecoder, ConsoleDemux: next(span) ->
// {status, consumed, ...}) in pieces of at most `chunk` bytes and calls `on_result` for
// every result but NeedMore. Checks the decoder's contract on the way: it never claims
// more than it was given, and NeedMore means the piece was used up.
template <class Decoder, class OnResult>
void feed_in_chunks(Decoder& dec, const std::vector<uint8_t>& input, size_t chunk, OnResult&& on_result) {
  size_t off = 0;
  while (off < input.size()) {
    const size_t n = std::min(chunk, input.size() - off);
    std::span<const uint8_t> piece(input.data() + off, n);
    while (true) {
      const auto r = dec.next(piece);
      REQUIRE(r.consumed <= piece.size());
      piece = piece.subspan(r.consumed);
      if (r.status == decltype(r.status)::NeedMore) {
        REQUIRE(piece.empty());
        break;
      }
      on_result(r);
    }
    off += n;
  }
}

// "E7 01 02" -> {0xE7, 0x01, 0x02}
inline std::vector<uint8_t> hex(std::string_view text) {
  std::vector<uint8_t> out;
  int nibbles = 0;
  unsigned acc = 0;
  for (char c : text) {
    int v = -1;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    if (v < 0) continue;
    acc = (acc << 4) | static_cast<unsigned>(v);
    if (++nibbles == 2) {
      out.push_back(static_cast<uint8_t>(acc));
      nibbles = 0;
      acc = 0;
    }
  }
  return out;
}

inline std::vector<uint8_t> bytes(std::string_view text) { return {text.begin(), text.end()}; }

struct SpecVector {
  const char* name;
  const char* framed;
  const char* raw;   // "" when the spec gives none
  uint16_t crc;
  const char* json;  // "" when none
};

inline const SpecVector kV1{"V1",
     "E7 01 02 00 76 00 F4 CA E7",
     "01 02 00 76 00", 0xF4CA, ""};
inline const SpecVector kV2{"V2",
     "E7 02 02 03 7B 22 63 6D 64 4E 61 6D 65 22 3A 22 75 66 53 74 61 72 74 22 2C 22 72 65 71 53 74 72 "
     "22 3A 22 75 66 53 74 61 72 74 22 2C 22 66 69 6C 65 54 79 70 65 22 3A 22 72 74 73 74 72 65 61 6D "
     "22 2C 22 66 69 6C 65 4E 61 6D 65 22 3A 22 75 70 79 63 6F 6E 73 6F 6C 65 22 2C 22 65 6E 64 70 6F "
     "69 6E 74 22 3A 22 75 70 79 63 6F 6E 73 6F 6C 65 22 2C 22 66 69 6C 65 4C 65 6E 22 3A 30 7D 00 89 "
     "B1 E7",
     "", 0x89B1, "{\"cmdName\":\"ufStart\",\"reqStr\":\"ufStart\",\"fileType\":\"rtstream\",\"fileName\":\"upyconsole\",\"endpoint\":\"upyconsole\",\"fileLen\":0}"};
inline const SpecVector kV3{"V3",
     "E7 02 42 01 7B 22 72 65 71 22 3A 22 75 66 53 74 61 72 74 22 2C 22 73 74 72 65 61 6D 49 44 22 3A "
     "31 2C 22 72 73 6C 74 22 3A 22 6F 6B 22 7D 00 4B 08 E7",
     "", 0x4B08, "{\"req\":\"ufStart\",\"streamID\":1,\"rslt\":\"ok\"}"};
inline const SpecVector kV4{"V4",
     "E7 00 02 04 01 00 04 00 68 65 6C 6C 6F 60 F8 E7",
     "00 02 04 01 00 04 00 68 65 6C 6C 6F", 0x60F8, ""};
inline const SpecVector kV5{"V5",
     "E7 00 02 04 01 00 00 00 D7 C7 D7 F7 41 61 A6 E7",
     "00 02 04 01 00 00 00 E7 D7 41", 0x61A6, ""};
inline const SpecVector kV6{"V6",
     "E7 00 02 04 01 00 00 00 54 D7 C7 5C E7",
     "00 02 04 01 00 00 00 54", 0xE75C, ""};
inline const SpecVector kV7{"V7",
     "E7 00 42 01 7B 22 72 65 71 22 3A 22 75 66 42 6C 6F 63 6B 22 2C 22 73 74 72 65 61 6D 49 44 22 3A "
     "31 2C 22 73 6F 6B 74 6F 22 3A 31 30 2C 22 72 65 61 73 6F 6E 22 3A 22 42 55 53 59 22 2C 22 72 73 "
     "6C 74 22 3A 22 6F 6B 22 7D 00 00 14 E7",
     "", 0x0014, "{\"req\":\"ufBlock\",\"streamID\":1,\"sokto\":10,\"reason\":\"BUSY\",\"rslt\":\"ok\"}"};
inline const SpecVector kV8{"V8",
     "E7 00 42 01 7B 22 72 65 71 22 3A 22 75 66 42 6C 6F 63 6B 22 2C 22 73 74 72 65 61 6D 49 44 22 3A "
     "31 2C 22 73 6F 6B 74 6F 22 3A 31 30 2C 22 72 65 61 73 6F 6E 22 3A 22 50 4F 53 5F 4D 49 53 4D 41 "
     "54 43 48 22 2C 22 72 73 6C 74 22 3A 22 6F 6B 22 7D 00 28 74 E7",
     "", 0x2874, "{\"req\":\"ufBlock\",\"streamID\":1,\"sokto\":10,\"reason\":\"POS_MISMATCH\",\"rslt\":\"ok\"}"};
inline const SpecVector kV9{"V9",
     "E7 00 02 04 01 00 00 00 6F 6B 0D 0A 3E 3E 3E 20 48 94 E7",
     "00 02 04 01 00 00 00 6F 6B 0D 0A 3E 3E 3E 20", 0x4894, ""};
inline const SpecVector kV10{"V10",
     "E7 03 02 03 7B 22 63 6D 64 4E 61 6D 65 22 3A 22 75 66 45 6E 64 22 2C 22 72 65 71 53 74 72 22 3A "
     "22 75 66 45 6E 64 22 2C 22 73 74 72 65 61 6D 49 44 22 3A 31 7D 00 19 75 E7",
     "", 0x1975, "{\"cmdName\":\"ufEnd\",\"reqStr\":\"ufEnd\",\"streamID\":1}"};
inline const SpecVector kV10Reply{"V10 reply",
     "E7 03 42 01 7B 22 72 65 71 22 3A 22 75 66 45 6E 64 22 2C 22 73 74 72 65 61 6D 49 44 22 3A 31 2C "
     "22 72 73 6C 74 22 3A 22 6F 6B 22 7D 00 02 26 E7",
     "", 0x0226, "{\"req\":\"ufEnd\",\"streamID\":1,\"rslt\":\"ok\"}"};
inline const SpecVector kV11{"V11",
     "E7 00 42 01 7B 22 72 65 71 22 3A 22 75 66 42 6C 6F 63 6B 22 2C 22 73 74 72 65 61 6D 49 44 22 3A "
     "39 2C 22 72 65 61 73 6F 6E 22 3A 22 53 45 53 53 49 4F 4E 5F 4E 4F 54 5F 46 4F 55 4E 44 22 2C 22 "
     "72 73 6C 74 22 3A 22 66 61 69 6C 22 7D 00 EB FF E7",
     "", 0xEBFF, "{\"req\":\"ufBlock\",\"streamID\":9,\"reason\":\"SESSION_NOT_FOUND\",\"rslt\":\"fail\"}"};
inline const SpecVector kV12{"V12",
     "E7 00 80 7B 22 5F 74 22 3A 30 2C 22 5F 76 22 3A 31 7D 1A 26 E7",
     "00 80 7B 22 5F 74 22 3A 30 2C 22 5F 76 22 3A 31 7D", 0x1A26, ""};
inline const SpecVector kV13{"V13",
     "E7 00 C2 01 7B 22 6D 73 67 54 79 70 65 22 3A 22 73 79 73 65 76 65 6E 74 22 2C 22 6D 73 67 4E 61 "
     "6D 65 22 3A 22 73 68 75 74 64 6F 77 6E 22 2C 22 69 73 52 65 73 74 61 72 74 22 3A 31 2C 22 72 65 "
     "61 73 6F 6E 22 3A 22 52 65 73 74 61 72 74 52 65 71 75 65 73 74 65 64 22 7D 00 0D F9 E7",
     "", 0x0DF9, "{\"msgType\":\"sysevent\",\"msgName\":\"shutdown\",\"isRestart\":1,\"reason\":\"RestartRequested\"}"};
inline const SpecVector kV14{"V14",
     "E7 04 02 03 7B 22 63 6D 64 4E 61 6D 65 22 3A 22 73 75 62 73 63 72 69 70 74 69 6F 6E 22 2C 22 61 "
     "63 74 69 6F 6E 22 3A 22 75 70 64 61 74 65 22 2C 22 70 75 62 52 65 63 73 22 3A 5B 7B 22 6E 61 6D "
     "65 22 3A 22 64 65 76 6A 73 6F 6E 22 2C 22 74 72 69 67 67 65 72 22 3A 22 74 69 6D 65 6F 72 63 68 "
     "61 6E 67 65 22 2C 22 72 61 74 65 48 7A 22 3A 30 2E 31 2C 22 6D 69 6E 4D 73 22 3A 31 30 7D 5D 7D "
     "00 75 1D E7",
     "", 0x751D, "{\"cmdName\":\"subscription\",\"action\":\"update\",\"pubRecs\":[{\"name\":\"devjson\",\"trigger\":\"timeorchange\",\"rateHz\":0.1,\"minMs\":10}]}"};

// V15: V1 on a console-mode port.
inline constexpr const char* kV15Hdlc = "E7 01 02 00 76 00 F4 CA E7";
inline constexpr const char* kV15OverAscii = "8F E7 85 A1 85 A2 85 A0 F6 85 A0 8F F4 8F CA 8F E7";

inline const SpecVector* const kAllFramedVectors[] = {&kV1, &kV2, &kV3, &kV4, &kV5, &kV6, &kV7, &kV8, &kV9, &kV10, &kV10Reply, &kV11, &kV12, &kV13, &kV14};

}  // namespace edgelink::devices::test

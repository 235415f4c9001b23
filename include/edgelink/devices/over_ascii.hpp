#pragma once
// Console-mode serial ports (spec/ricrest.md §3.3a, §3.4): the device's SerialConsole
// carries human log text (bytes < 0x80) and protocol frames together. Frames are
// HDLC-encoded and then every byte is OverAscii-encoded to 0x80 or above, which is
// what lets a receiver separate them. Pure and incremental, like the HDLC codec.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "edgelink/devices/hdlc.hpp"

namespace edgelink::devices {

// Appends the OverAscii encoding of `in` to `out`; every byte written is >= 0x80.
void over_ascii_encode(std::span<const uint8_t> in, std::vector<uint8_t>& out);

// HDLC-frames `message` and OverAscii-encodes the whole frame (flags, escapes and
// CRC included, vector V15), appending to `out`. This is the only form a gateway
// may write to a console port: raw ASCII would be echoed and run as a command.
void encode_console_frame(std::span<const uint8_t> message, std::vector<uint8_t>& out,
                          const HdlcOptions& options = {});

// Decodes OverAscii one byte at a time. Only bytes >= 0x80 belong here; the
// demultiplexer routes the rest to text, so they never disturb a pending escape.
class OverAsciiDecoder {
 public:
  // The decoded byte, or nothing when `b` started an escape (0x85, 0x8E, 0x8F).
  std::optional<uint8_t> push(uint8_t b);
  void reset() { escape_ = 0; }

 private:
  uint8_t escape_ = 0;  // the pending escape byte, 0 when none
};

// Splits a console port's byte stream into protocol frames and log lines:
// bytes >= 0x80 -> OverAscii -> HDLC; bytes < 0x80 -> text, split on LF.
class ConsoleDemux {
 public:
  enum class Status {
    Frame,     // `frame`: one RICSerial message with a good CRC
    LogLine,   // `line`: one text line without LF (and without a trailing CR)
    NeedMore,  // all input consumed, no event
    BadCrc,    // a frame was dropped (HDLC, see HdlcDecoder)
    Oversize,  // a frame longer than the maximum was thrown away (`dropped_len`)
  };
  struct Result {
    Status status;
    std::span<const uint8_t> frame;  // valid until the next call
    std::string_view line;           // valid until the next call
    bool line_truncated = false;     // LogLine cut at max_line_len; the rest follows as more lines
    size_t consumed = 0;
    size_t dropped_len = 0;  // Oversize: the frame's unescaped length, CRC included
  };
  struct Stats {
    uint64_t lines = 0;
    uint64_t long_lines = 0;  // lines cut at max_line_len
    uint64_t text_bytes = 0;
  };

  explicit ConsoleDemux(size_t max_line_len = 1024, const HdlcOptions& options = {});

  // Call repeatedly, dropping `consumed` bytes each time, until NeedMore.
  Result next(std::span<const uint8_t> input);

  // Text received since the last LF (for example a ">>> " prompt or boot text
  // without a newline); take_partial_line() hands it out and clears it.
  std::string_view partial_line() const { return line_done_ ? std::string_view{} : std::string_view(line_); }
  std::string take_partial_line();

  const Stats& stats() const { return stats_; }
  const HdlcDecoder::Stats& hdlc_stats() const { return hdlc_.stats(); }
  void reset();

 private:
  size_t max_line_len_;
  OverAsciiDecoder over_ascii_;
  HdlcDecoder hdlc_;
  std::string line_;
  bool line_done_ = false;  // line_ holds the last delivered line; clear on next call
  Stats stats_;
};

}  // namespace edgelink::devices

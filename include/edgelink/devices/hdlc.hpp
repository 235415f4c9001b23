#pragma once
// MiniHDLC byte framing used by Raft firmware (spec/ricrest.md §3.1, §3.2):
// E7 <escaped message> <escaped CRC16 BE> E7, escape D7 + (byte ^ 0x20),
// CRC-16/CCITT-FALSE over the unescaped message. Pure and incremental: no I/O,
// so it is unit-tested and fuzzed (tests/fuzz/hdlc_fuzz.cpp).

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace edgelink::devices {

inline constexpr uint8_t kHdlcFlag = 0xE7;
inline constexpr uint8_t kHdlcEscape = 0xD7;
inline constexpr uint8_t kHdlcEscapeXor = 0x20;
// Device MaxRxMsgLen without PSRAM: unescaped bytes, the 2 CRC bytes included.
inline constexpr size_t kHdlcDefaultMaxFrame = 5000;

// The device can override both framing bytes (ProtocolExchange config, prefix
// RICSerial: FrameBound, CtrlEscape), so they are parameters, not constants.
struct HdlcOptions {
  uint8_t flag = kHdlcFlag;
  uint8_t escape = kHdlcEscape;
  size_t max_frame_len = kHdlcDefaultMaxFrame;  // unescaped bytes incl. CRC
};

// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0).
// Pass a previous result as `crc` to continue over several pieces.
uint16_t crc16_ccitt(std::span<const uint8_t> data, uint16_t crc = 0xFFFF);

// Worst case: 2 flags + every message byte and both CRC bytes escaped.
constexpr size_t hdlc_max_encoded_size(size_t message_len) { return 2 * message_len + 6; }

// Appends one complete frame (opening flag .. closing flag) for `message` to `out`.
void hdlc_encode(std::span<const uint8_t> message, std::vector<uint8_t>& out,
                 const HdlcOptions& options = {});

// The device's receiver algorithm (§3.2), which edgelink uses too: a flag always
// ends a frame (even right after an escape), frames with a bad CRC are dropped and
// counted, an oversized frame is thrown away and collection starts again.
class HdlcDecoder {
 public:
  enum class Status {
    Frame,     // `frame` holds one message whose CRC matched (the CRC is stripped)
    NeedMore,  // all input consumed, no event
    BadCrc,    // a frame ended with a wrong CRC and was dropped (also junk before a flag)
    Oversize,  // collected bytes passed max_frame_len and were thrown away
  };
  struct Result {
    Status status;
    std::span<const uint8_t> frame;  // Frame only; valid until the next call
    size_t consumed;                 // bytes of the input this call used
  };
  struct Stats {
    uint64_t frames = 0;
    uint64_t bad_crc = 0;
    uint64_t oversize = 0;
    uint64_t bytes = 0;  // input bytes seen
  };

  explicit HdlcDecoder(const HdlcOptions& options = {});

  // Call repeatedly, dropping `consumed` bytes from the front of `input` each
  // time, until it returns NeedMore. Never fails on any input.
  Result next(std::span<const uint8_t> input);

  const Stats& stats() const { return stats_; }
  // Unescaped bytes collected for the frame in progress.
  size_t buffered() const { return delivered_ ? 0 : buf_.size(); }
  // Forget the frame in progress (for example after a transport reconnect).
  void reset();

 private:
  HdlcOptions options_;
  std::vector<uint8_t> buf_;
  bool escaped_ = false;
  bool delivered_ = false;  // buf_ holds the last delivered frame; clear on next call
  Stats stats_;
};

}  // namespace edgelink::devices

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
// What a device accepts (MaxRxMsgLen, §3.1): 5000 unescaped bytes, the 2 CRC bytes
// included, without PSRAM (200000 with it). Everything edgelink sends stays far below.
inline constexpr size_t kDeviceMaxRxFrame = 5000;
// What edgelink accepts from a device unless configured otherwise ([devices.X]
// max_frame_bytes). The device sizes each frame it sends to its message (§3.1), and a
// PSRAM board's REST text alone may be 200000 bytes: 256 KiB leaves room for the reply
// around such a text.
inline constexpr size_t kHdlcDefaultMaxFrame = 256 * 1024;

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
// counted. One difference: where the device throws an oversized frame's bytes away and
// collects again (so its tail fails the CRC later), this decoder discards everything up
// to the next flag and reports the frame once, with its full length. Either way no
// more than max_frame_len bytes are ever buffered.
class HdlcDecoder {
 public:
  enum class Status {
    Frame,     // `frame` holds one message whose CRC matched (the CRC is stripped)
    NeedMore,  // all input consumed, no event
    BadCrc,    // a frame ended with a wrong CRC and was dropped (also junk before a flag)
    Oversize,  // a frame longer than max_frame_len ended and was thrown away
  };
  struct Result {
    Status status;
    std::span<const uint8_t> frame;  // Frame only; valid until the next call
    size_t consumed;                 // bytes of the input this call used
    size_t dropped_len = 0;          // Oversize only: the frame's unescaped length, CRC included
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
  // Unescaped bytes collected for the frame in progress (0 while discarding one).
  size_t buffered() const { return delivered_ ? 0 : buf_.size(); }
  const HdlcOptions& options() const { return options_; }
  // Forget the frame in progress (for example after a transport reconnect).
  void reset();

 private:
  HdlcOptions options_;
  std::vector<uint8_t> buf_;
  bool escaped_ = false;
  bool delivered_ = false;  // buf_ holds the last delivered frame; clear on next call
  size_t discarded_ = 0;    // > 0: inside an oversized frame, this many bytes long so far
  Stats stats_;
};

}  // namespace edgelink::devices

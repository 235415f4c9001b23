#pragma once
// The RICREST link to one device (spec/ricrest.md §4.5–§4.7): numbered requests with
// replies matched by msgNum, per-attempt timeouts and bounded retries, unnumbered
// sends (FILEBLOCKs), and routing of everything the device sends on its own.
// Pure: bytes come in through on_bytes(), bytes go out through a callback, time is
// passed in (on_tick(now) / next_deadline()), so it is tested without a port or a
// clock. It knows nothing about rtstreams; the session layer above uses its handlers
// and decides when a device reset happened (then calls reset()).

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "edgelink/devices/hdlc.hpp"
#include "edgelink/devices/over_ascii.hpp"
#include "edgelink/devices/ricrest.hpp"

namespace edgelink::devices {

// How frames travel on the port (§3.3): plain HDLC (CommandSerial, BLE) or
// OverAscii-wrapped HDLC mixed with log text (SerialConsole).
enum class Framing { Hdlc, Console };

struct DeviceLinkOptions {
  Framing framing = Framing::Hdlc;
  // §4.6: 2 s per attempt. Attempts in total for an idempotent request (the
  // reference client makes 5); a non-idempotent request is sent once, because the
  // device does not detect duplicates and would run it again.
  std::chrono::milliseconds attempt_timeout{2000};
  int max_attempts = 5;
  // At most this many numbered requests outstanding; the wire allows 255 (1..255).
  size_t max_outstanding = 255;
  size_t max_log_line = 1024;  // console framing: longer lines are cut
  HdlcOptions hdlc;
};

enum class LinkError {
  None,
  Timeout,         // no reply after the last attempt
  DeviceReset,     // reset() while outstanding: the device (or our view of it) restarted
  BadReply,        // a reply with this msgNum arrived but is not a JSON object
  TooManyPending,  // every msgNum is outstanding (or max_outstanding reached)
  Unencodable,     // the request cannot be put on the wire (text with 0x00, ...)
};
const char* to_string(LinkError error);

enum class RequestKind {
  Url,           // element 0: "v", "devman/typeinfo?type=X"
  CommandFrame,  // element 3: JSON object text ("ufStart", "subscription", ...)
};

struct RequestResult {
  LinkError error = LinkError::None;
  uint8_t msg_num = 0;
  int attempts = 0;   // how many times it went on the wire
  std::string json;   // the reply's CMDRESPJSON text (also set for BadReply)
  DeviceReply reply;  // parsed, when error is None
  bool ok() const { return error == LinkError::None; }
};

struct DeviceLinkCounters {
  uint64_t requests = 0;           // numbered requests accepted
  uint64_t sent_frames = 0;        // every frame handed to the transport (retries included)
  uint64_t send_refused = 0;       // the transport refused a frame (down or queue full)
  uint64_t unnumbered_sent = 0;    // FILEBLOCKs and other msgNum-0 messages
  uint64_t replies = 0;            // replies matched to an outstanding request
  uint64_t stale_replies = 0;      // numbered replies with no outstanding request: dropped
  uint64_t bad_replies = 0;        // matched replies that are not a JSON object
  uint64_t retries = 0;            // resends after an attempt timed out
  uint64_t timeouts = 0;           // requests failed after their last attempt
  uint64_t reset_failed = 0;       // requests failed by reset()
  uint64_t refused_requests = 0;   // TooManyPending or Unencodable
  uint64_t bad_frames = 0;         // HDLC: bad CRC (line noise, a frame cut short)
  uint64_t oversize_frames = 0;    // HDLC: longer than options.hdlc.max_frame_len, dropped
  uint64_t bad_messages = 0;       // a good frame that is not a valid RICSerial message / JSON
  uint64_t unexpected = 0;         // valid but meaningless from a device (requests, bridge...)
  uint64_t notices = 0;            // msgNum-0 responses (sokto, okto, fail, cancel)
  uint64_t file_blocks = 0;        // device-originated FILEBLOCKs
  uint64_t publishes = 0;
  uint64_t reports = 0;
  uint64_t log_lines = 0;          // console framing only
  uint64_t resets = 0;
  uint64_t input_at_deadline = 0;  // ticks whose poll_input found bytes not read yet
  uint64_t bytes_at_deadline = 0;  // and how many
};

class DeviceLink {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Completion = std::function<void(const RequestResult&)>;

  struct Handlers {
    // Required. Hands one encoded frame to the transport; false when it was refused
    // (transport down, queue full). A refused request frame is resent on its timeout
    // if the request is idempotent; otherwise it fails with Timeout.
    std::function<bool(std::span<const uint8_t>)> send;
    // Optional. Feeds whatever the transport has already received to on_bytes() now,
    // before returning (DeviceTransport::deliver_pending()); returns the byte count.
    // on_tick() calls it first: a timeout or an rtstream block window is then judged
    // with every reply the device had already sent, not just those whose read
    // happened to run before the timer (§6.1.3).
    std::function<size_t()> poll_input;
    // RESPONSE with msgNum 0: sokto/okto notices, block failures, ufCancel/dfCancel.
    std::function<void(const DeviceReply&, std::string_view json)> on_notice;
    // COMMAND|RICREST FILEBLOCK from the device: rtstream output, downloads.
    std::function<void(const FileBlockElement&)> on_file_block;
    // PUBLISH frames: the bytes after the 2-byte header (parse_publish()).
    std::function<void(std::span<const uint8_t>)> on_publish;
    // REPORT frames, for example the shutdown notice (V13).
    std::function<void(const Report&, std::string_view json)> on_report;
    // Console framing: one line of device log text (no LF, no trailing CR).
    std::function<void(std::string_view line, bool truncated)> on_log_line;
    // A frame longer than options.hdlc.max_frame_len was dropped (already counted):
    // `len` unescaped bytes, CRC included. A reply lost this way ends in a timeout, so
    // the owner should say why.
    std::function<void(size_t len)> on_oversize_frame;
  };

  DeviceLink(const DeviceLinkOptions& options, Handlers handlers);
  DeviceLink(const DeviceLink&) = delete;
  DeviceLink& operator=(const DeviceLink&) = delete;

  struct Submitted {
    LinkError error = LinkError::None;  // None, TooManyPending or Unencodable
    uint8_t msg_num = 0;                // 1..255 when accepted
    explicit operator bool() const { return error == LinkError::None; }
  };
  // Sends a numbered request now. `done` runs exactly once (reply, timeout or reset)
  // if the request is accepted, never if it is refused. Handlers may call back into
  // the link (new requests, reset) but must not destroy it.
  Submitted request(RequestKind kind, std::string_view text, bool idempotent, Completion done, TimePoint now);
  // Forgets an outstanding request without calling its completion; a late reply is
  // then counted as stale. False if `msg_num` is not outstanding.
  bool cancel(uint8_t msg_num);

  // Unnumbered (msgNum 0) messages: never tracked, never retried.
  // False when the message cannot be encoded (empty block, stream 0, pos > 24 bits)
  // or the transport refused it.
  bool send_file_block(uint8_t stream_id, uint32_t pos, std::span<const uint8_t> data);
  bool send_unnumbered_command_frame(std::string_view json);  // dfAck and similar

  // Bytes read from the transport, in any slicing.
  void on_bytes(std::span<const uint8_t> bytes);

  // Takes in what the transport already holds (Handlers::poll_input), then retries or
  // fails the requests whose attempt deadline is at or before `now`. Handlers run
  // from here for what poll_input delivers.
  void on_tick(TimePoint now);
  // The earliest attempt deadline, for arming one timer; none when idle.
  std::optional<TimePoint> next_deadline() const;

  // The device restarted or the transport reconnected: every outstanding request
  // fails with DeviceReset, and half-received frames and log text are dropped. The
  // msgNum counter keeps counting, so a late reply cannot match a new request early.
  void reset();

  size_t outstanding() const { return outstanding_count_; }
  bool is_outstanding(uint8_t msg_num) const { return msg_num != 0 && slots_[msg_num].has_value(); }
  const DeviceLinkCounters& counters() const { return counters_; }
  const HdlcDecoder::Stats& hdlc_stats() const;
  const DeviceLinkOptions& options() const { return options_; }

 private:
  struct Pending {
    std::vector<uint8_t> frame;  // encoded once, resent as-is (same msgNum)
    Completion done;
    TimePoint deadline;
    int attempts = 0;
    int max_attempts = 1;
  };

  std::optional<uint8_t> allocate_msg_num() const;
  bool transmit(std::span<const uint8_t> frame);
  void frame_message(const std::vector<uint8_t>& message, std::vector<uint8_t>& frame) const;
  void on_message(std::span<const uint8_t> message);
  void on_oversize(size_t len);
  void on_response(uint8_t msg_num, const RicBody& body);
  void complete(uint8_t msg_num, RequestResult result);

  DeviceLinkOptions options_;
  Handlers handlers_;
  HdlcDecoder hdlc_;
  ConsoleDemux console_;
  std::array<std::optional<Pending>, 256> slots_;  // index = msgNum; slot 0 never used
  size_t outstanding_count_ = 0;
  uint8_t next_msg_num_ = 1;
  DeviceLinkCounters counters_;
};

}  // namespace edgelink::devices

#pragma once
// One rtstream session to one device endpoint (spec/ricrest.md §5.1–§5.8, §6.1), in
// the lossless in-order mode of §6.1.3. Pure: it sends through a DeviceLink it is
// given, time is passed in, and every timed action happens in on_tick(now).
//
// Sending (gateway -> device). The device never acknowledges a block; it only
// complains (a BUSY or POS_MISMATCH sokto, a "fail" reply). So exactly one block is
// in flight: it goes out at txPos, and if no complaint for it arrives within
// `block_window` it counts as accepted ("confirmed") and the next block goes. On
// BUSY (sokto = pos + len) or POS_MISMATCH (sokto = the device's position) the same
// bytes go again at sokto after `busy_backoff`; later positions move on with it, so
// the endpoint sees every byte once and in order. The in-flight block's bytes stay
// at the head of the queue until confirmed; nothing else needs keeping, because a
// sokto can only be acted on losslessly while its block is still in flight.
//
// What is guaranteed, and what is not:
//  * Device backpressure (BUSY), position trouble (POS_MISMATCH) and a session the
//    device no longer knows (SESSION_NOT_FOUND, after which the stream reopens and
//    resends the in-flight block at 0) lose nothing and duplicate nothing.
//  * A block lost on the link (bad CRC, dropped frame) produces no reply and cannot be
//    detected (§6.1.3). A complaint that arrives after its block's window has closed
//    ("late") cannot be repaired without reordering or duplicating: it is counted
//    and reported as DataLost. Size `block_window` for the transport's round trip.
//    A late complaint also shows the device's turnaround was too short for this link:
//    the turnaround part of the window doubles (capped at `turnaround_max`) so later
//    blocks get the longer window, the block in flight included (WindowGrown).
//  * Announced restart (a shutdown REPORT, §7.5): the firmware runs on for about a
//    second before it restarts, so its session still takes blocks. The router calls
//    on_device_restarting(): nothing new is sent (no block, no ufStart, no keepalive)
//    and the block in flight keeps its window. Without a complaint it counts as
//    delivered, to the old boot, and is never sent again; after a BUSY, POS_MISMATCH or
//    fail it stays queued. Once the device has restarted the router calls
//    on_device_reset() and the stream reopens in the new boot and sends what is
//    queued. So every byte reaches the endpoint once: before the restart or after it.
//  * Unannounced reset (transport reconnect, a streamID collision the router sees):
//    the stream reopens with txPos 0 while it is open()ed and resends the block that
//    was in flight, then the rest of the queue. Bytes confirmed before the reset are
//    not resent: whatever the device had accepted but not yet consumed when it
//    crashed is lost. The in-flight block may reach the endpoint twice, once in the
//    dead session (if the device took it before resetting) and once in the new.
//  * close() discards what is still queued (counted as dropped_closed).
//
// Keepalive (§6.1.4): after `keepalive_after` (5 s) with nothing sent, the same
// ufStart is sent again (a restart: same streamID while the session exists, position
// back to 0, heals itself with a new streamID if it expired). The 24-bit wrap
// (§6.1.7) uses the same restart, at the first moment with nothing in flight after
// txPos passes `wrap_threshold`, and always before a block would end past 0xFFFFFF.
//
// Receiving (device -> gateway, §5.7, §6.1.8): blocks for this streamID are passed to
// on_data in arrival order. Positions are informational; a block that does not start
// where the previous one ended is still delivered and counted as rx_gaps.
//
// Timing: entry points without a `now` (write, notices, data, resets, request
// completions) never need the time; they only change state. After any call the owner
// re-arms its timer from next_deadline(); `kDueNow` means "call on_tick as soon as
// possible".

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "edgelink/devices/device_link.hpp"
#include "edgelink/devices/ricrest.hpp"

namespace edgelink::devices {

struct RtStreamOptions {
  // Bytes accepted by write() and not yet confirmed at the device; a full queue makes
  // write() refuse (the bridge then stops reading its client).
  size_t max_queue_bytes = 1024 * 1024;
  // §6.1.3 step 2: how long a block waits for a BUSY/POS_MISMATCH/fail before it
  // counts as accepted. No upstream constant: it must cover the frame's time in the
  // transport's queue and on the wire plus the device's reply. A 475-byte block is
  // ~42 ms at 115200 baud (twice that OverAscii-encoded on a console port), so 100 ms
  // suits fast command UARTs; slow or console ports want more. Throughput is at most
  // one block per window.
  std::chrono::milliseconds block_window{100};
  // The part of block_window allowed for the device's turnaround (its reply's way back,
  // the firmware's loop, a loaded host). A late complaint doubles it (by at least
  // 10 ms) up to turnaround_max, and every later window grows by as much; it does not
  // shrink again (the stream's DeviceSessions shares it with the device's other
  // streams). turnaround_max at or below turnaround turns the growth off.
  std::chrono::milliseconds turnaround{20};
  std::chrono::milliseconds turnaround_max{250};
  // Pause before resending after a BUSY (the reference client waits 50 ms).
  std::chrono::milliseconds busy_backoff{50};
  // §6.1.4: 5 s, so a keepalive plus one 2 s retry still lands within the device's
  // 10 s idle timeout.
  std::chrono::milliseconds keepalive_after{5000};
  // After a failed open (fail reply, timeout, a hard failure of the first block) the
  // next attempt waits reopen_backoff_min, doubling up to reopen_backoff_max.
  std::chrono::milliseconds reopen_backoff_min{1000};
  std::chrono::milliseconds reopen_backoff_max{10000};
  // §6.1.7: restart at the first quiet moment past this position.
  uint32_t wrap_threshold = 0xF00000;
};

enum class RtStreamState {
  Closed,      // not wanted: nothing is sent, write() refuses
  Waiting,     // wanted, not open: (re)open is due at a deadline (backoff, reset, transport down)
  Opening,     // ufStart outstanding, no valid streamID
  Open,        // streamID valid, blocks flow
  Restarting,  // ufStart restart outstanding for a valid streamID (keepalive, 24-bit wrap)
};

enum class RtStreamEvent {
  Opened,       // ufStart ok: a new session (first open, reopen, or a keepalive that found it expired)
  OpenFailed,   // fail reply, timeout, or a fail for the first block (§6.1.1 step 4); retried on backoff
  SessionLost,  // SESSION_NOT_FOUND, a hard block failure or a device reset; the stream reopens
  DataLost,     // bytes that may not have reached the endpoint (a late complaint)
  WindowGrown,  // a late complaint made the turnaround, and so the block window, longer
  Closed,       // close() (not reported for the destructor)
};
const char* to_string(RtStreamEvent event);

// What made the last open fail (OpenFailed), for callers that report it on: the link's
// error (None when the device answered), and the reply JSON when there was one.
struct RtStreamOpenFailure {
  LinkError link_error = LinkError::None;
  std::string reply_json;
};

struct RtStreamCallbacks {
  // Device output for this stream, in arrival order.
  std::function<void(std::span<const uint8_t>)> on_data;
  // After write() refused bytes: the queue has drained to half its cap.
  std::function<void()> on_writable;
  // State news for logs and the bridge; `detail` is short human-readable text.
  std::function<void(RtStreamEvent, std::string_view detail)> on_event;
};

struct RtStreamCounters {
  uint64_t bytes_written = 0;    // accepted by write()
  uint64_t bytes_out = 0;        // confirmed at the device (window passed without complaint)
  uint64_t blocks_out = 0;       // FILEBLOCKs handed to the link (resends included)
  uint64_t bytes_in = 0;         // device output delivered to on_data
  uint64_t blocks_in = 0;
  uint64_t rx_gaps = 0;          // device blocks not starting where the previous one ended
  uint64_t resends = 0;          // blocks sent again after BUSY/POS_MISMATCH
  uint64_t busy = 0;             // BUSY soktos for the block in flight
  uint64_t pos_mismatch = 0;     // POS_MISMATCH soktos for the block in flight
  uint64_t late_notices = 0;     // complaints that arrived after their block's window
  uint64_t session_not_found = 0;
  uint64_t hard_failures = 0;    // other "fail" block replies (the device closed the session)
  uint64_t opens = 0;            // ufStart ok with a new streamID
  uint64_t reopens = 0;          // opens after the first one
  uint64_t open_failures = 0;
  uint64_t keepalives = 0;       // ufStart restarts sent as keepalive
  uint64_t wrap_restarts = 0;    // ufStart restarts sent for the 24-bit wrap
  uint64_t device_resets = 0;
  uint64_t send_refused = 0;     // the link/transport refused a block (retried after a window)
  uint64_t write_refused = 0;    // bytes write() refused because the queue was full
  uint64_t dropped_closed = 0;   // queued bytes discarded by close()
  uint64_t dropped_late = 0;     // bytes of a confirmed block a late BUSY said were dropped
  uint64_t unexpected_notices = 0;
  uint64_t window_grown = 0;     // late complaints that made this stream's turnaround longer
};

class RtStream {
 public:
  using TimePoint = DeviceLink::TimePoint;
  static constexpr TimePoint kDueNow = TimePoint::min();

  RtStream(DeviceLink& link, std::string file_name, std::string endpoint, RtStreamOptions options,
           RtStreamCallbacks callbacks);
  ~RtStream();  // forgets its outstanding request; sends nothing
  RtStream(const RtStream&) = delete;
  RtStream& operator=(const RtStream&) = delete;

  // Wants the session open: sends ufStart now (V2 JSON). No-op unless Closed/Waiting.
  void open(TimePoint now);
  // ufEnd for the streamID (V10) if there is one; discards the queue; state Closed.
  // The device keeps the session (and its slot) until its 10 s idle timeout.
  void close(TimePoint now);

  // Queues bytes for the device. Returns how many were accepted (0 when Closed or
  // full); bytes past the cap are refused, and on_writable fires once it has room.
  size_t write(std::span<const uint8_t> bytes);
  // All or nothing, for callers that hold a refused chunk (the TCP bridge): true when
  // every byte was queued. A chunk is taken when it fits, or when the queue is empty
  // (so one larger than the cap cannot stall forever). On false, on_writable follows.
  bool write_all(std::span<const uint8_t> bytes);
  bool writable() const { return state_ != RtStreamState::Closed && queue_.size() < options_.max_queue_bytes; }
  size_t queued_bytes() const { return queue_.size(); }

  void on_tick(TimePoint now);
  std::optional<TimePoint> next_deadline() const;

  // ---- fed by the per-device router (DeviceSessions) ----
  // A "req":"ufBlock" notice whose streamID is this stream's.
  void on_block_notice(const BlockNotice& notice);
  // A device FILEBLOCK whose streamID is this stream's.
  void on_file_block(const FileBlockElement& block);
  // The device announced a restart (shutdown REPORT) and still runs its old boot:
  // hold everything but the in-flight block's window until on_device_reset().
  void on_device_restarting();
  // The device restarted (after its REPORT, a transport reconnect, a streamID
  // collision): the streamID is void; reopen when possible, resending what was not
  // confirmed.
  void on_device_reset();
  // While suspended (transport down) nothing is sent and no deadline is due.
  void set_suspended(bool suspended);
  // At least `turnaround` from now on (capped at turnaround_max), for every block
  // window including the one in flight; true when it grew. The router passes one
  // stream's grown turnaround on to the device's other streams.
  bool raise_turnaround(std::chrono::milliseconds turnaround);
  // Called whenever ufStart gives this stream a streamID (the router checks collisions).
  void set_stream_id_hook(std::function<void(RtStream&)> hook) { stream_id_hook_ = std::move(hook); }

  // 0 when the stream has no valid streamID.
  uint8_t stream_id() const { return stream_id_; }
  RtStreamState state() const { return state_; }
  // "closed", "waiting", "retrying" (waiting after a failure), "opening", "open",
  // "restarting", "suspended", "device restarting" (between on_device_restarting()
  // and on_device_reset()).
  const char* state_name() const;
  const std::string& file_name() const { return file_name_; }
  const std::string& endpoint() const { return endpoint_; }
  const std::string& last_error() const { return last_error_; }
  const RtStreamOpenFailure& last_open_failure() const { return open_failure_; }
  uint32_t tx_position() const { return tx_pos_; }
  bool block_in_flight() const { return inflight_.has_value(); }
  const RtStreamCounters& counters() const { return counters_; }
  const RtStreamOptions& options() const { return options_; }
  // The device turnaround now allowed (options().turnaround, grown by late complaints)
  // and the block window it gives: options().block_window plus the growth.
  std::chrono::milliseconds turnaround() const { return turnaround_; }
  std::chrono::milliseconds block_window() const { return options_.block_window + (turnaround_ - options_.turnaround); }

 private:
  enum class StartReason { Open, Reopen, Keepalive, Wrap };
  struct InFlight {
    uint32_t pos = 0;
    size_t len = 0;  // the first `len` bytes of queue_
    TimePoint window_end;
  };
  struct Sent {  // a recently confirmed block, to recognise late complaints
    uint32_t pos = 0;
    size_t len = 0;
  };

  void send_ufstart(TimePoint now, StartReason reason);
  void on_ufstart_reply(uint64_t generation, const RequestResult& result);
  void cancel_request();
  void fail_open(std::string why, RtStreamOpenFailure failure = {});
  void lose_session(std::string why, bool with_backoff);
  void wait_for_reopen(std::chrono::milliseconds delay);
  void confirm_inflight();
  void send_block(TimePoint now);
  void maybe_writable();
  void on_late_notice(const char* what);  // "late BUSY", "late POS_MISMATCH"
  void event(RtStreamEvent e, std::string_view detail);
  std::chrono::milliseconds backoff() const;

  DeviceLink& link_;
  std::string file_name_;
  std::string endpoint_;
  RtStreamOptions options_;
  RtStreamCallbacks callbacks_;
  std::function<void(RtStream&)> stream_id_hook_;

  RtStreamState state_ = RtStreamState::Closed;
  bool suspended_ = false;
  bool device_restarting_ = false;  // REPORT seen, old boot still running: send nothing new
  uint8_t stream_id_ = 0;
  size_t block_size_ = kMaxBlockPayload;
  std::string last_error_;
  RtStreamOpenFailure open_failure_;
  int failures_ = 0;  // consecutive failed opens; reset when a block is confirmed
  bool ever_opened_ = false;
  bool first_block_pending_ = false;  // §6.1.1 step 4: the open is confirmed by its first block

  // Outstanding ufStart. The generation makes a completion for an abandoned
  // request harmless even if it could not be cancelled.
  uint64_t generation_ = 0;
  bool request_pending_ = false;
  uint8_t request_msg_ = 0;

  // Waiting: when to (re)open; unset = `retry_delay_` from the next tick.
  std::optional<TimePoint> retry_at_;
  std::chrono::milliseconds retry_delay_{0};

  std::deque<uint8_t> queue_;  // unconfirmed bytes; the in-flight block is at the head
  std::optional<InFlight> inflight_;
  std::deque<Sent> recent_;
  uint32_t tx_pos_ = 0;  // where the next block goes
  // Earliest time for the next block; unset = `send_delay_` from the next tick.
  std::optional<TimePoint> next_send_at_ = kDueNow;
  std::chrono::milliseconds send_delay_{0};
  TimePoint last_activity_{};  // last block or ufStart sent: the device's idle timer
  TimePoint prev_activity_{};  // before the in-flight block (a POS_MISMATCH block is no activity)
  bool want_writable_ = false;
  std::chrono::milliseconds turnaround_;  // options_.turnaround, grown by late complaints

  std::optional<uint32_t> rx_next_;  // where the next device block should start

  RtStreamCounters counters_;
};

}  // namespace edgelink::devices

#pragma once
// Everything session-shaped on one device: its DeviceLink and its RtStreams. Routes
// the link's msgNum-0 notices (sokto, block failures) and device FILEBLOCKs to the
// stream with that streamID (§4.7), drops device data for streamIDs no stream holds
// (§5.7: the device keeps sending on closed sessions, and IDs are reused after a
// reset), and decides when the device has reset:
//  * a shutdown REPORT (§7.5, V13; the real one has no "reason"). The firmware runs on
//    for SYSTEM_RESTART_DELAY_MS (1 s) after it and only then restarts, so a session
//    opened at once would belong to the old boot and vanish a second later. The
//    streams are held (RtStream::on_device_restarting: the block in flight is
//    settled, nothing new goes out) for `restart_wait`, and only then reset and
//    reopened in the new boot. A transport loss during the wait ends it early: a
//    USB-CDC port goes away when the chip restarts, and comes back with the new boot.
//  * a transport reconnect (on_transport_state);
//  * a ufStart that hands one stream a streamID another stream still holds: the
//    device's ID counter restarted, i.e. it crashed without a report (§6.1.6). The
//    other streams must not go on sending with that ID, or their bytes would land in
//    the new session.
// On a reset every stream forgets its streamID and reopens (RtStream::on_device_reset).
//
// Block windows (§6.1.3): a complaint that comes after its block's window makes that
// stream's turnaround longer (RtStream::on_late_notice); the device's other streams,
// and streams added later, get the same turnaround, since it is the device's and the
// link's. It never shrinks: it lasts until the daemon restarts or a config reload
// changes the device (which builds a new DeviceSessions).
//
// Session limit (§5.1): the device runs at most 4 sessions, across all its channels.
// Each stream has its own fileName and a ufStart with the same fileName restarts the
// existing session instead of taking a new slot, so at most `max_sessions` streams
// per device keep this gateway within the limit even while closed sessions linger
// for their 10 s idle timeout. A "sessionNotStarted" reply (slots taken by another
// client, or by a stream removed less than 10 s ago) is an open failure that the
// stream retries on its backoff.
//
// Pure like its parts: the owner feeds transport bytes to on_bytes(), transport
// up/down to on_transport_state(), and drives on_tick()/next_deadline().

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "edgelink/devices/device_link.hpp"
#include "edgelink/devices/rtstream.hpp"

namespace edgelink::devices {

// After a shutdown REPORT: the firmware's 1 s restart delay, the reboot itself (an
// ESP32 runs its main loop again well within a second) and some slack for the
// REPORT's own way here. Too short and a ufStart lands in the old boot; too long only
// delays the reopen. A ufStart sent while the device still boots is lost and retried
// after the link's 2 s timeout, which is harmless.
inline constexpr std::chrono::milliseconds kDeviceRestartWait{2000};

struct DeviceSessionsOptions {
  size_t max_sessions = 4;  // the device's limit (§5.1)
  RtStreamOptions stream;   // defaults for add_stream()
  std::chrono::milliseconds restart_wait = kDeviceRestartWait;
};

struct DeviceSessionsCounters {
  uint64_t device_resets = 0;      // REPORTs, transport losses and streamID collisions
  uint64_t reset_reports = 0;      // shutdown REPORTs (each starts a restart wait)
  uint64_t reset_reconnects = 0;   // transport up transitions (the first connect included)
  uint64_t id_collisions = 0;      // a new streamID already held by another stream
  uint64_t notices_routed = 0;
  uint64_t notices_unrouted = 0;   // ufBlock notices for no stream of ours (stale or foreign)
  uint64_t blocks_routed = 0;
  uint64_t blocks_dropped = 0;     // device FILEBLOCKs for no stream of ours
  uint64_t streams_refused = 0;    // add_stream() beyond max_sessions or duplicate
};

class DeviceSessions {
 public:
  using TimePoint = DeviceLink::TimePoint;

  // `handlers.send` is required. on_notice, on_file_block and on_report are called for
  // what the router does not consume (other notices, blocks for no stream, every
  // report after the router has acted on it); on_publish and on_log_line go straight
  // through. The transport starts down: nothing is sent before on_transport_state(true).
  DeviceSessions(const DeviceLinkOptions& link_options, DeviceLink::Handlers handlers,
                 DeviceSessionsOptions options = {});
  DeviceSessions(const DeviceSessions&) = delete;
  DeviceSessions& operator=(const DeviceSessions&) = delete;

  // A stream named `name` (unique per device) on `file_name` (unique per device: two
  // streams on one fileName would share one device session). nullptr when refused.
  // The stream stays Closed until its open().
  RtStream* add_stream(std::string name, std::string endpoint, std::string file_name, RtStreamCallbacks callbacks,
                       std::optional<RtStreamOptions> options = std::nullopt);
  // Closes (ufEnd) and destroys the stream. False if there is none by that name.
  bool remove_stream(std::string_view name, TimePoint now);
  RtStream* find(std::string_view name);

  // Bytes read from the transport, in any slicing.
  void on_bytes(std::span<const uint8_t> bytes) { link_.on_bytes(bytes); }
  // Down: outstanding requests fail, streams lose their sessions and stop sending.
  // Up: a reconnect is a device reset (§6.1.6); streams reopen.
  void on_transport_state(bool up, TimePoint now);
  // The link's tick comes first, and it starts with Handlers::poll_input: the streams
  // judge their block windows with every reply the transport already holds.
  void on_tick(TimePoint now);
  // The earliest of the link's and the streams' deadlines (RtStream::kDueNow = at once).
  std::optional<TimePoint> next_deadline() const;
  // Between a shutdown REPORT and the end of the restart wait.
  bool device_restarting() const { return restart_pending_; }
  // The device turnaround late complaints raised the streams' to; 0 while none did.
  std::chrono::milliseconds turnaround() const { return turnaround_; }

  // For other requests to the device (v, subscription, HTTP API...).
  DeviceLink& link() { return link_; }
  bool transport_up() const { return transport_up_; }
  size_t stream_count() const { return streams_.size(); }
  template <class F>
  void for_each_stream(F&& f) const {
    for (const auto& e : streams_) f(e.name, static_cast<const RtStream&>(*e.stream));
  }
  const DeviceSessionsCounters& counters() const { return counters_; }

 private:
  struct Entry {
    std::string name;
    std::unique_ptr<RtStream> stream;
  };

  DeviceLink::Handlers wrap(DeviceLink::Handlers handlers);
  void device_reset(RtStream* except);
  void start_restart_wait();
  void end_restart_wait(TimePoint now);
  bool any_block_in_flight() const;
  RtStream* by_stream_id(uint8_t id);
  void on_stream_id(RtStream& stream);
  void share_turnaround(std::chrono::milliseconds turnaround);

  DeviceSessionsOptions options_;
  DeviceLink::Handlers user_;
  DeviceLink link_;  // before streams_: streams cancel their requests on destruction
  std::vector<Entry> streams_;
  bool transport_up_ = false;
  // Restart wait: pending from the REPORT; its end is set on the first tick after it
  // (the REPORT arrives through on_bytes, which has no clock).
  bool restart_pending_ = false;
  std::optional<TimePoint> restart_until_;
  DeviceSessionsCounters counters_;
  std::chrono::milliseconds turnaround_{0};  // the longest any stream's grew to (0: none grew)
};

}  // namespace edgelink::devices

#include "edgelink/devices/device_sessions.hpp"

#include <algorithm>
#include <utility>

namespace edgelink::devices {

DeviceSessions::DeviceSessions(const DeviceLinkOptions& link_options, DeviceLink::Handlers handlers,
                               DeviceSessionsOptions options)
    : options_(std::move(options)), user_(handlers), link_(link_options, wrap(std::move(handlers))) {}

DeviceLink::Handlers DeviceSessions::wrap(DeviceLink::Handlers h) {
  h.on_notice = [this](const DeviceReply& reply, std::string_view json) {
    if (reply.req == "ufBlock") {
      const auto parsed = parse_block_notice(reply);
      if (const auto* notice = std::get_if<BlockNotice>(&parsed);
          notice && notice->kind != BlockNoticeKind::Okto && notice->stream_id) {
        if (RtStream* s = by_stream_id(*notice->stream_id)) {
          ++counters_.notices_routed;
          const auto before = s->turnaround();
          s->on_block_notice(*notice);
          if (s->turnaround() > before) share_turnaround(s->turnaround());
          return;
        }
        // A stream we closed, one whose ID went stale with a reset, or a file push the
        // owner runs (DevicePush): the owner sees it.
        ++counters_.notices_unrouted;
        if (user_.on_notice) user_.on_notice(reply, json);
        return;
      }
    }
    if (user_.on_notice) user_.on_notice(reply, json);
  };
  h.on_file_block = [this](const FileBlockElement& block) {
    if (RtStream* s = by_stream_id(block.stream_id)) {
      ++counters_.blocks_routed;
      s->on_file_block(block);
      return;
    }
    if (user_.on_file_block) {
      user_.on_file_block(block);  // an OKTO download, some day (§5.10)
    } else {
      ++counters_.blocks_dropped;
    }
  };
  h.on_report = [this](const Report& report, std::string_view json) {
    // Before the reset below, which drops the frame buffer `json` points into.
    if (user_.on_report) user_.on_report(report, json);
    // §7.5: only is_shutdown() counts (isRestart and the optional "reason" do not):
    // every session and request of this boot is about to go.
    if (report.is_shutdown()) start_restart_wait();
  };
  return h;
}

// The turnaround is the device's and its link's, not one stream's: a late complaint on
// one stream means the others' complaints would be late too.
void DeviceSessions::share_turnaround(std::chrono::milliseconds turnaround) {
  turnaround_ = std::max(turnaround_, turnaround);
  for (auto& e : streams_) e.stream->raise_turnaround(turnaround_);
}

RtStream* DeviceSessions::by_stream_id(uint8_t id) {
  if (id == kStreamIdAny) return nullptr;
  for (auto& e : streams_)
    if (e.stream->stream_id() == id) return e.stream.get();
  return nullptr;
}

void DeviceSessions::device_reset(RtStream* except) {
  ++counters_.device_resets;
  for (auto& e : streams_)
    if (e.stream.get() != except) e.stream->on_device_reset();
}

void DeviceSessions::start_restart_wait() {
  ++counters_.reset_reports;
  restart_pending_ = true;
  restart_until_.reset();  // a second REPORT starts the wait again
  for (auto& e : streams_) e.stream->on_device_restarting();
  // Replies to requests still outstanding would come from the old boot, if at all.
  link_.reset();
}

bool DeviceSessions::any_block_in_flight() const {
  return std::any_of(streams_.begin(), streams_.end(), [](const Entry& e) { return e.stream->block_in_flight(); });
}

void DeviceSessions::end_restart_wait(TimePoint now) {
  if (!restart_pending_) return;
  if (!restart_until_) restart_until_ = now + options_.restart_wait;
  // A block still in its window was sent to the old boot: it is settled (confirmed or
  // complained about) before the streams forget that boot, or it could be sent twice.
  if (now < *restart_until_ || any_block_in_flight()) return;
  restart_pending_ = false;
  restart_until_.reset();
  device_reset(nullptr);
}

void DeviceSessions::on_stream_id(RtStream& stream) {
  for (auto& e : streams_) {
    if (e.stream.get() != &stream && e.stream->stream_id() == stream.stream_id()) {
      // The device handed out an ID one of our live sessions holds: its counter
      // restarted, so it reset without telling us and every old ID is void.
      ++counters_.id_collisions;
      device_reset(&stream);
      return;
    }
  }
}

RtStream* DeviceSessions::add_stream(std::string name, std::string endpoint, std::string file_name,
                                     RtStreamCallbacks callbacks, std::optional<RtStreamOptions> options) {
  const bool duplicate = std::any_of(streams_.begin(), streams_.end(), [&](const Entry& e) {
    return e.name == name || e.stream->file_name() == file_name;
  });
  if (duplicate || streams_.size() >= options_.max_sessions) {
    ++counters_.streams_refused;
    return nullptr;
  }
  auto stream = std::make_unique<RtStream>(link_, std::move(file_name), std::move(endpoint),
                                           options.value_or(options_.stream), std::move(callbacks));
  stream->set_stream_id_hook([this](RtStream& s) { on_stream_id(s); });
  stream->set_suspended(!transport_up_);
  if (restart_pending_) stream->on_device_restarting();
  stream->raise_turnaround(turnaround_);  // what the device's other streams learnt
  RtStream* raw = stream.get();
  streams_.push_back({std::move(name), std::move(stream)});
  return raw;
}

bool DeviceSessions::remove_stream(std::string_view name, TimePoint now) {
  const auto it = std::find_if(streams_.begin(), streams_.end(), [&](const Entry& e) { return e.name == name; });
  if (it == streams_.end()) return false;
  it->stream->close(now);
  streams_.erase(it);
  return true;
}

RtStream* DeviceSessions::find(std::string_view name) {
  for (auto& e : streams_)
    if (e.name == name) return e.stream.get();
  return nullptr;
}

void DeviceSessions::on_transport_state(bool up, TimePoint now) {
  (void)now;
  if (up == transport_up_) return;
  transport_up_ = up;
  if (up) {
    // §6.1.6: a reconnect counts as a device reset (the streams already dropped their
    // sessions when it went down); they reopen on the next tick.
    ++counters_.reset_reconnects;
    for (auto& e : streams_) e.stream->set_suspended(false);
    return;
  }
  restart_pending_ = false;  // the port went: whatever comes back is the new boot
  restart_until_.reset();
  device_reset(nullptr);
  link_.reset();
  for (auto& e : streams_) e.stream->set_suspended(true);
}

void DeviceSessions::on_tick(TimePoint now) {
  link_.on_tick(now);
  // By index: a stream's tick can reset others, never add or remove streams.
  for (size_t i = 0; i < streams_.size(); ++i) streams_[i].stream->on_tick(now);
  end_restart_wait(now);
}

std::optional<DeviceSessions::TimePoint> DeviceSessions::next_deadline() const {
  std::optional<TimePoint> earliest = link_.next_deadline();
  auto consider = [&earliest](std::optional<TimePoint> d) {
    if (d && (!earliest || *d < *earliest)) earliest = d;
  };
  for (const auto& e : streams_) consider(e.stream->next_deadline());
  // The wait's end is set on the next tick. While a block is in flight, its window's
  // end (above) is when the wait is checked again: a deadline already past would spin.
  if (restart_pending_ && !restart_until_) consider(RtStream::kDueNow);
  if (restart_pending_ && restart_until_ && !any_block_in_flight()) consider(*restart_until_);
  return earliest;
}

}  // namespace edgelink::devices

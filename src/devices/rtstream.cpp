#include "edgelink/devices/rtstream.hpp"

#include <algorithm>
#include <utility>
#include <vector>

namespace edgelink::devices {

const char* to_string(RtStreamEvent event) {
  switch (event) {
    case RtStreamEvent::Opened: return "opened";
    case RtStreamEvent::OpenFailed: return "open failed";
    case RtStreamEvent::SessionLost: return "session lost";
    case RtStreamEvent::DataLost: return "data lost";
    case RtStreamEvent::WindowGrown: return "window grown";
    case RtStreamEvent::Closed: return "closed";
  }
  return "?";
}

namespace {
// Late complaints are matched against this many recently confirmed blocks.
constexpr size_t kRecentBlocks = 8;
// The least a late complaint adds to the turnaround (a 0 ms turnaround still grows).
constexpr std::chrono::milliseconds kMinTurnaroundStep{10};
}  // namespace

RtStream::RtStream(DeviceLink& link, std::string file_name, std::string endpoint, RtStreamOptions options,
                   RtStreamCallbacks callbacks)
    : link_(link),
      file_name_(std::move(file_name)),
      endpoint_(std::move(endpoint)),
      options_(options),
      callbacks_(std::move(callbacks)),
      turnaround_(options.turnaround) {
  options_.max_queue_bytes = std::max<size_t>(options_.max_queue_bytes, 1);
  options_.wrap_threshold = std::min<uint32_t>(options_.wrap_threshold, kMaxFilePos);
  options_.reopen_backoff_max = std::max(options_.reopen_backoff_max, options_.reopen_backoff_min);
}

RtStream::~RtStream() { cancel_request(); }

const char* RtStream::state_name() const {
  if (state_ != RtStreamState::Closed && suspended_) return "suspended";
  if (state_ != RtStreamState::Closed && device_restarting_) return "device restarting";
  switch (state_) {
    case RtStreamState::Closed: return "closed";
    case RtStreamState::Waiting: return failures_ > 0 ? "retrying" : "waiting";
    case RtStreamState::Opening: return "opening";
    case RtStreamState::Open: return "open";
    case RtStreamState::Restarting: return "restarting";
  }
  return "?";
}

void RtStream::event(RtStreamEvent e, std::string_view detail) {
  if (callbacks_.on_event) callbacks_.on_event(e, detail);
}

std::chrono::milliseconds RtStream::backoff() const {
  auto d = options_.reopen_backoff_min;
  for (int i = 1; i < failures_ && d < options_.reopen_backoff_max; ++i) d *= 2;
  return std::min(d, options_.reopen_backoff_max);
}

// ---- opening ---------------------------------------------------------------------

void RtStream::open(TimePoint now) {
  if (state_ != RtStreamState::Closed && state_ != RtStreamState::Waiting) return;
  if (state_ == RtStreamState::Closed) {
    failures_ = 0;
    tx_pos_ = 0;
  }
  if (suspended_ || device_restarting_) {  // a session opened now would die with the old boot
    wait_for_reopen(std::chrono::milliseconds{0});
    return;
  }
  send_ufstart(now, ever_opened_ ? StartReason::Reopen : StartReason::Open);
}

void RtStream::cancel_request() {
  if (request_pending_ && request_msg_ != 0) link_.cancel(request_msg_);
  request_pending_ = false;
  request_msg_ = 0;
  ++generation_;
}

void RtStream::send_ufstart(TimePoint now, StartReason reason) {
  cancel_request();
  const uint64_t generation = generation_;
  const bool restart = (reason == StartReason::Keepalive || reason == StartReason::Wrap) && stream_id_ != 0;
  state_ = restart ? RtStreamState::Restarting : RtStreamState::Opening;
  if (!restart) stream_id_ = 0;
  inflight_.reset();
  request_pending_ = true;
  // Any uf* command for the session resets the device's idle timer (§5.1).
  last_activity_ = now;
  // §6.1.1: idempotent, so the link may resend it (a retried ufStart is a restart).
  const auto submitted = link_.request(
      RequestKind::CommandFrame, ufstart_rtstream_json(file_name_, endpoint_), true,
      [this, generation](const RequestResult& r) { on_ufstart_reply(generation, r); }, now);
  if (generation != generation_ || !request_pending_) return;  // completed (or abandoned) synchronously
  if (!submitted) {
    request_pending_ = false;
    fail_open(std::string("ufStart not sent: ") + to_string(submitted.error), {submitted.error, {}});
    return;
  }
  request_msg_ = submitted.msg_num;
}

void RtStream::on_ufstart_reply(uint64_t generation, const RequestResult& result) {
  if (generation != generation_ || !request_pending_) return;
  request_pending_ = false;
  request_msg_ = 0;
  if (!result.ok()) {
    if (result.error == LinkError::DeviceReset) {
      // The link was reset under us (the router normally resets the streams first).
      lose_session("device reset", false);
      return;
    }
    fail_open(std::string("ufStart: ") + to_string(result.error), {result.error, result.json});
    return;
  }
  const auto parsed = parse_ufstart_reply(result.reply);
  const auto* reply = std::get_if<UfStartReply>(&parsed);
  if (!reply) {
    fail_open("ufStart: unusable reply: " + result.json, {LinkError::None, result.json});
    return;
  }
  if (!reply->ok) {
    std::string why = !reply->reason_text.empty() ? reply->reason_text : !reply->error.empty() ? reply->error : "fail";
    fail_open("ufStart failed: " + why, {LinkError::None, result.json});
    return;
  }
  const bool same_session = state_ == RtStreamState::Restarting && reply->stream_id == stream_id_;
  stream_id_ = reply->stream_id;
  block_size_ = std::clamp<size_t>(reply->max_block_size, 1, kMaxBlockPayload);
  // A restart (and a new session) puts the device's position back to 0 (§5.1).
  tx_pos_ = 0;
  recent_.clear();
  inflight_.reset();
  state_ = RtStreamState::Open;
  next_send_at_ = kDueNow;
  if (same_session) return;
  // A new session: the first open, a reopen, or a keepalive that found the old
  // session expired (the device then called the endpoint's open callback again).
  ++counters_.opens;
  if (ever_opened_) ++counters_.reopens;
  ever_opened_ = true;
  first_block_pending_ = true;
  rx_next_.reset();
  last_error_.clear();
  event(RtStreamEvent::Opened, "streamID " + std::to_string(stream_id_));
  // Last: the router may reset other streams from here.
  if (stream_id_hook_) stream_id_hook_(*this);
}

void RtStream::wait_for_reopen(std::chrono::milliseconds delay) {
  state_ = RtStreamState::Waiting;
  retry_delay_ = delay;
  if (delay.count() == 0)
    retry_at_ = kDueNow;
  else
    retry_at_.reset();  // resolved against the clock on the next tick
}

void RtStream::fail_open(std::string why, RtStreamOpenFailure failure) {
  open_failure_ = std::move(failure);
  cancel_request();
  ++counters_.open_failures;
  ++failures_;
  stream_id_ = 0;
  inflight_.reset();  // its bytes stay queued
  tx_pos_ = 0;
  last_error_ = std::move(why);
  wait_for_reopen(backoff());
  event(RtStreamEvent::OpenFailed, last_error_);
}

void RtStream::lose_session(std::string why, bool with_backoff) {
  cancel_request();
  stream_id_ = 0;
  inflight_.reset();  // unconfirmed: resent in the next session
  tx_pos_ = 0;
  rx_next_.reset();
  recent_.clear();
  last_error_ = std::move(why);
  if (with_backoff) {
    ++failures_;
    wait_for_reopen(backoff());
  } else {
    wait_for_reopen(std::chrono::milliseconds{0});
  }
  event(RtStreamEvent::SessionLost, last_error_);
}

void RtStream::close(TimePoint now) {
  if (state_ == RtStreamState::Closed) return;
  const uint8_t id = stream_id_;
  cancel_request();
  counters_.dropped_closed += queue_.size();
  queue_.clear();
  inflight_.reset();
  stream_id_ = 0;
  tx_pos_ = 0;
  want_writable_ = false;
  state_ = RtStreamState::Closed;
  // §6.1.5: the device keeps the session until its idle timeout anyway; ufEnd tells
  // it we are done. Nothing depends on the reply.
  if (id != 0 && !suspended_) link_.request(RequestKind::CommandFrame, ufend_json(id), true, {}, now);
  event(RtStreamEvent::Closed, "");
}

// ---- sending ---------------------------------------------------------------------

size_t RtStream::write(std::span<const uint8_t> bytes) {
  if (state_ == RtStreamState::Closed) {
    counters_.write_refused += bytes.size();
    return 0;
  }
  const size_t room = options_.max_queue_bytes > queue_.size() ? options_.max_queue_bytes - queue_.size() : 0;
  const size_t n = std::min(room, bytes.size());
  queue_.insert(queue_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  counters_.bytes_written += n;
  if (n < bytes.size()) {
    counters_.write_refused += bytes.size() - n;
    want_writable_ = true;
  }
  return n;
}

bool RtStream::write_all(std::span<const uint8_t> bytes) {
  const bool fits = queue_.empty() || queue_.size() + bytes.size() <= options_.max_queue_bytes;
  if (state_ == RtStreamState::Closed || !fits) {
    counters_.write_refused += bytes.size();
    if (state_ != RtStreamState::Closed) want_writable_ = true;
    return false;
  }
  queue_.insert(queue_.end(), bytes.begin(), bytes.end());
  counters_.bytes_written += bytes.size();
  return true;
}

void RtStream::maybe_writable() {
  if (!want_writable_ || queue_.size() > options_.max_queue_bytes / 2) return;
  want_writable_ = false;
  if (callbacks_.on_writable) callbacks_.on_writable();
}

void RtStream::confirm_inflight() {
  const InFlight done = *inflight_;
  inflight_.reset();
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(done.len));
  tx_pos_ = done.pos + static_cast<uint32_t>(done.len);
  counters_.bytes_out += done.len;
  recent_.push_back({done.pos, done.len});
  if (recent_.size() > kRecentBlocks) recent_.pop_front();
  failures_ = 0;
  first_block_pending_ = false;
  maybe_writable();
}

void RtStream::send_block(TimePoint now) {
  const size_t len = std::min(queue_.size(), block_size_);
  // §6.1.7: never let a block end past 0xFFFFFF; restart early at a quiet moment.
  if (tx_pos_ >= options_.wrap_threshold || uint64_t{tx_pos_} + len > kMaxFilePos) {
    ++counters_.wrap_restarts;
    send_ufstart(now, StartReason::Wrap);
    return;
  }
  const auto first = queue_.begin();
  std::vector<uint8_t> block(first, first + static_cast<std::ptrdiff_t>(len));
  const uint32_t pos = tx_pos_;
  // State first: a loopback transport may deliver the device's complaint before
  // send_file_block() returns.
  prev_activity_ = last_activity_;
  last_activity_ = now;
  inflight_ = InFlight{pos, len, now + block_window()};
  ++counters_.blocks_out;
  if (link_.send_file_block(stream_id_, pos, block)) return;
  ++counters_.send_refused;
  if (state_ == RtStreamState::Open && inflight_ && inflight_->pos == pos) {
    // Not on the wire: try again after a window.
    inflight_.reset();
    last_activity_ = prev_activity_;
    next_send_at_ = now + block_window();
  }
}

void RtStream::on_tick(TimePoint now) {
  if (suspended_ || state_ == RtStreamState::Closed) return;
  if (device_restarting_) {
    // Only the block the old boot may have taken is settled; the rest waits for the new boot.
    if (state_ == RtStreamState::Open && inflight_ && now >= inflight_->window_end) confirm_inflight();
    return;
  }
  if (state_ == RtStreamState::Waiting) {
    if (!retry_at_) retry_at_ = now + retry_delay_;
    if (now >= *retry_at_) send_ufstart(now, ever_opened_ ? StartReason::Reopen : StartReason::Open);
    return;
  }
  if (state_ != RtStreamState::Open) return;  // a ufStart is outstanding: the link times it
  if (!next_send_at_) next_send_at_ = now + send_delay_;
  if (inflight_) {
    if (now < inflight_->window_end) return;
    confirm_inflight();  // §6.1.3 step 3: no complaint within the window
    if (state_ != RtStreamState::Open) return;  // on_writable may have closed us
  }
  if (queue_.empty()) {
    if (tx_pos_ >= options_.wrap_threshold) {
      ++counters_.wrap_restarts;
      send_ufstart(now, StartReason::Wrap);
    } else if (now - last_activity_ >= options_.keepalive_after) {
      ++counters_.keepalives;
      send_ufstart(now, StartReason::Keepalive);
    }
    return;
  }
  if (now < *next_send_at_) return;
  send_block(now);
}

std::optional<RtStream::TimePoint> RtStream::next_deadline() const {
  if (suspended_) return std::nullopt;
  if (device_restarting_) {
    if (state_ == RtStreamState::Open && inflight_) return inflight_->window_end;
    return std::nullopt;
  }
  switch (state_) {
    case RtStreamState::Closed:
    case RtStreamState::Opening:
    case RtStreamState::Restarting: return std::nullopt;
    case RtStreamState::Waiting: return retry_at_ ? *retry_at_ : kDueNow;
    case RtStreamState::Open: break;
  }
  if (inflight_) return inflight_->window_end;
  if (!queue_.empty()) return next_send_at_ ? *next_send_at_ : kDueNow;
  if (tx_pos_ >= options_.wrap_threshold) return kDueNow;
  return last_activity_ + options_.keepalive_after;
}

// ---- what the device says --------------------------------------------------------

void RtStream::on_block_notice(const BlockNotice& notice) {
  if (state_ == RtStreamState::Closed || stream_id_ == 0 || notice.stream_id != stream_id_) {
    ++counters_.unexpected_notices;
    return;
  }
  switch (notice.kind) {
    case BlockNoticeKind::Busy:
      // sokto = pos + len of the dropped block (V7); the device's position is already
      // past it, so the same bytes go again at sokto (§6.1.3 step 4).
      if (inflight_ && notice.position == inflight_->pos + inflight_->len) {
        ++counters_.busy;
        ++counters_.resends;
        tx_pos_ = notice.position;
        inflight_.reset();
        send_delay_ = options_.busy_backoff;
        next_send_at_.reset();
        return;
      }
      on_late_notice("late BUSY");
      for (const Sent& s : recent_) {
        if (s.pos + s.len == notice.position) {
          counters_.dropped_late += s.len;
          event(RtStreamEvent::DataLost, "late BUSY: " + std::to_string(s.len) + " bytes at position " +
                                             std::to_string(s.pos) + " were dropped by the device");
          return;
        }
      }
      event(RtStreamEvent::DataLost, "late BUSY for position " + std::to_string(notice.position));
      return;
    case BlockNoticeKind::PosMismatch:
      // sokto = the device's position, beyond the rejected block's (V8). Only the block
      // in flight can be resent; it must start before sokto to be the one rejected.
      if (inflight_ && notice.position > inflight_->pos) {
        ++counters_.pos_mismatch;
        ++counters_.resends;
        tx_pos_ = notice.position;  // past 24 bits: send_block() restarts first
        inflight_.reset();
        last_activity_ = prev_activity_;  // a POS_MISMATCH block does not reset the idle timer
        next_send_at_ = kDueNow;
        return;
      }
      on_late_notice("late POS_MISMATCH");
      if (!inflight_) tx_pos_ = std::max(tx_pos_, notice.position);
      event(RtStreamEvent::DataLost, "late POS_MISMATCH (device at " + std::to_string(notice.position) + ")");
      return;
    case BlockNoticeKind::Failed:
      if (notice.reason == StreamReason::SessionNotFound) {
        ++counters_.session_not_found;
        if (!inflight_ && !first_block_pending_)
          event(RtStreamEvent::DataLost, "SESSION_NOT_FOUND after the last block was confirmed");
        // Reopen at once; but if no block got through since the open, back off so a
        // session that vanishes straight away cannot make a ufStart storm.
        lose_session("SESSION_NOT_FOUND", first_block_pending_);
        return;
      }
      ++counters_.hard_failures;
      // §5.5: any other fail closes the session. On the first block it means the
      // open failed (an endpoint without a chunk callback, §6.1.1 step 4).
      if (first_block_pending_) {
        fail_open("first block failed: " + notice.reason_text);
      } else {
        lose_session("block failed: " + notice.reason_text, true);
      }
      return;
    case BlockNoticeKind::EndOfStream:  // fileLen is 0: never final
    case BlockNoticeKind::SoktoOther:
    case BlockNoticeKind::Okto: ++counters_.unexpected_notices; return;
  }
}

void RtStream::on_file_block(const FileBlockElement& block) {
  if (state_ == RtStreamState::Closed || stream_id_ == 0 || block.stream_id != stream_id_) return;
  ++counters_.blocks_in;
  counters_.bytes_in += block.data.size();
  // §5.7: positions are informational and wrap at 2^24; never reject on them.
  if (rx_next_ && *rx_next_ != block.pos) ++counters_.rx_gaps;
  rx_next_ = (block.pos + static_cast<uint32_t>(block.data.size())) & kMaxFilePos;
  if (!block.data.empty() && callbacks_.on_data) callbacks_.on_data(block.data);
}

// A complaint after its block's window: the device (or the link, or this host under
// load) answers more slowly than the turnaround allows. That block is lost; later ones
// get a longer window.
void RtStream::on_late_notice(const char* what) {
  ++counters_.late_notices;
  const auto grown = std::min(std::max(turnaround_ * 2, turnaround_ + kMinTurnaroundStep), options_.turnaround_max);
  if (!raise_turnaround(grown)) return;
  ++counters_.window_grown;
  event(RtStreamEvent::WindowGrown, std::string(what) + ": block window raised to " +
                                        std::to_string(block_window().count()) + " ms (turnaround " +
                                        std::to_string(turnaround_.count()) + " ms)");
}

bool RtStream::raise_turnaround(std::chrono::milliseconds turnaround) {
  const auto to = std::min(turnaround, options_.turnaround_max);
  if (to <= turnaround_) return false;
  // The block in flight waits the longer window too: its complaint may be as slow.
  if (inflight_) inflight_->window_end += to - turnaround_;
  turnaround_ = to;
  return true;
}

void RtStream::on_device_restarting() { device_restarting_ = true; }

void RtStream::on_device_reset() {
  device_restarting_ = false;
  ++counters_.device_resets;
  if (state_ == RtStreamState::Closed) {
    cancel_request();
    stream_id_ = 0;
    return;
  }
  lose_session("device reset", false);
}

void RtStream::set_suspended(bool suspended) {
  if (suspended_ == suspended) return;
  suspended_ = suspended;
  // Back from a transport outage: reopen at once rather than after an old backoff.
  if (!suspended && state_ == RtStreamState::Waiting) retry_at_ = kDueNow;
}

}  // namespace edgelink::devices

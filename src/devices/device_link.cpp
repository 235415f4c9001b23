#include "edgelink/devices/device_link.hpp"

#include <algorithm>
#include <cassert>
#include <utility>

namespace edgelink::devices {

const char* to_string(LinkError error) {
  switch (error) {
    case LinkError::None: return "ok";
    case LinkError::Timeout: return "timeout";
    case LinkError::DeviceReset: return "device reset";
    case LinkError::BadReply: return "bad reply";
    case LinkError::TooManyPending: return "too many requests outstanding";
    case LinkError::Unencodable: return "request cannot be encoded";
  }
  return "?";
}

DeviceLink::DeviceLink(const DeviceLinkOptions& options, Handlers handlers)
    : options_(options),
      handlers_(std::move(handlers)),
      hdlc_(options.hdlc),
      console_(options.max_log_line, options.hdlc) {
  assert(handlers_.send);
  options_.max_outstanding = std::clamp<size_t>(options_.max_outstanding, 1, 255);
  options_.max_attempts = std::max(options_.max_attempts, 1);
}

const HdlcDecoder::Stats& DeviceLink::hdlc_stats() const {
  return options_.framing == Framing::Console ? console_.hdlc_stats() : hdlc_.stats();
}

// §4.5: the counter runs 1..255 and wraps to 1; numbers still outstanding are
// skipped (the reference client overwrites them instead, losing the first request).
std::optional<uint8_t> DeviceLink::allocate_msg_num() const {
  if (outstanding_count_ >= options_.max_outstanding) return std::nullopt;
  unsigned n = next_msg_num_;
  for (int i = 0; i < 255; ++i) {
    if (!slots_[n]) return static_cast<uint8_t>(n);
    n = n == 255 ? 1 : n + 1;
  }
  return std::nullopt;
}

void DeviceLink::frame_message(const std::vector<uint8_t>& message, std::vector<uint8_t>& frame) const {
  // A console port must never see a raw byte below 0x80: the device would echo it and
  // run it as a command line. OverAscii-wrapping the whole HDLC frame avoids that.
  if (options_.framing == Framing::Console)
    encode_console_frame(message, frame, options_.hdlc);
  else
    hdlc_encode(message, frame, options_.hdlc);
}

bool DeviceLink::transmit(std::span<const uint8_t> frame) {
  ++counters_.sent_frames;
  if (handlers_.send(frame)) return true;
  ++counters_.send_refused;
  return false;
}

DeviceLink::Submitted DeviceLink::request(RequestKind kind, std::string_view text, bool idempotent, Completion done,
                                          TimePoint now) {
  const auto num = allocate_msg_num();
  if (!num) {
    ++counters_.refused_requests;
    return {LinkError::TooManyPending, 0};
  }
  std::vector<uint8_t> message;
  const bool encoded = kind == RequestKind::Url ? encode_url(message, *num, text)
                                                : encode_command_frame(message, *num, text);
  if (!encoded) {
    ++counters_.refused_requests;
    return {LinkError::Unencodable, 0};
  }
  Pending p;
  frame_message(message, p.frame);
  p.done = std::move(done);
  p.deadline = now + options_.attempt_timeout;
  p.attempts = 1;
  p.max_attempts = idempotent ? options_.max_attempts : 1;
  next_msg_num_ = *num == 255 ? 1 : *num + 1;
  auto& slot = slots_[*num];
  slot = std::move(p);
  ++outstanding_count_;
  ++counters_.requests;
  // Registered before sending, so a send callback that delivers a reply
  // synchronously (a test loopback) finds the request.
  std::vector<uint8_t> frame = slot->frame;
  transmit(frame);
  return {LinkError::None, *num};
}

bool DeviceLink::cancel(uint8_t msg_num) {
  if (!is_outstanding(msg_num)) return false;
  slots_[msg_num].reset();
  --outstanding_count_;
  return true;
}

bool DeviceLink::send_file_block(uint8_t stream_id, uint32_t pos, std::span<const uint8_t> data) {
  std::vector<uint8_t> message;
  if (!encode_file_block(message, stream_id, pos, data)) return false;
  std::vector<uint8_t> frame;
  frame_message(message, frame);
  ++counters_.unnumbered_sent;
  return transmit(frame);
}

bool DeviceLink::send_unnumbered_command_frame(std::string_view json) {
  std::vector<uint8_t> message;
  if (!encode_command_frame(message, 0, json)) return false;
  std::vector<uint8_t> frame;
  frame_message(message, frame);
  ++counters_.unnumbered_sent;
  return transmit(frame);
}

void DeviceLink::complete(uint8_t msg_num, RequestResult result) {
  auto& slot = slots_[msg_num];
  assert(slot);
  Completion done = std::move(slot->done);
  result.msg_num = msg_num;
  result.attempts = slot->attempts;
  // Free the slot before the callback: it may send a new request.
  slot.reset();
  --outstanding_count_;
  if (done) done(result);
}

void DeviceLink::on_tick(TimePoint now) {
  if (handlers_.poll_input) {
    if (const size_t n = handlers_.poll_input(); n > 0) {
      ++counters_.input_at_deadline;
      counters_.bytes_at_deadline += n;
    }
  }
  // Collect first: completions and resends may change the table.
  std::vector<uint8_t> due;
  for (unsigned n = 1; n <= 255; ++n)
    if (slots_[n] && slots_[n]->deadline <= now) due.push_back(static_cast<uint8_t>(n));
  for (uint8_t n : due) {
    auto& slot = slots_[n];
    if (!slot || slot->deadline > now) continue;  // completed or rescheduled by a callback
    if (slot->attempts < slot->max_attempts) {
      // Same msgNum, same bytes (§4.6). The new attempt gets a full timeout from now,
      // so a late tick does not shorten it.
      ++slot->attempts;
      slot->deadline = now + options_.attempt_timeout;
      ++counters_.retries;
      std::vector<uint8_t> frame = slot->frame;
      transmit(frame);
    } else {
      ++counters_.timeouts;
      RequestResult r;
      r.error = LinkError::Timeout;
      complete(n, std::move(r));
    }
  }
}

std::optional<DeviceLink::TimePoint> DeviceLink::next_deadline() const {
  std::optional<TimePoint> earliest;
  if (outstanding_count_ == 0) return earliest;
  for (unsigned n = 1; n <= 255; ++n)
    if (slots_[n] && (!earliest || slots_[n]->deadline < *earliest)) earliest = slots_[n]->deadline;
  return earliest;
}

void DeviceLink::reset() {
  ++counters_.resets;
  hdlc_.reset();
  console_.reset();
  std::vector<uint8_t> failed;
  for (unsigned n = 1; n <= 255; ++n)
    if (slots_[n]) failed.push_back(static_cast<uint8_t>(n));
  for (uint8_t n : failed) {
    if (!slots_[n]) continue;
    ++counters_.reset_failed;
    RequestResult r;
    r.error = LinkError::DeviceReset;
    complete(n, std::move(r));
  }
}

void DeviceLink::on_bytes(std::span<const uint8_t> bytes) {
  // `consumed` is taken before a frame is handled: a handler may call reset(), and
  // the rest of this read then starts the device's new life.
  if (options_.framing == Framing::Hdlc) {
    while (true) {
      const auto r = hdlc_.next(bytes);
      bytes = bytes.subspan(r.consumed);
      switch (r.status) {
        case HdlcDecoder::Status::NeedMore: return;
        case HdlcDecoder::Status::Frame: on_message(r.frame); break;
        case HdlcDecoder::Status::BadCrc: ++counters_.bad_frames; break;
        case HdlcDecoder::Status::Oversize: on_oversize(r.dropped_len); break;
      }
    }
  }
  while (true) {
    const auto r = console_.next(bytes);
    bytes = bytes.subspan(r.consumed);
    switch (r.status) {
      case ConsoleDemux::Status::NeedMore: return;
      case ConsoleDemux::Status::Frame: on_message(r.frame); break;
      case ConsoleDemux::Status::LogLine:
        ++counters_.log_lines;
        if (handlers_.on_log_line) handlers_.on_log_line(r.line, r.line_truncated);
        break;
      case ConsoleDemux::Status::BadCrc: ++counters_.bad_frames; break;
      case ConsoleDemux::Status::Oversize: on_oversize(r.dropped_len); break;
    }
  }
}

void DeviceLink::on_oversize(size_t len) {
  ++counters_.oversize_frames;
  if (handlers_.on_oversize_frame) handlers_.on_oversize_frame(len);
}

// §4.7 dispatch. The device does not check msgType on its input, but what it sends
// is consistent, so anything outside the table is counted and dropped.
void DeviceLink::on_message(std::span<const uint8_t> message) {
  auto decoded = decode_message(message);
  const auto* msg = std::get_if<RicMessage>(&decoded);
  if (!msg) {
    ++counters_.bad_messages;
    return;
  }
  const auto& h = msg->header;
  switch (h.msg_type) {
    case RicMsgType::Response:
      if (h.protocol == ric_protocol::kRicRest) return on_response(h.msg_num, msg->body);
      break;
    case RicMsgType::Command:
      if (const auto* block = std::get_if<FileBlockElement>(&msg->body)) {
        ++counters_.file_blocks;
        if (handlers_.on_file_block) handlers_.on_file_block(*block);
        return;
      }
      break;
    case RicMsgType::Publish:
      if (const auto* raw = std::get_if<RawPayload>(&msg->body)) {
        ++counters_.publishes;
        if (handlers_.on_publish) handlers_.on_publish(raw->bytes);
        return;
      }
      break;
    case RicMsgType::Report:
      if (const auto* el = std::get_if<CmdRespJsonElement>(&msg->body)) {
        auto report = parse_report(el->json);
        if (const auto* rep = std::get_if<Report>(&report)) {
          ++counters_.reports;
          if (handlers_.on_report) handlers_.on_report(*rep, el->json);
        } else {
          ++counters_.bad_messages;
        }
        return;
      }
      break;
  }
  ++counters_.unexpected;
}

void DeviceLink::on_response(uint8_t msg_num, const RicBody& body) {
  const auto* el = std::get_if<CmdRespJsonElement>(&body);
  if (!el) {
    ++counters_.unexpected;
    return;
  }
  if (msg_num == 0) {
    // Unsolicited: sokto/okto, block failures, cancel notices. Unlike the reference
    // client, fail notices are passed on too (§4.7): they mean a session is gone.
    auto parsed = parse_reply(el->json);
    if (const auto* reply = std::get_if<DeviceReply>(&parsed)) {
      ++counters_.notices;
      if (handlers_.on_notice) handlers_.on_notice(*reply, el->json);
    } else {
      ++counters_.bad_messages;
    }
    return;
  }
  if (!slots_[msg_num]) {
    // Late reply to a request that timed out, was cancelled or was failed by a
    // reset; or a reply to someone else's request (§4.5: drop).
    ++counters_.stale_replies;
    return;
  }
  RequestResult r;
  r.json.assign(el->json);
  auto parsed = parse_reply(el->json);
  if (auto* reply = std::get_if<DeviceReply>(&parsed)) {
    ++counters_.replies;
    r.reply = std::move(*reply);
  } else {
    ++counters_.bad_replies;
    r.error = LinkError::BadReply;
  }
  complete(msg_num, std::move(r));
}

}  // namespace edgelink::devices

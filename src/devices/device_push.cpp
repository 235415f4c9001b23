#include "edgelink/devices/device_push.hpp"

#include <rapidjson/document.h>

#include <algorithm>

namespace edgelink::devices {
namespace {

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

uint32_t reply_number(const std::string& json, const char* name, uint32_t fallback) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return fallback;
  auto it = doc.FindMember(name);
  if (it == doc.MemberEnd() || !it->value.IsUint() || it->value.GetUint() == 0) return fallback;
  return it->value.GetUint();
}

}  // namespace

DevicePush::DevicePush(DeviceLink& link, DevicePushSpec spec, DevicePushOptions options,
                       DevicePushCallbacks callbacks)
    : link_(link), spec_(std::move(spec)), options_(options), callbacks_(std::move(callbacks)) {}

DevicePush::~DevicePush() {
  if (request_msg_) link_.cancel(request_msg_);
}

void DevicePush::start(TimePoint now) { send_ufstart(now); }

void DevicePush::send_ufstart(TimePoint now) {
  state_ = State::Starting;
  due_.reset();
  due_now_ = false;
  inflight_len_ = 0;
  pos_ = taken_ = 0;
  const uint64_t generation = ++generation_;
  std::string json;
  if (spec_.type == PushType::Rtstream) {
    json = "{\"cmdName\":\"ufStart\",\"reqStr\":\"ufStart\",\"fileType\":\"rtstream\",\"fileName\":" +
           json_string(spec_.file_name) + ",\"endpoint\":" + json_string(spec_.endpoint) +
           ",\"fileLen\":" + std::to_string(spec_.total) + "}";
  } else {
    json = "{\"cmdName\":\"ufStart\",\"reqStr\":\"fileupload\",\"fileType\":\"fs\",\"fileName\":" +
           json_string(spec_.file_name) + ",\"fileLen\":" + std::to_string(spec_.total) +
           ",\"batchMsgSize\":" + std::to_string(options_.batch_msg_size) +
           ",\"batchAckSize\":" + std::to_string(options_.batch_ack_size) + "}";
  }
  const auto submitted = link_.request(
      RequestKind::CommandFrame, json, true, [this, generation](const RequestResult& r) { on_ufstart(generation, r); },
      now);
  if (state_ == State::Done || generation != generation_) return;
  if (!submitted) {
    finish(false, "device " + spec_.device + ": ufStart not sent: " + to_string(submitted.error));
    return;
  }
  request_msg_ = submitted.msg_num;
}

void DevicePush::on_ufstart(uint64_t generation, const RequestResult& r) {
  if (generation != generation_ || state_ != State::Starting) return;
  request_msg_ = 0;
  if (!r.ok()) {
    finish(false, "device " + spec_.device + ": ufStart failed: " +
                      (r.error == LinkError::Timeout ? std::string("no reply") : std::string(to_string(r.error))));
    return;
  }
  if (!r.reply.ok() || !r.reply.stream_id || *r.reply.stream_id == kStreamIdAny) {
    const std::string why = !r.reply.reason.empty() ? r.reply.reason : !r.reply.error.empty() ? r.reply.error : "refused";
    finish(false, "device " + spec_.device + ": " + why);
    return;
  }
  stream_id_ = *r.reply.stream_id;
  if (spec_.type == PushType::Rtstream) {
    block_size_ = static_cast<uint32_t>(kMaxBlockPayload);
    if (r.reply.max_block_size && *r.reply.max_block_size > 0)
      block_size_ = std::min<uint32_t>(block_size_, *r.reply.max_block_size);
  } else {
    block_size_ = reply_number(r.json, "batchMsgSize", options_.batch_msg_size);
    batch_granted_ = reply_number(r.json, "batchAckSize", options_.batch_ack_size);
    batch_ = 1;  // §5.9: one block, wait for its okto, then batches
  }
  state_ = State::Sending;
  due_now_ = true;
}

bool DevicePush::send_block(uint64_t pos, size_t len) {
  buf_.resize(len);
  if (!callbacks_.read || !callbacks_.read(pos, buf_)) {
    finish(false, "device " + spec_.device + ": cannot read the stored upload");
    return false;
  }
  if (!link_.send_file_block(stream_id_, static_cast<uint32_t>(pos), buf_)) {
    refused_ = true;
    return false;
  }
  return true;
}

void DevicePush::advance(uint64_t taken) {
  if (taken <= taken_) return;
  taken_ = taken;
  if (callbacks_.progress) callbacks_.progress(taken_);
}

void DevicePush::on_tick(TimePoint now) {
  const bool due = due_now_ || (due_ && now >= *due_);
  if (!due || state_ == State::Done) return;
  due_now_ = false;
  switch (state_) {
    case State::Sending:
      if (spec_.type == PushType::Rtstream) {
        if (inflight_len_ > 0) {
          // No complaint within the window: taken (§6.1.3).
          pos_ += inflight_len_;
          inflight_len_ = 0;
          advance(pos_);
          if (state_ == State::Done) return;
          if (pos_ >= spec_.total) {
            state_ = State::Ending;
            due_ = now + options_.end_wait;
            return;
          }
        }
        {
          const size_t len = static_cast<size_t>(std::min<uint64_t>(block_size_, spec_.total - pos_));
          refused_ = false;
          if (send_block(pos_, len)) {
            inflight_len_ = len;
            due_ = now + options_.block_window;
          } else if (state_ != State::Done) {
            due_ = now + options_.refused_retry;
          }
        }
      } else {
        // A batch from the last okto, then wait for the next okto.
        for (uint32_t i = 0; i < batch_ && pos_ < spec_.total; ++i) {
          const size_t len = static_cast<size_t>(std::min<uint64_t>(block_size_, spec_.total - pos_));
          if (!send_block(pos_, len)) break;
          pos_ += len;
        }
        if (state_ == State::Done) return;
        due_ = now + options_.okto_wait;
        state_ = State::Ending;  // waiting for an okto
      }
      return;
    case State::Ending:
      finish(false, "device " + spec_.device + (spec_.type == PushType::Rtstream
                                                   ? ": no end-of-stream sokto within 2 s of the last block"
                                                   : ": no okto within 30 s"));
      return;
    case State::Backoff:
      if (!due_) {
        due_ = now + options_.restart_backoff;
        return;
      }
      send_ufstart(now);
      return;
    case State::Closing:
      if (!ufend_sent_) send_ufend(now);
      return;
    case State::Idle:
    case State::Starting:
    case State::Done:
      return;
  }
}

std::optional<DevicePush::TimePoint> DevicePush::next_deadline() const {
  if (state_ == State::Done) return std::nullopt;
  if (due_now_) return TimePoint::min();
  return due_;
}

void DevicePush::restart(TimePoint now, const std::string& why) {
  (void)now;
  if (++restarts_used_ > spec_.restarts) {
    finish(false, "device " + spec_.device + ": " + why + " (" + std::to_string(spec_.restarts) +
                      " restarts used up)");
    return;
  }
  state_ = State::Backoff;
  inflight_len_ = 0;
  due_.reset();
  due_now_ = true;  // the next tick sets the backoff's end
}

bool DevicePush::on_notice(const DeviceReply& reply) {
  if (state_ == State::Done || state_ == State::Idle) return false;
  // ufCancel notice of an OKTO upload (§5.8, §5.9): failRetries, a write failure...
  if (reply.req.empty() && reply.cmd_name == "ufCancel" && spec_.type == PushType::Fs) {
    finish(false, "device " + spec_.device + ": " + (reply.reason.empty() ? "upload cancelled" : reply.reason));
    return true;
  }
  if (reply.req != "ufBlock") return false;
  if (reply.cmd_name == "ufStatus" && spec_.type == PushType::Fs) {
    finish(false, "device " + spec_.device + ": " + (reply.reason.empty() ? "write failed" : reply.reason));
    return true;
  }
  if (spec_.type == PushType::Fs) {
    if (!reply.okto || (state_ != State::Sending && state_ != State::Ending)) return reply.okto.has_value();
    // Go-back-N from the okto (§5.9).
    const uint64_t okto = *reply.okto;
    advance(std::min<uint64_t>(okto, spec_.total));
    pos_ = std::min<uint64_t>(okto, spec_.total);
    if (pos_ >= spec_.total) {
      state_ = State::Closing;  // ufEnd goes at the next tick
      due_.reset();
      due_now_ = true;
      return true;
    }
    batch_ = batch_granted_;
    state_ = State::Sending;
    due_.reset();
    due_now_ = true;
    return true;
  }
  if (!reply.stream_id || *reply.stream_id != stream_id_) return false;
  if (state_ != State::Sending && state_ != State::Ending) return true;  // a late word from a session restarted
  if (reply.ok() && reply.sokto && reply.reason.empty()) {
    // The end-of-stream sokto (§5.5).
    if (*reply.sokto >= spec_.total) {
      advance(spec_.total);
      if (state_ != State::Done) finish(true, {});
    }
    return true;
  }
  const std::string why = reply.reason.empty() ? "block refused" : reply.reason;
  restart(TimePoint{}, why);
  return true;
}

void DevicePush::send_ufend(TimePoint now) {
  ufend_sent_ = true;
  due_.reset();
  due_now_ = false;
  const uint64_t generation = ++generation_;
  const std::string json = "{\"cmdName\":\"ufEnd\",\"reqStr\":\"fileupload\",\"streamID\":" +
                           std::to_string(stream_id_) + "}";
  const auto submitted = link_.request(
      RequestKind::CommandFrame, json, true,
      [this, generation](const RequestResult& r) {
        if (generation != generation_ || state_ != State::Closing) return;
        request_msg_ = 0;
        if (r.ok() && r.reply.ok())
          finish(true, {});
        else
          finish(false, "device " + spec_.device + ": ufEnd " +
                            (r.ok() ? (r.reply.reason.empty() ? std::string("failed") : r.reply.reason)
                                    : std::string(to_string(r.error))));
      },
      now);
  if (state_ != State::Closing || generation != generation_) return;
  if (!submitted) {
    finish(false, "device " + spec_.device + ": ufEnd not sent: " + to_string(submitted.error));
    return;
  }
  request_msg_ = submitted.msg_num;
}

void DevicePush::on_link_lost(std::string_view why) {
  if (state_ == State::Done) return;
  finish(false, "device " + spec_.device + ": " + std::string(why));
}

void DevicePush::finish(bool ok, std::string detail) {
  if (state_ == State::Done) return;
  state_ = State::Done;
  due_.reset();
  due_now_ = false;
  if (request_msg_) link_.cancel(request_msg_);
  request_msg_ = 0;
  ++generation_;
  auto done = callbacks_.done;  // may destroy this push
  if (done) done(ok, std::move(detail));
}

}  // namespace edgelink::devices

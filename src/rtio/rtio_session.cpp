// One RTIO device connection: verify, heartbeat, the HTTP API's requests to the device
// and the device's own requests (spec/http-api.md §6.2–§6.6).

#include "rtio_session.hpp"

#include "edgelink/util/wall_clock.hpp"

namespace edgelink::rtio {
namespace {

constexpr const char* kLog = "rtio";
// A device that does not read what it is sent: beyond this the connection is cut,
// rather than queueing without bound.
constexpr size_t kMaxQueuedBytes = 256 * 1024;
constexpr uint8_t kSuccess = static_cast<uint8_t>(RespCode::Success);

uint8_t st(Status s) { return static_cast<uint8_t>(s); }

}  // namespace

Session::Session(std::shared_ptr<RtioServer::Shared> shared, asio::ip::tcp::socket socket)
    : shared_(std::move(shared)), socket_(std::move(socket)), timer_(shared_->io) {
  std::error_code ec;
  const auto ep = socket_.remote_endpoint(ec);
  if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

void Session::start() {
  arm_timer(Clock::now() + shared_->config.rtio.verify_timeout);
  read();
}

size_t Session::coposts() const {
  size_t n = 0;
  for (const auto& [id, r] : pending_) n += r.observer == 0;
  return n;
}

// ---- reading ---------------------------------------------------------------------------

void Session::read() {
  if (state_ == State::Closed || close_after_write_) return;
  socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](std::error_code ec, size_t n) {
    self->on_read(ec, n);
  });
}

void Session::on_read(std::error_code ec, size_t n) {
  if (state_ == State::Closed) return;
  if (ec) {
    close("closed");
    return;
  }
  decoder_.append(std::span<const uint8_t>(buf_.data(), n));
  Message m;
  for (;;) {
    const auto r = decoder_.next(m);
    if (r == StreamDecoder::Result::NeedMore) break;
    if (r == StreamDecoder::Result::BodyTooLong) {
      log::limited(shared_->limiter, "too-long", LogLevel::Warn, kLog, remote_, " ", device_,
                   ": a message body longer than the device's capacity; closing");
      close("protocol_error");
      return;
    }
    if (!handle(m) || state_ == State::Closed || close_after_write_) return;
  }
  read();
}

bool Session::handle(Message& m) {
  const auto type = static_cast<MsgType>(m.header.type);
  if (state_ == State::Unverified) {
    if (type == MsgType::DeviceVerifyReq) return on_verify(m);
    log::limited(shared_->limiter, "before-verify", LogLevel::Warn, kLog, remote_, ": message type ",
                 int(m.header.type), " before verify; closing");
    close("protocol_error");
    return false;
  }
  heartbeat_->seen(Clock::now());
  switch (type) {
    case MsgType::DeviceVerifyReq:
      close("protocol_error");  // a second verify
      return false;
    case MsgType::DevicePingReq:
      on_ping(m);
      return true;
    case MsgType::DeviceSendReq:
      return on_device_send(m);
    case MsgType::ServerSendResp:
      on_server_send_resp(m);
      return true;
    default:
      log::limited(shared_->limiter, "bad-type", LogLevel::Warn, kLog, device_, ": message type ",
                   int(m.header.type), " is not one a device sends; closing");
      close("protocol_error");
      return false;
  }
}

bool Session::on_verify(const Message& m) {
  const auto req = parse_verify(m.body);
  if (!req) {
    send(MsgType::DeviceVerifyResp, static_cast<uint8_t>(RespCode::InvalidParam), m.header.id, {});
    close("verify_failed");
    return false;
  }
  const auto& devices = shared_->config.rtio.devices;
  const auto it = devices.find(std::string(req->id));
  if (it == devices.end() || !secrets_equal(it->second, req->secret)) {
    log::limited(shared_->limiter, "verify", LogLevel::Warn, kLog, remote_, ": verify failed for ",
                 std::string(req->id), it == devices.end() ? " (unknown id)" : " (wrong secret)");
    send(MsgType::DeviceVerifyResp, static_cast<uint8_t>(RespCode::VerifyFailed), m.header.id, {});
    close("verify_failed");
    return false;
  }
  device_ = it->first;
  state_ = State::Verified;
  decoder_.set_capacity(req->capacity);
  heartbeat_.emplace(Clock::now());
  send(MsgType::DeviceVerifyResp, kSuccess, m.header.id, {});
  shared_->count("verified");
  // Last connection wins.
  // (The old session's close() erases its map entry: look it up again after.)
  if (auto it = shared_->verified.find(device_); it != shared_->verified.end())
    if (auto old = it->second.lock(); old && old.get() != this) old->close("replaced");
  shared_->verified[device_] = weak_from_this();
  auto& info = shared_->info[device_];
  info.since_ms = unix_ms();
  ++info.connects;
  log::info(kLog, device_, " verified from ", remote_, " (capacity ", req->capacity, ")");
  arm_timer(heartbeat_->deadline());
  return true;
}

void Session::on_ping(const Message& m) {
  const Ping p = parse_ping(m.body);
  uint8_t code = kSuccess;
  switch (p.kind) {
    case Ping::Kind::Keep: break;
    case Ping::Kind::Set:
      heartbeat_->set_interval(std::chrono::seconds(p.seconds));
      arm_timer(heartbeat_->deadline());
      break;
    case Ping::Kind::OutOfRange: code = static_cast<uint8_t>(RespCode::InvalidParam); break;
    case Ping::Kind::BadLength: code = static_cast<uint8_t>(RespCode::BodyLengthError); break;
  }
  send(MsgType::DevicePingResp, code, m.header.id, {});
}

bool Session::on_device_send(const Message& m) {
  if (m.body.empty()) {
    close("protocol_error");
    return false;
  }
  const uint8_t method = static_cast<uint8_t>(m.body[0]) >> 4;
  if (method == 1 || method == 2) {
    const auto req = decode_co_req(m.body);
    if (!req) {
      close("protocol_error");
      return false;
    }
    on_device_copost(m.header.id, method, req->digest, req->data);
    return true;
  }
  if (method == 3) {
    const auto n = decode_obget(m.body);
    if (!n) {
      close("protocol_error");
      return false;
    }
    auto it = observers_.find(n->observer);
    const bool known = it != observers_.end() && it->second.established;
    // Answered at once; the frame goes to HTTP after (it never waits on a socket).
    send(MsgType::DeviceSendResp, kSuccess, m.header.id,
         encode_obget_notify_resp(n->observer, known ? st(Status::Continue) : st(Status::Terminate)));
    if (!known) return true;
    if (n->status == st(Status::Continue)) {
      if (it->second.callbacks.frame) it->second.callbacks.frame({http::Code::Continue, std::string(n->data)});
      return true;
    }
    auto cb = std::move(it->second.callbacks);
    observers_.erase(it);
    const http::Code code = n->status == st(Status::Terminate) ? http::Code::Terminate : code_of(n->status);
    if (cb.frame) cb.frame({code, {}});
    return state_ != State::Closed;
  }
  // Method 0 or 4..15: dropped without a reply, as RTIO does.
  ++shared_->dropped_requests;
  return true;
}

void Session::on_device_copost(uint16_t id, uint8_t method, uint32_t digest, std::string_view data) {
  auto reply = [this, id, method](Status s) {
    send(MsgType::DeviceSendResp, kSuccess, id, encode_co_resp(method, st(s), {}));
  };
  const auto svc = shared_->services.find(digest);
  if (svc == shared_->services.end()) {
    ++shared_->device_copost["unknown"]["NOT_FOUND"];
    reply(Status::NotFound);
    return;
  }
  const std::string uri = svc->second.uri;
  if (!shared_->callbacks.broker_connected || !shared_->callbacks.broker_connected()) {
    ++shared_->device_copost[uri]["INTERNAL_SERVER_ERROR"];
    reply(Status::InternalServerError);  // at once; nothing is published
    return;
  }
  const std::string topic = expand_topic(svc->second.topic, shared_->config, {}, device_);
  // Answered by whichever comes first: the PUBACK or service_timeout.
  auto answered = std::make_shared<bool>(false);
  auto timer = std::make_shared<asio::steady_timer>(shared_->io, shared_->config.rtio.service_timeout);
  std::weak_ptr<Session> weak = weak_from_this();
  auto finish = [weak, answered, timer, id, method, uri](Status s) {
    if (*answered) return;
    *answered = true;
    timer->cancel();
    auto self = weak.lock();
    if (!self) return;
    ++self->shared_->device_copost[uri][s == Status::Ok ? "OK" : "INTERNAL_SERVER_ERROR"];
    if (self->state_ == State::Closed) return;
    self->send(MsgType::DeviceSendResp, kSuccess, id, encode_co_resp(method, st(s), {}));
  };
  timer->async_wait([finish](std::error_code ec) {
    if (!ec) finish(Status::InternalServerError);
  });
  shared_->callbacks.publish(topic, std::string(data), device_, [finish] { finish(Status::Ok); });
}

void Session::on_server_send_resp(const Message& m) {
  auto it = pending_.find(m.header.id);
  if (it == pending_.end()) {
    ++shared_->late_replies;  // after its timeout, or never asked: dropped, the connection stays
    return;
  }
  Request req = std::move(it->second);
  pending_.erase(it);
  if (req.observer == 0) {
    const auto r = decode_co_resp(m.body);
    http::Frame f{http::Code::InternalServerError, {}};
    if (r && (r->method == 1 || r->method == 2)) {
      f.code = code_of(r->status);
      if (f.code == http::Code::Ok) f.data = std::string(r->data);
    }
    if (req.done) req.done(std::move(f));
    return;
  }
  auto obs = observers_.find(req.observer);
  if (obs == observers_.end()) return;  // cancelled meanwhile
  const auto r = decode_obget(m.body);
  http::Code code = http::Code::InternalServerError;
  if (r && r->method != 3) {
    code = http::Code::MethodNotAllowed;
  } else if (r && r->observer == req.observer) {
    if (r->status == st(Status::Continue)) {
      obs->second.established = true;
      if (obs->second.callbacks.established) obs->second.callbacks.established();
      return;
    }
    code = code_of(r->status);
  }
  auto cb = std::move(obs->second.callbacks);
  observers_.erase(obs);
  if (cb.frame) cb.frame({code, {}});
}

// ---- the HTTP side ----------------------------------------------------------------

uint16_t Session::next_message_id() {
  for (int i = 0; i < 65535; ++i) {
    next_id_ = static_cast<uint16_t>(next_id_ % 65535 + 1);  // 1..65535, 0 skipped
    if (!pending_.count(next_id_)) return next_id_;
  }
  return 0;
}

uint16_t Session::send_copost(std::string_view uri, std::string_view data, std::function<void(http::Frame)> done) {
  if (state_ != State::Verified) return 0;
  const uint16_t id = next_message_id();
  if (id == 0) return 0;
  pending_[id] = Request{0, std::move(done)};
  send(MsgType::ServerSendReq, kSuccess, id,
       encode_co_req(static_cast<uint8_t>(Method::ConstrainedPost), crc32(uri), data));
  return id;
}

void Session::cancel_request(uint16_t id) { pending_.erase(id); }

uint16_t Session::open_observer(std::string_view uri, std::string_view data, http::ObserveCallbacks callbacks) {
  if (state_ != State::Verified) return 0;
  uint16_t obs = 0;
  for (int i = 0; i < 65535 && obs == 0; ++i) {
    next_observer_ = static_cast<uint16_t>(next_observer_ % 65535 + 1);
    if (!observers_.count(next_observer_)) obs = next_observer_;
  }
  const uint16_t id = obs ? next_message_id() : 0;
  if (id == 0) return 0;
  observers_[obs] = Observer{std::move(callbacks), false};
  pending_[id] = Request{obs, {}};
  send(MsgType::ServerSendReq, kSuccess, id, encode_obget_estab_req(obs, crc32(uri), data));
  return obs;
}

void Session::cancel_observer(uint16_t observer) {
  // The device learns it from its next notify, answered Terminate (§6.4).
  observers_.erase(observer);
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.observer == observer) it = pending_.erase(it);
    else ++it;
  }
}

// ---- writing, timers, closing ------------------------------------------------------

void Session::send(MsgType type, uint8_t code, uint16_t id, std::string_view body) {
  if (state_ == State::Closed) return;
  out_.push_back(encode_message(static_cast<uint8_t>(type), code, id, body));
  out_bytes_ += out_.back().size();
  if (out_bytes_ > kMaxQueuedBytes) {
    log::limited(shared_->limiter, "not-reading", LogLevel::Warn, kLog, device_, " ", remote_,
                 ": the device does not read what it is sent; closing");
    close("protocol_error");
    return;
  }
  write_next();
}

void Session::write_next() {
  if (writing_ || state_ == State::Closed) return;
  if (out_.empty()) {
    if (close_after_write_) finish_close();
    return;
  }
  writing_ = true;
  asio::async_write(socket_, asio::buffer(out_.front()), [self = shared_from_this()](std::error_code ec, size_t) {
    self->writing_ = false;
    if (self->state_ == State::Closed) return;
    self->out_bytes_ -= self->out_.front().size();
    self->out_.pop_front();
    if (ec) {
      self->close("closed");
      return;
    }
    self->write_next();
  });
}

void Session::arm_timer(Clock::time_point at) {
  timer_.expires_at(at);
  timer_.async_wait([weak = weak_from_this()](std::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->on_timer();
  });
}

void Session::on_timer() {
  if (state_ == State::Closed || close_after_write_) return;
  if (state_ == State::Unverified) {
    close("verify_timeout");  // no reply (§6.2 item 1)
    return;
  }
  const auto now = Clock::now();
  if (heartbeat_->expired(now)) {
    log::info(kLog, device_, ": nothing for 1.5 x ", heartbeat_->interval().count(), " s; closing");
    close("heartbeat_timeout");
    return;
  }
  arm_timer(heartbeat_->deadline());
}

void Session::close(const char* result) {
  if (state_ == State::Closed || close_after_write_) return;
  shared_->count(result);
  const bool was_verified = state_ == State::Verified;
  // A reply queued just before (a failed verify's code) still goes out.
  const bool flush = !out_.empty() && std::string_view(result) == "verify_failed";
  std::map<uint16_t, Request> pending = std::move(pending_);
  std::map<uint16_t, Observer> observers = std::move(observers_);
  pending_.clear();
  observers_.clear();
  if (was_verified) {
    auto it = shared_->verified.find(device_);
    if (it != shared_->verified.end() && it->second.lock().get() == this) {
      shared_->verified.erase(it);
      shared_->info[device_].since_ms = unix_ms();
      log::info(kLog, device_, " disconnected (", result, ")");
    }
  }
  if (flush) {
    close_after_write_ = true;
    timer_.cancel();
    write_next();
  } else {
    finish_close();
  }
  for (auto& [id, r] : pending)
    if (r.observer == 0 && r.done) r.done({http::Code::DeviceIdOffline, {}});
  for (auto& [id, o] : observers)
    if (o.callbacks.frame) o.callbacks.frame({http::Code::DeviceIdOffline, {}});
}

void Session::finish_close() {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  std::error_code ec;
  timer_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  // The server's reference goes from a posted handler: this may run inside our own
  // completion handler.
  asio::post(shared_->io, [self = shared_from_this()] { self->shared_->sessions.erase(self.get()); });
}

}  // namespace edgelink::rtio

// DeviceHub as http::DeviceAccess (spec/http-api.md §5): coposts on the device's link,
// obget observers of /pub/<topic> (users of the device's DeviceSubscriptions) and of
// /rtstreams/<name> (users of the bridge, like its TCP client), and their handles.
//
// Callbacks into HttpApi never run inside one of its calls (copost, obget, a handle's
// destruction): results found there are posted. Observer news (`established`, final
// frames) queue as the device's notices and are delivered by flush_notices(), at once
// from device events and posted from HttpApi's calls; an observer's handle may be
// destroyed in between, which drops its notices.

#include <utility>

#include "device_hub_state.hpp"
#include "edgelink/devices/ricrest_access.hpp"

namespace edgelink::devices {
namespace {
constexpr char kLog[] = "devices";
using Clock = std::chrono::steady_clock;

struct Depth {
  explicit Depth(int& n) : n_(n) { ++n_; }
  ~Depth() { --n_; }
  Depth(const Depth&) = delete;
  Depth& operator=(const Depth&) = delete;
  int& n_;
};

// An obget refused at once: its one frame is posted, and dropped if the handle goes first.
class RefusedObserver final : public http::Pending {
 public:
  ~RefusedObserver() override { *gone_ = true; }
  std::shared_ptr<bool> gone_ = std::make_shared<bool>(false);
};

}  // namespace

class DeviceHub::CopostHandle final : public http::Pending {
 public:
  CopostHandle(std::weak_ptr<int> alive, std::weak_ptr<Device> device, uint64_t id, std::shared_ptr<CopostState> st)
      : alive_(std::move(alive)), device_(std::move(device)), id_(id), state_(std::move(st)) {}
  ~CopostHandle() override {
    state_->gone = true;
    if (state_->settled) return;
    // Still outstanding on the link: forget it there, so no reply can reach `done`.
    if (!alive_.lock()) return;
    if (auto d = device_.lock()) {
      d->sessions->link().cancel(state_->msg_num);
      d->coposts.erase(id_);
    }
  }

 private:
  std::weak_ptr<int> alive_;
  std::weak_ptr<Device> device_;
  uint64_t id_;
  std::shared_ptr<CopostState> state_;
};

class DeviceHub::ObserveHandle final : public http::Pending {
 public:
  ObserveHandle(DeviceHub& hub, std::weak_ptr<Device> device, uint64_t id)
      : hub_(hub), alive_(hub.alive_), device_(std::move(device)), id_(id) {}
  ~ObserveHandle() override {
    if (!alive_.lock()) return;
    if (auto d = device_.lock()) hub_.end_observer(*d, id_);
  }

 private:
  DeviceHub& hub_;
  std::weak_ptr<int> alive_;
  std::weak_ptr<Device> device_;
  uint64_t id_;
};

// ---- what a device is ------------------------------------------------------------

http::DeviceKind DeviceHub::kind(std::string_view device) const {
  return devices_.find(device) != devices_.end() ? http::DeviceKind::Ricrest : http::DeviceKind::None;
}

bool DeviceHub::link_up(std::string_view device) const {
  const auto it = devices_.find(device);
  return it != devices_.end() && !it->second->stopped && it->second->up;
}

DeviceHub::Stream* DeviceHub::find_stream(const Device& d, std::string_view name) const {
  for (const auto& s : d.streams)
    if (s->rt && s->config.name == name) return s.get();
  return nullptr;
}

http::Code DeviceHub::check(std::string_view device, http::Method method, std::string_view uri,
                            std::string_view data) const {
  const auto it = devices_.find(device);
  if (it == devices_.end()) return http::Code::DeviceIdOffline;  // row 10 says so first
  if (method == http::Method::Copost) {
    const auto r = translate_copost(uri, data);
    const auto* code = std::get_if<http::Code>(&r);
    return code ? *code : http::Code::Ok;
  }
  const auto target = parse_obget_uri(uri);
  if (const auto* code = std::get_if<http::Code>(&target)) return *code;
  const auto& t = std::get<ObgetTarget>(target);
  if (t.kind == ObgetTarget::Kind::Publish) {
    const auto ask = parse_publish_options(data);
    const auto* code = std::get_if<http::Code>(&ask);
    return code ? *code : http::Code::Ok;
  }
  if (!find_stream(*it->second, t.name)) return http::Code::NotFound;
  return data.empty() ? http::Code::Ok : http::Code::BadRequest;
}

// ---- copost ------------------------------------------------------------------------

std::unique_ptr<http::Pending> DeviceHub::copost(std::string_view device, std::string_view uri, std::string_view data,
                                                 std::function<void(http::Frame)> done) {
  Depth depth(http_calls_);
  auto st = std::make_shared<CopostState>();
  st->done = std::move(done);
  auto refuse = [&](http::Frame frame) -> std::unique_ptr<http::Pending> {
    st->settled = true;
    asio::post(io_, [st, frame = std::move(frame)]() mutable {
      if (!st->gone && st->done) st->done(std::move(frame));
    });
    return std::make_unique<CopostHandle>(alive_, std::weak_ptr<Device>{}, 0, st);
  };
  const auto it = devices_.find(device);
  if (it == devices_.end() || it->second->stopped || !it->second->up) {
    if (it != devices_.end()) ++it->second->requests_offline;
    return refuse({http::Code::DeviceIdOffline, {}});
  }
  Device& d = *it->second;
  auto translated = translate_copost(uri, data);
  if (const auto* code = std::get_if<http::Code>(&translated)) return refuse({*code, {}});
  const auto& req = std::get<CopostRequest>(translated);
  const uint64_t id = next_id_++;
  Device* raw = &d;
  // Idempotent: the link retries on its 2 s timeout (§5.1: the device may then run it twice).
  const auto submitted = d.sessions->link().request(
      req.kind, req.text, true,
      [raw, id, st](const RequestResult& result) {
        st->settled = true;
        raw->coposts.erase(id);
        http::Frame frame = copost_reply(result);
        switch (frame.code) {
          case http::Code::Ok: ++raw->requests_ok; break;
          case http::Code::RequestTimeout: ++raw->requests_timeout; break;
          case http::Code::DeviceIdOffline: ++raw->requests_offline; break;
          default: ++raw->requests_fail; break;
        }
        if (!st->gone && st->done) st->done(std::move(frame));
      },
      Clock::now());
  if (!submitted) {
    ++d.requests_fail;
    RequestResult r;
    r.error = submitted.error;
    return refuse(copost_reply(r));
  }
  st->msg_num = submitted.msg_num;
  if (!st->settled) d.coposts[id] = st;
  if (!d.ticking) rearm(d);  // the link has a new deadline
  return std::make_unique<CopostHandle>(alive_, d.self, id, st);
}

// ---- obget -------------------------------------------------------------------------

std::unique_ptr<http::Pending> DeviceHub::obget(std::string_view device, std::string_view uri, std::string_view data,
                                                http::ObserveCallbacks callbacks) {
  Depth depth(http_calls_);
  auto refuse = [&](http::Code code) -> std::unique_ptr<http::Pending> {
    auto h = std::make_unique<RefusedObserver>();
    asio::post(io_, [gone = h->gone_, frame = std::move(callbacks.frame), code] {
      if (!*gone && frame) frame({code, {}});
    });
    return h;
  };
  const auto it = devices_.find(device);
  if (it == devices_.end() || it->second->stopped || !it->second->up) return refuse(http::Code::DeviceIdOffline);
  if (const http::Code code = check(device, http::Method::Obget, uri, data); code != http::Code::Ok)
    return refuse(code);
  Device& d = *it->second;
  const auto target = std::get<ObgetTarget>(parse_obget_uri(uri));
  const uint64_t id = next_id_++;
  Observer o;
  o.callbacks = std::move(callbacks);
  if (target.kind == ObgetTarget::Kind::Publish) {
    d.observers.emplace(id, std::move(o));
    d.subs.add(id, target.name, std::get<SubscriptionAsk>(parse_publish_options(data)), false);
    log::debug(kLog, d.config.name, ": HTTP observer of topic ", target.name);
    pump_subscriptions(d);  // its news are queued and posted (we are inside HttpApi's call)
  } else {
    Stream& s = *find_stream(d, target.name);
    o.stream = &s;
    d.observers.emplace(id, std::move(o));
    ++s.observers;
    log::info(kLog, d.config.name, "/", s.config.name, ": HTTP observer attached");
    const RtStreamState state = s.rt->state();
    if (state == RtStreamState::Open || state == RtStreamState::Restarting) {
      d.notices.emplace_back(id, std::nullopt);
      flush_notices(d);
    } else {
      s.rt->open(Clock::now());  // established on RtStreamEvent::Opened
    }
  }
  if (!d.ticking) rearm(d);
  return std::make_unique<ObserveHandle>(*this, d.self, id);
}

// ---- observers ---------------------------------------------------------------------

void DeviceHub::release_stream(Stream& s) {
  if (s.observers == 0) return;
  if (--s.observers == 0 && !s.client) s.last_input = Clock::now();  // the quiet period starts
}

// Ends an observer: its use is released now, its final frame queued.
void DeviceHub::finish_observer(Device& d, uint64_t id, http::Frame frame) {
  const auto it = d.observers.find(id);
  if (it == d.observers.end() || it->second.ended) return;
  Observer& o = it->second;
  o.ended = true;
  if (o.stream)
    release_stream(*o.stream);
  else
    d.subs.remove(id);  // already gone when the table ended it
  d.notices.emplace_back(id, std::move(frame));
}

void DeviceHub::flush_notices(Device& d) {
  if (d.notices.empty()) return;
  if (http_calls_ > 0) {
    if (d.flush_posted) return;
    d.flush_posted = true;
    asio::post(io_, [this, alive = std::weak_ptr<int>(alive_), wd = d.self] {
      if (!alive.lock()) return;
      if (auto dp = wd.lock()) {
        dp->flush_posted = false;
        flush_notices(*dp);
      }
    });
    return;
  }
  while (!d.notices.empty()) {
    auto [id, frame] = std::move(d.notices.front());
    d.notices.pop_front();
    const auto it = d.observers.find(id);
    if (it == d.observers.end()) continue;  // its handle went first
    if (!frame) {
      if (it->second.ended || it->second.established) continue;
      it->second.established = true;
      auto cb = it->second.callbacks.established;  // a copy: the call may destroy the observer
      if (cb) cb();
    } else {
      auto cb = std::move(it->second.callbacks.frame);
      d.observers.erase(it);
      if (cb) cb(std::move(*frame));
    }
  }
}

// The handle went (cancel, §4.5): the use is released and the device told as its kind
// needs (an update with the topic's new values, or rateHz 0).
void DeviceHub::end_observer(Device& d, uint64_t id) {
  Depth depth(http_calls_);
  const auto it = d.observers.find(id);
  if (it == d.observers.end()) return;
  const Observer o = std::move(it->second);
  d.observers.erase(it);
  if (!o.ended) {
    if (o.stream) {
      release_stream(*o.stream);
      log::info(kLog, d.config.name, "/", o.stream->config.name, ": HTTP observer left");
    } else if (d.subs.remove(id)) {
      pump_subscriptions(d);
    }
  }
  if (!d.ticking) rearm(d);
}

void DeviceHub::on_stream_opened(Device& d, Stream& s) {
  if (s.observers == 0) return;
  for (const auto& [id, o] : d.observers)
    if (o.stream == &s && !o.ended && !o.established) d.notices.emplace_back(id, std::nullopt);
  flush_notices(d);
}

// §5.4: the open failing ends the observers waiting for it (DEVICEID_TIMEOUT when the
// link gave up), and a failed reopen ends the established ones (INTERNAL_SERVER_ERROR).
// The stream itself retries on its backoff while anybody else still uses it.
void DeviceHub::on_stream_open_failed(Device& d, Stream& s) {
  if (s.observers == 0) return;
  const RtStreamOpenFailure& f = s.rt->last_open_failure();
  const std::string data = f.reply_json.empty() ? s.rt->last_error() : f.reply_json;
  std::vector<std::pair<uint64_t, http::Code>> ending;
  for (const auto& [id, o] : d.observers) {
    if (o.stream != &s || o.ended) continue;
    const bool timeout = !o.established && f.link_error == LinkError::Timeout;
    ending.emplace_back(id, timeout ? http::Code::DeviceIdTimeout : http::Code::InternalServerError);
  }
  for (const auto& [id, code] : ending)
    finish_observer(d, id, {code, code == http::Code::InternalServerError ? data : std::string()});
  flush_notices(d);
}

// The port closed: every observer ends with DEVICEID_OFFLINE (coposts get it from the
// link's reset, through copost_reply).
void DeviceHub::on_link_down(Device& d) {
  d.subs.on_link_down();
  take_subscription_events(d);  // finishes the /pub observers
  std::vector<uint64_t> ids;
  for (const auto& [id, o] : d.observers)
    if (!o.ended) ids.push_back(id);
  for (uint64_t id : ids) finish_observer(d, id, {http::Code::DeviceIdOffline, {}});
  flush_notices(d);
}

// The device is stopped (stop(), a reload): whoever waits on it hears DEVICEID_OFFLINE,
// posted (these are not device events, and the device goes soon after).
void DeviceHub::abandon_requests(Device& d) {
  for (auto& [id, st] : d.coposts) {
    st->settled = true;
    d.sessions->link().cancel(st->msg_num);
    ++d.requests_offline;
    asio::post(io_, [st = st] {
      if (!st->gone && st->done) st->done({http::Code::DeviceIdOffline, {}});
    });
  }
  d.coposts.clear();
  Depth depth(http_calls_);
  std::vector<uint64_t> ids;
  for (const auto& [id, o] : d.observers)
    if (!o.ended) ids.push_back(id);
  for (uint64_t id : ids) finish_observer(d, id, {http::Code::DeviceIdOffline, {}});
  flush_notices(d);
}

}  // namespace edgelink::devices

// RtioServer: the listener, the registry of verified devices, DeviceAccess for RTIO
// device ids, and the status/metrics section (spec/http-api.md §6, §3).

#include "edgelink/rtio/rtio_server.hpp"

#include "edgelink/util/json_object.hpp"
#include "rtio_session.hpp"

namespace edgelink::rtio {
namespace {

constexpr const char* kLog = "rtio";

// Handles given to the HTTP API: destroying one cancels (a late reply is then dropped
// and counted; an observer's next notify is answered Terminate).
class CopostHandle : public http::Pending {
 public:
  CopostHandle(std::weak_ptr<Session> s, uint16_t id) : s_(std::move(s)), id_(id) {}
  ~CopostHandle() override {
    if (auto s = s_.lock()) s->cancel_request(id_);
  }

 private:
  std::weak_ptr<Session> s_;
  uint16_t id_;
};

class ObserveHandle : public http::Pending {
 public:
  ObserveHandle(std::weak_ptr<Session> s, uint16_t obs) : s_(std::move(s)), obs_(obs) {}
  ~ObserveHandle() override {
    if (auto s = s_.lock()) s->cancel_observer(obs_);
  }

 private:
  std::weak_ptr<Session> s_;
  uint16_t obs_;
};

class NoHandle : public http::Pending {};

}  // namespace

RtioServer::RtioServer(asio::io_context& io, const Config& config, RtioCallbacks callbacks)
    : io_(io), shared_(std::make_shared<Shared>(io, config, std::move(callbacks))) {}

RtioServer::~RtioServer() { stop(); }

std::string RtioServer::start() {
  const RtioConfig& rc = shared_->config.rtio;
  if (!rc.enabled || acceptor_) return {};
  std::error_code ec;
  const auto addr = asio::ip::make_address(rc.host, ec);
  if (ec) return "rtio: bind " + rc.bind + ": " + ec.message();
  auto acc = std::make_unique<asio::ip::tcp::acceptor>(io_);
  const asio::ip::tcp::endpoint ep(addr, rc.port);
  acc->open(ep.protocol(), ec);
  if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc->bind(ep, ec);
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) {
    acceptor_ = std::move(acc);
    shared_->running = true;
    log::info(kLog, "device-access server listening on ", rc.bind, " (", rc.devices.size(), " devices, ",
              rc.services.size(), " device services)");
    accept();
    return {};
  }
  return "rtio: cannot listen on " + rc.bind + ": " + ec.message();
}

void RtioServer::accept() {
  acceptor_->async_accept([this, shared = shared_](std::error_code ec, asio::ip::tcp::socket socket) {
    if (!shared->running || !acceptor_) return;
    if (!ec) {
      if (shared->sessions.size() >= shared->config.rtio.max_connections) {
        shared->count("refused");
        log::limited(shared->limiter, "max", LogLevel::Warn, kLog, "connection refused: ",
                     shared->config.rtio.max_connections, " connections open (rtio.max_connections)");
        std::error_code ignored;
        socket.close(ignored);
      } else {
        auto s = std::make_shared<Session>(shared, std::move(socket));
        shared->sessions[s.get()] = s;
        s->start();
      }
    } else if (ec == asio::error::operation_aborted) {
      return;
    } else {
      // Out of descriptors (EMFILE) and the like: accepting again at once would spin a
      // core while the pending connection stays in the backlog. Pause, say so, retry.
      shared->count("accept_failed");
      log::limited(shared->limiter, "accept", LogLevel::Warn, kLog, "accept failed: ", ec.message(),
                   "; retrying in 100 ms");
      auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
      timer->async_wait([this, shared, timer](std::error_code tec) {
        if (!tec && shared->running && acceptor_) accept();
      });
      return;
    }
    accept();
  });
}

void RtioServer::stop() {
  shared_->running = false;
  if (acceptor_) {
    std::error_code ec;
    acceptor_->close(ec);
    acceptor_.reset();
  }
  auto sessions = shared_->sessions;
  for (auto& [p, s] : sessions) s->close("closed");
}

std::vector<std::string> RtioServer::reload(const Config& config) {
  std::vector<std::string> notes;
  const RtioConfig old = shared_->config.rtio;
  if (config.rtio.enabled != old.enabled || config.rtio.bind != old.bind)
    notes.push_back("rtio: a changed [rtio] bind (or adding/removing [rtio]) takes effect at the next restart");
  shared_->config = config;
  shared_->config.rtio.enabled = old.enabled;
  shared_->config.rtio.bind = old.bind;
  shared_->config.rtio.host = old.host;
  shared_->config.rtio.port = old.port;
  shared_->index_services();
  // A device removed or with a new secret must verify again.
  std::vector<std::shared_ptr<Session>> drop;
  for (const auto& [id, weak] : shared_->verified) {
    auto it = config.rtio.devices.find(id);
    auto was = old.devices.find(id);
    if (it == config.rtio.devices.end() || was == old.devices.end() || it->second != was->second)
      if (auto s = weak.lock()) drop.push_back(s);
  }
  for (auto& s : drop) s->close("closed");
  return notes;
}

uint16_t RtioServer::port() const {
  std::error_code ec;
  return acceptor_ ? acceptor_->local_endpoint(ec).port() : 0;
}

// ---- DeviceAccess ------------------------------------------------------------------

http::DeviceKind RtioServer::kind(std::string_view device) const {
  return shared_->config.rtio.devices.count(std::string(device)) ? http::DeviceKind::Rtio : http::DeviceKind::None;
}

bool RtioServer::link_up(std::string_view device) const {
  auto it = shared_->verified.find(device);
  return it != shared_->verified.end() && !it->second.expired();
}

http::Code RtioServer::check(std::string_view, http::Method, std::string_view, std::string_view) const {
  return http::Code::Ok;  // RTIO carries any uri and data; the device decides
}

std::unique_ptr<http::Pending> RtioServer::copost(std::string_view device, std::string_view uri,
                                                  std::string_view data, std::function<void(http::Frame)> done) {
  std::shared_ptr<Session> s;
  if (auto it = shared_->verified.find(device); it != shared_->verified.end()) s = it->second.lock();
  const uint16_t id = s ? s->send_copost(uri, data, done) : 0;
  if (id == 0) {
    asio::post(io_, [done = std::move(done), offline = !s] {
      done({offline ? http::Code::DeviceIdOffline : http::Code::TooManyRequests, {}});
    });
    return std::make_unique<NoHandle>();
  }
  return std::make_unique<CopostHandle>(s, id);
}

std::unique_ptr<http::Pending> RtioServer::obget(std::string_view device, std::string_view uri,
                                                 std::string_view data, http::ObserveCallbacks callbacks) {
  std::shared_ptr<Session> s;
  if (auto it = shared_->verified.find(device); it != shared_->verified.end()) s = it->second.lock();
  auto frame = callbacks.frame;
  const uint16_t obs = s ? s->open_observer(uri, data, std::move(callbacks)) : 0;
  if (obs == 0) {
    asio::post(io_, [frame = std::move(frame), offline = !s] {
      if (frame) frame({offline ? http::Code::DeviceIdOffline : http::Code::TooManyObservers, {}});
    });
    return std::make_unique<NoHandle>();
  }
  return std::make_unique<ObserveHandle>(s, obs);
}

// ---- status ------------------------------------------------------------------------

void RtioServer::write_status(rapidjson::Document& doc) const {
  const Shared& sh = *shared_;
  auto& a = doc.GetAllocator();
  if (doc.HasMember("devices") && doc["devices"].IsObject()) {
    JsonObject devices(doc["devices"], a);
    for (const auto& [id, secret] : sh.config.rtio.devices) {
      std::shared_ptr<Session> s;
      if (auto it = sh.verified.find(id); it != sh.verified.end()) s = it->second.lock();
      std::optional<uint64_t> since;
      uint64_t connects = 0;
      if (auto it = sh.info.find(id); it != sh.info.end()) {
        since = it->second.since_ms;
        connects = it->second.connects;
      }
      devices.object(id, [&](JsonObject& o) {
        o.str("kind", "rtio")
            .str("link", s ? "up" : "down")
            .ms("since", since)
            .u64("heartbeat", static_cast<uint64_t>(s ? s->heartbeat_interval().count() : Heartbeat::kDefaultInterval.count()))
            .u64("coposts", s ? s->coposts() : 0)
            .u64("observers", s ? s->observers() : 0)
            .u64("connects", connects);
        if (s) o.str("remote", s->remote());
      });
    }
  }
  JsonObject root(doc, a);
  root.object("rtio", [&](JsonObject& r) {
    r.str("bind", sh.config.rtio.enabled ? sh.config.rtio.bind : "")
        .boolean("listening", acceptor_ != nullptr)
        .u64("open_connections", sh.sessions.size())
        .u64("verified_devices", sh.verified.size())
        .u64("late_replies", sh.late_replies)
        .u64("dropped_requests", sh.dropped_requests);
    r.object("connections", [&](JsonObject& c) {
      for (const auto& [result, n] : sh.results) c.u64(result, n);
    });
    r.object("device_copost", [&](JsonObject& d) {
      for (const auto& entry : sh.device_copost) {
        const auto& statuses = entry.second;
        d.object(entry.first, [&](JsonObject& u) {
          for (const auto& [status, n] : statuses) u.u64(status, n);
        });
      }
    });
  });
}

}  // namespace edgelink::rtio

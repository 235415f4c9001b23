// HttpApi on RESTinio (librestinio-dev), on the daemon's io_context. The only
// translation unit that includes RESTinio.

#include "edgelink/http/http_api.hpp"

#include <array>
#include <chrono>
#include <map>

#include <restinio/all.hpp>

#include "edgelink/http/device_request.hpp"
#include "edgelink/http/jwt.hpp"
#include "edgelink/util/log.hpp"

namespace edgelink::http {
namespace {

constexpr const char* kTextPlain = "text/plain; charset=utf-8";
constexpr const char* kJson = "application/json";
constexpr const char* kNdjson = "application/x-ndjson";
constexpr const char* kMetricsType = "text/plain; version=0.0.4; charset=utf-8";

// Keep-alive connections with no request in progress are closed after this.
constexpr std::chrono::seconds kIdleTimeout{60};
// A response that cannot be written for this long (a client that stopped reading
// after its observer was ended as slow, say) closes its connection.
constexpr std::chrono::seconds kWriteTimeout{30};
// RESTinio closes a connection whose request has no response after its "handle
// request" limit. obget streams may be silent for any time (§4.7: gap unlimited), and
// our own copost/obget timers answer long before, so it is set out of the way.
constexpr std::chrono::hours kHandleTimeout{24 * 365};
// Bodies are read whole by the HTTP parser; beyond this the connection is dropped.
// Up to here a long body still gets its proper 400 (§4.3 row 4).
constexpr uint64_t kMaxReadBody = 64 * 1024;

enum class Kind { Copost, Obget, Status, Metrics, Healthz, Other };
constexpr std::array<const char*, 6> kKindNames{"copost", "obget", "status", "metrics", "healthz", "other"};

enum Result { kOk, kFail, kTimeout, kOffline };
constexpr std::array<const char*, 4> kResultNames{"ok", "fail", "timeout", "offline"};

Result result_of(Code code) {
  switch (code) {
    case Code::Ok:
    case Code::Continue: return kOk;
    case Code::RequestTimeout:
    case Code::DeviceIdTimeout: return kTimeout;
    case Code::DeviceIdOffline: return kOffline;
    default: return kFail;
  }
}

struct Listener;
struct Blocker;

struct Traits : public restinio::default_single_thread_traits_t {
  using connection_state_listener_t = Listener;
  using ip_blocker_t = Blocker;
};
using Server = restinio::http_server_t<Traits>;
using Request = restinio::request_handle_t;
using Stream = restinio::response_builder_t<restinio::chunked_output_t>;

}  // namespace

struct HttpApi::Impl : std::enable_shared_from_this<HttpApi::Impl> {
  struct DeviceStats {
    uint64_t coposts = 0;    // in flight
    uint64_t observers = 0;  // open streams
    std::array<uint64_t, 4> results{};
    std::map<std::string, uint64_t> ended;  // observers ended, by reason
  };
  // One copost or obget in progress.
  struct Active {
    uint64_t key = 0;
    restinio::connection_id_t conn = 0;
    Request req;
    std::string device;
    Method method = Method::Copost;
    uint32_t id = 0;
    std::unique_ptr<Pending> pending;
    std::unique_ptr<asio::steady_timer> timer;
    std::unique_ptr<Stream> stream;  // obget, once established
    uint32_t fid = 0;
    uint32_t queued = 0;  // frames handed to the socket, not yet written
  };

  asio::io_context& io;
  HttpConfig config;
  DeviceAccess& devices;
  HttpHooks hooks;
  std::unique_ptr<JwtVerifier> jwt;
  std::unique_ptr<Server> server;
  uint16_t bound_port = 0;

  std::map<uint64_t, Active> active;
  uint64_t next_key = 1;
  uint32_t open_connections = 0;

  // Counters (status and metrics).
  uint64_t requests = 0, connections = 0, connections_refused = 0, unknown_devices = 0;
  std::array<std::map<std::string, uint64_t>, 6> by_kind;  // kind -> code -> count
  std::map<int, uint64_t> by_status;
  std::map<std::string, DeviceStats> per_device;
  log::RateLimiter limiter{10, std::chrono::seconds(60)};

  Impl(asio::io_context& io, const HttpConfig& config, DeviceAccess& devices, HttpHooks hooks)
      : io(io), config(config), devices(devices), hooks(std::move(hooks)) {}

  // ---- replies ---------------------------------------------------------------------
  template <class Builder>
  void cors(Builder& b) const {
    if (config.cors_allow_origin.empty()) return;
    b.append_header("Access-Control-Allow-Origin", config.cors_allow_origin);
    b.append_header("Access-Control-Allow-Methods", "POST, OPTIONS");
    b.append_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
  }

  // A whole response with a body (HEAD: the same headers, no body).
  void reply(const Request& req, Kind kind, restinio::http_status_line_t status, const char* type,
             std::string body, std::string code = {}, bool device_path = false,
             const std::vector<std::pair<const char*, std::string>>& extra = {}) {
    const int st = static_cast<int>(status.status_code().raw_code());
    ++by_status[st];
    ++by_kind[static_cast<size_t>(kind)][code.empty() ? std::to_string(st) : code];
    const bool head = req->header().method() == restinio::http_method_head();
    auto b = req->create_response<restinio::user_controlled_output_t>(std::move(status));
    if (type) b.append_header(restinio::http_field::content_type, type);
    for (const auto& [name, value] : extra) b.append_header(name, value);
    if (device_path) cors(b);
    b.set_content_length(body.size());
    if (!head) b.set_body(std::move(body));
    b.done();
  }

  void text(const Request& req, Kind kind, restinio::http_status_line_t status, std::string body,
            bool device_path, const std::vector<std::pair<const char*, std::string>>& extra = {}) {
    reply(req, kind, std::move(status), kTextPlain, std::move(body), {}, device_path, extra);
  }

  // A device reply in one piece: copost JSON, or an obget's only (final) frame.
  void device_reply(const Request& req, Method method, uint32_t id, Code code, std::string_view data) {
    std::string body = copost_reply_json(id, 0, code, data);
    const bool obget = method == Method::Obget;
    if (obget) body += '\n';
    reply(req, obget ? Kind::Obget : Kind::Copost, restinio::status_ok(), obget ? kNdjson : kJson,
          std::move(body), to_string(code), true);
  }

  // ---- routing ---------------------------------------------------------------------
  restinio::request_handling_status_t handle(Request req) {
    ++requests;
    const auto method = req->header().method();
    const std::string_view target = req->header().request_target();
    const std::string_view seg = first_path_segment(target);
    const bool get = method == restinio::http_method_get() || method == restinio::http_method_head();

    if (seg == "healthz" || seg == "status" || seg == "metrics") {
      const Kind kind = seg == "healthz" ? Kind::Healthz : seg == "status" ? Kind::Status : Kind::Metrics;
      if (!get) {
        text(req, kind, restinio::status_method_not_allowed(), "Method Not Allowed\n", false,
             {{"Allow", "GET, HEAD"}});
      } else if (kind == Kind::Healthz) {
        const bool stopping = hooks.stopping && hooks.stopping();
        text(req, kind, stopping ? restinio::status_service_unavailable() : restinio::status_ok(),
             stopping ? "stopping\n" : "ok\n", false);
      } else if (kind == Kind::Status) {
        reply(req, kind, restinio::status_ok(), kJson, hooks.status_json ? hooks.status_json() : "{}\n");
      } else {
        reply(req, kind, restinio::status_ok(), kMetricsType, hooks.metrics_text ? hooks.metrics_text() : "");
      }
      return restinio::request_accepted();
    }

    // §4.3, in order.
    if (!valid_device_id(seg)) {
      text(req, Kind::Other, restinio::status_forbidden(), "The deviceID length error\n", true);
      return restinio::request_accepted();
    }
    if (method == restinio::http_method_options()) {
      reply(req, Kind::Other, restinio::status_no_content(), nullptr, {}, {}, true);
      return restinio::request_accepted();
    }
    if (method != restinio::http_method_post()) {
      text(req, Kind::Other, restinio::status_method_not_allowed(), "Method Not Allowed\n", true,
           {{"Allow", "POST, OPTIONS"}});
      return restinio::request_accepted();
    }
    if (jwt) {
      const auto& h = req->header();
      std::string auth;
      const bool has = h.has_field(restinio::http_field::authorization);
      if (has) auth = h.get_field(restinio::http_field::authorization);
      const AuthResult r = jwt->check(has ? &auth : nullptr, seg, std::chrono::system_clock::now());
      if (r != AuthResult::Ok) {
        text(req, Kind::Other, restinio::status_unauthorized(), auth_reply_text(r), true,
             {{"WWW-Authenticate", "Bearer"}});
        return restinio::request_accepted();
      }
    }
    DeviceRequestBody body;
    const BodyError be = parse_device_request(req->body(), body);
    if (be != BodyError::None) {
      text(req, Kind::Other, restinio::status_bad_request(), body_error_text(be), true);
      return restinio::request_accepted();
    }

    const std::string device(seg);
    const DeviceKind dk = devices.kind(device);
    CheckedRequest checked = check_device_request(body, dk == DeviceKind::Ricrest ? kMinUriRicrest : kMinUriRtio);
    if (checked.code != Code::Ok) {
      device_reply(req, checked.code == Code::MethodNotAllowed ? Method::Copost : checked.method, body.id,
                   checked.code, {});
      return restinio::request_accepted();
    }
    const Method m = checked.method;
    if (dk == DeviceKind::None) {
      ++unknown_devices;
      if (limiter.admit("unknown") >= 0)
        log::info("http", "request for unknown device ", quote_id(device), " answered DEVICEID_OFFLINE");
      device_reply(req, m, body.id, Code::DeviceIdOffline, {});
      return restinio::request_accepted();
    }
    DeviceStats& ds = per_device[device];
    if (!devices.link_up(device)) {
      ++ds.results[kOffline];
      device_reply(req, m, body.id, Code::DeviceIdOffline, {});
      return restinio::request_accepted();
    }
    if (const Code c = devices.check(device, m, body.uri, checked.data); c != Code::Ok) {
      ++ds.results[result_of(c)];
      device_reply(req, m, body.id, c, {});
      return restinio::request_accepted();
    }
    if (m == Method::Copost && ds.coposts >= config.max_coposts_per_device) {
      ++ds.results[kFail];
      device_reply(req, m, body.id, Code::TooManyRequests, {});
      return restinio::request_accepted();
    }
    if (m == Method::Obget && ds.observers >= config.max_observers_per_device) {
      ++ds.results[kFail];
      device_reply(req, m, body.id, Code::TooManyObservers, {});
      return restinio::request_accepted();
    }
    if (m == Method::Copost)
      start_copost(std::move(req), device, body, checked.data);
    else
      start_obget(std::move(req), device, body, checked.data);
    return restinio::request_accepted();
  }

  static std::string quote_id(std::string_view id) { return "\"" + std::string(id) + "\""; }

  Active& add(Request req, const std::string& device, Method m, uint32_t id) {
    const uint64_t key = next_key++;
    Active& a = active[key];
    a.key = key;
    a.conn = req->connection_id();
    a.req = std::move(req);
    a.device = device;
    a.method = m;
    a.id = id;
    a.timer = std::make_unique<asio::steady_timer>(io);
    return a;
  }

  Active* find(uint64_t key) {
    auto it = active.find(key);
    return it == active.end() ? nullptr : &it->second;
  }

  // Forgets a request. Its Pending goes from a posted handler: this may run inside the
  // device side's own callback, which must not be destroyed under its feet.
  void remove(uint64_t key) {
    auto it = active.find(key);
    if (it == active.end()) return;
    DeviceStats& ds = per_device[it->second.device];
    if (it->second.method == Method::Copost) {
      --ds.coposts;
    } else {
      --ds.observers;
    }
    if (it->second.pending) asio::post(io, [p = std::move(it->second.pending)]() mutable { p.reset(); });
    active.erase(it);
  }

  // ---- copost ----------------------------------------------------------------------
  void start_copost(Request req, const std::string& device, const DeviceRequestBody& body, const std::string& data) {
    Active& a = add(std::move(req), device, Method::Copost, body.id);
    ++per_device[device].coposts;
    const uint64_t key = a.key;
    std::weak_ptr<Impl> weak = shared_from_this();
    a.timer->expires_after(config.copost_timeout);
    a.timer->async_wait([weak, key](std::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->copost_done(key, Frame{Code::RequestTimeout, {}});
    });
    a.pending = devices.copost(device, body.uri, data, [weak, key](Frame f) {
      if (auto self = weak.lock()) self->copost_done(key, std::move(f));
    });
  }

  void copost_done(uint64_t key, Frame f) {
    Active* a = find(key);
    if (!a) return;
    ++per_device[a->device].results[result_of(f.code)];
    device_reply(a->req, Method::Copost, a->id, f.code, f.data);
    remove(key);
  }

  // ---- obget -----------------------------------------------------------------------
  void start_obget(Request req, const std::string& device, const DeviceRequestBody& body, const std::string& data) {
    Active& a = add(std::move(req), device, Method::Obget, body.id);
    ++per_device[device].observers;
    const uint64_t key = a.key;
    std::weak_ptr<Impl> weak = shared_from_this();
    a.timer->expires_after(config.obget_establish_timeout);
    a.timer->async_wait([weak, key](std::error_code ec) {
      if (ec) return;
      auto self = weak.lock();
      if (!self) return;
      if (Active* a = self->find(key); a && !a->stream) self->obget_frame(key, Frame{Code::DeviceIdTimeout, {}});
    });
    ObserveCallbacks cb;
    cb.established = [weak, key] {
      if (auto self = weak.lock()) self->obget_established(key);
    };
    cb.frame = [weak, key](Frame f) {
      if (auto self = weak.lock()) self->obget_frame(key, std::move(f));
    };
    a.pending = devices.obget(device, body.uri, data, std::move(cb));
  }

  void obget_established(uint64_t key) {
    Active* a = find(key);
    if (!a || a->stream) return;
    a->timer->cancel();
    ++per_device[a->device].results[kOk];
    ++by_status[200];
    ++by_kind[static_cast<size_t>(Kind::Obget)][to_string(Code::Continue)];
    a->stream = std::make_unique<Stream>(a->req->create_response<restinio::chunked_output_t>());
    a->stream->append_header(restinio::http_field::content_type, kNdjson);
    a->stream->append_header(restinio::http_field::cache_control, "no-store");
    cors(*a->stream);
    a->stream->flush();  // the headers go now, before any frame
  }

  void obget_frame(uint64_t key, Frame f) {
    Active* a = find(key);
    if (!a) return;
    if (!a->stream) {  // not established: this is the only frame
      if (f.code == Code::Continue) return;  // a broken promise of the device side; nothing to send yet
      a->timer->cancel();
      ++per_device[a->device].results[result_of(f.code)];
      device_reply(a->req, Method::Obget, a->id, f.code, f.data);
      remove(key);
      return;
    }
    if (f.code == Code::Continue) {
      if (a->queued >= config.observer_queue_frames) {
        end_stream(*a, Code::Terminate, "slow");
        return;
      }
      send_frame(*a, f.code, f.data);
      return;
    }
    end_stream(*a, f.code, f.code == Code::Terminate ? "terminate" : f.code == Code::DeviceIdOffline ? "offline" : "error",
               f.data);
  }

  void send_frame(Active& a, Code code, std::string_view data) {
    std::string line = copost_reply_json(a.id, a.fid++, code, data);
    line += '\n';
    ++a.queued;
    std::weak_ptr<Impl> weak = shared_from_this();
    const uint64_t key = a.key;
    a.stream->append_chunk(std::move(line));
    a.stream->flush([weak, key](const asio::error_code&) {
      auto self = weak.lock();
      if (!self) return;
      if (Active* a = self->find(key); a && a->queued) --a->queued;
    });
  }

  // The final frame and the last chunk; the connection may then carry another request.
  void end_stream(Active& a, Code code, const char* reason, std::string_view data = {}) {
    ++per_device[a.device].ended[reason];
    send_frame(a, code, code == Code::Terminate || code == Code::DeviceIdOffline ? std::string_view{} : data);
    a.stream->done();
    remove(a.key);
  }

  // ---- connections -----------------------------------------------------------------
  void on_closed(restinio::connection_id_t conn) {
    if (open_connections) --open_connections;
    std::vector<uint64_t> gone;
    for (const auto& [key, a] : active)
      if (a.conn == conn) gone.push_back(key);
    for (uint64_t key : gone) {
      Active& a = active.at(key);
      if (a.method == Method::Obget && a.stream) ++per_device[a.device].ended["client_gone"];
      remove(key);
    }
  }

  bool admit() {
    if (open_connections >= config.max_connections) {
      ++connections_refused;
      if (limiter.admit("max_connections") >= 0)
        log::warn("http", "connection refused: ", config.max_connections, " connections open (http.max_connections)");
      return false;
    }
    ++open_connections;
    ++connections;
    return true;
  }

  void end_all() {
    std::vector<uint64_t> keys;
    for (const auto& [key, a] : active) keys.push_back(key);
    for (uint64_t key : keys) {
      Active& a = active.at(key);
      if (a.stream) a.stream->done();
      remove(key);
    }
  }
};

namespace {

// RESTinio calls these on the io_context thread; they reach the Impl weakly, since
// connections may outlive the HttpApi by a few handlers at shutdown.
struct Listener {
  std::weak_ptr<HttpApi::Impl> impl;
  void state_changed(const restinio::connection_state::notice_t& notice) noexcept {
    auto self = impl.lock();
    if (!self) return;
    struct Visitor {
      HttpApi::Impl& impl;
      restinio::connection_id_t id;
      void operator()(const restinio::connection_state::accepted_t&) const {}
      void operator()(const restinio::connection_state::closed_t&) const { impl.on_closed(id); }
      void operator()(const restinio::connection_state::upgraded_to_websocket_t&) const { impl.on_closed(id); }
    };
    restinio::visit(Visitor{*self, notice.connection_id()}, notice.cause());
  }
};

// max_connections: a connection over the limit is closed at once and counted (§1),
// rather than left waiting in the listen backlog as RESTinio's own limiter would.
struct Blocker {
  std::weak_ptr<HttpApi::Impl> impl;
  restinio::ip_blocker::inspection_result_t inspect(const restinio::ip_blocker::incoming_info_t&) noexcept {
    auto self = impl.lock();
    return self && self->admit() ? restinio::ip_blocker::inspection_result_t::allow
                                 : restinio::ip_blocker::inspection_result_t::deny;
  }
};

}  // namespace

HttpApi::HttpApi(asio::io_context& io, const HttpConfig& config, DeviceAccess& devices, HttpHooks hooks)
    : impl_(std::make_shared<Impl>(io, config, devices, std::move(hooks))) {}

HttpApi::~HttpApi() { stop(); }

std::string HttpApi::start() {
  Impl& im = *impl_;
  if (!im.config.enabled || im.server) return {};
  if (!im.config.jwt_public_key.empty()) {
    std::string why;
    im.jwt = JwtVerifier::from_pem_file(im.config.jwt_public_key, why);
    if (!im.jwt) return "http: jwt_public_key: " + why;
  }
  std::weak_ptr<Impl> weak = impl_;
  restinio::server_settings_t<Traits> settings;
  settings.address(im.config.host)
      .port(im.config.port)
      .request_handler([weak](Request req) {
        auto self = weak.lock();
        return self ? self->handle(std::move(req)) : restinio::request_rejected();
      })
      .connection_state_listener(std::make_shared<Listener>(Listener{weak}))
      .ip_blocker(std::make_shared<Blocker>(Blocker{weak}))
      // Two: while an obget response streams, RESTinio keeps reading the connection
      // (for a next request), which is how a client's EOF is seen at once.
      .max_pipelined_requests(2)
      .read_next_http_message_timelimit(kIdleTimeout)
      .write_http_response_timelimit(kWriteTimeout)
      .handle_request_timeout(kHandleTimeout)
      .incoming_http_msg_limits(restinio::incoming_http_msg_limits_t{}
                                    .max_url_size(8 * 1024)
                                    .max_field_name_size(1024)
                                    .max_field_value_size(16 * 1024)
                                    .max_field_count(100)
                                    .max_body_size(kMaxReadBody))
      .acceptor_post_bind_hook([weak](asio::ip::tcp::acceptor& acceptor) {
        if (auto self = weak.lock()) self->bound_port = acceptor.local_endpoint().port();
      });
  try {
    im.server = std::make_unique<Server>(restinio::external_io_context(im.io), std::move(settings));
    im.server->open_sync();
  } catch (const std::exception& e) {
    im.server.reset();
    return "http: cannot listen on " + im.config.bind + ": " + e.what();
  }
  log::info("http", "listening on ", im.config.bind, im.jwt ? " (JWT required for device requests)" : "");
  return {};
}

void HttpApi::stop() {
  Impl& im = *impl_;
  im.end_all();
  if (im.server) {
    try {
      im.server->close_sync();
    } catch (const std::exception& e) {
      log::warn("http", "closing the listener: ", e.what());
    }
    im.server.reset();
  }
}

std::vector<std::string> HttpApi::reload(const HttpConfig& config) {
  Impl& im = *impl_;
  std::vector<std::string> notes;
  if (config.enabled != im.config.enabled || config.bind != im.config.bind)
    notes.push_back("http: a changed [http] bind or enabled takes effect at the next restart");
  if (config.jwt_public_key.empty()) {
    im.jwt.reset();
  } else if (im.server) {
    std::string why;
    if (auto jwt = JwtVerifier::from_pem_file(config.jwt_public_key, why))
      im.jwt = std::move(jwt);
    else
      notes.push_back("http: jwt_public_key: " + why + "; the previous key stays");
  }
  const HttpConfig old = im.config;
  im.config = config;
  im.config.enabled = old.enabled;
  im.config.bind = old.bind;
  im.config.host = old.host;
  im.config.port = old.port;
  return notes;
}

bool HttpApi::listening() const { return impl_->server != nullptr; }
uint16_t HttpApi::port() const { return impl_->bound_port; }

void HttpApi::write_status(rapidjson::Document& doc) const {
  const Impl& im = *impl_;
  auto& al = doc.GetAllocator();
  auto str = [&al](std::string_view s) { return rapidjson::Value(s.data(), static_cast<rapidjson::SizeType>(s.size()), al); };
  rapidjson::Value http(rapidjson::kObjectType);
  http.AddMember("bind", str(im.config.enabled ? im.config.bind : ""), al);
  http.AddMember("listening", im.server != nullptr, al);
  http.AddMember("jwt", im.jwt != nullptr, al);
  http.AddMember("requests", im.requests, al);
  uint64_t observers = 0;
  for (const auto& [name, d] : im.per_device) observers += d.observers;
  http.AddMember("observers", observers, al);
  http.AddMember("connections", im.connections, al);
  http.AddMember("open_connections", im.open_connections, al);
  http.AddMember("connections_refused", im.connections_refused, al);
  http.AddMember("unknown_devices", im.unknown_devices, al);
  rapidjson::Value by(rapidjson::kObjectType);
  for (size_t k = 0; k < im.by_kind.size(); ++k) {
    if (im.by_kind[k].empty()) continue;
    rapidjson::Value codes(rapidjson::kObjectType);
    for (const auto& [code, n] : im.by_kind[k]) codes.AddMember(str(code), rapidjson::Value(n), al);
    by.AddMember(rapidjson::StringRef(kKindNames[k]), codes, al);
  }
  http.AddMember("requests_by", by, al);
  rapidjson::Value devs(rapidjson::kObjectType);
  for (const auto& [name, d] : im.per_device) {
    rapidjson::Value v(rapidjson::kObjectType);
    v.AddMember("coposts", d.coposts, al);
    v.AddMember("observers", d.observers, al);
    rapidjson::Value results(rapidjson::kObjectType);
    for (size_t r = 0; r < d.results.size(); ++r) results.AddMember(rapidjson::StringRef(kResultNames[r]), d.results[r], al);
    v.AddMember("results", results, al);
    rapidjson::Value ended(rapidjson::kObjectType);
    for (const auto& [reason, n] : d.ended) ended.AddMember(str(reason), rapidjson::Value(n), al);
    v.AddMember("observers_ended", ended, al);
    devs.AddMember(str(name), v, al);
  }
  http.AddMember("devices", devs, al);
  if (doc.HasMember("http")) doc.RemoveMember("http");
  doc.AddMember("http", http, al);

  if (doc.HasMember("counters") && doc["counters"].IsObject()) {
    auto& counters = doc["counters"];
    if (!counters.HasMember("http_status")) counters.AddMember("http_status", rapidjson::Value(rapidjson::kObjectType), al);
    auto& hs = counters["http_status"];
    for (const auto& [st, n] : im.by_status) hs.AddMember(str(std::to_string(st)), rapidjson::Value(n), al);
  }
}

}  // namespace edgelink::http

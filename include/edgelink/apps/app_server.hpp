#pragma once
// One TCP listener per configured app, one client per port (a new client evicts the
// old one), JSON lines in, actions and (after hello) error reports out.
// Actions are queued for the app, not for a connection: a reconnecting app receives
// what is pending. When edgelink cannot take more data, sessions stop reading their
// sockets (back-pressure) instead of dropping lines.

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio.hpp>

#include "edgelink/apps/app_message.hpp"
#include "edgelink/apps/line_framer.hpp"
#include "edgelink/apps/ds_peer.hpp"
#include "edgelink/apps/upload_peer.hpp"
#include "edgelink/config/config.hpp"
#include "edgelink/util/log.hpp"

namespace edgelink {

class AppSink {
 public:
  virtual ~AppSink() = default;
  // False when the point's stream is new and the stream limit is reached.
  virtual bool on_point(const std::string& app, const DataPoint& point) = 0;
  virtual void on_status(const std::string& app, ActionStatus&& status) = 0;
  // False while edgelink cannot take more data: sessions stop reading.
  virtual bool accepting() const = 0;
};

struct AppCounters {
  uint64_t connects = 0;
  uint64_t evictions = 0;       // a newer client took the port
  uint64_t lines = 0;
  uint64_t points = 0;
  uint64_t statuses = 0;
  uint64_t actions_delivered = 0;
  uint64_t pauses = 0;          // times reading stopped for back-pressure
  uint64_t reports_dropped = 0; // error reports not sent: the app does not read
  uint64_t bind_failures = 0;   // attempts to open the listener that failed
  uint64_t upload_connects = 0;  // connections to the upload_port
  uint64_t upload_refused = 0;   // upload_port connections closed at once: max_uploads were open
  std::array<uint64_t, 7> errors{};  // by AppErrorCode
};

class AppSession;

class AppServer {
 public:
  static constexpr std::chrono::milliseconds kBindRetry{3000};

  // A listener that cannot be opened (the port is in use, the address is not up yet) is
  // tried again every `bind_retry` while the other apps run, as uplink does: one app's
  // port is no reason to stop the gateway.
  AppServer(asio::io_context& io, AppSink& sink, std::chrono::milliseconds bind_retry = kBindRetry);
  ~AppServer();

  // Opens listeners for new apps, closes removed ones, re-binds changed ones.
  void apply(const std::map<std::string, AppConfig>& apps);
  // Where stream requests go (x-stream uploads); without one they are ordinary lines.
  void set_upload_handler(StreamRequestHandler* handler) { uploads_ = handler; }
  // Where data-stream ("ds") lines go; without one they are ordinary lines.
  void set_ds_handler(DsHandler* handler) { ds_ = handler; }

  // Queues an action line for `app`; it is written as soon as the app is connected.
  void deliver_action(const std::string& app, const std::string& action_id, std::string line);
  // Removes an action that has not been written to the app yet (it timed out).
  void cancel_action(const std::string& app, const std::string& action_id);
  // Sessions paused by back-pressure start reading again.
  void resume();
  // Shutdown: close every listener and connection.
  void close();

  struct AppInfo {
    std::string name;
    std::string bind;
    uint16_t port;  // the bound port (the configured one while not listening)
    bool listening;
    std::string bind_error;  // why the listener is not open (retried); empty when listening
    bool connected;
    // Unix ms of the current client's connect, or of the last disconnect; empty: never.
    std::optional<uint64_t> since_ms;
    size_t pending_actions;
    AppCounters counters;
    uint16_t upload_port = 0;       // 0: none configured
    std::string upload_bind_error;  // why the upload port is not open (tried again at a reload)
    size_t upload_connections = 0;
  };
  std::vector<AppInfo> apps() const;

  // Per-app state, shared with its session.
  struct App {
    AppConfig config;
    std::unique_ptr<asio::ip::tcp::acceptor> acceptor;
    std::unique_ptr<asio::steady_timer> bind_timer;  // the next attempt to open the listener
    std::string bind_error;                          // the last failure; empty once listening
    std::shared_ptr<AppSession> session;
    // upload_port (xstream.md §10): stream requests only, up to max_uploads connections.
    std::unique_ptr<asio::ip::tcp::acceptor> upload_acceptor;
    std::string upload_bind_error;
    std::vector<std::shared_ptr<AppSession>> upload_sessions;
    std::deque<std::pair<std::string, std::string>> pending;  // (action id, line)
    AppCounters counters;
    std::optional<uint64_t> since_ms;  // see AppInfo
  };

 private:
  friend class AppSession;
  void open(App& app);
  void accept(App& app);
  void open_upload_port(App& app);
  void accept_upload(App& app);
  void accept_later(App& app, asio::ip::tcp::acceptor* acceptor, asio::error_code ec, bool upload);
  void drain(App& app);

  asio::io_context& io_;
  AppSink& sink_;
  StreamRequestHandler* uploads_ = nullptr;
  DsHandler* ds_ = nullptr;
  uint64_t next_connection_id_ = 1;
  std::chrono::milliseconds bind_retry_;
  std::map<std::string, std::unique_ptr<App>> apps_;
  log::RateLimiter limiter_;
};

}  // namespace edgelink

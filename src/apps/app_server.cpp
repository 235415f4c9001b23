#include "edgelink/apps/app_server.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <variant>

#include "edgelink/util/wall_clock.hpp"

namespace edgelink {
namespace {
constexpr size_t kReadBytes = 64 * 1024;
// A client that does not read its socket gets at most this much queued for it;
// further actions wait in the app's pending queue, further error reports are dropped.
constexpr size_t kWriteQueueCap = 1 << 20;
constexpr char kLog[] = "apps";
}  // namespace

class AppSession : public std::enable_shared_from_this<AppSession> {
 public:
  AppSession(AppServer& server, AppServer::App& app, asio::ip::tcp::socket socket)
      : server_(server), app_(&app), socket_(std::move(socket)), framer_(app.config.max_line_bytes),
        buf_(new char[kReadBytes]) {}

  void start() { read(); }

  void close() {
    if (!app_) return;
    app_ = nullptr;
    asio::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  void resume() {
    if (paused_ && app_) {
      paused_ = false;
      read();
    }
  }

  bool can_take_writes() const { return write_bytes_ < kWriteQueueCap; }

  void enqueue(std::string data) {
    write_bytes_ += data.size();
    writes_.push_back(std::move(data));
    if (!writing_) write();
  }

  void set_max_line_bytes(size_t n) { framer_.set_max_line_bytes(n); }

 private:
  void read() {
    if (!app_) return;
    if (!server_.sink_.accepting()) {
      paused_ = true;
      ++app_->counters.pauses;
      return;
    }
    socket_.async_read_some(asio::buffer(buf_.get(), kReadBytes),
                            [self = shared_from_this()](asio::error_code ec, size_t n) {
                              if (!self->app_) return;
                              if (ec) {
                                self->disconnected(ec);
                                return;
                              }
                              self->process(std::string_view(self->buf_.get(), n));
                              self->read();
                            });
  }

  void process(std::string_view in) {
    while (!in.empty() && app_) {
      LineFramer::Result r = framer_.next(in);
      in.remove_prefix(r.consumed);
      if (r.status == LineFramer::Status::NeedMore) break;
      process_framed(r);
    }
  }

  // A Line or TooLong result of the framer.
  void process_framed(const LineFramer::Result& r) {
    if (r.status == LineFramer::Status::Line) {
      handle_line(r.line, r.line_number);
      return;
    }
    ++app_->counters.lines;
    report(AppError{AppErrorCode::LineTooLong, "",
                    "line is longer than max_line_bytes (" + std::to_string(app_->config.max_line_bytes) +
                        "); skipped up to its end"},
           r.line_number);
  }

  void handle_line(std::string_view line, uint64_t line_number) {
    // Blank lines carry nothing; uplink apps are not told off for them.
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
    AppCounters& c = app_->counters;
    ++c.lines;
    AppMessage msg = parse_app_line(line);
    if (auto* point = std::get_if<DataPoint>(&msg)) {
      if (server_.sink_.on_point(app_->config.name, *point))
        ++c.points;
      else
        report(AppError{AppErrorCode::UnknownStream, "stream",
                        "stream '" + std::string(point->stream) + "' is new and the stream limit is reached"},
               line_number);
    } else if (auto* status = std::get_if<ActionStatus>(&msg)) {
      ++c.statuses;
      server_.sink_.on_status(app_->config.name, std::move(*status));
    } else if (auto* control = std::get_if<ControlLine>(&msg)) {
      if (control->hello) hello_errors_ = control->hello_errors;
    } else {
      report(std::get<AppError>(msg), line_number);
    }
  }

  void report(const AppError& error, uint64_t line_number) {
    AppCounters& c = app_->counters;
    ++c.errors[static_cast<size_t>(error.code)];
    log::limited(server_.limiter_, app_->config.name + to_string(error.code), LogLevel::Warn, kLog,
                 app_->config.name, ": line ", line_number, " rejected: ", to_string(error.code),
                 error.field.empty() ? "" : " (", error.field, error.field.empty() ? "" : ")", ": ",
                 error.message);
    if (!hello_errors_) return;
    if (!can_take_writes()) {
      ++c.reports_dropped;
      return;
    }
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.StartObject();
    w.Key("edgelink");
    w.StartObject();
    w.Key("error");
    w.StartObject();
    w.Key("code");
    w.String(to_string(error.code));
    if (!error.field.empty()) {
      w.Key("field");
      w.String(error.field.data(), error.field.size());
    }
    w.Key("line");
    w.Uint64(line_number);
    w.Key("message");
    w.String(error.message.data(), error.message.size());
    w.EndObject();
    w.EndObject();
    w.EndObject();
    std::string line(buf.GetString(), buf.GetSize());
    line += '\n';
    enqueue(std::move(line));
  }

  void write() {
    if (writes_.empty() || !app_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(writes_.front()),
                      [self = shared_from_this()](asio::error_code ec, size_t) {
                        self->write_bytes_ -= self->writes_.front().size();
                        self->writes_.pop_front();
                        if (ec || !self->app_) {
                          self->writing_ = false;
                          return;
                        }
                        self->write();
                        if (self->app_ && self->can_take_writes()) self->server_.drain(*self->app_);
                      });
  }

  void disconnected(asio::error_code ec) {
    AppServer::App& app = *app_;
    if (ec == asio::error::eof) {
      // An orderly end of stream completes the last line, as in uplink's line codec.
      LineFramer::Result r = framer_.finish();
      if (r.status != LineFramer::Status::NeedMore) process_framed(r);
      log::info(kLog, app.config.name, ": app disconnected");
    } else {
      log::warn(kLog, app.config.name, ": app connection lost: ", ec.message());
      // A reset may have cut the line anywhere: not a line the app finished.
      if (framer_.buffered() > 0)
        log::warn(kLog, app.config.name, ": ", framer_.buffered(), " bytes of an unterminated last line discarded");
    }
    close();
    if (app.session.get() == this) {
      app.session.reset();
      app.since_ms = unix_ms();
    }
  }

  AppServer& server_;
  AppServer::App* app_;  // nullptr once closed
  asio::ip::tcp::socket socket_;
  LineFramer framer_;
  std::unique_ptr<char[]> buf_;
  bool paused_ = false;
  bool hello_errors_ = false;
  bool writing_ = false;
  std::deque<std::string> writes_;
  size_t write_bytes_ = 0;
};

AppServer::AppServer(asio::io_context& io, AppSink& sink, std::chrono::milliseconds bind_retry)
    : io_(io), sink_(sink), bind_retry_(bind_retry) {}

AppServer::~AppServer() { close(); }

void AppServer::open(App& app) {
  asio::error_code ec;
  auto address = asio::ip::make_address(app.config.bind, ec);
  asio::ip::tcp::endpoint endpoint(address, app.config.port);
  auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(io_);
  if (!ec) acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  const std::string where = app.config.bind + ":" + std::to_string(app.config.port);
  if (ec) {
    ++app.counters.bind_failures;
    std::string error = "cannot listen on " + where + ": " + ec.message();
    // Said once per reason, not at every retry.
    if (error != app.bind_error)
      log::error(kLog, "tcpapps.", app.config.name, ": ", error, "; trying again every ", bind_retry_.count(),
                 " ms, the other apps run meanwhile");
    app.bind_error = std::move(error);
    if (!app.bind_timer) app.bind_timer = std::make_unique<asio::steady_timer>(io_);
    app.bind_timer->expires_after(bind_retry_);
    // Found again by name: a reload may have removed the app while this wait completed.
    app.bind_timer->async_wait([this, name = app.config.name, timer = app.bind_timer.get()](asio::error_code wait_ec) {
      if (wait_ec) return;  // cancelled: the app was removed, re-bound or the server closed
      auto it = apps_.find(name);
      if (it == apps_.end() || it->second->bind_timer.get() != timer || it->second->acceptor) return;
      open(*it->second);
    });
    return;
  }
  app.acceptor = std::move(acceptor);
  if (app.bind_error.empty())
    log::info(kLog, app.config.name, ": listening on ", where);
  else
    log::info(kLog, app.config.name, ": listening on ", where, " after ", app.counters.bind_failures,
              " failed attempts");
  app.bind_error.clear();
  accept(app);
}

void AppServer::accept(App& app) {
  asio::ip::tcp::acceptor* acceptor = app.acceptor.get();
  acceptor->async_accept([this, &app, acceptor](asio::error_code ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || app.acceptor.get() != acceptor) return;
    if (ec) {
      // Out of descriptors (EMFILE) and the like: accepting again at once would spin a
      // core (the connection stays in the backlog). Retry after a pause; the app is
      // looked up again then, since a reload may have removed or reopened it.
      log::limited(limiter_, "accept-" + app.config.name, LogLevel::Warn, kLog, app.config.name,
                   ": accept failed: ", ec.message(), "; retrying in 100 ms");
      auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
      timer->async_wait([this, timer, acceptor, name = app.config.name](asio::error_code wait_ec) {
        if (wait_ec) return;
        auto it = apps_.find(name);
        if (it != apps_.end() && it->second->acceptor.get() == acceptor) accept(*it->second);
      });
      return;
    } else {
      // Actions and error reports are small writes that must not wait for Nagle.
      socket.set_option(asio::ip::tcp::no_delay(true), ec);
      if (app.session) {
        ++app.counters.evictions;
        log::warn(kLog, app.config.name, ": a new client connected; closing the previous one");
        app.session->close();
      }
      ++app.counters.connects;
      app.since_ms = unix_ms();
      log::info(kLog, app.config.name, ": app connected");
      app.session = std::make_shared<AppSession>(*this, app, std::move(socket));
      app.session->start();
      drain(app);
    }
    accept(app);
  });
}

void AppServer::apply(const std::map<std::string, AppConfig>& configs) {
  for (auto it = apps_.begin(); it != apps_.end();) {
    if (configs.count(it->first)) {
      ++it;
      continue;
    }
    log::info(kLog, it->first, ": removed from the configuration; closing");
    if (it->second->session) it->second->session->close();
    it = apps_.erase(it);  // the acceptor's destructor cancels its pending accept
  }
  for (const auto& [name, config] : configs) {
    auto& slot = apps_[name];
    // An app still waiting for its port keeps its retry unless the address changed.
    bool rebind = !slot || (!slot->acceptor && slot->bind_error.empty()) || slot->config.bind != config.bind ||
                  slot->config.port != config.port;
    if (!slot) slot = std::make_unique<App>();
    slot->config = config;
    if (slot->session) slot->session->set_max_line_bytes(config.max_line_bytes);
    if (rebind) {
      slot->acceptor.reset();
      if (slot->bind_timer) slot->bind_timer->cancel();
      slot->bind_error.clear();
      open(*slot);
    }
  }
}

void AppServer::drain(App& app) {
  while (app.session && app.session->can_take_writes() && !app.pending.empty()) {
    app.session->enqueue(std::move(app.pending.front().second));
    app.pending.pop_front();
    ++app.counters.actions_delivered;
  }
}

void AppServer::deliver_action(const std::string& app_name, const std::string& action_id, std::string line) {
  auto it = apps_.find(app_name);
  if (it == apps_.end()) return;  // removed by a reload: the action will time out
  it->second->pending.emplace_back(action_id, std::move(line));
  drain(*it->second);
}

void AppServer::cancel_action(const std::string& app_name, const std::string& action_id) {
  auto it = apps_.find(app_name);
  if (it == apps_.end()) return;
  auto& pending = it->second->pending;
  for (auto p = pending.begin(); p != pending.end(); ++p)
    if (p->first == action_id) {
      pending.erase(p);
      return;
    }
}

void AppServer::resume() {
  for (auto& [name, app] : apps_)
    if (app->session) app->session->resume();
}

void AppServer::close() {
  for (auto& [name, app] : apps_) {
    app->acceptor.reset();
    if (app->bind_timer) app->bind_timer->cancel();
    if (app->session) {
      app->session->close();
      app->since_ms = unix_ms();
    }
    app->session.reset();
  }
}

std::vector<AppServer::AppInfo> AppServer::apps() const {
  std::vector<AppInfo> out;
  for (const auto& [name, app] : apps_) {
    asio::error_code ec;
    uint16_t port = app->acceptor ? app->acceptor->local_endpoint(ec).port() : app->config.port;
    out.push_back({name, app->config.bind, port, app->acceptor != nullptr, app->bind_error, app->session != nullptr,
                   app->since_ms, app->pending.size(), app->counters});
  }
  return out;
}

}  // namespace edgelink

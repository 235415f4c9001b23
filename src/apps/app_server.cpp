#include "edgelink/apps/app_server.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <variant>

#include "edgelink/datastreams/ds_codec.hpp"
#include "edgelink/util/wall_clock.hpp"

namespace edgelink {
namespace {
constexpr size_t kReadBytes = 64 * 1024;
// Reads of an upload's raw phase: fewer, larger hand-overs to the disk worker. Allocated
// for the raw phase only, so an idle app connection keeps its 64 KiB.
constexpr size_t kRawReadBytes = 256 * 1024;
// A client that does not read its socket gets at most this much queued for it;
// further actions wait in the app's pending queue, further error reports are dropped.
constexpr size_t kWriteQueueCap = 1 << 20;
constexpr char kLog[] = "apps";
}  // namespace

class AppSession : public std::enable_shared_from_this<AppSession>, public UploadPeer, public DsConnection {
 public:
  AppSession(AppServer& server, AppServer::App& app, asio::ip::tcp::socket socket, bool upload_port = false)
      : server_(server), app_(&app), socket_(std::move(socket)), framer_(app.config.max_line_bytes),
        buf_(new char[kReadBytes]), upload_port_(upload_port), id_(server.next_connection_id_++) {}

  void start() { read(); }

  void close() {
    if (!app_) return;
    app_ = nullptr;
    asio::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    // An upload in its raw phase (or waiting for its final reply) learns it lost us.
    if (auto receiver = std::exchange(receiver_, nullptr)) receiver->on_peer_gone();
    // Its data streams end (AbnormalEnd) and its subscriptions go.
    if (server_.ds_) server_.ds_->on_connection_closed(id_);
  }

  void resume() {
    if (paused_ && app_) {
      paused_ = false;
      read();
    }
  }

  bool can_take_writes() const { return write_bytes_ < kWriteQueueCap; }
  // Writing the final reply of a raw-phase error, then closing (§3.2).
  bool closing() const { return mode_ == Mode::Closing; }
  // Actions wait while an upload runs on this connection (xstream.md §3.2).
  bool takes_actions() const { return can_take_writes() && mode_ == Mode::Lines && !upload_port_; }

  void enqueue(std::string data) {
    write_bytes_ += data.size();
    writes_.push_back(std::move(data));
    if (!writing_) write();
  }

  void set_max_line_bytes(size_t n) { framer_.set_max_line_bytes(n); }

  // ---- DsConnection ----
  uint64_t connection_id() const override { return id_; }
  size_t queued_bytes() const override { return write_bytes_; }
  void hold_reading(bool hold) override {
    if (hold == ds_hold_) return;
    ds_hold_ = hold;
    if (!hold && app_) continue_input();
  }

  // ---- UploadPeer ----
  bool connected() const override { return app_ != nullptr; }
  bool hello() const override { return hello_; }
  // While a request is negotiated: whether an earlier upload still owes its final reply.
  bool upload_pending() const override { return (mode_ == Mode::Negotiating ? mode_before_ : mode_) != Mode::Lines; }
  void send_line(std::string line) override {
    if (app_) enqueue(std::move(line));
  }
  void answered(bool final_pending) override {
    if (!app_) return;
    mode_ = final_pending || mode_before_ == Mode::Waiting ? Mode::Waiting : Mode::Lines;
    continue_input();
  }
  void start_raw(uint64_t bytes, std::shared_ptr<RawReceiver> receiver) override {
    if (!app_) {
      receiver->on_peer_gone();
      return;
    }
    mode_ = Mode::Raw;
    raw_left_ = bytes;
    receiver_ = std::move(receiver);
    continue_input();
  }
  void resume_raw() override {
    if (!raw_paused_ || !app_) return;
    raw_paused_ = false;
    continue_input();
  }
  void upload_done(bool close_after) override {
    receiver_.reset();
    if (!app_) return;
    if (close_after) {
      close_after_writes_ = true;
      mode_ = Mode::Closing;
      if (!writing_) close_now();
      return;
    }
    const bool was_waiting = mode_ == Mode::Waiting;
    if (mode_ == Mode::Waiting) mode_ = Mode::Lines;
    if (was_waiting || mode_ == Mode::Lines) {
      server_.drain(*app_);
      continue_input();
    }
  }

 private:
  // Lines: JSON lines. Negotiating: a stream request awaits its answer; input is held.
  // Raw: the granted bytes go to the upload. Waiting: JSON lines again, the final reply
  // is still to come (actions wait). Closing: the final reply of a raw-phase error is
  // being written, then the connection closes.
  enum class Mode { Lines, Negotiating, Raw, Waiting, Closing };

  void read() {
    if (!app_ || reading_ || mode_ == Mode::Negotiating || mode_ == Mode::Closing || raw_paused_) return;
    // A data stream of this connection has too much unacknowledged (datastreams.md §8).
    if (ds_hold_ && mode_ != Mode::Raw) return;
    // Raw bytes go to disk, not to the outbox: a full outbox does not stop an upload.
    if (mode_ != Mode::Raw && !server_.sink_.accepting()) {
      paused_ = true;
      ++app_->counters.pauses;
      return;
    }
    reading_ = true;
    const bool raw = mode_ == Mode::Raw;
    if (raw && !raw_buf_) raw_buf_.reset(new char[kRawReadBytes]);
    char* buf = raw ? raw_buf_.get() : buf_.get();
    socket_.async_read_some(asio::buffer(buf, raw ? kRawReadBytes : kReadBytes),
                            [self = shared_from_this(), buf](asio::error_code ec, size_t n) {
                              self->reading_ = false;
                              if (!self->app_) return;
                              if (ec) {
                                self->disconnected(ec);
                                return;
                              }
                              self->process(std::string_view(buf, n));
                              if (self->mode_ != Mode::Raw) self->raw_buf_.reset();
                              self->read();
                            });
  }

  // Input held while a request was negotiated or an upload's writes caught up, then reading.
  void continue_input() {
    if (!held_.empty() && mode_ != Mode::Negotiating && !raw_paused_) {
      std::string held = std::exchange(held_, {});
      process(held);
    }
    if (held_.empty() && !paused_) read();
  }

  void process(std::string_view in) {
    while (!in.empty() && app_) {
      if (mode_ == Mode::Negotiating || raw_paused_ || mode_ == Mode::Closing || (ds_hold_ && mode_ != Mode::Raw)) {
        // The rest waits: it may be raw bytes or lines, the answer decides.
        if (mode_ != Mode::Closing) held_.append(in.data(), in.size());
        return;
      }
      if (mode_ == Mode::Raw) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(raw_left_, in.size()));
        raw_left_ -= n;
        auto receiver = receiver_;  // on_raw may end the upload
        if (raw_left_ == 0) mode_ = Mode::Waiting;
        const bool more = receiver->on_raw(std::span(reinterpret_cast<const uint8_t*>(in.data()), n));
        in.remove_prefix(n);
        if (!more && app_ && mode_ != Mode::Closing) raw_paused_ = true;
        continue;
      }
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
    if (server_.ds_ && !upload_port_ && datastreams::may_be_ds_line(line) &&
        server_.ds_->on_ds_line(app_->config.name, line, shared_from_this()))
      return;
    if (server_.uploads_ && may_be_stream_request(line)) {
      mode_before_ = mode_;
      mode_ = Mode::Negotiating;
      if (server_.uploads_->on_stream_request(app_->config.name, line, upload_port_, shared_from_this())) return;
      mode_ = mode_before_;
    }
    if (upload_port_) {
      // xstream.md §10: the upload port takes stream requests only.
      enqueue("{\"status\":1,\"x-stream\":\"-1\",\"error\":\"BadRequest\",\"detail\":\"the upload port "
              "takes stream requests only\"}\n");
      return;
    }
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
      if (control->hello) {
        hello_ = true;
        hello_errors_ = control->hello_errors;
      }
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
      if (close_after_writes_ && app_) close_now();
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
                        if (self->app_ && self->takes_actions()) self->server_.drain(*self->app_);
                      });
  }

  // After a raw-phase error's final reply is written (§3.2).
  void close_now() {
    if (!app_) return;
    AppServer::App& app = *app_;
    log::info(kLog, app.config.name, ": upload connection closed after its final reply");
    forget(app);
  }

  void disconnected(asio::error_code ec) {
    AppServer::App& app = *app_;
    if (ec == asio::error::eof) {
      // An orderly end of stream completes the last line, as in uplink's line codec.
      if (mode_ == Mode::Lines || mode_ == Mode::Waiting) {
        LineFramer::Result r = framer_.finish();
        if (r.status != LineFramer::Status::NeedMore) process_framed(r);
      }
      if (!app_) return;
      log::info(kLog, app.config.name, upload_port_ ? ": upload connection ended" : ": app disconnected");
    } else {
      log::warn(kLog, app.config.name, ": app connection lost: ", ec.message());
      // A reset may have cut the line anywhere: not a line the app finished.
      if (framer_.buffered() > 0)
        log::warn(kLog, app.config.name, ": ", framer_.buffered(), " bytes of an unterminated last line discarded");
    }
    forget(app);
  }

  void forget(AppServer::App& app) {
    auto self = shared_from_this();  // the app's lists may hold the last reference
    close();
    if (app.session.get() == this) {
      app.session.reset();
      app.since_ms = unix_ms();
    }
    auto& ups = app.upload_sessions;
    ups.erase(std::remove(ups.begin(), ups.end(), self), ups.end());
  }

  AppServer& server_;
  AppServer::App* app_;  // nullptr once closed
  asio::ip::tcp::socket socket_;
  LineFramer framer_;
  std::unique_ptr<char[]> buf_;
  std::unique_ptr<char[]> raw_buf_;  // while in the raw phase
  const bool upload_port_;
  const uint64_t id_;
  bool ds_hold_ = false;  // held by a data stream's back-pressure
  bool paused_ = false;
  bool reading_ = false;
  bool hello_ = false;
  bool hello_errors_ = false;
  bool writing_ = false;
  bool close_after_writes_ = false;
  std::deque<std::string> writes_;
  size_t write_bytes_ = 0;
  Mode mode_ = Mode::Lines;
  Mode mode_before_ = Mode::Lines;  // the mode a stream request arrived in
  uint64_t raw_left_ = 0;
  bool raw_paused_ = false;
  std::string held_;
  std::shared_ptr<RawReceiver> receiver_;
};

AppServer::AppServer(asio::io_context& io, AppSink& sink, std::chrono::milliseconds bind_retry)
    : io_(io), sink_(sink), bind_retry_(bind_retry) {}

AppServer::~AppServer() { close(); }

namespace {
std::unique_ptr<asio::ip::tcp::acceptor> listen_on(asio::io_context& io, const std::string& bind, uint16_t port,
                                                   asio::error_code& ec) {
  auto address = asio::ip::make_address(bind, ec);
  asio::ip::tcp::endpoint endpoint(address, port);
  auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(io);
  if (!ec) acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  return acceptor;
}
}  // namespace

void AppServer::open(App& app) {
  asio::error_code ec;
  auto acceptor = listen_on(io_, app.config.bind, app.config.port, ec);
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

// Out of descriptors (EMFILE) and the like: accepting again at once would spin a core (the
// connection stays in the backlog). Retry after a pause; the app is looked up again then,
// since a reload may have removed or reopened it.
void AppServer::accept_later(App& app, asio::ip::tcp::acceptor* acceptor, asio::error_code ec, bool upload) {
  log::limited(limiter_, (upload ? "accept-upload-" : "accept-") + app.config.name, LogLevel::Warn, kLog,
               app.config.name, upload ? ": upload port accept failed: " : ": accept failed: ", ec.message(),
               "; retrying in 100 ms");
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
  timer->async_wait([this, timer, acceptor, upload, name = app.config.name](asio::error_code wait_ec) {
    if (wait_ec) return;
    auto it = apps_.find(name);
    if (it == apps_.end()) return;
    App& a = *it->second;
    if (upload && a.upload_acceptor.get() == acceptor) accept_upload(a);
    if (!upload && a.acceptor.get() == acceptor) accept(a);
  });
}

void AppServer::accept(App& app) {
  asio::ip::tcp::acceptor* acceptor = app.acceptor.get();
  acceptor->async_accept([this, &app, acceptor](asio::error_code ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || app.acceptor.get() != acceptor) return;
    if (ec) {
      accept_later(app, acceptor, ec, false);
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
    for (auto& u : std::vector(it->second->upload_sessions)) u->close();
    it = apps_.erase(it);  // the acceptor's destructor cancels its pending accept
  }
  for (const auto& [name, config] : configs) {
    auto& slot = apps_[name];
    // An app still waiting for its port keeps its retry unless the address changed.
    bool rebind = !slot || (!slot->acceptor && slot->bind_error.empty()) || slot->config.bind != config.bind ||
                  slot->config.port != config.port;
    if (!slot) slot = std::make_unique<App>();
    if (slot->session) slot->session->set_max_line_bytes(config.max_line_bytes);
    const bool rebind_uploads = rebind || slot->config.upload_port != config.upload_port || !slot->upload_acceptor;
    slot->config = config;
    if (rebind) {
      slot->acceptor.reset();
      if (slot->bind_timer) slot->bind_timer->cancel();
      slot->bind_error.clear();
      open(*slot);
    }
    if (rebind_uploads) open_upload_port(*slot);
  }
}

// xstream.md §10: a second listener for stream requests only. A port that cannot be
// opened is said once and tried again at the next reload; the app port works meanwhile.
void AppServer::open_upload_port(App& app) {
  app.upload_acceptor.reset();
  if (app.config.upload_port == 0) {
    app.upload_bind_error.clear();
    return;
  }
  asio::error_code ec;
  auto acceptor = listen_on(io_, app.config.bind, app.config.upload_port, ec);
  const std::string where = app.config.bind + ":" + std::to_string(app.config.upload_port);
  if (ec) {
    app.upload_bind_error = "cannot listen on " + where + ": " + ec.message();
    log::error(kLog, "tcpapps.", app.config.name, ".upload_port: ", app.upload_bind_error,
               "; uploads still work on the app port");
    return;
  }
  app.upload_bind_error.clear();
  app.upload_acceptor = std::move(acceptor);
  log::info(kLog, app.config.name, ": upload port listening on ", where);
  accept_upload(app);
}

void AppServer::accept_upload(App& app) {
  asio::ip::tcp::acceptor* acceptor = app.upload_acceptor.get();
  acceptor->async_accept([this, &app, acceptor](asio::error_code ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || app.upload_acceptor.get() != acceptor) return;
    if (ec) {
      accept_later(app, acceptor, ec, true);
      return;
    }
    if (app.upload_sessions.size() >= app.config.max_uploads) {
      ++app.counters.upload_refused;
      log::limited(limiter_, "upload-full-" + app.config.name, LogLevel::Warn, kLog, app.config.name,
                   ": upload port connection closed: max_uploads (", app.config.max_uploads, ") are open");
      asio::error_code ignored;
      socket.close(ignored);
    } else {
      socket.set_option(asio::ip::tcp::no_delay(true), ec);
      ++app.counters.upload_connects;
      auto session = std::make_shared<AppSession>(*this, app, std::move(socket), true);
      app.upload_sessions.push_back(session);
      session->start();
    }
    accept_upload(app);
  });
}

void AppServer::drain(App& app) {
  while (app.session && app.session->takes_actions() && !app.pending.empty()) {
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
    app->upload_acceptor.reset();
    for (auto& u : std::vector(app->upload_sessions))
      if (!u->closing()) u->close();
    if (app->bind_timer) app->bind_timer->cancel();
    if (app->session && app->session->closing()) {
      app->session.reset();  // it closes itself once its final reply is written
    } else if (app->session) {
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
                   app->since_ms, app->pending.size(), app->counters, app->config.upload_port, app->upload_bind_error,
                   app->upload_sessions.size()});
  }
  return out;
}

}  // namespace edgelink

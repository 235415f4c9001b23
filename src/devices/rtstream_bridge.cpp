#include "edgelink/devices/rtstream_bridge.hpp"

#include <algorithm>
#include <utility>

#include "edgelink/util/log.hpp"

namespace edgelink::devices {

namespace {
constexpr char kLog[] = "rtstream";
// accept() failing with EMFILE/ENFILE fails again at once: pause instead of spinning.
constexpr std::chrono::milliseconds kAcceptRetry{200};
}  // namespace

RtStreamBridge::RtStreamBridge(asio::io_context& io, RtStreamBridgeOptions options, ToDevice to_device,
                               InUseHandler on_in_use)
    : io_(io),
      options_(std::move(options)),
      to_device_(std::move(to_device)),
      on_in_use_(std::move(on_in_use)),
      acceptor_(io),
      accept_retry_(io),
      client_(io),
      read_buf_(std::max<size_t>(options_.read_chunk, 64)) {
  if (!to_device_) to_device_ = [](std::span<const uint8_t>) { return true; };
  if (!on_in_use_) on_in_use_ = [](bool) {};
}

RtStreamBridge::~RtStreamBridge() {
  alive_.reset();
  close();
}

std::string RtStreamBridge::where(uint16_t port) const {
  const bool v6 = options_.bind.find(':') != std::string::npos;
  return (v6 ? "[" + options_.bind + "]" : options_.bind) + ":" + std::to_string(port);
}

std::string RtStreamBridge::open() {
  if (open_) return {};
  asio::error_code ec;
  const auto address = asio::ip::make_address(options_.bind, ec);
  const asio::ip::tcp::endpoint endpoint(address, options_.port);
  if (!ec) acceptor_.open(endpoint.protocol(), ec);
  // A restarted daemon must get its port back while old connections sit in TIME_WAIT.
  // (It does not let two listeners share a port on Linux: that still fails below.)
  if (!ec) acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    asio::error_code ignored;
    acceptor_.close(ignored);
    return "rtstream " + options_.name + ": cannot listen on " + where(options_.port) + ": " + ec.message();
  }
  open_ = true;
  log::info(kLog, options_.name, ": listening on ", where(local_port()));
  start_accept();
  return {};
}

void RtStreamBridge::close() {
  if (open_) log::debug(kLog, options_.name, ": closing");
  open_ = false;
  ++listen_epoch_;
  asio::error_code ignored;
  accept_retry_.cancel();
  acceptor_.close(ignored);  // the pending accept completes with operation_aborted and is ignored
  drop_client(false);
}

uint16_t RtStreamBridge::local_port() const {
  if (!open_) return 0;
  asio::error_code ec;
  const auto endpoint = acceptor_.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

void RtStreamBridge::start_accept() {
  acceptor_.async_accept([this, alive = std::weak_ptr<int>(alive_), epoch = listen_epoch_](
                             asio::error_code ec, asio::ip::tcp::socket socket) {
    if (alive.expired() || epoch != listen_epoch_ || !open_) return;
    if (ec) {
      ++stats_.accept_errors;
      log::warn(kLog, options_.name, ": accept failed: ", ec.message());
      accept_retry_.expires_after(kAcceptRetry);
      accept_retry_.async_wait([this, alive, epoch](asio::error_code ec) {
        if (alive.expired() || ec || epoch != listen_epoch_ || !open_) return;
        start_accept();
      });
      return;
    }
    accepted(std::move(socket));
    // on_in_use(true) may have closed or destroyed the bridge.
    if (alive.expired() || epoch != listen_epoch_ || !open_) return;
    start_accept();
  });
}

void RtStreamBridge::accepted(asio::ip::tcp::socket socket) {
  if (has_client_) {
    reject(socket);
    return;
  }
  asio::error_code ec;
  // Interactive streams (a REPL) want each keystroke's echo at once, not after Nagle.
  socket.set_option(asio::ip::tcp::no_delay(true), ec);
  client_ = std::move(socket);
  has_client_ = true;
  paused_ = false;
  ++stats_.clients_accepted;
  log::info(kLog, options_.name, ": client connected");
  const std::weak_ptr<int> alive = alive_;
  const uint64_t epoch = client_epoch_;
  on_in_use_(true);
  if (alive.expired() || epoch != client_epoch_) return;
  start_read();
}

// One short line, written without waiting: a fresh socket's send buffer is empty, so
// the non-blocking write goes through whole, and no handler outlives the socket.
void RtStreamBridge::reject(asio::ip::tcp::socket& socket) {
  ++stats_.clients_rejected;
  log::warn(kLog, options_.name, ": a second client was refused (one client at a time)");
  const std::string line = "edgelink: rtstream " + options_.name + " is in use\n";
  asio::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(asio::buffer(line), ignored);
  socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

void RtStreamBridge::start_read() {
  client_.async_read_some(asio::buffer(read_buf_), [this, alive = std::weak_ptr<int>(alive_),
                                                    epoch = client_epoch_](asio::error_code ec, size_t n) {
    if (alive.expired() || epoch != client_epoch_) return;
    if (ec) {
      if (ec == asio::error::eof)
        log::info(kLog, options_.name, ": client disconnected");
      else
        log::warn(kLog, options_.name, ": client connection lost: ", ec.message());
      return drop_client(true);
    }
    const std::span<const uint8_t> bytes(read_buf_.data(), n);
    const bool taken = to_device_(bytes);
    if (alive.expired() || epoch != client_epoch_) return;  // closed from inside to_device()
    if (!taken) {
      // Keep the chunk and stop reading, so TCP pushes back on the client.
      held_.assign(bytes.begin(), bytes.end());
      paused_ = true;
      ++stats_.pauses;
      return;
    }
    stats_.bytes_in += n;
    start_read();
  });
}

void RtStreamBridge::resume_input() {
  if (!paused_ || resume_posted_) return;
  resume_posted_ = true;
  // Posted: to_device() must not run inside the session's own call to resume_input().
  // Not tied to a client: if that client left and a newer one is paused meanwhile, the
  // retry is just as right for it (and its own resume_input() was coalesced into this).
  asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
    if (alive.expired()) return;
    resume_posted_ = false;
    if (!paused_) return;
    const uint64_t epoch = client_epoch_;
    if (!to_device_(held_)) return;  // still full: wait for the next resume_input()
    if (alive.expired() || epoch != client_epoch_) return;
    stats_.bytes_in += held_.size();
    held_.clear();
    paused_ = false;
    start_read();
  });
}

void RtStreamBridge::from_device(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  if (!has_client_) {
    stats_.dropped_no_client += bytes.size();
    return;
  }
  if (queued_bytes() + bytes.size() > options_.max_client_queue_bytes) {
    ++stats_.slow_client_disconnects;
    stats_.dropped_slow_client += queued_bytes() + bytes.size();
    log::warn(kLog, options_.name, ": client does not read (", queued_bytes(),
              " bytes queued); disconnecting it");
    pending_.clear();
    inflight_.clear();
    drop_client(true);
    return;
  }
  pending_.insert(pending_.end(), bytes.begin(), bytes.end());
  if (!writing_) start_write();
}

// One write in progress; everything queued meanwhile goes out in the next one.
void RtStreamBridge::start_write() {
  if (pending_.empty()) {
    writing_ = false;
    return;
  }
  inflight_.swap(pending_);
  pending_.clear();
  writing_ = true;
  asio::async_write(client_, asio::buffer(inflight_),
                    [this, alive = std::weak_ptr<int>(alive_), epoch = client_epoch_](asio::error_code ec, size_t n) {
                      if (alive.expired() || epoch != client_epoch_) return;
                      if (ec) {
                        log::warn(kLog, options_.name, ": writing to the client failed: ", ec.message());
                        return drop_client(true);
                      }
                      stats_.bytes_out += n;
                      inflight_.clear();
                      writing_ = false;
                      start_write();
                    });
}

void RtStreamBridge::drop_client(bool report) {
  if (!has_client_) return;
  ++client_epoch_;  // cancelled reads and writes complete later and are ignored
  has_client_ = false;
  asio::error_code ignored;
  client_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  client_.close(ignored);
  stats_.dropped_disconnect += queued_bytes();
  stats_.dropped_input += held_.size();
  pending_.clear();
  inflight_.clear();
  held_.clear();
  writing_ = false;
  paused_ = false;
  if (report) on_in_use_(false);
}

}  // namespace edgelink::devices

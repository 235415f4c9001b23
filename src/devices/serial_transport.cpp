#include "edgelink/devices/serial_transport.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "edgelink/util/json_object.hpp"

namespace edgelink::devices {

namespace {

std::error_code last_errno() { return {errno, std::system_category()}; }

// Every serial setting edgelink depends on, in one place (DESIGN.md). Nothing is
// inherited from whatever the port was left at by the kernel, a previous user or
// a getty: the RICSerial byte stream must pass unchanged in both directions.
std::error_code configure_port(int fd, speed_t speed) {
  termios tio{};
  if (::tcgetattr(fd, &tio) != 0) return last_errno();  // ENOTTY: the path is not a serial port
  // Raw mode: no line discipline, so no echo (a console device would see its own
  // output come back as typed commands), no CR/LF translation, no signal characters,
  // no 8th-bit stripping. HDLC and OverAscii need all 256 byte values intact.
  ::cfmakeraw(&tio);
  // 8N1, the only format Raft's UARTs use.
  tio.c_cflag &= ~(CSIZE | PARENB | CSTOPB);
  tio.c_cflag |= CS8;
  // No flow control (§3.3: neither port type has any). Hardware flow control would
  // stall every write on adapters that leave CTS unconnected; XON/XOFF would eat
  // 0x11/0x13, which are ordinary data bytes in a frame.
  tio.c_cflag &= ~CRTSCTS;
  tio.c_iflag &= ~(IXON | IXOFF | IXANY);
  // CLOCAL: ignore modem status lines; USB-UART bridges have no carrier detect and
  // without it open/read could wait for DCD. CREAD: enable the receiver.
  tio.c_cflag |= CLOCAL | CREAD;
  // Do not drop DTR/RTS on close: on ESP32-style boards those lines drive reset and
  // boot-mode pins, and a reconnect must not reset the MCU or leave it in its
  // bootloader. (Linux still raises both lines on open; that cannot be avoided here.)
  tio.c_cflag &= ~HUPCL;
  // Reads return whatever has arrived (the fd is non-blocking anyway; asio waits).
  tio.c_cc[VMIN] = 1;
  tio.c_cc[VTIME] = 0;
  if (::cfsetispeed(&tio, speed) != 0 || ::cfsetospeed(&tio, speed) != 0) return last_errno();
  if (::tcsetattr(fd, TCSANOW, &tio) != 0) return last_errno();
  // Exclusive use: a second opener (another daemon, a stray terminal program) gets
  // EBUSY instead of silently stealing half of the bytes. Root bypasses it.
  if (::ioctl(fd, TIOCEXCL) != 0) return last_errno();
  // Bytes that arrived before we opened belong to nobody's request.
  ::tcflush(fd, TCIFLUSH);
  return {};
}

}  // namespace

unsigned SerialTransport::speed_constant(uint32_t baud) {
  switch (baud) {
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 500000: return B500000;
    case 576000: return B576000;
    case 921600: return B921600;
    case 1000000: return B1000000;
    case 1152000: return B1152000;
    case 1500000: return B1500000;
    case 2000000: return B2000000;
    case 2500000: return B2500000;
    case 3000000: return B3000000;
    case 3500000: return B3500000;
    case 4000000: return B4000000;
    default: return 0;  // arbitrary rates need termios2/BOTHER: not supported
  }
}

SerialTransport::SerialTransport(asio::io_context& io, SerialOptions options, BytesHandler on_bytes,
                                 StateHandler on_state)
    : options_(std::move(options)),
      on_bytes_(std::move(on_bytes)),
      on_state_(std::move(on_state)),
      port_(io),
      reopen_timer_(io),
      read_buf_(std::max<size_t>(options_.read_chunk, 64)),
      backoff_(options_.reconnect_min) {
  options_.reconnect_max = std::max(options_.reconnect_max, options_.reconnect_min);
}

SerialTransport::~SerialTransport() {
  alive_.reset();
  stop();
}

std::error_code SerialTransport::start() {
  if (!speed_constant(options_.baud)) return std::make_error_code(std::errc::invalid_argument);
  if (running_) return {};
  running_ = true;
  backoff_ = options_.reconnect_min;
  try_open();
  return {};
}

void SerialTransport::stop() {
  running_ = false;
  reopen_timer_.cancel();
  if (port_.is_open()) close_port();
}

void SerialTransport::try_open() {
  ++stats_.open_attempts;
  // O_NONBLOCK: asio does the waiting, and open() must not block on modem lines.
  // O_NOCTTY: a serial port must never become our controlling terminal.
  const int fd = ::open(options_.path.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  std::error_code ec;
  if (fd < 0) {
    ec = last_errno();  // ENOENT while unplugged (the by-id symlink is gone), EACCES, EBUSY, EIO
  } else {
    ec = configure_port(fd, static_cast<speed_t>(speed_constant(options_.baud)));
    if (!ec) port_.assign(fd, ec);
    if (ec) ::close(fd);
  }
  if (ec) {
    ++stats_.open_failures;
    last_error_ = ec;
    schedule_reopen();
    return;
  }
  ++stats_.opens;
  up_ = true;
  backoff_ = options_.reconnect_min;
  last_error_.clear();
  start_read();
  if (on_state_) on_state_(true, {});
}

void SerialTransport::schedule_reopen() {
  if (!running_) return;
  reopen_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
  reopen_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](std::error_code ec) {
    if (alive.expired() || ec || !running_ || up_) return;
    try_open();
  });
}

namespace {
// Reads per read wakeup before the loop gets a turn (then the rest is read from a
// posted continuation): 16 x read_chunk.
constexpr size_t kReadsPerTurn = 16;
}  // namespace

// Waits for readability and reads itself (see the header): every byte goes from the
// kernel straight to on_bytes_, so deliver_pending() never overtakes a read.
void SerialTransport::start_read() {
  port_.async_wait(asio::posix::stream_descriptor::wait_read,
                   [this, alive = std::weak_ptr<int>(alive_), epoch = epoch_](std::error_code ec) {
                     if (alive.expired() || epoch != epoch_) return;  // an old fd's handler
                     if (ec) return fail(ec);
                     on_readable();
                   });
}

void SerialTransport::on_readable() {
  size_t delivered = 0;
  switch (read_now(kReadsPerTurn, delivered)) {
    case ReadResult::Closed: return;  // failed, or stopped from the handler
    case ReadResult::Drained: return start_read();
    case ReadResult::More: break;
  }
  // The kernel still holds bytes: read on after other handlers had a turn. Not with a
  // wait: the reactor is edge-triggered, and bytes already there make no new edge.
  asio::post(port_.get_executor(), [this, alive = std::weak_ptr<int>(alive_), epoch = epoch_] {
    if (alive.expired() || epoch != epoch_) return;
    on_readable();
  });
}

SerialTransport::ReadResult SerialTransport::read_now(size_t max_reads, size_t& delivered) {
  std::weak_ptr<int> alive = alive_;
  const uint64_t epoch = epoch_;
  size_t reads = 0;
  while (reads < max_reads) {
    if (!up_) return ReadResult::Closed;
    const ssize_t n = ::read(port_.native_handle(), read_buf_.data(), read_buf_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return ReadResult::Drained;
    if (n <= 0) {
      // EOF, EIO (pty master gone), ENXIO/ENODEV (unplug)
      fail(n == 0 ? std::error_code(asio::error::eof) : last_errno());
      return ReadResult::Closed;
    }
    ++reads;
    const auto got = static_cast<size_t>(n);
    stats_.bytes_in += got;
    delivered += got;
    if (on_bytes_) on_bytes_(std::span<const uint8_t>(read_buf_.data(), got));
    if (alive.expired() || epoch != epoch_) return ReadResult::Closed;  // stopped from the handler
  }
  return ReadResult::More;
}

size_t SerialTransport::deliver_pending() {
  if (!up_) return 0;
  std::weak_ptr<int> alive = alive_;
  size_t delivered = 0;
  // Until the kernel has nothing more; the bound only stops a device that sends faster
  // than we read from holding the loop (the rest comes through the usual wakeups).
  read_now(4 * kReadsPerTurn, delivered);
  if (!alive.expired()) stats_.bytes_in_pending += delivered;
  return delivered;
}

bool SerialTransport::write(std::span<const uint8_t> bytes) {
  if (!up_) {
    ++stats_.writes_refused_down;
    return false;
  }
  if (queued_bytes() + bytes.size() > options_.max_queue_bytes) {
    ++stats_.writes_refused_full;
    return false;
  }
  pending_.insert(pending_.end(), bytes.begin(), bytes.end());
  if (!writing_) start_write();
  return true;
}

// One write in progress; everything queued meanwhile goes out in the next one.
void SerialTransport::start_write() {
  if (pending_.empty()) {
    writing_ = false;
    return;
  }
  inflight_.swap(pending_);
  pending_.clear();
  writing_ = true;
  asio::async_write(port_, asio::buffer(inflight_),
                    [this, alive = std::weak_ptr<int>(alive_), epoch = epoch_](std::error_code ec, size_t n) {
                      if (alive.expired() || epoch != epoch_) return;
                      if (ec) return fail(ec);
                      stats_.bytes_out += n;
                      inflight_.clear();
                      writing_ = false;
                      start_write();
                    });
}

void SerialTransport::close_port() {
  ++epoch_;
  std::error_code ignored;
  port_.close(ignored);  // cancels the read and write; their handlers see the old epoch
  up_ = false;
  writing_ = false;
  stats_.bytes_discarded += queued_bytes();
  pending_.clear();
  inflight_.clear();
}

void SerialTransport::fail(std::error_code ec) {
  if (!up_) return;
  ++stats_.disconnects;
  last_error_ = ec;
  close_port();
  std::weak_ptr<int> alive = alive_;
  if (on_state_) on_state_(false, ec);
  if (alive.expired()) return;
  // backoff_ was reset by the last successful open: the first reopen comes after
  // reconnect_min, later ones further apart while the device stays away.
  if (running_ && !up_) schedule_reopen();
}

void SerialTransport::write_status(JsonObject& device) const {
  device.object("serial", [&](JsonObject& j) {
    j.u64("open_attempts", stats_.open_attempts)
        .u64("open_failures", stats_.open_failures)
        .u64("opens", stats_.opens)
        .u64("disconnects", stats_.disconnects)
        .u64("bytes_in", stats_.bytes_in)
        .u64("bytes_in_pending", stats_.bytes_in_pending)
        .u64("bytes_out", stats_.bytes_out)
        .u64("queued_bytes", queued_bytes())
        .u64("writes_refused", stats_.writes_refused_down + stats_.writes_refused_full)
        .u64("bytes_discarded", stats_.bytes_discarded);
  });
}

}  // namespace edgelink::devices

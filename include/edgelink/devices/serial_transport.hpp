#pragma once
// Bytes in and out of one serial port (a USB CDC/UART device, a
// /dev/serial/by-id/... symlink, or a pseudo-terminal in tests). Opens the path
// itself, configures termios in one place (configure_port() in the .cpp), reads
// asynchronously and hands every chunk to a callback, and writes through one queue
// with a byte cap. An unplug (EOF, EIO, ENXIO, ENODEV, any read/write error) closes
// the port and reopens it on a backoff timer; up/down is reported through a
// callback, so the link above can reset its session state.
//
// Built on asio::posix::stream_descriptor over an fd we open and configure
// ourselves rather than asio::serial_port: that gives one place for every termios
// setting (serial_port applies its options one tcsetattr at a time and has no say on
// HUPCL, exclusive access or O_CLOEXEC), and errno-level errors from open().
//
// Reading: the transport waits for readability (async_wait) and does the read()s
// itself, handing each chunk to the bytes handler at once. So no bytes ever sit in a
// completed-but-not-yet-run read handler, and deliver_pending() can take what the
// kernel holds right now, synchronously, without overtaking bytes read earlier.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <asio.hpp>

#include "edgelink/devices/device_transport.hpp"

namespace edgelink::devices {

struct SerialOptions {
  std::string path;                  // device node or symlink; resolved on every open
  uint32_t baud = 921600;            // CommandSerial default (§3.3b); console ports run 115200
  size_t max_queue_bytes = 256 * 1024;  // bytes accepted but not yet written
  size_t read_chunk = 4096;
  std::chrono::milliseconds reconnect_min{500};  // first reopen delay after a failure
  std::chrono::milliseconds reconnect_max{10000};  // the delay doubles up to this
};

struct SerialStats {
  uint64_t open_attempts = 0;
  uint64_t open_failures = 0;
  uint64_t opens = 0;        // successful opens (the first one and reconnects)
  uint64_t disconnects = 0;  // up -> down transitions caused by an error or EOF
  uint64_t bytes_in = 0;
  uint64_t bytes_in_pending = 0;     // of bytes_in: taken by deliver_pending(), not by a read wakeup
  uint64_t bytes_out = 0;
  uint64_t writes_refused_down = 0;  // write() while the port is closed
  uint64_t writes_refused_full = 0;  // write() that would pass max_queue_bytes
  uint64_t bytes_discarded = 0;      // queued bytes thrown away when the port went down
};

class SerialTransport final : public DeviceTransport {
 public:
  using BytesHandler = std::function<void(std::span<const uint8_t>)>;
  // up = true after a successful open (ec empty); false when the port closed (ec says
  // why: eof, EIO, ...). Failed reopen attempts are not reported, only counted.
  using StateHandler = std::function<void(bool up, std::error_code ec)>;

  // The termios speed constant for `baud`, or 0 when Linux has none (the rates of
  // kSupportedBaudRates are mapped; util/baud_rates.hpp).
  static unsigned speed_constant(uint32_t baud);

  SerialTransport(asio::io_context& io, SerialOptions options, BytesHandler on_bytes, StateHandler on_state);
  ~SerialTransport();
  SerialTransport(const SerialTransport&) = delete;
  SerialTransport& operator=(const SerialTransport&) = delete;

  // Opens now (on_state may run before this returns); on failure retries on the backoff timer. An unsupported baud rate is
  // a configuration error: returned here, nothing is scheduled.
  std::error_code start() override;
  // Closes the port and stops reconnecting. Handlers are not called afterwards.
  void stop() override;

  // Queues bytes for writing. False (and counted) when the port is down or the
  // queue would pass max_queue_bytes: the caller decides (the link retries
  // numbered requests on their timeout; a stream counts a drop).
  bool write(std::span<const uint8_t> bytes) override;
  // Reads whatever the port already holds (non-blocking, until the kernel has no
  // more) and hands it to the bytes handler before returning. A read error or EOF
  // closes the port (on_state runs from here).
  size_t deliver_pending() override;

  bool is_up() const override { return up_; }
  size_t queued_bytes() const override { return pending_.size() + inflight_.size(); }
  // The delay before the next reopen attempt (grows while opens keep failing).
  std::chrono::milliseconds backoff() const { return backoff_; }
  // Why the port last closed or the last open failed; empty while up.
  std::error_code last_error() const { return last_error_; }
  std::string error_text() const override { return last_error_ ? last_error_.message() : std::string(); }
  std::string where() const override { return options_.path; }
  void write_status(JsonObject& device) const override;  // "serial": {...}
  const SerialStats& stats() const { return stats_; }
  const SerialOptions& options() const { return options_; }

 private:
  void try_open();
  void schedule_reopen();
  void start_read();
  void on_readable();
  enum class ReadResult { Drained, More, Closed };
  // Up to `max_reads` non-blocking reads, each chunk handed to on_bytes_ at once.
  ReadResult read_now(size_t max_reads, size_t& delivered);
  void start_write();
  void fail(std::error_code ec);  // close, report down, schedule reopen
  void close_port();

  SerialOptions options_;
  BytesHandler on_bytes_;
  StateHandler on_state_;
  asio::posix::stream_descriptor port_;
  asio::steady_timer reopen_timer_;
  std::vector<uint8_t> read_buf_;
  std::vector<uint8_t> pending_;   // accepted, waiting for the write in progress
  std::vector<uint8_t> inflight_;  // being written (async_write holds a view of it)
  bool writing_ = false;
  bool up_ = false;
  bool running_ = false;
  std::error_code last_error_;
  uint64_t epoch_ = 0;  // bumped on every close: late handlers of an old fd are ignored
  std::chrono::milliseconds backoff_;
  SerialStats stats_;
  // Handlers hold a weak copy: after destruction they see it expired and do nothing.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace edgelink::devices

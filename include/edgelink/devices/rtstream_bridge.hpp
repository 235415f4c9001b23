#pragma once
// The TCP side of one rtstream: a local listener (bind:port of [rtstreams.NAME]) that
// takes one client at a time and moves raw bytes both ways between that client and
// the rtstream session. It knows nothing about DeviceLink, the session protocol or
// MQTT; the session is reached through two callbacks, so the bridge is tested alone
// with loopback sockets.
//
//  client -> device: every chunk read from the client goes to to_device(). It takes
//    all the bytes or none. On "none" (the session's queue is full) the chunk is held
//    and the bridge stops reading the client, so TCP flow control pushes back on it.
//    resume_input() retries the held chunk (from the io_context, never re-entrantly
//    inside the caller) and reading restarts once it is taken. No byte is dropped on
//    this path while the client stays connected. (While paused the bridge does not
//    read, so it notices the client leaving only after the next resume.)
//  device -> client: from_device() queues bytes behind one write in progress, up to
//    max_client_queue_bytes. The device cannot be paused (an rtstream has no flow
//    control towards the gateway), so something must give when a client does not
//    read: the bridge DISCONNECTS that client and counts it, rather than dropping the
//    oldest bytes. A raw stream (a console, a REPL) with a silent hole in it is worse
//    than a clean EOF the client can see; a reconnecting client starts afresh.
//    Bytes that arrive while no client is connected are dropped and counted (MQTT,
//    if configured, is fed by the daemon, not from here).
//
// A second client while one is connected gets one line,
// "edgelink: rtstream NAME is in use\n", and is closed; the first keeps the port.
//
// Lifetime: the owner (the daemon) holds the bridge by value or unique_ptr on the one
// io_context thread. Completion handlers hold a weak token and a connection epoch, so
// after close() or destruction no callback runs and no member is touched, whatever is
// still queued in the io_context. close() itself does not call on_in_use(false).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <asio.hpp>

namespace edgelink::devices {

struct RtStreamBridgeOptions {
  std::string name;                 // the rtstream's name, for messages and logs
  std::string bind = "127.0.0.1";   // an address literal (validated by the config)
  uint16_t port = 0;                // 0 picks a free port (tests); see local_port()
  // Device bytes accepted for the client but not yet written. 256 KiB is seconds of
  // a console at 921600 baud, on top of what the kernel's socket buffer holds.
  size_t max_client_queue_bytes = 256 * 1024;
  size_t read_chunk = 4096;         // bytes per read from the client (one to_device() call)
};

struct RtStreamBridgeStats {
  uint64_t clients_accepted = 0;
  uint64_t clients_rejected = 0;    // a second client while one was connected
  uint64_t accept_errors = 0;       // accept() failed (EMFILE, ...): retried after a pause
  uint64_t bytes_in = 0;            // client -> device, taken by to_device()
  uint64_t bytes_out = 0;           // device -> client, written to the socket
  uint64_t pauses = 0;              // times reading stopped because to_device() refused
  uint64_t slow_client_disconnects = 0;  // clients closed because the queue cap was hit
  // Dropped bytes, by reason.
  uint64_t dropped_no_client = 0;   // from_device() with nobody connected
  uint64_t dropped_slow_client = 0; // queued + arriving bytes thrown away at a cap disconnect
  uint64_t dropped_disconnect = 0;  // queued for a client that went away
  uint64_t dropped_input = 0;       // read from a client, refused by to_device(), client gone
  uint64_t dropped() const {
    return dropped_no_client + dropped_slow_client + dropped_disconnect + dropped_input;
  }
};

class RtStreamBridge {
 public:
  // Bytes from the TCP client for the session. True: all taken. False: none taken;
  // the bridge holds them and stops reading until resume_input().
  using ToDevice = std::function<bool(std::span<const uint8_t>)>;
  // true when a client connected, false when it went away (EOF, error, or closed for
  // not reading). The session opens on true and may close after a quiet period.
  // on_in_use(false) for a client closed for not reading runs inside from_device().
  // Either handler may call close() or destroy the bridge; an empty one does nothing
  // (an empty to_device takes and discards the bytes).
  using InUseHandler = std::function<void(bool in_use)>;

  RtStreamBridge(asio::io_context& io, RtStreamBridgeOptions options, ToDevice to_device,
                 InUseHandler on_in_use);
  ~RtStreamBridge();
  RtStreamBridge(const RtStreamBridge&) = delete;
  RtStreamBridge& operator=(const RtStreamBridge&) = delete;

  // Starts listening. Empty on success, otherwise a message for the log/status, like
  // "rtstream console: cannot listen on 127.0.0.1:7001: Address already in use".
  // Opening an open bridge does nothing; a closed one may be opened again.
  std::string open();
  // Stops listening and closes the client. No handler runs after this returns.
  void close();

  // Bytes from the session for the client (see the policy above).
  void from_device(std::span<const uint8_t> bytes);
  // The session can take bytes again: retry the held chunk, then read on.
  void resume_input();

  bool is_open() const { return open_; }
  bool has_client() const { return has_client_; }
  bool input_paused() const { return paused_; }
  size_t queued_bytes() const { return pending_.size() + inflight_.size(); }
  uint16_t local_port() const;  // the bound port (useful with port 0); 0 when closed
  const RtStreamBridgeStats& stats() const { return stats_; }
  const RtStreamBridgeOptions& options() const { return options_; }

 private:
  void start_accept();
  void accepted(asio::ip::tcp::socket socket);
  void reject(asio::ip::tcp::socket& socket);
  void start_read();
  void start_write();
  // Closes the client (the caller logs why); reports on_in_use(false) when `report`.
  void drop_client(bool report);
  std::string where(uint16_t port) const;  // "127.0.0.1:7001", "[::1]:7001"

  asio::io_context& io_;
  RtStreamBridgeOptions options_;
  ToDevice to_device_;
  InUseHandler on_in_use_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  asio::ip::tcp::socket client_;
  bool open_ = false;
  bool has_client_ = false;
  bool paused_ = false;          // a chunk is held; not reading the client
  bool resume_posted_ = false;
  bool writing_ = false;
  std::vector<uint8_t> read_buf_;
  std::vector<uint8_t> held_;      // read from the client, refused by to_device()
  std::vector<uint8_t> pending_;   // for the client, waiting for the write in progress
  std::vector<uint8_t> inflight_;  // being written (async_write holds a view of it)
  uint64_t listen_epoch_ = 0;      // bumped by close(): late accept handlers are ignored
  uint64_t client_epoch_ = 0;      // bumped when a client goes: late read/write handlers are ignored
  RtStreamBridgeStats stats_;
  // Handlers hold a weak copy: after destruction they see it expired and do nothing.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace edgelink::devices

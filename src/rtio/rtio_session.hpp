#pragma once
// One RTIO device connection (spec/http-api.md §6.2–§6.6) and the state the server's
// sessions share. Internal to src/rtio.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <asio.hpp>

#include "edgelink/rtio/heartbeat.hpp"
#include "edgelink/rtio/rtio_codec.hpp"
#include "edgelink/rtio/rtio_server.hpp"

namespace edgelink::rtio {

struct RtioServer::Shared {
  Shared(asio::io_context& io, const Config& config, RtioCallbacks callbacks)
      : io(io), config(config), callbacks(std::move(callbacks)) {
    index_services();
  }
  void index_services() {
    services.clear();
    for (const auto& s : config.rtio.services) services[crc32(s.uri)] = s;
  }
  void count(const char* result) { ++results[result]; }

  asio::io_context& io;
  Config config;
  RtioCallbacks callbacks;
  std::map<uint32_t, RtioServiceConfig> services;  // by URI digest
  std::map<Session*, std::shared_ptr<Session>> sessions;  // every open connection
  std::map<std::string, std::weak_ptr<Session>, std::less<>> verified;
  struct DeviceInfo {
    std::optional<uint64_t> since_ms;  // last link change
    uint64_t connects = 0;
  };
  std::map<std::string, DeviceInfo, std::less<>> info;
  std::map<std::string, uint64_t> results;  // connection results (metrics "result")
  std::map<std::string, std::map<std::string, uint64_t>> device_copost;  // uri -> status -> n
  uint64_t late_replies = 0, dropped_requests = 0;
  bool running = false;
  log::RateLimiter limiter{10, std::chrono::seconds(60)};
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  using Clock = Heartbeat::Clock;

  Session(std::shared_ptr<RtioServer::Shared> shared, asio::ip::tcp::socket socket);
  void start();
  // Ends the connection once (the result is counted). Pending HTTP requests end with
  // DEVICEID_OFFLINE.
  void close(const char* result);

  bool verified() const { return state_ == State::Verified; }
  const std::string& device() const { return device_; }
  const std::string& remote() const { return remote_; }
  std::chrono::seconds heartbeat_interval() const { return heartbeat_ ? heartbeat_->interval() : Heartbeat::kDefaultInterval; }
  size_t coposts() const;
  size_t observers() const { return observers_.size(); }

  // The HTTP side. 0: refused (no free message ID).
  uint16_t send_copost(std::string_view uri, std::string_view data, std::function<void(http::Frame)> done);
  void cancel_request(uint16_t id);
  uint16_t open_observer(std::string_view uri, std::string_view data, http::ObserveCallbacks callbacks);
  void cancel_observer(uint16_t observer);

 private:
  enum class State { Unverified, Verified, Closed };
  struct Request {
    uint16_t observer = 0;  // 0: a copost; else the obget establish of this observer
    std::function<void(http::Frame)> done;
  };
  struct Observer {
    http::ObserveCallbacks callbacks;
    bool established = false;
  };

  void read();
  void on_read(std::error_code ec, size_t n);
  bool handle(Message& m);  // false: the connection was closed
  bool on_verify(const Message& m);
  void on_ping(const Message& m);
  bool on_device_send(const Message& m);
  void on_server_send_resp(const Message& m);
  void on_device_copost(uint16_t id, uint8_t method, uint32_t digest, std::string_view data);
  void send(MsgType type, uint8_t code, uint16_t id, std::string_view body);
  void write_next();
  void arm_timer(Clock::time_point at);
  void on_timer();
  uint16_t next_message_id();
  void finish_close();

  std::shared_ptr<RtioServer::Shared> shared_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;  // verify timeout, then the heartbeat cut-off
  StreamDecoder decoder_;
  std::array<uint8_t, 4096> buf_{};
  std::deque<std::string> out_;
  size_t out_bytes_ = 0;
  bool writing_ = false;
  bool close_after_write_ = false;
  State state_ = State::Unverified;
  std::string device_, remote_;
  std::optional<Heartbeat> heartbeat_;
  std::map<uint16_t, Request> pending_;  // ServerSendReqs by message ID
  uint16_t next_id_ = 0;
  std::map<uint16_t, Observer> observers_;
  uint16_t next_observer_ = 0;
  uint64_t uploads_ = 0;  // device coposts waiting for a PUBACK (key for the ack callbacks)
};

}  // namespace edgelink::rtio

#pragma once
// The only code that knows Paho. Paho is used as a transport, not a buffer: the
// Outbox owns every unacknowledged publish. MqttLink connects (clean session, QoS 1
// everywhere), reconnects with exponential backoff and jitter, resubscribes on every
// connect, keeps a bounded window of in-flight publishes drawn from the Outbox, and
// maintains the retained presence topic with its last will.
//
// Paho calls back on its own threads; every callback is posted into the io_context,
// so the rest of the daemon never sees another thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <asio.hpp>

#include "edgelink/config/config.hpp"
#include "edgelink/outbox/outbox.hpp"
#include "edgelink/util/log.hpp"

namespace mqtt {
class async_client;
}

namespace edgelink {

struct LinkCounters {
  uint64_t connects = 0;
  uint64_t connect_failures = 0;
  uint64_t disconnects = 0;   // connections lost
  uint64_t published = 0;     // publishes handed to Paho (resends included)
  uint64_t acked = 0;         // PUBACKs
  uint64_t publish_failures = 0;
  uint64_t messages_in = 0;
  uint64_t server_changes = 0;  // moves to another of [broker] servers
};

class MqttLink {
 public:
  enum class State { Disconnected, Connecting, Connected, Stopped };
  struct Callbacks {
    std::function<void(std::string topic, std::string payload)> on_message;
    std::function<void(uint64_t id)> on_acked;  // the PUBACK of outbox entry `id`: the outbox shrank
    // Connected (true) or lost / reconfigured (false); the Outbox spools while offline.
    std::function<void(bool)> on_online;
  };

  MqttLink(asio::io_context& io, const Config& config, Outbox& outbox, Callbacks callbacks);
  ~MqttLink();
  MqttLink(const MqttLink&) = delete;
  MqttLink& operator=(const MqttLink&) = delete;

  void start();
  // Publishes from the outbox while the in-flight window has room.
  void pump();
  // Orderly stop: presence "offline", then disconnect; `done` runs in the loop.
  void stop(std::function<void()> done);
  // A new broker section or identity: reconnect with it. Other changes are no-ops.
  void reconfigure(const Config& config);
  // Topics to subscribe besides the actions topic (the rtstream /in topics), QoS 1, on
  // every connect. While connected, a change (un)subscribes the difference at once.
  // Their messages reach Callbacks::on_message like the actions.
  void set_extra_subscriptions(std::vector<std::string> topics);

  State state() const { return state_; }
  const char* state_name() const;
  // The status document's broker.state (spec/http-api.md §3.1): "connected",
  // "connecting" or "disconnected"; Stopped (the daemon is stopping) is "disconnected".
  const char* status_state() const;
  // Unix ms of the last change of status_state(); empty until the first connect attempt.
  std::optional<uint64_t> since_ms() const { return since_ms_; }
  // The server in use (or tried next): one of [broker] servers.
  const std::string& host() const { return server().host; }
  uint16_t port() const { return server().port; }
  size_t server_index() const { return server_; }
  // "host:port" of every configured server, in order.
  std::vector<std::string> server_names() const;
  const LinkCounters& counters() const { return counters_; }
  std::string last_error() const { return last_error_; }
  std::string server_uri() const;
  std::string server_name() const;  // "host:port" in use

 private:
  struct Listener;
  void create_client();
  void close_client();
  void connect();
  void schedule_reconnect();
  void on_connect_result(bool ok, std::string error);
  void on_connection_lost(std::string cause);
  void on_publish_result(uint64_t generation, uint64_t id, bool ok);
  void set_state(State state);
  const BrokerServer& server() const { return config_.broker.servers[server_]; }
  // On to the next of several servers (after a failed attempt or a lost connection).
  void next_server();

  // Runs a function on the loop, unless this link is gone by then. Paho's threads
  // capture only this and the io_context (which outlives every component).
  using Post = std::function<void(std::function<void(MqttLink&)>)>;

  asio::io_context& io_;
  std::shared_ptr<MqttLink*> alive_ = std::make_shared<MqttLink*>(this);
  Post post_;
  log::RateLimiter limiter_;
  Config config_;  // broker section, identity and topics
  Outbox& outbox_;
  Callbacks callbacks_;
  std::unique_ptr<mqtt::async_client> client_;
  std::unique_ptr<Listener> listener_;
  State state_ = State::Disconnected;
  std::optional<uint64_t> since_ms_;
  uint64_t generation_ = 0;  // bumps on every connection; stale callbacks are ignored
  int attempt_ = 0;
  size_t server_ = 0;  // index into config_.broker.servers
  asio::steady_timer reconnect_timer_;
  asio::steady_timer retry_timer_;  // a refused publish; the bound on stop()
  std::mt19937 rng_{std::random_device{}()};
  LinkCounters counters_;
  std::string last_error_;
  std::string actions_topic_;
  std::vector<std::string> extra_topics_;
  std::string presence_topic_;
  std::function<void()> stop_done_;
};

// Paho C never sets TCP_NODELAY on its socket, and offers no hook to do it. Without it
// a small publish (an action status) waits for the broker's delayed ACK of the previous
// segment, about 40 ms. This finds this process's TCP sockets connected to `port` and
// sets the option on them. Returns how many sockets it changed.
int set_nodelay_on_sockets_to(uint16_t port);

}  // namespace edgelink

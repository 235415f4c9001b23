#include "edgelink/broker/mqtt_link.hpp"

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <string_view>
#include <mqtt/async_client.h>

#include "edgelink/util/log.hpp"
#include "edgelink/util/wall_clock.hpp"

namespace edgelink {
namespace {
constexpr char kLog[] = "broker";

// Publish contexts carry (generation, outbox id) in Paho's void* user context, so a
// PUBACK needs no allocation and a callback from an older connection is recognisable.
constexpr int kIdBits = 48;
constexpr uint64_t kGenerationMask = 0xFFFF;
void* pack(uint64_t generation, uint64_t id) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(((generation & kGenerationMask) << kIdBits) | id));
}
uint64_t unpack_generation(void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)) >> kIdBits; }
uint64_t unpack_id(void* p) {
  return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)) & ((uint64_t{1} << kIdBits) - 1);
}
// Paho's connect failure codes: 1..5 are the broker's CONNACK refusals (MQTT 3.1.1
// section 3.2.2.3); negative ones are Paho's own (TCP or TLS never got that far).
std::string connect_error(int rc) {
  switch (rc) {
    case 1: return "refused by the broker: unacceptable protocol version";
    case 2: return "refused by the broker: client id rejected";
    case 3: return "refused by the broker: server unavailable";
    case 4: return "refused by the broker: bad user name or password";
    case 5: return "refused by the broker: not authorized";
    case MQTTASYNC_FAILURE:
      return "TCP connection or TLS handshake failed (broker unreachable, or certificate not trusted / host name "
             "mismatch)";
    default: return "connect failed (Paho return code " + std::to_string(rc) + ")";
  }
}
}  // namespace

// Paho action listeners; they run on Paho's threads and only post into the loop.
struct MqttLink::Listener {
  struct Fn : mqtt::iaction_listener {
    std::function<void(const mqtt::token&, bool)> fn;
    void on_success(const mqtt::token& t) override { fn(t, true); }
    void on_failure(const mqtt::token& t) override { fn(t, false); }
  };
  Fn connect, publish, subscribe, ignore, offline, disconnect;
};

MqttLink::MqttLink(asio::io_context& io, const Config& config, Outbox& outbox, Callbacks callbacks)
    : io_(io), config_(config), outbox_(outbox), callbacks_(std::move(callbacks)),
      listener_(std::make_unique<Listener>()), reconnect_timer_(io), retry_timer_(io) {
  post_ = [&io = io_, alive = std::weak_ptr<MqttLink*>(alive_)](std::function<void(MqttLink&)> fn) {
    asio::post(io, [alive, fn = std::move(fn)] {
      if (auto self = alive.lock()) fn(**self);
    });
  };
  Post post = post_;
  listener_->connect.fn = [post](const mqtt::token& t, bool ok) {
    std::string error = ok ? "" : connect_error(t.get_return_code());
    post([ok, error](MqttLink& self) { self.on_connect_result(ok, error); });
  };
  listener_->publish.fn = [post](const mqtt::token& t, bool ok) {
    void* ctx = t.get_user_context();
    post([ctx, ok](MqttLink& self) { self.on_publish_result(unpack_generation(ctx), unpack_id(ctx), ok); });
  };
  listener_->subscribe.fn = [post](const mqtt::token& t, bool ok) {
    if (ok) return;
    auto topics = t.get_topics();
    std::string topic = topics && topics->size() ? (*topics)[0] : std::string("a topic");
    post([topic](MqttLink& self) {
      log::error(kLog, "subscribing to ", topic, " failed; reconnecting to try again");
      self.on_connection_lost("subscribe failed");
    });
  };
  listener_->ignore.fn = [](const mqtt::token&, bool) {};
  listener_->offline.fn = [post](const mqtt::token&, bool) {
    post([](MqttLink& self) {
      try {
        self.client_->disconnect(0, nullptr, self.listener_->disconnect);
      } catch (const mqtt::exception&) {
        if (self.stop_done_) std::exchange(self.stop_done_, nullptr)();
      }
    });
  };
  listener_->disconnect.fn = [post](const mqtt::token&, bool) {
    post([](MqttLink& self) {
      self.retry_timer_.cancel();
      if (self.stop_done_) std::exchange(self.stop_done_, nullptr)();
    });
  };
}

MqttLink::~MqttLink() {
  alive_.reset();
  close_client();
}

void MqttLink::close_client() {
  if (!client_) return;
  try {
    if (client_->is_connected()) client_->disconnect(std::chrono::milliseconds(0))->wait_for(std::chrono::seconds(1));
  } catch (const std::exception&) {
  }
  // Paho fails pending tokens from inside MQTTAsync_destroy, calling our listeners
  // synchronously: the client must go while the listeners still exist.
  client_.reset();
}

namespace {
std::string host_port(const BrokerServer& s) {
  return (s.host.find(':') != std::string::npos ? "[" + s.host + "]" : s.host) + ":" + std::to_string(s.port);
}
}  // namespace

std::string MqttLink::server_uri() const {
  return std::string(config_.broker.tls ? "ssl://" : "tcp://") + host_port(server());
}

std::string MqttLink::server_name() const { return host_port(server()); }

std::vector<std::string> MqttLink::server_names() const {
  std::vector<std::string> out;
  for (const BrokerServer& s : config_.broker.servers) out.push_back(host_port(s));
  return out;
}

void MqttLink::next_server() {
  if (config_.broker.servers.size() < 2) return;
  server_ = (server_ + 1) % config_.broker.servers.size();
  ++counters_.server_changes;
  log::info(kLog, "trying the next broker server: ", server_uri());
}

const char* MqttLink::state_name() const {
  switch (state_) {
    case State::Disconnected: return "disconnected";
    case State::Connecting: return "connecting";
    case State::Connected: return "connected";
    case State::Stopped: return "stopped";
  }
  return "?";
}

const char* MqttLink::status_state() const {
  switch (state_) {
    case State::Connecting: return "connecting";
    case State::Connected: return "connected";
    case State::Disconnected:
    case State::Stopped: return "disconnected";
  }
  return "disconnected";
}

void MqttLink::set_state(State state) {
  const char* before = status_state();
  state_ = state;
  if (std::string_view(before) != status_state()) since_ms_ = unix_ms();
}

void MqttLink::create_client() {
  actions_topic_ = expand_topic(config_.actions_subscription, config_);
  presence_topic_ = expand_topic(config_.presence_topic, config_);
  static std::once_flag paho_init;
  std::call_once(paho_init, [] {
    // OpenSSL 3 initialises itself on first use; Paho's eager init (error strings and
    // all) costs ~1.5 MiB of RSS on gateways that never use TLS.
    MQTTAsync_init_options init = MQTTAsync_init_options_initializer;
    init.do_openssl_init = 0;
    MQTTAsync_global_init(&init);
  });
  // No Paho persistence and no offline buffer: the Outbox is the only store. Paho's
  // command queue still counts queued publishes against maxBufferedMessages (default
  // 100) while connected, so it must hold the whole window plus subscribe/presence.
  client_ = std::make_unique<mqtt::async_client>(
      server_uri(), config_.broker.client_id,
      mqtt::create_options(MQTTVERSION_3_1_1, config_.broker.max_inflight + 16), nullptr);
  auto post = post_;
  client_->set_connection_lost_handler([post](const std::string& cause) {
    post([cause](MqttLink& self) { self.on_connection_lost(cause.empty() ? "connection lost" : cause); });
  });
  client_->set_message_callback([post](mqtt::const_message_ptr msg) {
    post([topic = msg->get_topic(), payload = msg->get_payload_str()](MqttLink& self) mutable {
      ++self.counters_.messages_in;
      if (self.callbacks_.on_message) self.callbacks_.on_message(std::move(topic), std::move(payload));
    });
  });
}

void MqttLink::start() {
  create_client();
  connect();
}

void MqttLink::connect() {
  if (state_ == State::Stopped) return;
  const BrokerConfig& b = config_.broker;
  mqtt::connect_options opts;
  opts.set_mqtt_version(MQTTVERSION_3_1_1);
  // edgelink resends everything unacknowledged itself, so the broker keeps no session.
  opts.set_clean_session(true);
  opts.set_keep_alive_interval(b.keep_alive);
  opts.set_connect_timeout(10);
  // Our window, not Paho's default of 65535, bounds what is in flight.
  opts.set_max_inflight(b.max_inflight);
  // Reconnects are ours (backoff with jitter, resubscribe, resend from the Outbox).
  opts.set_automatic_reconnect(false);
  // The client was created with the first server; each attempt names the one in turn.
  opts.set_servers(std::make_shared<const mqtt::string_collection>(mqtt::string_collection{server_uri()}));
  opts.set_will(mqtt::will_options(presence_topic_, std::string("offline"), 1, true));
  if (!b.username.empty()) opts.set_user_name(b.username);
  if (!b.password.empty()) opts.set_password(b.password);
  if (b.tls) {
    mqtt::ssl_options ssl;
    if (!b.tls->ca_file.empty()) ssl.set_trust_store(b.tls->ca_file);
    if (!b.tls->cert_file.empty()) ssl.set_key_store(b.tls->cert_file);
    if (!b.tls->key_file.empty()) ssl.set_private_key(b.tls->key_file);
    // Paho's defaults check the certificate chain but not the host name; both are on
    // unless the config turns verification off.
    ssl.set_enable_server_cert_auth(b.tls->verify);
    ssl.set_verify(b.tls->verify);
    opts.set_ssl(std::move(ssl));
  }
  set_state(State::Connecting);
  log::info(kLog, "connecting to ", server_uri(), " as ", b.client_id);
  try {
    client_->connect(opts, nullptr, listener_->connect);
  } catch (const mqtt::exception& e) {
    on_connect_result(false, e.what());
  }
}

void MqttLink::schedule_reconnect() {
  if (state_ == State::Stopped) return;
  set_state(State::Disconnected);
  auto min = config_.broker.reconnect_min.count(), max = config_.broker.reconnect_max.count();
  int64_t delay = min;
  for (int i = 0; i < attempt_ && delay < max; ++i) delay *= 2;
  delay = std::min<int64_t>(delay, max);
  // Jitter in [delay/2, delay]: gateways that lost the broker together do not return together.
  delay = std::uniform_int_distribution<int64_t>(delay / 2, delay)(rng_);
  ++attempt_;
  log::info(kLog, "reconnecting in ", delay, " ms");
  reconnect_timer_.expires_after(std::chrono::milliseconds(delay));
  reconnect_timer_.async_wait([this](asio::error_code ec) {
    if (!ec) connect();
  });
}

void MqttLink::on_connect_result(bool ok, std::string error) {
  if (state_ != State::Connecting) return;
  if (!ok) {
    ++counters_.connect_failures;
    last_error_ = error;
    log::limited(limiter_, "connect", LogLevel::Warn, kLog, "cannot connect to ", server_uri(), ": ", error);
    next_server();
    schedule_reconnect();
    return;
  }
  ++generation_;
  ++counters_.connects;
  attempt_ = 0;
  set_state(State::Connected);
  last_error_.clear();
  int n = set_nodelay_on_sockets_to(server().port);
  log::info(kLog, "connected to ", server_uri(), n ? "" : " (TCP_NODELAY not set: socket not found)");
  try {
    client_->subscribe(actions_topic_, 1, nullptr, listener_->subscribe);
    for (const auto& topic : extra_topics_) client_->subscribe(topic, 1, nullptr, listener_->subscribe);
    client_->publish(presence_topic_, "online", 6, 1, true, nullptr, listener_->ignore);
  } catch (const mqtt::exception& e) {
    on_connection_lost(e.what());
    return;
  }
  if (callbacks_.on_online) callbacks_.on_online(true);
  pump();
}

void MqttLink::on_connection_lost(std::string cause) {
  if (state_ != State::Connected && state_ != State::Connecting) return;
  ++counters_.disconnects;
  last_error_ = cause;
  log::warn(kLog, "connection to ", server_uri(), " lost: ", cause, "; ", outbox_.in_flight(),
            " unacknowledged publishes will be sent again");
  ++generation_;
  outbox_.requeue_all();
  if (callbacks_.on_online) callbacks_.on_online(false);
  try {
    if (client_->is_connected()) client_->disconnect(0, nullptr, listener_->ignore);
  } catch (const mqtt::exception&) {
  }
  // A lost node of a cluster: the next one, with the usual backoff (a lone server is
  // simply tried again).
  next_server();
  schedule_reconnect();
}

void MqttLink::pump() {
  if (state_ != State::Connected) return;
  const size_t window = static_cast<size_t>(config_.broker.max_inflight);
  while (outbox_.in_flight() < window) {
    const OutboxEntry* e = outbox_.next();
    if (!e) break;
    try {
      // The message shares the Outbox's payload buffer: no copy on this side of Paho.
      client_->publish(mqtt::message::create(e->topic, mqtt::binary_ref(e->payload), 1, e->retained),
                       pack(generation_, e->id), listener_->publish);
      ++counters_.published;
    } catch (const mqtt::exception& ex) {
      outbox_.requeue(e->id);
      if (!client_->is_connected()) {
        on_connection_lost(std::string("publish refused: ") + ex.what());
        return;
      }
      // Paho's queue is full although connected: try again shortly instead of
      // tearing the connection down.
      ++counters_.publish_failures;
      log::limited(limiter_, "publish-refused", LogLevel::Warn, kLog, "publish refused (", ex.what(),
                   "); retrying");
      retry_timer_.expires_after(std::chrono::milliseconds(10));
      retry_timer_.async_wait([this](asio::error_code ec) {
        if (!ec) pump();
      });
      return;
    }
  }
}

void MqttLink::on_publish_result(uint64_t generation, uint64_t id, bool ok) {
  if (ok) {
    if (outbox_.ack(id)) {
      ++counters_.acked;
      if (callbacks_.on_acked) callbacks_.on_acked(id);
    }
  } else if (generation == (generation_ & kGenerationMask) && state_ == State::Connected) {
    // Paho fails publishes of a dying connection; connection_lost follows and
    // requeues everything. A failure on a healthy connection: send it again.
    ++counters_.publish_failures;
    outbox_.requeue(id);
  }
  pump();
}

void MqttLink::stop(std::function<void()> done) {
  reconnect_timer_.cancel();
  bool connected = state_ == State::Connected;
  set_state(State::Stopped);
  if (!connected || !client_) {
    asio::post(io_, std::move(done));
    return;
  }
  stop_done_ = std::move(done);
  // Paho may never call back if the connection dies during the goodbye: bound it.
  retry_timer_.expires_after(std::chrono::seconds(2));
  retry_timer_.async_wait([this](asio::error_code ec) {
    if (!ec && stop_done_) {
      log::warn(kLog, "no answer from the broker while disconnecting; stopping anyway");
      std::exchange(stop_done_, nullptr)();
    }
  });
  try {
    // An orderly stop does not fire the will, so say "offline" ourselves, and
    // disconnect once that is acknowledged: Paho's disconnect timeout, used to let it
    // finish, takes seconds longer than the flow itself.
    client_->publish(presence_topic_, "offline", 7, 1, true, nullptr, listener_->offline);
  } catch (const mqtt::exception&) {
    asio::post(io_, std::exchange(stop_done_, nullptr));
  }
}

void MqttLink::reconfigure(const Config& config) {
  bool same = config.broker == config_.broker && config.project_id == config_.project_id &&
              config.device_id == config_.device_id && config.actions_subscription == config_.actions_subscription &&
              config.presence_topic == config_.presence_topic;
  if (same) return;
  log::info(kLog, "broker settings changed; reconnecting");
  config_ = config;
  server_ = 0;
  reconnect_timer_.cancel();
  ++generation_;
  outbox_.requeue_all();
  if (callbacks_.on_online) callbacks_.on_online(false);
  close_client();
  set_state(State::Disconnected);
  attempt_ = 0;
  create_client();
  connect();
}

void MqttLink::set_extra_subscriptions(std::vector<std::string> topics) {
  std::sort(topics.begin(), topics.end());
  topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
  if (topics == extra_topics_) return;
  std::vector<std::string> added, removed;
  std::set_difference(topics.begin(), topics.end(), extra_topics_.begin(), extra_topics_.end(),
                      std::back_inserter(added));
  std::set_difference(extra_topics_.begin(), extra_topics_.end(), topics.begin(), topics.end(),
                      std::back_inserter(removed));
  extra_topics_ = std::move(topics);
  if (state_ != State::Connected || !client_) return;  // the next connect subscribes them all
  try {
    for (const auto& topic : added) client_->subscribe(topic, 1, nullptr, listener_->subscribe);
    for (const auto& topic : removed) client_->unsubscribe(topic, nullptr, listener_->ignore);
  } catch (const mqtt::exception& e) {
    on_connection_lost(e.what());
  }
}

int set_nodelay_on_sockets_to(uint16_t port) {
  int changed = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return 0;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || fd == dirfd(dir)) continue;
    int protocol = 0;
    socklen_t len = sizeof protocol;
    if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0 || protocol != IPPROTO_TCP)
      continue;
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;
    uint16_t peer_port = 0;
    if (peer.ss_family == AF_INET)
      peer_port = ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port);
    else if (peer.ss_family == AF_INET6)
      peer_port = ntohs(reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port);
    if (peer_port != port) continue;
    int one = 1;
    if (setsockopt(static_cast<int>(fd), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++changed;
  }
  closedir(dir);
  return changed;
}

}  // namespace edgelink

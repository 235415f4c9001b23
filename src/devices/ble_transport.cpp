#include "edgelink/devices/ble_transport.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <utility>

#include <sdbus-c++/sdbus-c++.h>

#include "edgelink/util/json_object.hpp"

namespace edgelink::devices {

namespace {

constexpr char kBluez[] = "org.bluez";
constexpr char kObjectManager[] = "org.freedesktop.DBus.ObjectManager";
constexpr char kProperties[] = "org.freedesktop.DBus.Properties";
constexpr char kAdapter[] = "org.bluez.Adapter1";
constexpr char kDevice[] = "org.bluez.Device1";
constexpr char kService[] = "org.bluez.GattService1";
constexpr char kCharacteristic[] = "org.bluez.GattCharacteristic1";

using Props = std::map<std::string, sdbus::Variant>;
using Interfaces = std::map<std::string, Props>;
using ManagedObjects = std::map<sdbus::ObjectPath, Interfaces>;

template <class T>
std::optional<T> prop(const Props& p, const char* name) {
  auto it = p.find(name);
  if (it == p.end() || !it->second.containsValueOfType<T>()) return std::nullopt;
  return it->second.get<T>();
}

std::string str_prop(const Props& p, const char* name) {
  if (auto s = prop<std::string>(p, name)) return *s;
  if (auto o = prop<sdbus::ObjectPath>(p, name)) return *o;
  return {};
}

BleDevice device_of(const std::string& path, const Props& p) {
  BleDevice d;
  d.path = path;
  d.adapter = str_prop(p, "Adapter");
  if (d.adapter.empty()) d.adapter = path.substr(0, path.rfind('/'));
  d.address = str_prop(p, "Address");
  d.name = str_prop(p, "Name");
  d.alias = str_prop(p, "Alias");
  d.connected = prop<bool>(p, "Connected").value_or(false);
  d.services_resolved = prop<bool>(p, "ServicesResolved").value_or(false);
  return d;
}

BleTree tree_of(const ManagedObjects& objects) {
  BleTree t;
  for (const auto& [path, ifaces] : objects) {
    for (const auto& [iface, p] : ifaces) {
      if (iface == kAdapter) {
        t.adapters.push_back({path, prop<bool>(p, "Powered").value_or(false)});
      } else if (iface == kDevice) {
        t.devices.push_back(device_of(path, p));
      } else if (iface == kService) {
        t.services.push_back({path, str_prop(p, "Device"), lower(str_prop(p, "UUID"))});
      } else if (iface == kCharacteristic) {
        BleCharacteristic c;
        c.path = path;
        c.service = str_prop(p, "Service");
        c.uuid = lower(str_prop(p, "UUID"));
        c.flags = prop<std::vector<std::string>>(p, "Flags").value_or(std::vector<std::string>{});
        c.mtu = prop<uint16_t>(p, "MTU");
        t.characteristics.push_back(std::move(c));
      }
    }
  }
  return t;
}

std::string error_of(const sdbus::Error& e) {
  const std::string& name = e.getName();
  if (name == "org.freedesktop.DBus.Error.ServiceUnknown" || name == "org.freedesktop.DBus.Error.NameHasNoOwner")
    return "bluetoothd is not running (no org.bluez on the system bus)";
  return name + (e.getMessage().empty() ? "" : ": " + e.getMessage());
}

std::chrono::microseconds usec(std::chrono::milliseconds ms) { return ms; }

}  // namespace

// The bus connection, its watch on the loop, and the proxies that live as long as it.
// Members are destroyed in reverse order: the proxies before the connection.
struct BleTransport::Bus {
  std::unique_ptr<sdbus::IConnection> conn;
  asio::posix::stream_descriptor fd;
  asio::steady_timer timer;
  std::unique_ptr<sdbus::IProxy> root;  // ObjectManager signals of org.bluez
  std::unique_ptr<sdbus::IProxy> dbus;  // NameOwnerChanged
  bool read_waiting = false;
  bool write_waiting = false;
  explicit Bus(asio::io_context& io) : fd(io), timer(io) {}
};

BleTransport::BleTransport(asio::io_context& io, BleOptions options, BytesHandler on_bytes, StateHandler on_state)
    : io_(io),
      options_(std::move(options)),
      on_bytes_(std::move(on_bytes)),
      on_state_(std::move(on_state)),
      retry_timer_(io),
      step_timer_(io),
      backoff_(options_.reconnect_min) {
  options_.reconnect_max = std::max(options_.reconnect_max, options_.reconnect_min);
}

BleTransport::~BleTransport() {
  alive_.reset();
  running_ = false;
  retry_timer_.cancel();
  step_timer_.cancel();
  // Proxies before the connection; nothing of ours runs any more.
  device_.reset();
  command_.reset();
  response_.reset();
  adapter_.reset();
  graveyard_.clear();
  bus_.reset();
}

std::string BleTransport::where() const {
  const BleTarget& t = options_.target;
  return (!t.address.empty() ? t.address : "\"" + t.name + "\"") + " on " + t.adapter;
}

std::error_code BleTransport::start() {
  if (running_) return {};
  running_ = true;
  backoff_ = options_.reconnect_min;
  attempt();
  return {};
}

void BleTransport::stop() {
  if (!running_) return;
  running_ = false;
  retry_timer_.cancel();
  // Disconnect etiquette (§3.5): bledisconnect, then Disconnect. These two calls wait
  // (each at most stop_call_timeout): the daemon may be about to exit.
  if (bus_ && !dispatching_) {
    try {
      if (up_ && command_ && !options_.goodbye.empty()) {
        Props opts{{"type", sdbus::Variant(std::string(write_without_response_ ? "command" : "request"))}};
        command_->callMethod("WriteValue")
            .onInterface(kCharacteristic)
            .withTimeout(usec(options_.stop_call_timeout))
            .withArguments(options_.goodbye, opts)
            .storeResultsTo();
      }
    } catch (const sdbus::Error&) {
    }
    try {
      if (device_ && phase_ >= Phase::Resolving)
        device_->callMethod("Disconnect").onInterface(kDevice).withTimeout(usec(options_.stop_call_timeout)).storeResultsTo();
    } catch (const sdbus::Error&) {
    }
  }
  reset_link();
  if (bus_) {
    // Destroyed after the retired proxies (posted first).
    asio::post(io_, [bus = std::shared_ptr<Bus>(std::move(bus_))] {});
  }
}

// ---- the bus on the loop --------------------------------------------------------------

void BleTransport::pump() {
  if (!bus_ || dispatching_) return;
  std::weak_ptr<int> alive = alive_;
  dispatching_ = true;
  bool more = false;
  try {
    for (int n = 0; bus_ && bus_->conn->processPendingRequest();) {
      if (alive.expired()) return;
      if (++n == 64) {  // let other handlers run; the rest comes from a posted pump
        more = true;
        break;
      }
    }
  } catch (const sdbus::Error& e) {
    if (alive.expired()) return;
    dispatching_ = false;
    bus_lost("the system bus failed: " + error_of(e));
    return;
  }
  if (alive.expired()) return;
  dispatching_ = false;
  if (!bus_) return;
  if (more)
    kick();
  else
    watch();
}

void BleTransport::kick() {
  asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
    if (!alive.expired()) pump();
  });
}

// sd-bus says what it waits for: readable, writable (a queued message), a deadline (a
// call's timeout). The reactor is edge-triggered: pump() ran processPendingRequest
// until it had nothing, so the socket had been read dry and new bytes make an edge.
void BleTransport::watch() {
  Bus* b = bus_.get();
  sdbus::IConnection::PollData pd{};
  try {
    pd = b->conn->getEventLoopPollData();
  } catch (const sdbus::Error& e) {
    return bus_lost("the system bus failed: " + error_of(e));
  }
  if (!b->fd.is_open()) {
    std::error_code ec;
    b->fd.assign(::dup(pd.fd), ec);
    if (ec) return bus_lost("the system bus: " + ec.message());
  }
  auto handler = [this, alive = std::weak_ptr<int>(alive_), b](bool write) {
    return [this, alive, b, write](std::error_code ec) {
      if (alive.expired() || bus_.get() != b) return;
      (write ? b->write_waiting : b->read_waiting) = false;
      if (ec == asio::error::operation_aborted) return;
      pump();
    };
  };
  if (!b->read_waiting) {
    b->read_waiting = true;
    b->fd.async_wait(asio::posix::stream_descriptor::wait_read, handler(false));
  }
  if ((pd.events & POLLOUT) && !b->write_waiting) {
    b->write_waiting = true;
    b->fd.async_wait(asio::posix::stream_descriptor::wait_write, handler(true));
  }
  if (pd.timeout_usec == UINT64_MAX) {
    b->timer.cancel();
  } else {
    // CLOCK_MONOTONIC, as steady_clock on Linux.
    b->timer.expires_at(std::chrono::steady_clock::time_point(std::chrono::microseconds(pd.timeout_usec)));
    b->timer.async_wait([this, alive = std::weak_ptr<int>(alive_), b](std::error_code ec) {
      if (alive.expired() || bus_.get() != b || ec) return;
      pump();
    });
  }
}

void BleTransport::retire(std::unique_ptr<sdbus::IProxy>& proxy) {
  if (!proxy) return;
  const bool first = graveyard_.empty();
  graveyard_.push_back(std::move(proxy));
  if (first)
    asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
      if (!alive.expired()) graveyard_.clear();
    });
}

void BleTransport::bus_lost(const std::string& why) {
  ++stats_.bus_failures;
  retire(device_);
  retire(command_);
  retire(response_);
  retire(adapter_);
  if (bus_) asio::post(io_, [bus = std::shared_ptr<Bus>(std::move(bus_))] {});
  fail(why);
}

// ---- one attempt ----------------------------------------------------------------------

void BleTransport::attempt() {
  if (!running_ || up_) return;
  ++stats_.attempts;
  phase_ = Phase::Listing;
  if (!bus_) {
    auto bus = std::make_unique<Bus>(io_);
    try {
      bus->conn = sdbus::createSystemBusConnection();
      bus->root = sdbus::createProxy(*bus->conn, kBluez, "/");
      bus->root->uponSignal("InterfacesAdded")
          .onInterface(kObjectManager)
          .call([this, alive = std::weak_ptr<int>(alive_)](const sdbus::ObjectPath& path, const Interfaces& ifaces) {
            if (alive.expired() || phase_ != Phase::Discovering) return;
            auto it = ifaces.find(kDevice);
            if (it == ifaces.end()) return;
            BleTree t;
            t.devices.push_back(device_of(path, it->second));
            if (!find_device(t, options_.target)) return;
            if (adapter_) {
              adapter_->callMethodAsync("StopDiscovery")
                  .onInterface(kAdapter)
                  .withTimeout(usec(options_.call_timeout))
                  .uponReplyInvoke([](const sdbus::Error*) {});
            }
            step_timer_.cancel();
            list_objects();
          });
      bus->root->uponSignal("InterfacesRemoved")
          .onInterface(kObjectManager)
          .call([this, alive = std::weak_ptr<int>(alive_)](const sdbus::ObjectPath& path,
                                                            const std::vector<std::string>&) {
            if (!alive.expired()) on_removed(path);
          });
      bus->root->finishRegistration();
      bus->dbus = sdbus::createProxy(*bus->conn, "org.freedesktop.DBus", "/org/freedesktop/DBus");
      bus->dbus->uponSignal("NameOwnerChanged")
          .onInterface("org.freedesktop.DBus")
          .call([this, alive = std::weak_ptr<int>(alive_)](const std::string& name, const std::string&,
                                                            const std::string& owner) {
            if (alive.expired() || name != kBluez) return;
            if (owner.empty()) {
              if (phase_ != Phase::Idle) fail("bluetoothd went away (org.bluez left the system bus)");
            } else if (running_ && phase_ == Phase::Idle) {
              // bluetoothd is back: the next attempt comes soon, not after a long backoff.
              backoff_ = options_.reconnect_min;
              schedule_attempt();
            }
          });
      bus->dbus->finishRegistration();
    } catch (const sdbus::Error& e) {
      ++stats_.bus_failures;
      return fail("cannot use the system bus: " + error_of(e));
    }
    bus_ = std::move(bus);
    watch();
  }
  list_objects();
}

void BleTransport::list_objects() {
  if (!bus_) return;
  phase_ = phase_ == Phase::Idle ? Phase::Listing : phase_;
  bus_->root->callMethodAsync("GetManagedObjects")
      .onInterface(kObjectManager)
      .withTimeout(usec(options_.call_timeout))
      .uponReplyInvoke([this, alive = std::weak_ptr<int>(alive_), epoch = epoch_](const sdbus::Error* e,
                                                                                   const ManagedObjects& objects) {
        if (alive.expired() || epoch != epoch_ || !running_) return;
        if (e) return fail("listing BlueZ objects: " + error_of(*e));
        on_tree(tree_of(objects));
      });
  kick();
}

void BleTransport::on_tree(const BleTree& tree) {
  const BleTarget& t = options_.target;
  const BleAdapter* adapter = find_adapter(tree, t);
  if (!adapter) return fail("no Bluetooth adapter " + t.adapter);
  if (!adapter->powered) return fail("the adapter " + t.adapter + " is powered off (bluetoothctl power on)");
  const BleDevice* dev = find_device(tree, t);
  if (!dev) return discover();
  if (!device_ || device_path_ != dev->path) {
    retire(device_);
    device_path_ = dev->path;
    device_ = sdbus::createProxy(*bus_->conn, kBluez, device_path_);
    device_->uponSignal("PropertiesChanged")
        .onInterface(kProperties)
        .call([this, alive = std::weak_ptr<int>(alive_), path = device_path_](
                  const std::string& iface, const Props& changed, const std::vector<std::string>&) {
          if (alive.expired() || iface != kDevice) return;
          auto c = prop<bool>(changed, "Connected");
          auto r = prop<bool>(changed, "ServicesResolved");
          on_device_properties(path, c.has_value(), c.value_or(false), r.has_value(), r.value_or(false));
        });
    device_->finishRegistration();
  }
  if (!dev->connected) return connect_device();
  if (!dev->services_resolved) {
    phase_ = Phase::Resolving;
    arm_step_timer(options_.resolve_timeout, "connected, but BlueZ did not resolve the device's services");
    return;
  }
  std::string why;
  auto gatt = find_gatt(tree, t, dev->path, why);
  if (!gatt) return fail(why);
  subscribe(*gatt);
}

void BleTransport::discover() {
  const BleTarget& t = options_.target;
  last_error_ = "device " + where() + " not found; discovering";
  if (phase_ == Phase::Discovering) return;
  phase_ = Phase::Discovering;
  retire(adapter_);
  adapter_ = sdbus::createProxy(*bus_->conn, kBluez, adapter_path(t.adapter));
  adapter_->finishRegistration();
  std::vector<std::string> uuids;
  if (!t.service_uuid.empty())
    uuids.push_back(t.service_uuid);
  else
    uuids = {std::string(kRaftServiceUuid), std::string(kRaftServiceUuidAlt)};
  Props filter{{"UUIDs", sdbus::Variant(uuids)}, {"Transport", sdbus::Variant(std::string("le"))}};
  auto epoch = epoch_;
  adapter_->callMethodAsync("SetDiscoveryFilter")
      .onInterface(kAdapter)
      .withTimeout(usec(options_.call_timeout))
      .withArguments(filter)
      .uponReplyInvoke([](const sdbus::Error*) {});  // a filter is a courtesy; discovery works without
  adapter_->callMethodAsync("StartDiscovery")
      .onInterface(kAdapter)
      .withTimeout(usec(options_.call_timeout))
      .uponReplyInvoke([this, alive = std::weak_ptr<int>(alive_), epoch](const sdbus::Error* e) {
        if (alive.expired() || epoch != epoch_) return;
        if (e && e->getName() != "org.bluez.Error.InProgress")
          fail("device " + where() + " not found, and discovery failed: " + error_of(*e));
      });
  arm_step_timer(options_.discovery_timeout, "device " + where() + " not found (discovered for " +
                                                 std::to_string(options_.discovery_timeout.count() / 1000) + " s)");
  kick();
}

void BleTransport::connect_device() {
  phase_ = Phase::Connecting;
  device_->callMethodAsync("Connect")
      .onInterface(kDevice)
      .withTimeout(usec(options_.connect_timeout))
      .uponReplyInvoke([this, alive = std::weak_ptr<int>(alive_), epoch = epoch_](const sdbus::Error* e) {
        if (alive.expired() || epoch != epoch_) return;
        if (e) return fail("Connect: " + error_of(*e));
        if (phase_ == Phase::Connecting) {
          phase_ = Phase::Resolving;
          list_objects();
        }
      });
  kick();
}

void BleTransport::on_device_properties(const std::string& path, bool connected_known, bool connected,
                                        bool resolved_known, bool resolved) {
  if (path != device_path_ || phase_ == Phase::Idle) return;
  if (connected_known && !connected && phase_ != Phase::Connecting)
    return fail("the device disconnected");
  if (resolved_known && !resolved && (phase_ == Phase::Up || phase_ == Phase::Subscribing))
    return fail("the device's services went away (disconnecting)");
  if (resolved_known && resolved && phase_ == Phase::Resolving) {
    step_timer_.cancel();
    list_objects();
  }
}

void BleTransport::on_removed(const std::string& path) {
  if (phase_ == Phase::Idle || device_path_.empty()) return;
  if (path == device_path_ || path == gatt_service_path_ || path == response_path_ ||
      (command_ && path == command_->getObjectPath()))
    fail("the device went away (BlueZ removed " + path + ")");
}

void BleTransport::subscribe(const BleGatt& gatt) {
  phase_ = Phase::Subscribing;
  gatt_service_path_ = gatt.service;
  response_path_ = gatt.response;
  retire(response_);
  retire(command_);
  response_ = sdbus::createProxy(*bus_->conn, kBluez, gatt.response);
  response_->uponSignal("PropertiesChanged")
      .onInterface(kProperties)
      .call([this, alive = std::weak_ptr<int>(alive_)](const std::string& iface, const Props& changed,
                                                        const std::vector<std::string>&) {
        if (alive.expired() || iface != kCharacteristic || phase_ != Phase::Up) return;
        if (auto v = prop<std::vector<uint8_t>>(changed, "Value")) on_notification(*v);
      });
  response_->finishRegistration();
  command_ = sdbus::createProxy(*bus_->conn, kBluez, gatt.command);
  command_->finishRegistration();
  // BlueZ writes the CCCD for StartNotify (notify or indicate, whichever the
  // characteristic has): the device sends nothing before it (§3.5).
  response_->callMethodAsync("StartNotify")
      .onInterface(kCharacteristic)
      .withTimeout(usec(options_.call_timeout))
      .uponReplyInvoke([this, alive = std::weak_ptr<int>(alive_), epoch = epoch_, gatt](const sdbus::Error* e) {
        if (alive.expired() || epoch != epoch_) return;
        // InProgress: BlueZ is already subscribing for this client (its notify session
        // outlives a disconnect and is renewed on the reconnect): notifications will come.
        if (e && e->getName() != "org.bluez.Error.InProgress") return fail("StartNotify: " + error_of(*e));
        went_up(gatt);
      });
  kick();
}

void BleTransport::went_up(const BleGatt& gatt) {
  step_timer_.cancel();
  mtu_ = gatt.mtu.value_or(kDefaultAttMtu);
  write_size_ = ble_write_size(gatt.mtu, options_.max_write);
  write_without_response_ = gatt.write_without_response;
  phase_ = Phase::Up;
  up_ = true;
  backoff_ = options_.reconnect_min;
  last_error_.clear();
  ++stats_.connects;
  std::weak_ptr<int> alive = alive_;
  if (on_state_) on_state_(true, {});
  if (alive.expired()) return;
  start_write();
}

void BleTransport::fail(const std::string& why) {
  const bool was_up = up_;
  const Phase phase = phase_;
  last_error_ = why;
  if (bus_ && adapter_ && phase == Phase::Discovering)
    adapter_->callMethodAsync("StopDiscovery")
        .onInterface(kAdapter)
        .withTimeout(usec(options_.call_timeout))
        .uponReplyInvoke([](const sdbus::Error*) {});
  // Connected by us but not usable (no service, StartNotify refused): let go of it.
  if (bus_ && device_ && (phase == Phase::Resolving || phase == Phase::Subscribing))
    device_->callMethodAsync("Disconnect")
        .onInterface(kDevice)
        .withTimeout(usec(options_.call_timeout))
        .uponReplyInvoke([](const sdbus::Error*) {});
  reset_link();
  if (was_up)
    ++stats_.disconnects;
  else
    ++stats_.connect_failures;
  if (bus_) kick();
  std::weak_ptr<int> alive = alive_;
  if (was_up && on_state_) on_state_(false, std::make_error_code(std::errc::not_connected));
  if (alive.expired()) return;
  schedule_attempt();
}

// Back to Idle: late callbacks of this attempt are ignored, the queue is dropped
// (counted), the attempt's proxies go.
void BleTransport::reset_link() {
  ++epoch_;
  step_timer_.cancel();
  up_ = false;
  writing_ = false;
  phase_ = Phase::Idle;
  stats_.bytes_discarded += queued_bytes();
  queue_.clear();
  queue_head_ = 0;
  inflight_ = 0;
  retire(device_);
  retire(command_);
  retire(response_);
  retire(adapter_);
  device_path_.clear();
  gatt_service_path_.clear();
  response_path_.clear();
}

void BleTransport::schedule_attempt() {
  if (!running_ || up_) return;
  retry_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
  retry_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](std::error_code ec) {
    if (alive.expired() || ec || !running_ || phase_ != Phase::Idle) return;
    attempt();
  });
}

void BleTransport::arm_step_timer(std::chrono::milliseconds after, std::string why) {
  step_timer_.expires_after(after);
  step_timer_.async_wait(
      [this, alive = std::weak_ptr<int>(alive_), epoch = epoch_, why = std::move(why)](std::error_code ec) {
        if (alive.expired() || ec || epoch != epoch_) return;
        fail(why);
      });
}

// ---- bytes ----------------------------------------------------------------------------

void BleTransport::on_notification(std::span<const uint8_t> bytes) {
  ++stats_.notifications;
  stats_.bytes_in += bytes.size();
  if (on_bytes_ && !bytes.empty()) on_bytes_(bytes);
}

size_t BleTransport::deliver_pending() {
  if (!up_ || dispatching_) return 0;
  const uint64_t before = stats_.bytes_in;
  std::weak_ptr<int> alive = alive_;
  pump();
  if (alive.expired()) return 0;
  return static_cast<size_t>(stats_.bytes_in - before);
}

bool BleTransport::write(std::span<const uint8_t> bytes) {
  if (!up_ || queued_bytes() + bytes.size() > options_.max_queue_bytes) {
    ++stats_.writes_refused;
    return false;
  }
  if (queue_head_ > 0 && queue_head_ >= queue_.size() / 2) {
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(queue_head_));
    queue_head_ = 0;
  }
  queue_.insert(queue_.end(), bytes.begin(), bytes.end());
  start_write();
  return true;
}

// One write in flight, at most write_size_ bytes: a slice of the HDLC stream; the
// device reassembles frames across writes (§3.5).
void BleTransport::start_write() {
  if (!up_ || writing_ || queued_bytes() == 0) return;
  const auto slice = next_write(std::span<const uint8_t>(queue_).subspan(queue_head_), write_size_);
  std::vector<uint8_t> value(slice.begin(), slice.end());
  inflight_ = value.size();
  writing_ = true;
  Props opts{{"type", sdbus::Variant(std::string(write_without_response_ ? "command" : "request"))}};
  command_->callMethodAsync("WriteValue")
      .onInterface(kCharacteristic)
      .withTimeout(usec(options_.call_timeout))
      .withArguments(value, opts)
      .uponReplyInvoke([this, alive = std::weak_ptr<int>(alive_), epoch = epoch_](const sdbus::Error* e) {
        if (alive.expired() || epoch != epoch_) return;
        writing_ = false;
        if (e) {
          ++stats_.writes_failed;
          return fail("WriteValue: " + error_of(*e));
        }
        ++stats_.writes;
        stats_.bytes_out += inflight_;
        queue_head_ += inflight_;
        inflight_ = 0;
        if (queue_head_ == queue_.size()) {
          queue_.clear();
          queue_head_ = 0;
        }
        start_write();
      });
  kick();
}

void BleTransport::write_status(JsonObject& device) const {
  static constexpr const char* kPhase[] = {"idle", "listing", "discovering", "connecting", "resolving", "subscribing", "up"};
  device.object("ble", [&](JsonObject& j) {
    j.str("adapter", options_.target.adapter)
        .str("address", options_.target.address)
        .str("name", options_.target.name)
        .str("device_path", device_path_)
        .str("phase", kPhase[static_cast<int>(phase_)])
        .u64("mtu", mtu_)
        .u64("write_size", write_size_)
        .u64("attempts", stats_.attempts)
        .u64("connects", stats_.connects)
        .u64("connect_failures", stats_.connect_failures)
        .u64("disconnects", stats_.disconnects)
        .u64("bus_failures", stats_.bus_failures)
        .u64("notifications", stats_.notifications)
        .u64("bytes_in", stats_.bytes_in)
        .u64("bytes_out", stats_.bytes_out)
        .u64("writes", stats_.writes)
        .u64("writes_failed", stats_.writes_failed)
        .u64("writes_refused", stats_.writes_refused)
        .u64("queued_bytes", queued_bytes())
        .u64("bytes_discarded", stats_.bytes_discarded);
  });
}

}  // namespace edgelink::devices

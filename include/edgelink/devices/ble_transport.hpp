#pragma once
// Bytes in and out of one Raft device over BLE GATT (spec/ricrest.md §3.5), through
// BlueZ on the D-Bus system bus (sdbus-c++). The same DeviceTransport as a serial port:
// the HDLC byte stream goes out as writes to the command characteristic and comes in as
// notifications (or indications) of the response characteristic.
//
// Driven from the daemon's io_context: the bus connection's fd and timeout are watched
// with asio and sd-bus is processed from there (no second event loop, no thread), so
// every D-Bus reply and signal runs on the loop like any other handler. Every call
// is asynchronous with a timeout; only stop() waits (at most 2 x stop_call_timeout),
// to say bledisconnect and Disconnect before the daemon exits.
//
// One attempt: connect to the bus; GetManagedObjects; the adapter (powered) and the
// device (by address, or by Name/Alias; when absent, a discovery filtered by the Raft
// service UUID until discovery_timeout); Device1.Connect; wait for ServicesResolved;
// the service and its two characteristics (ble_gatt.hpp); StartNotify on the response
// characteristic (BlueZ writes the CCCD); MTU from the characteristic's MTU property
// (23 without it). Then up: writes of at most min(MTU - 3, max_write, 512) bytes, one in
// flight, write-without-response where the characteristic offers it.
//
// Down: Connected or ServicesResolved false, the device or its service removed
// (InterfacesRemoved), org.bluez losing its owner (bluetoothd stopped or restarted), the
// bus connection failing, a write failing, or an attempt step failing or timing out.
// Then the queue is dropped (counted), the state handler runs and the next attempt
// comes on a backoff (reconnect_min doubling to reconnect_max).

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

#include "edgelink/devices/ble_gatt.hpp"
#include "edgelink/devices/device_transport.hpp"

namespace sdbus {
class IConnection;
class IProxy;
}  // namespace sdbus

namespace edgelink::devices {

struct BleOptions {
  BleTarget target;
  size_t max_write = kMaxAttValue;
  size_t max_queue_bytes = 256 * 1024;
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{10000};
  std::chrono::milliseconds call_timeout{5000};        // each D-Bus call but Connect
  std::chrono::milliseconds connect_timeout{30000};    // Device1.Connect
  std::chrono::milliseconds resolve_timeout{15000};    // Connect done .. ServicesResolved
  std::chrono::milliseconds discovery_timeout{20000};  // an absent device is looked for
  std::chrono::milliseconds stop_call_timeout{1000};
  // Sent before a deliberate disconnect (stop): the HDLC frame of the bledisconnect
  // request (ricrest.md §3.5 "Disconnect etiquette"). Empty: none.
  std::vector<uint8_t> goodbye;
};

struct BleStats {
  uint64_t attempts = 0;
  uint64_t connects = 0;          // attempts that reached up
  uint64_t connect_failures = 0;  // attempts that failed before up
  uint64_t disconnects = 0;       // up -> down
  uint64_t notifications = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t writes = 0;
  uint64_t writes_failed = 0;
  uint64_t writes_refused = 0;  // write() while down or with the queue full
  uint64_t bytes_discarded = 0;
  uint64_t bus_failures = 0;    // the system bus connection failed or was lost
};

class BleTransport final : public DeviceTransport {
 public:
  using BytesHandler = std::function<void(std::span<const uint8_t>)>;
  using StateHandler = std::function<void(bool up, std::error_code ec)>;

  BleTransport(asio::io_context& io, BleOptions options, BytesHandler on_bytes, StateHandler on_state);
  ~BleTransport() override;
  BleTransport(const BleTransport&) = delete;
  BleTransport& operator=(const BleTransport&) = delete;

  std::error_code start() override;
  void stop() override;
  bool write(std::span<const uint8_t> bytes) override;
  // Dispatches what the bus already holds (notifications included) before returning.
  size_t deliver_pending() override;
  bool is_up() const override { return up_; }
  size_t queued_bytes() const override { return queue_.size() - queue_head_; }
  std::string error_text() const override { return last_error_; }
  std::string where() const override;
  void write_status(JsonObject& device) const override;  // "ble": {...}

  const BleStats& stats() const { return stats_; }
  size_t write_size() const { return write_size_; }

 private:
  enum class Phase { Idle, Listing, Discovering, Connecting, Resolving, Subscribing, Up };
  struct Bus;  // the connection, its asio watch and the long-lived proxies

  void attempt();
  void list_objects();
  void on_tree(const BleTree& tree);
  void discover();
  void connect_device();
  void subscribe(const BleGatt& gatt);
  void went_up(const BleGatt& gatt);
  void fail(const std::string& why);
  void reset_link();
  void bus_lost(const std::string& why);
  void schedule_attempt();
  void arm_step_timer(std::chrono::milliseconds after, std::string why);
  void start_write();
  void on_notification(std::span<const uint8_t> bytes);
  void on_device_properties(const std::string& path, bool connected_known, bool connected, bool resolved_known,
                            bool resolved);
  void on_removed(const std::string& path);
  // Proxies are never destroyed inside their own callbacks: they go here and are
  // destroyed from a posted handler.
  void retire(std::unique_ptr<sdbus::IProxy>& proxy);
  void pump();
  void watch();
  void kick();

  asio::io_context& io_;
  BleOptions options_;
  BytesHandler on_bytes_;
  StateHandler on_state_;
  std::unique_ptr<Bus> bus_;
  std::unique_ptr<sdbus::IProxy> device_;    // Device1 of the current attempt
  std::unique_ptr<sdbus::IProxy> command_;   // the command characteristic
  std::unique_ptr<sdbus::IProxy> response_;  // the response characteristic
  std::unique_ptr<sdbus::IProxy> adapter_;   // while discovering
  std::vector<std::unique_ptr<sdbus::IProxy>> graveyard_;
  asio::steady_timer retry_timer_;
  asio::steady_timer step_timer_;  // the current attempt step's deadline
  Phase phase_ = Phase::Idle;
  bool running_ = false;
  bool up_ = false;
  bool writing_ = false;
  bool dispatching_ = false;
  bool write_without_response_ = true;
  uint64_t epoch_ = 0;  // bumped on every failure: late callbacks of an old attempt do nothing
  std::string device_path_;
  std::string gatt_service_path_;
  std::string response_path_;
  uint16_t mtu_ = 0;
  size_t write_size_ = 0;
  std::vector<uint8_t> queue_;  // accepted, not yet written; written from queue_head_
  size_t queue_head_ = 0;
  size_t inflight_ = 0;  // bytes of the write in flight
  std::string last_error_;
  std::chrono::milliseconds backoff_;
  BleStats stats_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace edgelink::devices

#pragma once
// What the device layer needs from a byte transport to one MCU: a serial port
// (SerialTransport) or a BLE GATT link through BlueZ (BleTransport). Bytes come in through the owner's bytes handler, in
// order; up/down through its state handler.
//
// deliver_pending() exists for the rtstream block window (spec/ricrest.md §6.1.3).
// A block counts as delivered when no complaint came for it within its window, and
// the window is judged when a timer fires. On a busy gateway the device's BUSY reply
// can already be waiting in the kernel (or in the transport's own buffers) at that
// moment, with its read not yet run: deciding without it sends the next block, and
// the BUSY, read a moment later, is "late": the block is lost. So before anything
// time-driven is decided, the owner calls deliver_pending(), and the decision sees
// everything the device had already said.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>

namespace edgelink {
class JsonObject;
}

namespace edgelink::devices {

class DeviceTransport {
 public:
  virtual ~DeviceTransport() = default;

  // Connects (or keeps retrying on a backoff); a configuration error is returned.
  virtual std::error_code start() = 0;
  // Disconnects and stops retrying; handlers are not called afterwards.
  virtual void stop() = 0;
  // Queues bytes for the device; false when refused (down, queue full).
  virtual bool write(std::span<const uint8_t> bytes) = 0;
  // Hands everything already received and not yet handed over to the bytes handler
  // now, before returning, without waiting for more; in order with the deliveries the
  // transport makes on its own. Returns how many bytes it delivered. It may detect a
  // disconnect on the way (the state handler then runs from here).
  virtual size_t deliver_pending() = 0;
  virtual bool is_up() const = 0;
  // Bytes accepted by write() and not yet on the wire.
  virtual size_t queued_bytes() const = 0;
  // Why the link last went down or the last attempt failed, for people; empty while up.
  virtual std::string error_text() const = 0;
  // Where the device is, for logs: the port's path, or the BLE address or name.
  virtual std::string where() const = 0;
  // The transport's own counters, as one member of the device's status object.
  virtual void write_status(JsonObject& device) const = 0;
};

}  // namespace edgelink::devices

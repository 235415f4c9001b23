#pragma once
// The pure part of the BLE link (spec/ricrest.md §3.5): which BlueZ objects are the
// Raft device, its service and its two characteristics, and how a byte stream is cut
// into GATT writes. BleTransport turns D-Bus replies into a BleTree and asks here; unit
// tests give trees directly (tests/unit/devices/ble_gatt_test.cpp).
//
// BlueZ's object tree (org.freedesktop.DBus.ObjectManager on "/"):
//   /org/bluez/hci0                                   org.bluez.Adapter1
//   /org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF             org.bluez.Device1
//   /org/bluez/hci0/dev_.../service0010               org.bluez.GattService1
//   /org/bluez/hci0/dev_.../service0010/char0011      org.bluez.GattCharacteristic1

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgelink::devices {

inline constexpr std::string_view kRaftServiceUuid = "aa76677e-9cfd-4626-a510-0d305be57c8d";
inline constexpr std::string_view kRaftServiceUuidAlt = "da903f65-d5c2-4f4d-a065-d1aade7af874";
// Without an MTU from BlueZ, the smallest one BLE has.
inline constexpr uint16_t kDefaultAttMtu = 23;
// ATT caps an attribute value at 512 bytes, whatever the MTU.
inline constexpr size_t kMaxAttValue = 512;

struct BleAdapter {
  std::string path;
  bool powered = false;
};

struct BleDevice {
  std::string path;
  std::string adapter;  // the Adapter1 object it belongs to
  std::string address;  // as BlueZ gives it (upper case)
  std::string name;
  std::string alias;
  bool connected = false;
  bool services_resolved = false;
};

struct BleService {
  std::string path;
  std::string device;
  std::string uuid;  // lower case
};

struct BleCharacteristic {
  std::string path;
  std::string service;
  std::string uuid;  // lower case
  std::vector<std::string> flags;
  std::optional<uint16_t> mtu;  // BlueZ 5.62+
};

struct BleTree {
  std::vector<BleAdapter> adapters;
  std::vector<BleDevice> devices;
  std::vector<BleService> services;
  std::vector<BleCharacteristic> characteristics;
};

// What to look for: one of address and name is set (config).
struct BleTarget {
  std::string adapter = "hci0";
  std::string address;       // upper case
  std::string name;          // matches Device1.Name or Device1.Alias
  std::string service_uuid;  // empty: either Raft service UUID
  std::string command_uuid = "aa76677e-9cfd-4626-a510-0d305be57c8e";
  std::string response_uuid = "aa76677e-9cfd-4626-a510-0d305be57c8f";
};

std::string adapter_path(std::string_view adapter);  // "/org/bluez/hci0"
const BleAdapter* find_adapter(const BleTree& tree, const BleTarget& target);
// The device on the target's adapter with that address (any case) or name.
const BleDevice* find_device(const BleTree& tree, const BleTarget& target);

struct BleGatt {
  std::string service;
  std::string command;
  std::string response;
  bool write_without_response = false;  // the command characteristic offers it
  std::optional<uint16_t> mtu;
};
// The Raft service under `device_path` and its two characteristics; nullopt and `why`
// (for people) when something is missing.
std::optional<BleGatt> find_gatt(const BleTree& tree, const BleTarget& target, std::string_view device_path,
                                 std::string& why);

// Bytes per write: at most MTU - 3 (the ATT header), max_write and 512.
size_t ble_write_size(std::optional<uint16_t> mtu, size_t max_write);

// The next write of a queued stream: at most `size` bytes from its front.
inline std::span<const uint8_t> next_write(std::span<const uint8_t> queued, size_t size) {
  return queued.first(queued.size() < size ? queued.size() : size);
}

std::string lower(std::string_view s);

}  // namespace edgelink::devices

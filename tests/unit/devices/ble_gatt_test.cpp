#include "edgelink/devices/ble_gatt.hpp"

#include <catch2/catch.hpp>

#include <numeric>
#include <vector>

using namespace edgelink::devices;

namespace {

constexpr const char* kDev = "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01";
constexpr const char* kCmd = "aa76677e-9cfd-4626-a510-0d305be57c8e";
constexpr const char* kResp = "aa76677e-9cfd-4626-a510-0d305be57c8f";

// A tree as BlueZ lists a connected Raft device: one adapter, the device, a GAP
// service, the Raft service with its two characteristics.
BleTree raft_tree(std::string service_uuid = std::string(kRaftServiceUuid)) {
  BleTree t;
  t.adapters = {{"/org/bluez/hci0", true}, {"/org/bluez/hci1", true}};
  t.devices = {{kDev, "/org/bluez/hci0", "AA:BB:CC:DD:EE:01", "RaftBot", "RaftBot", true, true},
               {"/org/bluez/hci1/dev_AA_BB_CC_DD_EE_01", "/org/bluez/hci1", "AA:BB:CC:DD:EE:01", "Other", "Other", false,
                false}};
  t.services = {{std::string(kDev) + "/service0001", kDev, "00001800-0000-1000-8000-00805f9b34fb"},
                {std::string(kDev) + "/service0010", kDev, service_uuid}};
  t.characteristics = {
      {std::string(kDev) + "/service0001/char0002", std::string(kDev) + "/service0001", kCmd, {"write"}, 517},
      {std::string(kDev) + "/service0010/char0011", std::string(kDev) + "/service0010", kCmd,
       {"write", "write-without-response"}, 517},
      {std::string(kDev) + "/service0010/char0012", std::string(kDev) + "/service0010", kResp,
       {"read", "notify", "indicate"}, 517},
  };
  return t;
}

}  // namespace

TEST_CASE("ble: the device is found by address (any case) or name, on its adapter only", "[ble]") {
  const BleTree t = raft_tree();
  BleTarget target;
  target.address = "aa:bb:cc:dd:ee:01";
  REQUIRE(find_device(t, target));
  CHECK(find_device(t, target)->path == kDev);
  target.adapter = "hci1";
  REQUIRE(find_device(t, target));
  CHECK(find_device(t, target)->name == "Other");
  target.adapter = "hci2";
  CHECK_FALSE(find_device(t, target));
  CHECK_FALSE(find_adapter(t, target));

  BleTarget by_name;
  by_name.name = "RaftBot";
  REQUIRE(find_device(t, by_name));
  CHECK(find_device(t, by_name)->path == kDev);
  by_name.name = "Raft";  // names match whole
  CHECK_FALSE(find_device(t, by_name));
  // The alias counts too (bluetoothctl can rename a device locally).
  BleTree aliased = t;
  aliased.devices[0].name.clear();
  aliased.devices[0].alias = "kitchen-bot";
  by_name.name = "kitchen-bot";
  CHECK(find_device(aliased, by_name));
  CHECK(adapter_path("hci0") == "/org/bluez/hci0");
}

TEST_CASE("ble: the Raft service and its characteristics, not a same-UUID one elsewhere", "[ble]") {
  std::string why;
  BleTarget target;
  auto g = find_gatt(raft_tree(), target, kDev, why);
  INFO(why);
  REQUIRE(g);
  CHECK(g->service == std::string(kDev) + "/service0010");
  CHECK(g->command == std::string(kDev) + "/service0010/char0011");
  CHECK(g->response == std::string(kDev) + "/service0010/char0012");
  CHECK(g->write_without_response);
  CHECK(g->mtu == 517);

  // The alternative service UUID works without configuration; an override replaces both.
  CHECK(find_gatt(raft_tree(std::string(kRaftServiceUuidAlt)), target, kDev, why));
  BleTarget custom;
  custom.service_uuid = "12345678-1234-1234-1234-123456789ABC";
  CHECK_FALSE(find_gatt(raft_tree(), custom, kDev, why));
  CHECK(why == "the device has no Raft service (12345678-1234-1234-1234-123456789abc)");
  CHECK(find_gatt(raft_tree("12345678-1234-1234-1234-123456789abc"), custom, kDev, why));

  // Another device's objects do not count.
  CHECK_FALSE(find_gatt(raft_tree(), target, "/org/bluez/hci0/dev_00_00_00_00_00_00", why));
  CHECK(why.find("has no Raft service") != std::string::npos);
}

TEST_CASE("ble: a missing or unusable characteristic is named", "[ble]") {
  std::string why;
  BleTarget target;
  BleTree no_resp = raft_tree();
  no_resp.characteristics.pop_back();
  CHECK_FALSE(find_gatt(no_resp, target, kDev, why));
  CHECK(why == std::string("service ") + std::string(kRaftServiceUuid) + " has no response characteristic " + kResp);

  BleTree no_cmd = raft_tree();
  no_cmd.characteristics.erase(no_cmd.characteristics.begin() + 1);
  CHECK_FALSE(find_gatt(no_cmd, target, kDev, why));
  CHECK(why.find("has no command characteristic") != std::string::npos);

  BleTree silent = raft_tree();
  silent.characteristics[2].flags = {"read"};
  CHECK_FALSE(find_gatt(silent, target, kDev, why));
  CHECK(why.find("neither notify nor indicate") != std::string::npos);

  // Write with response only: still usable, without write-without-response.
  BleTree acked = raft_tree();
  acked.characteristics[1].flags = {"write"};
  auto g = find_gatt(acked, target, kDev, why);
  REQUIRE(g);
  CHECK_FALSE(g->write_without_response);
  acked.characteristics[1].flags = {"read"};
  CHECK_FALSE(find_gatt(acked, target, kDev, why));
  CHECK(why.find("is not writable") != std::string::npos);

  // Without an MTU property (BlueZ before 5.62) the MTU is unknown.
  BleTree old = raft_tree();
  for (auto& c : old.characteristics) c.mtu.reset();
  g = find_gatt(old, target, kDev, why);
  REQUIRE(g);
  CHECK_FALSE(g->mtu);
}

TEST_CASE("ble: writes are at most MTU - 3, max_write and 512 bytes", "[ble]") {
  CHECK(ble_write_size(23, 512) == 20);
  CHECK(ble_write_size(185, 512) == 182);
  CHECK(ble_write_size(517, 512) == 512);
  CHECK(ble_write_size(517, 244) == 244);
  CHECK(ble_write_size(std::nullopt, 512) == 20);  // no MTU known: the smallest BLE has
  CHECK(ble_write_size(uint16_t{3}, 512) == 20);
  CHECK(ble_write_size(65535, 512) == 512);       // ATT caps a value at 512
  CHECK(ble_write_size(23, 0) == 1);

  // Slicing a queued stream consumes it exactly, in order, no slice above the size.
  std::vector<uint8_t> stream(1000);
  std::iota(stream.begin(), stream.end(), 0);
  for (size_t size : {size_t{20}, size_t{182}, size_t{512}, size_t{1000}, size_t{2000}}) {
    std::vector<uint8_t> out;
    std::span<const uint8_t> rest(stream);
    size_t writes = 0;
    while (!rest.empty()) {
      const auto w = next_write(rest, size);
      REQUIRE(!w.empty());
      CHECK(w.size() <= size);
      out.insert(out.end(), w.begin(), w.end());
      rest = rest.subspan(w.size());
      ++writes;
    }
    CHECK(out == stream);
    CHECK(writes == (stream.size() + size - 1) / size);
  }
}

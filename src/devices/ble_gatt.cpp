#include "edgelink/devices/ble_gatt.hpp"

#include <algorithm>
#include <cctype>

namespace edgelink::devices {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string adapter_path(std::string_view adapter) { return "/org/bluez/" + std::string(adapter); }

const BleAdapter* find_adapter(const BleTree& tree, const BleTarget& target) {
  const std::string path = adapter_path(target.adapter);
  for (const BleAdapter& a : tree.adapters)
    if (a.path == path) return &a;
  return nullptr;
}

const BleDevice* find_device(const BleTree& tree, const BleTarget& target) {
  const std::string adapter = adapter_path(target.adapter);
  for (const BleDevice& d : tree.devices) {
    if (d.adapter != adapter) continue;
    if (!target.address.empty() ? lower(d.address) == lower(target.address)
                                : (d.name == target.name || d.alias == target.name))
      return &d;
  }
  return nullptr;
}

namespace {
bool has_flag(const BleCharacteristic& c, std::string_view flag) {
  return std::find(c.flags.begin(), c.flags.end(), flag) != c.flags.end();
}
}  // namespace

std::optional<BleGatt> find_gatt(const BleTree& tree, const BleTarget& target, std::string_view device_path,
                                 std::string& why) {
  // The configured service, or the primary Raft UUID before the alternative one.
  std::vector<std::string> wanted;
  if (!target.service_uuid.empty())
    wanted.push_back(lower(target.service_uuid));
  else
    wanted = {std::string(kRaftServiceUuid), std::string(kRaftServiceUuidAlt)};
  for (const std::string& uuid : wanted) {
    for (const BleService& s : tree.services) {
      if (s.device != device_path || lower(s.uuid) != uuid) continue;
      const BleCharacteristic* cmd = nullptr;
      const BleCharacteristic* resp = nullptr;
      for (const BleCharacteristic& c : tree.characteristics) {
        if (c.service != s.path) continue;
        if (lower(c.uuid) == lower(target.command_uuid)) cmd = &c;
        if (lower(c.uuid) == lower(target.response_uuid)) resp = &c;
      }
      if (!cmd || !resp) {
        why = "service " + uuid + " has no " + (cmd ? "response characteristic " + target.response_uuid
                                                   : "command characteristic " + target.command_uuid);
        return std::nullopt;
      }
      if (!has_flag(*resp, "notify") && !has_flag(*resp, "indicate")) {
        why = "the response characteristic " + target.response_uuid + " offers neither notify nor indicate";
        return std::nullopt;
      }
      const bool without = has_flag(*cmd, "write-without-response");
      if (!without && !has_flag(*cmd, "write")) {
        why = "the command characteristic " + target.command_uuid + " is not writable";
        return std::nullopt;
      }
      return BleGatt{s.path, cmd->path, resp->path, without, cmd->mtu ? cmd->mtu : resp->mtu};
    }
  }
  why = "the device has no Raft service (" +
        (target.service_uuid.empty() ? std::string(kRaftServiceUuid) + " or " + std::string(kRaftServiceUuidAlt)
                                     : lower(target.service_uuid)) +
        ")";
  return std::nullopt;
}

size_t ble_write_size(std::optional<uint16_t> mtu, size_t max_write) {
  const size_t att = mtu && *mtu > 3 ? *mtu - 3u : kDefaultAttMtu - 3u;
  return std::max<size_t>(1, std::min({att, max_write, kMaxAttValue}));
}

}  // namespace edgelink::devices

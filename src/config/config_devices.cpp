// Loading [devices] and [rtstreams] (spec/config.md, ricrest.md): the Raft MCUs and
// the rtstream sessions bridged to local ports, with the checks that span both.

#include <algorithm>
#include <cctype>
#include <cmath>

#include "config_loader.hpp"
#include "edgelink/util/baud_rates.hpp"

namespace edgelink::config_detail {

// endpoint and file_name travel inside the ufStart JSON and name a device session.
// Quotes, backslashes and control characters have no business there, and the device
// keeps names short.
std::optional<std::string> Loader::session_text(const toml::node& n, const std::string& path) {
  auto v = string_value(n, path);
  if (!v) return v;
  const bool bad = std::any_of(v->begin(), v->end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7f || c == '"' || c == '\\';
  });
  if (bad) {
    error(n, path + ": must not contain quotes, backslashes or control characters, got " + quote(*v));
    return std::nullopt;
  }
  if (v->size() > 64) {
    error(n, path + ": must be at most 64 bytes, got " + std::to_string(v->size()));
    return std::nullopt;
  }
  return v;
}

// Checks that span [devices] and [rtstreams], in file order so each error lands on the
// later of two clashing entries.
void Loader::check_devices() {
  std::sort(device_paths_.begin(), device_paths_.end(), before);
  for (size_t i = 0; i < device_paths_.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (device_paths_[j].value != device_paths_[i].value) continue;
      // TIOCEXCL would make the second open fail with EBUSY on every retry.
      error(*device_paths_[i].node, "devices." + key_part(device_paths_[i].owner) + ".path: " +
                                        quote(device_paths_[i].value) + " is already used by devices." +
                                        key_part(device_paths_[j].owner));
      break;
    }
  }

  std::sort(rtstream_devices_.begin(), rtstream_devices_.end(), before);
  std::map<std::string, size_t> per_device;
  for (const ValueSite& s : rtstream_devices_) {
    if (!device_names_.count(s.value)) {
      error(*s.node, "rtstreams." + key_part(s.owner) + ".device: no device " + quote(s.value) +
                         " is configured in [devices]");
    } else if (++per_device[s.value] > kMaxRtStreamsPerDevice) {
      error(*s.node, "rtstreams." + key_part(s.owner) + ".device: device " + quote(s.value) + " already has " +
                         std::to_string(kMaxRtStreamsPerDevice) +
                         " rtstreams, the most its sessions allow (spec/ricrest.md 5.1)");
    }
  }

  // ufStart with a fileName that is already open on the channel restarts that session
  // (§5.1): two rtstreams with one file_name would share, and fight over, one session.
  std::sort(rtstream_files_.begin(), rtstream_files_.end(), before);
  for (size_t i = 0; i < rtstream_files_.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (rtstream_files_[j].value != rtstream_files_[i].value) continue;
      const std::string& v = rtstream_files_[i].value;
      error(*rtstream_files_[i].node, "rtstreams." + key_part(rtstream_files_[i].owner) + ": file_name " +
                                          quote(v.substr(v.find('\0') + 1)) + " is already used on device " +
                                          quote(v.substr(0, v.find('\0'))) + " by rtstreams." +
                                          key_part(rtstream_files_[j].owner) +
                                          " (the device would treat both as one session)");
      break;
    }
  }
}

namespace {
bool valid_ble_address(std::string_view a) {
  if (a.size() != 17) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (i % 3 == 2) {
      if (a[i] != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(a[i]))) {
      return false;
    }
  }
  return true;
}
bool valid_uuid(std::string_view u) {
  if (u.size() != 36) return false;
  for (size_t i = 0; i < u.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (u[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(u[i]))) {
      return false;
    }
  }
  return true;
}
bool valid_adapter(std::string_view a) {
  if (a.empty() || a.size() > 32) return false;
  return std::all_of(a.begin(), a.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}
}  // namespace

void Loader::load_devices(const toml::table& t, std::map<std::string, DeviceConfig>& devices) {
  for (auto&& [k, v] : t) {
    const std::string name(k.str());
    const std::string path = "devices." + key_part(name);
    if (!valid_name(name)) {
      error(k.source(), path + ": device name must be 1..64 letters, digits, '_' or '-'");
      continue;
    }
    const auto* dt = table_value(v, path);
    if (!dt) continue;
    device_names_.insert(name);
    DeviceConfig d;
    d.name = name;
    bool transport_ok = true;
    bool framing_ok = true;
    for (auto&& [dk, dv] : *dt) {
      const std::string key(dk.str());
      const std::string kpath = path + "." + key;
      if (key == "transport") {
        auto s = string_value(dv, kpath);
        transport_ok = false;
        if (!s) continue;
        if (iequals(*s, "serial")) {
          d.transport = DeviceTransport::Serial;
          transport_ok = true;
        } else if (iequals(*s, "ble")) {
          d.transport = DeviceTransport::Ble;
          transport_ok = true;
        } else {
          error(dv, kpath + ": must be \"serial\" or \"ble\", got " + quote(*s));
        }
      } else if (key == "path") {
        auto p = string_value(dv, kpath);
        // The daemon reopens the path after every unplug, long after start-up: a
        // relative path would depend on the working directory at that time.
        if (p && p->front() != '/') {
          error(dv, kpath + ": must be an absolute path like \"/dev/serial/by-id/...\", got " + quote(*p));
          p.reset();
        }
        if (p) device_paths_.push_back({name, *p, &dv});
        assign(d.path, std::move(p));
      } else if (key == "baud") {
        auto baud = int_as<uint32_t>(dv, kpath, 1, 0xffffffff);
        if (baud && !supported_baud(*baud)) {
          std::string rates;
          for (uint32_t r : kSupportedBaudRates) rates += (rates.empty() ? "" : ", ") + std::to_string(r);
          error(dv, kpath + ": " + std::to_string(*baud) + " is not a supported baud rate; use one of " + rates);
          baud.reset();
        }
        assign(d.baud, baud);
      } else if (key == "framing") {
        auto f = enum_value<DeviceFraming>(dv, kpath, {{"hdlc", DeviceFraming::Hdlc},
                                                      {"console", DeviceFraming::Console}});
        framing_ok = f.has_value();
        assign(d.framing, f);
      } else if (key == "log_stream") {
        auto s = string_value(dv, kpath);
        if (s && !valid_name(*s)) {
          error(dv, kpath + ": a stream name must be 1..64 letters, digits, '_' or '-', got " + quote(*s));
          s.reset();
        } else if (s && *s == kActionStatusStream) {
          error(dv, kpath + ": \"action_status\" is the built-in action status stream");
          s.reset();
        }
        assign(d.log_stream, std::move(s));
      } else if (key == "max_frame_bytes") {
        assign(d.max_frame_bytes, int_as<size_t>(dv, kpath, kMinDeviceFrameBytes, kMaxDeviceFrameBytes));
      } else if (key == "publish") {
        load_device_publish(dv, kpath, d);
      } else if (key == "address") {
        auto a = string_value(dv, kpath);
        if (a && !valid_ble_address(*a)) {
          error(dv, kpath + ": must be a Bluetooth address like \"AA:BB:CC:DD:EE:FF\", got " + quote(*a));
          a.reset();
        }
        if (a) std::transform(a->begin(), a->end(), a->begin(), [](unsigned char c) { return std::toupper(c); });
        assign(d.ble_address, std::move(a));
      } else if (key == "name") {
        auto n = string_value(dv, kpath);
        if (n && (n->empty() || n->size() > 248)) {
          error(dv, kpath + ": an advertised name is 1..248 bytes, got " + quote(*n));
          n.reset();
        }
        assign(d.ble_name, std::move(n));
      } else if (key == "adapter") {
        auto a = string_value(dv, kpath);
        if (a && !valid_adapter(*a)) {
          error(dv, kpath + ": must be a BlueZ adapter name like \"hci0\", got " + quote(*a));
          a.reset();
        }
        assign(d.ble_adapter, std::move(a));
      } else if (key == "service_uuid" || key == "command_uuid" || key == "response_uuid") {
        auto u = string_value(dv, kpath);
        if (u && !valid_uuid(*u)) {
          error(dv, kpath + ": must be a 128-bit UUID like \"aa76677e-9cfd-4626-a510-0d305be57c8d\", got " + quote(*u));
          u.reset();
        }
        if (u) std::transform(u->begin(), u->end(), u->begin(), [](unsigned char c) { return std::tolower(c); });
        assign(key == "service_uuid" ? d.ble_service_uuid : key == "command_uuid" ? d.ble_command_uuid : d.ble_response_uuid,
               std::move(u));
      } else if (key == "max_write") {
        assign(d.ble_max_write, int_as<size_t>(dv, kpath, 20, 512));
      } else {
        unknown(dk, "in [" + path + "]");
      }
    }
    if (transport_ok && d.transport == DeviceTransport::Serial) {
      if (!dt->contains("path")) missing(*dt, path + ".path");
      for (const char* k : {"address", "name", "adapter", "service_uuid", "command_uuid", "response_uuid", "max_write"})
        if (const toml::node* n = dt->get(k)) error(*n, path + "." + k + ": only used with transport = \"ble\"");
    } else if (transport_ok && d.transport == DeviceTransport::Ble) {
      const bool has_address = dt->contains("address"), has_name = dt->contains("name");
      if (!has_address && !has_name)
        error(*dt, path + ": a ble device needs address (\"AA:BB:CC:DD:EE:FF\") or name (its advertised name)");
      if (has_address && has_name) error(*dt->get("name"), path + ".name: give address or name, not both");
      for (const char* k : {"path", "baud"})
        if (const toml::node* n = dt->get(k)) error(*n, path + "." + k + ": only used with transport = \"serial\"");
      if (const toml::node* n = dt->get("framing"); n && framing_ok && d.framing != DeviceFraming::Hdlc)
        error(*n, path + ".framing: a ble device carries HDLC frames only (ricrest.md §3.5)");
    }
    const toml::node* log_stream = dt->get("log_stream");
    if (log_stream && framing_ok && d.framing != DeviceFraming::Console) {
      error(*log_stream, path + ".log_stream: only used with framing = \"console\" (an HDLC port carries no log text)");
    }
    devices[name] = std::move(d);
  }
}

namespace {
// The device's topic names as edgelink accepts them (http-api.md §5.3: /pub/<topic>).
bool valid_topic(std::string_view t) {
  return !t.empty() && t.size() <= 64 && std::all_of(t.begin(), t.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}
}  // namespace

// [[devices.NAME.publish]]: StatePublisher topics whose publishes become data points.
void Loader::load_device_publish(const toml::node& n, const std::string& path, DeviceConfig& d) {
  const auto* arr = n.as_array();
  if (!arr) {
    error(n, path + ": must be an array of tables ([[" + path + "]] with topic and stream), got " + type_name(n));
    return;
  }
  std::map<std::string, std::string> topics;  // topic -> the entry that has it
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& el = *arr->get(i);
    const std::string epath = path + "[" + std::to_string(i) + "]";
    const auto* et = el.as_table();
    if (!et) {
      error(el, epath + ": must be a table with topic and stream, got " + type_name(el));
      continue;
    }
    DevicePublishConfig p;
    for (auto&& [k, v] : *et) {
      const std::string key(k.str());
      const std::string kpath = epath + "." + key;
      if (key == "topic") {
        auto t = string_value(v, kpath);
        if (t && !valid_topic(*t)) {
          error(v, kpath + ": a device topic must be 1..64 letters, digits, '.', '_' or '-', got " + quote(*t));
          t.reset();
        } else if (t && topics.count(*t)) {
          error(v, kpath + ": topic " + quote(*t) + " is already published by " + topics[*t] +
                       " (the device has one subscription per topic)");
          t.reset();
        }
        if (t) topics[*t] = epath;
        assign(p.topic, std::move(t));
      } else if (key == "stream") {
        auto s = string_value(v, kpath);
        if (s && !valid_name(*s)) {
          error(v, kpath + ": a stream name must be 1..64 letters, digits, '_' or '-', got " + quote(*s));
          s.reset();
        } else if (s && *s == kActionStatusStream) {
          error(v, kpath + ": \"action_status\" is the built-in action status stream");
          s.reset();
        }
        assign(p.stream, std::move(s));
      } else if (key == "rate_hz") {
        // The device's rateHz: 0 would switch the topic off; the upper bound is the one an
        // HTTP observer may ask for (http-api.md §5.3).
        std::optional<double> r;
        if (const auto* iv = v.as_integer()) r = static_cast<double>(iv->get());
        if (const auto* fv = v.as_floating_point()) r = fv->get();
        if (!r || !std::isfinite(*r) || *r <= 0 || *r > 1000) {
          error(v, kpath + ": must be a number of Hz > 0 and <= 1000, got " +
                       (r ? float_text(*r) : std::string(type_name(v))));
        } else {
          p.rate_hz = *r;
        }
      } else if (key == "min_ms") {
        assign(p.min_ms, int_as<uint32_t>(v, kpath, 0, 0xffffffff));
      } else if (key == "trigger") {
        // Passed to the device inside a raw query value (ricrest.md §4.9): plain words only.
        auto t = string_value(v, kpath, true);
        const bool plain = t && t->size() <= 64 && std::all_of(t->begin(), t->end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        });
        if (t && !plain) {
          error(v, kpath + ": must be at most 64 letters, digits, '_' or '-' (e.g. \"timeorchange\"), got " +
                       quote(*t));
          t.reset();
        }
        assign(p.trigger, std::move(t));
      } else {
        unknown(k, "in " + epath);
      }
    }
    if (!et->contains("topic")) missing(*et, epath + ".topic");
    if (!et->contains("stream")) missing(*et, epath + ".stream");
    d.publish.push_back(std::move(p));
  }
}

void Loader::load_rtstreams(const toml::table& t, std::map<std::string, RtStreamConfig>& rtstreams) {
  for (auto&& [k, v] : t) {
    const std::string name(k.str());
    const std::string path = "rtstreams." + key_part(name);
    if (!valid_name(name)) {
      error(k.source(), path + ": rtstream name must be 1..64 letters, digits, '_' or '-'");
      continue;
    }
    const auto* rt = table_value(v, path);
    if (!rt) continue;
    RtStreamConfig r;
    r.name = name;
    bool file_name_set = false;
    for (auto&& [rk, rv] : *rt) {
      const std::string key(rk.str());
      const std::string kpath = path + "." + key;
      if (key == "device") {
        auto d = string_value(rv, kpath);
        if (d) rtstream_devices_.push_back({name, *d, &rv});
        assign(r.device, std::move(d));
      } else if (key == "endpoint") {
        assign(r.endpoint, session_text(rv, kpath));
      } else if (key == "file_name") {
        auto f = session_text(rv, kpath);
        file_name_set = f.has_value();
        assign(r.file_name, std::move(f));
      } else if (key == "port") {
        assign(r.port, int_as<uint16_t>(rv, kpath, 1, 65535));
      } else if (key == "bind") {
        assign(r.bind, bind_value(rv, kpath));
      } else if (key == "mqtt") {
        assign(r.mqtt, bool_value(rv, kpath));
      } else {
        unknown(rk, "in [" + path + "]");
      }
    }
    if (!rt->contains("device")) missing(*rt, path + ".device");
    if (!rt->contains("endpoint")) missing(*rt, path + ".endpoint");
    if (!file_name_set && !rt->contains("file_name")) r.file_name = r.endpoint;
    const toml::node* port_node = rt->get("port");
    const toml::node* mqtt_node = rt->get("mqtt");
    const toml::node* bind_node = rt->get("bind");
    if (!port_node && bind_node) error(*bind_node, path + ".bind: only used with a port");
    // Without a port or MQTT nothing could ever open the session.
    if (!port_node && !mqtt_node) {
      error(*rt, path + ": needs a port, mqtt = true, or both");
    } else if (!port_node && mqtt_node->is_boolean() && !r.mqtt) {
      error(*mqtt_node, path + ": needs a port, mqtt = true, or both");
    }
    if (port_node && r.port != 0) add_site(path, *rt, *port_node, r.port, r.bind);
    if (!r.device.empty() && !r.file_name.empty()) {
      const toml::node* at = rt->get("file_name");
      if (!at) at = rt->get("endpoint");
      rtstream_files_.push_back({name, r.device + '\0' + r.file_name, at});
    }
    rtstreams[name] = std::move(r);
  }
}

}  // namespace edgelink::config_detail

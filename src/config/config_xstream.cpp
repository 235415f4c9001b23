// [xstream] and the per-app upload keys (spec/xstream.md §1): upload_port, max_uploads
// and [[tcpapps.NAME.upload_routes]].

#include <algorithm>

#include "config_loader.hpp"

namespace edgelink::config_detail {
namespace {

bool file_route_char(char ch) {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
         ch == '_' || ch == '/' || ch == '-';
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// "/device/<name>/file" -> <name>; empty when the route has another shape.
std::string device_of_route(std::string_view route) {
  constexpr std::string_view head = "/device/", tail = "/file";
  if (!starts_with(route, head) || route.size() <= head.size() + tail.size() ||
      route.substr(route.size() - tail.size()) != tail)
    return {};
  std::string_view name = route.substr(head.size(), route.size() - head.size() - tail.size());
  return valid_name(name) ? std::string(name) : std::string();
}

bool printable_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) { return ch >= 0x20 && ch < 0x7f; });
}

}  // namespace

void Loader::load_xstream(const toml::table& t, XStreamConfig& x) {
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string path = "xstream." + key;
    if (key == "max_spool_bytes") {
      assign(x.max_spool_bytes, int_as<uint64_t>(v, path, 1, kInt64Max));
    } else if (key == "min_free_bytes") {
      assign(x.min_free_bytes, int_as<uint64_t>(v, path, 0, kInt64Max));
    } else if (key == "key_ttl") {
      assign(x.key_ttl, duration_value(v, path));
    } else if (key == "raw_idle_timeout") {
      assign(x.raw_idle_timeout, duration_value(v, path));
    } else if (key == "sync_bytes") {
      // Below 4 KiB every write would be an fdatasync.
      assign(x.sync_bytes, int_as<uint64_t>(v, path, 4096, 1ll << 32));
    } else if (key == "device_restarts") {
      assign(x.device_restarts, int_as<uint32_t>(v, path, 0, 100));
    } else {
      unknown(k, "in [xstream]");
    }
  }
}

// An app's upload keys; `key` is known to be one of them.
void Loader::load_app_upload_key(const std::string& key, const toml::node& v, const std::string& path,
                                 AppConfig& app) {
  if (key == "upload_port") {
    assign(app.upload_port, int_as<uint16_t>(v, path, 1, 65535));
  } else if (key == "max_uploads") {
    assign(app.max_uploads, int_as<uint32_t>(v, path, 1, 64));
  } else {
    load_upload_routes(v, path, app);
  }
}

void Loader::load_upload_routes(const toml::node& n, const std::string& path, AppConfig& app) {
  const auto* arr = n.as_array();
  if (!arr) {
    error(n, path + ": must be an array of tables ([[" + path + "]] with route = \"/upload-file\", kind = "
                    "\"file\"), got " + type_name(n));
    return;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& el = *arr->get(i);
    const std::string epath = path + "[" + std::to_string(i) + "]";
    const auto* et = el.as_table();
    if (!et) {
      error(el, epath + ": must be a table with route and kind, got " + type_name(el));
      continue;
    }
    UploadRouteConfig r;
    const toml::node* route_node = nullptr;
    const toml::node* kind_node = nullptr;
    const toml::node* max_node = nullptr;
    bool ok = true;
    for (auto&& [k, v] : *et) {
      const std::string key(k.str());
      const std::string kpath = epath + "." + key;
      if (key == "route") {
        auto s = string_value(v, kpath);
        ok = ok && s.has_value();
        assign(r.route, s);
        route_node = &v;
      } else if (key == "kind") {
        auto kind = enum_value<UploadKind>(
            v, kpath, {{"file", UploadKind::File}, {"datastream", UploadKind::Datastream}, {"device", UploadKind::Device}});
        ok = ok && kind.has_value();
        assign(r.kind, kind);
        kind_node = &v;
      } else if (key == "max_total_bytes") {
        assign(r.max_total_bytes, int_as<uint64_t>(v, kpath, 1, kInt64Max));
        max_node = &v;
      } else if (key == "dir") {
        assign(r.dir, string_value(v, kpath));
      } else if (key == "mime_type") {
        assign(r.mime_type, string_value(v, kpath));
      } else if (key == "file_type") {
        assign(r.file_type,
               enum_value<DeviceFileType>(v, kpath, {{"rtstream", DeviceFileType::Rtstream}, {"fs", DeviceFileType::Fs}}));
      } else if (key == "endpoint") {
        auto s = string_value(v, kpath);
        if (s && !printable_ascii(*s)) {
          error(v, kpath + ": must be printable ASCII");
          s.reset();
        }
        assign(r.endpoint, s);
      } else if (key == "file_name") {
        auto s = string_value(v, kpath);
        if (s && (s->size() > 128 || !printable_ascii(*s))) {
          error(v, kpath + ": must be 1..128 printable ASCII characters");
          s.reset();
        }
        assign(r.file_name, s);
      } else {
        unknown(k, "in " + epath);
      }
    }
    if (!route_node) missing(*et, epath + ".route");
    if (!kind_node) missing(*et, epath + ".kind");
    if (!ok || !route_node || !kind_node) continue;

    const std::string& route = r.route;
    if (r.kind == UploadKind::Datastream) {
      // "/ds/<topic>", the topic a data stream's (datastreams.md §5).
      const std::string_view topic = std::string_view(route).substr(std::min<size_t>(route.size(), 4));
      if (!starts_with(route, "/ds/") || topic.empty() || topic.size() > 128 ||
          topic.find_first_of(std::string_view("+#\0", 3)) != std::string_view::npos) {
        error(*route_node, epath + ".route: a datastream route is \"/ds/<topic>\" with a topic of 1..128 bytes "
                                   "without '+', '#' or NUL, got " + quote(route));
        continue;
      }
    } else if (r.kind == UploadKind::Device) {
      r.device = device_of_route(route);
      if (r.device.empty()) {
        error(*route_node, epath + ".route: a device route must be \"/device/<name>/file\" with <name> a "
                                   "[devices.<name>], got " + quote(route));
        continue;
      }
      upload_devices_.push_back({epath + ".route", r.device, route_node});
      if (max_node && r.max_total_bytes > kMaxDeviceUploadBytes) {
        error(*max_node, epath + ".max_total_bytes: a device route takes at most " +
                             std::to_string(kMaxDeviceUploadBytes) + " bytes (positions on the device link are "
                             "24 bits), got " + std::to_string(r.max_total_bytes));
        continue;
      }
      if (!max_node) r.max_total_bytes = kMaxDeviceUploadBytes;
    } else {
      const bool shape = route.size() >= 2 && route.size() <= 128 && route[0] == '/' &&
                         std::all_of(route.begin(), route.end(), file_route_char);
      if (!shape || starts_with(route, "/ds/") || starts_with(route, "/device/")) {
        error(*route_node, epath + ".route: a file route is \"/\" plus 1..127 of [A-Za-z0-9._/-], not starting "
                                   "with /ds/ or /device/, got " + quote(route));
        continue;
      }
    }
    if (std::any_of(app.upload_routes.begin(), app.upload_routes.end(),
                    [&](const UploadRouteConfig& o) { return o.route == route; })) {
      error(*route_node, epath + ".route: " + quote(route) + " is already a route of tcpapps." + key_part(app.name));
      continue;
    }
    app.upload_routes.push_back(std::move(r));
  }
}

// [datastreams] (spec/datastreams.md §1).
void Loader::load_datastreams(const toml::table& t, DataStreamsConfig& d) {
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string path = "datastreams." + key;
    if (key == "topic" || key == "topic_in") {
      auto topic = string_value(v, path);
      const std::string tail = "/{topic}";
      if (topic && (topic->size() < tail.size() ||
                    topic->compare(topic->size() - tail.size(), tail.size(), tail) != 0 ||
                    topic->find("{topic}") != topic->size() - 7)) {
        error(v, path + ": must end in \"/{topic}\" (and use {topic} only there), got " + quote(*topic));
        topic.reset();
      }
      if (topic) {
        // The rest follows the rules of every publish topic: known placeholders, no wildcards.
        const std::string head = topic->substr(0, topic->size() - tail.size());
        for (size_t i = head.find('{'); i != std::string::npos && topic; i = head.find('{', i + 1)) {
          const std::string_view name = std::string_view(head).substr(i, head.find('}', i) - i + 1);
          if (name != "{tenant_id}" && name != "{device_id}") {
            error(v, path + ": unknown placeholder " + quote(name) + "; expected {tenant_id}, {device_id} or the "
                           "final {topic}");
            topic.reset();
          }
        }
        if (topic && head.find_first_of("+#") != std::string::npos) {
          error(v, path + ": must not contain the MQTT wildcards '+' or '#'");
          topic.reset();
        }
      }
      assign(key == "topic" ? d.topic : d.topic_in, topic);
    } else if (key == "chunk_size") {
      assign(d.chunk_size, int_as<uint32_t>(v, path, 256, 65536));
    } else if (key == "chunk_delay_ms") {
      if (auto ms = int_value(v, path, 0, 10000)) d.chunk_delay = Millis{*ms};
    } else if (key == "max_writers") {
      assign(d.max_writers, int_as<uint32_t>(v, path, 1, 32));
    } else if (key == "max_readers") {
      assign(d.max_readers, int_as<uint32_t>(v, path, 1, 32));
    } else if (key == "max_streams_per_topic") {
      assign(d.max_streams_per_topic, int_as<uint32_t>(v, path, 1, 32));
    } else if (key == "idle_timeout") {
      auto t2 = duration_value(v, path);
      if (t2 && (*t2 < Millis{1000} || *t2 > Millis{3600 * 1000})) {
        error(v, path + ": must be a number of seconds from 1 to 3600");
        t2.reset();
      }
      assign(d.idle_timeout, t2);
    } else if (key == "max_buffered_bytes_per_stream") {
      assign(d.max_buffered_bytes_per_stream, int_as<uint64_t>(v, path, 65536, 1ll << 30));
    } else if (key == "priority") {
      assign(d.priority, int_as<int>(v, path, 0, 255));
    } else {
      unknown(k, "in [datastreams]");
    }
  }
}

void Loader::check_upload_devices() {
  for (const auto& site : upload_devices_)
    if (!device_names_.count(site.value))
      error(*site.node, site.owner + ": route names device " + quote(site.value) +
                            ", which is not configured in [devices]");
}

}  // namespace edgelink::config_detail

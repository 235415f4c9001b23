// Loading and validating the TOML configuration (spec/config.md).
// toml++ parses; this file walks the tree once, filling the structs and collecting
// every problem with its position, so `edgelink check` lists them all in one run.
// Printing (to_toml, expand_topic) lives in config_print.cpp.

#include "edgelink/config/config.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <optional>
#include <set>
#include <toml++/toml.h>

#include "config_loader.hpp"
#include "config_reader.hpp"

namespace edgelink {
namespace config_detail {
namespace {

constexpr const char* kDefaultStreamTopic =
    "/tenants/{tenant_id}/devices/{device_id}/events/{stream}/jsonarray";
constexpr const char* kDefaultActionStatusTopic =
    "/tenants/{tenant_id}/devices/{device_id}/action/status";
// Guards against pointing the loader at /dev/zero-like or huge files.
constexpr size_t kMaxConfigBytes = 16u << 20;
constexpr size_t kMaxSecretBytes = 64u << 10;

// Top-level keys and sections of uplink's config.toml that configure uplink features
// edgelink does not have. A pasted uplink file names them; they are reported as what
// they are, not as typos.
struct UplinkFeature {
  const char* key;
  const char* feature;
};
constexpr UplinkFeature kUplinkFeatures[] = {
    {"action_redirections", "action redirections"},
    {"clickhouse", "ClickHouse query log collector"},
    {"console", "HTTP console"},
    {"default_buf_size", "per-stream memory buffers"},
    {"default_persistence", "per-stream persistence files"},
    {"device_shadow", "device shadow"},
    {"downloader", "file downloader"},
    {"enable_remote_shell", "remote shell"},
    {"enable_stdin_collector", "stdin collector"},
    {"ignore_actions_if_no_clients", "dropping actions while no app is connected"},
    {"log_reader", "log file reader"},
    {"logging", "journald/logcat collector"},
    {"mqtt_metrics", "metrics streams"},
    {"ota_installer", "OTA installer"},
    {"precondition_checks", "precondition checks"},
    {"processes", "process actions"},
    {"prometheus", "Prometheus collector"},
    {"script_runner", "script runner"},
    {"serializer_metrics", "metrics streams"},
    {"simulator", "simulator"},
    {"stream_metrics", "metrics streams"},
    {"system_stats", "system stats"},
    {"wait_for_disk", "waiting for the disk at start-up"},
};

const char* uplink_feature(std::string_view key) {
  for (const auto& f : kUplinkFeatures)
    if (key == f.key) return f.feature;
  return nullptr;
}

// Keys uplink allows under [streams.action_status] that the built-in stream has no use
// for: each status is published on its own, at once, ahead of every data batch, and goes
// through the one disk spool like any batch.
constexpr const char* kUplinkActionStatusKeys[] = {"batch_size", "flush_period", "priority", "persistence"};

// xstream.md §8: like action_status, one point per message, on its own topic.
StreamConfig uploads_stream_defaults(const Config& c) {
  StreamConfig s = c.default_stream;
  s.name = kUploadsStream;
  s.topic = "/tenants/{tenant_id}/devices/{device_id}/events/uploads/jsonarray";
  s.batch_size = 1;
  return s;
}

}  // namespace

void Loader::load(const toml::table& root, Config& c) {
  c.streams[kActionStatusStream] = StreamConfig{kActionStatusStream, kDefaultActionStatusTopic, 1,
                                                Millis{60000}, Compression::Disabled,
                                                kActionStatusPriority};
  c.default_stream = StreamConfig{"", kDefaultStreamTopic, 100, Millis{60000}, Compression::Disabled, 0};

  for (auto&& [k, v] : root) {
    const std::string key(k.str());
    if (key == "project_id") {
      assign(c.project_id, id_value(v, key));
    } else if (key == "device_id") {
      assign(c.device_id, id_value(v, key));
    } else if (key == "persistence_path") {
      assign(c.persistence_path, string_value(v, key));
    } else if (key == "actions_subscription") {
      assign(c.actions_subscription, topic_value(v, key, false, true));
    } else if (key == "presence_topic") {
      assign(c.presence_topic, topic_value(v, key, false, false));
    } else if (key == "max_stream_count") {
      assign(c.max_stream_count, int_as<size_t>(v, key, 1, kInt64Max));
    } else if (key == "shutdown_timeout") {
      assign(c.shutdown_timeout, duration_value(v, key, true));
    } else if (key == "prioritize_live_data") {
      assign(c.prioritize_live_data, bool_value(v, key));
    } else if (key == "broker") {
      if (const auto* t = table_value(v, key)) load_broker(*t, c.broker);
    } else if (key == "mqtt") {
      if (const auto* t = table_value(v, key)) load_uplink_mqtt(*t, root, c.broker);
    } else if (key == "tcpapps") {
      if (const auto* t = table_value(v, key)) load_apps(*t, c.tcpapps);
    } else if (key == "streams") {
      if (const auto* t = table_value(v, key)) load_streams(*t, c);
    } else if (key == "devices") {
      if (const auto* t = table_value(v, key)) load_devices(*t, c.devices);
    } else if (key == "rtstreams") {
      if (const auto* t = table_value(v, key)) load_rtstreams(*t, c.rtstreams);
    } else if (key == "http") {
      if (const auto* t = table_value(v, key)) load_http(*t, c.http);
    } else if (key == "rtio") {
      if (const auto* t = table_value(v, key)) load_rtio(*t, c.rtio);
    } else if (key == "xstream") {
      if (const auto* t = table_value(v, key)) load_xstream(*t, c.xstream);
    } else if (key == "datastreams") {
      if (const auto* t = table_value(v, key)) load_datastreams(*t, c.datastreams);
    } else if (key == "spool") {
      if (const auto* t = table_value(v, key)) load_spool(*t, c.spool);
    } else if (key == "log") {
      if (const auto* t = table_value(v, key)) load_log(*t, c.log);
    } else if (const char* feature = uplink_feature(key)) {
      warn(k, key + ": uplink feature not supported by edgelink (" + feature + "); " +
                  (v.is_table() ? "section" : "key") + " ignored");
    } else {
      unknown(k, "at top level");
    }
  }

  if (!root.contains("project_id")) error_nopos("project_id: required key is missing");
  if (!root.contains("device_id")) error_nopos("device_id: required key is missing");
  if (c.broker.client_id.empty()) c.broker.client_id = c.device_id;
  if (c.broker.servers.empty()) c.broker.servers = {BrokerServer{c.broker.host, c.broker.port}};
  warn_dots(root);

  if (configured_streams_ > c.max_stream_count) {
    const toml::node* at = root.get("max_stream_count");
    if (!at) at = root.get("streams");
    error(*at, "max_stream_count: " + std::to_string(configured_streams_) +
                   " streams are configured but max_stream_count is " +
                   std::to_string(c.max_stream_count));
  }

  check_sites();
  check_devices();
  check_upload_devices();
  // The built-in uploads stream (xstream.md §8), once there is something to report.
  const bool uploads = std::any_of(c.tcpapps.begin(), c.tcpapps.end(),
                                   [](const auto& app) { return !app.second.upload_routes.empty(); });
  if (uploads && !c.streams.count(kUploadsStream)) c.streams[kUploadsStream] = uploads_stream_defaults(c);
  check_reserved_devices(root, c);
  check_rtio(c);

  // Each action name routes to exactly one app.
  std::sort(action_sites_.begin(), action_sites_.end(), [](const ActionSite& a, const ActionSite& b) {
    return a.node->source().begin < b.node->source().begin;
  });
  for (size_t i = 0; i < action_sites_.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (action_sites_[j].name != action_sites_[i].name) continue;
      error(*action_sites_[i].node, "tcpapps." + key_part(action_sites_[i].app) + ".actions: action " +
                                        quote(action_sites_[i].name) + " is already listed by tcpapps." +
                                        key_part(action_sites_[j].app) +
                                        " (an action must route to one app)");
      break;
    }
  }
}

// Two listeners on one address would fail at bind time; a wildcard address overlaps
// all. Apps and rtstreams share the check: they are all local TCP ports.
void Loader::check_sites() {
  std::sort(sites_.begin(), sites_.end(), [](const AppSite& a, const AppSite& b) { return a.pos < b.pos; });
  for (size_t i = 0; i < sites_.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const AppSite& a = sites_[j];
      const AppSite& b = sites_[i];
      if (a.port == b.port && (a.any || b.any || a.addr == b.addr)) {
        error(*b.port_node, b.label + "." + b.key + ": " + b.bind + " port " + std::to_string(b.port) +
                                " overlaps " + a.label + (a.key == "port" ? "" : "." + a.key) + " (" + a.bind + " port " + std::to_string(a.port) + ")");
        break;
      }
    }
  }
}

void Loader::add_site(const std::string& label, const toml::table& at, const toml::node& port_node,
                      uint16_t port, const std::string& bind, const char* key) {
  AppSite site;
  site.label = label;
  site.key = key;
  site.pos = at.source().begin;
  site.port_node = &port_node;
  site.port = port;
  site.bind = bind;
  // bind was validated (or is the default), so one of the two parses.
  if (::inet_pton(AF_INET, bind.c_str(), site.addr.data()) == 1) {
    site.any = site.addr[0] == 0 && site.addr[1] == 0 && site.addr[2] == 0 && site.addr[3] == 0;
  } else if (::inet_pton(AF_INET6, bind.c_str(), site.addr.data()) == 1) {
    site.any = std::all_of(site.addr.begin(), site.addr.end(), [](unsigned char b) { return b == 0; });
  }
  sites_.push_back(site);
}

std::optional<std::string> Loader::bind_value(const toml::node& n, const std::string& path) {
  auto bind = string_value(n, path);
  std::array<unsigned char, 16> buf{};
  if (bind && ::inet_pton(AF_INET, bind->c_str(), buf.data()) != 1 &&
      ::inet_pton(AF_INET6, bind->c_str(), buf.data()) != 1) {
    error(n, path + ": must be an IPv4 or IPv6 address literal, got " + quote(*bind));
    bind.reset();
  }
  return bind;
}

// RabbitMQ's MQTT plugin maps MQTT topics to AMQP routing keys and back, so a '.' in a
// topic reaches its subscribers as '/': the cloud would see another topic. Not an
// error (mosquitto and most brokers keep it), but `check` says so.
void Loader::warn_dots(const toml::table& root) {
  const std::string why = "contains '.', which RabbitMQ's MQTT plugin delivers as '/' (subscribers there see another topic)";
  for (const char* key : {"project_id", "device_id", "actions_subscription", "presence_topic"}) {
    const toml::node* n = root.get(key);
    const auto* s = n ? n->as_string() : nullptr;
    if (s && s->get().find('.') != std::string::npos) warn(*n, std::string(key) + ": " + why);
  }
  const toml::node* streams = root.get("streams");
  if (const auto* st = streams ? streams->as_table() : nullptr) {
    for (auto&& [name, v] : *st) {
      const auto* t = v.as_table();
      const toml::node* topic = t ? t->get("topic") : nullptr;
      const auto* s = topic ? topic->as_string() : nullptr;
      if (s && s->get().find('.') != std::string::npos) warn(*topic, "streams." + std::string(name.str()) + ".topic: " + why);
    }
  }
}

// "host", "host:port", "[v6]" or "[v6]:port"; the port defaults to 1883.
static std::optional<BrokerServer> parse_broker_server(std::string_view text, std::string& why) {
  BrokerServer s;
  std::string_view host = text, port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      why = "an IPv6 address needs its closing ']'";
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        why = "expected ':' and a port after ']'";
        return std::nullopt;
      }
      port = rest.substr(1);
      if (port.empty()) {
        why = "the port after ':' is missing";
        return std::nullopt;
      }
    }
  } else if (const size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    if (text.find(':') != colon) {
      why = "an IPv6 address goes in brackets, like \"[::1]:1883\"";
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (port.empty()) {
      why = "the port after ':' is missing";
      return std::nullopt;
    }
  }
  if (host.empty() || host.find_first_of(" \t/") != std::string_view::npos) {
    why = "not a host name or address";
    return std::nullopt;
  }
  s.host = std::string(host);
  if (!port.empty()) {
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || value > 65535) {
        why = "the port must be a number 1..65535";
        return std::nullopt;
      }
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value < 1 || value > 65535) {
      why = "the port must be a number 1..65535";
      return std::nullopt;
    }
    s.port = static_cast<uint16_t>(value);
  }
  return s;
}

void Loader::load_broker_servers(const toml::node& v, const std::string& path, BrokerConfig& b) {
  const auto* arr = v.as_array();
  if (!arr) {
    error(v, path + ": must be an array of \"host:port\" strings, got " + type_name(v));
    return;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& el = *arr->get(i);
    const std::string epath = path + "[" + std::to_string(i) + "]";
    auto text = string_value(el, epath);
    if (!text) continue;
    std::string why;
    auto server = parse_broker_server(*text, why);
    if (!server) {
      error(el, epath + ": " + why + ", got " + quote(*text));
      continue;
    }
    if (std::find(b.servers.begin(), b.servers.end(), *server) != b.servers.end()) {
      error(el, epath + ": " + quote(*text) + " is listed twice");
      continue;
    }
    b.servers.push_back(std::move(*server));
  }
}

void Loader::load_broker(const toml::table& t, BrokerConfig& b) {
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string path = "broker." + key;
    if (load_broker_limit(key, v, path, b)) continue;
    if (key == "host") {
      assign(b.host, string_value(v, path));
    } else if (key == "port") {
      assign(b.port, int_as<uint16_t>(v, path, 1, 65535));
    } else if (key == "servers") {
      load_broker_servers(v, path, b);
    } else if (key == "client_id") {
      assign(b.client_id, string_value(v, path));
    } else if (key == "username") {
      assign(b.username, string_value(v, path, true));
    } else if (key == "password") {
      assign(b.password, string_value(v, path, true));
    } else if (key == "password_file") {
      assign(b.password_file, string_value(v, path));
    } else if (key == "reconnect_min") {
      assign(b.reconnect_min, duration_value(v, path));
    } else if (key == "reconnect_max") {
      assign(b.reconnect_max, duration_value(v, path));
    } else if (key == "tls") {
      if (const auto* tt = table_value(v, path)) {
        b.tls.emplace();
        load_tls(*tt, *b.tls);
      }
    } else {
      unknown(k, "in [broker]");
    }
  }

  if (const toml::node* servers = t.get("servers")) {
    for (const char* single : {"host", "port"})
      if (const toml::node* n = t.get(single))
        error(*n, std::string("broker.") + single + ": cannot be combined with broker.servers; list every node in servers");
    if (!b.servers.empty()) {
      b.host = b.servers.front().host;
      b.port = b.servers.front().port;
    } else if (servers->is_array() && servers->as_array()->empty()) {
      error(*servers, "broker.servers: needs at least one \"host:port\"");
    }
  }

  const toml::node* pw = t.get("password");
  const toml::node* pw_file = t.get("password_file");
  if (pw && pw_file) {
    error(*pw_file, "broker.password_file: cannot be combined with broker.password; set one of them");
  } else if (pw_file && !b.password_file.empty()) {
    std::string text, why;
    if (!read_regular_file(b.password_file, kMaxSecretBytes, text, why)) {
      error(*pw_file, "broker.password_file: cannot read " + quote(b.password_file) + ": " + why);
    } else if (text.find('\0') != std::string::npos) {
      error(*pw_file, "broker.password_file: " + quote(b.password_file) + " contains a NUL byte");
    } else {
      // Editors and `echo` add a final newline that is not part of the secret.
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
      b.password = std::move(text);
    }
  }
  // MQTT 3.1.1 (3.1.2.9) sends a password only together with a user name.
  if ((pw_file || !b.password.empty()) && b.username.empty()) {
    error(pw_file ? *pw_file : *pw, std::string(pw_file ? "broker.password_file" : "broker.password") +
                                        ": needs broker.username (MQTT sends a password only with a user name)");
  }
  if (b.reconnect_min > b.reconnect_max) {
    const toml::node* at = t.get("reconnect_min");
    if (!at) at = t.get("reconnect_max");
    error(*at, "broker.reconnect_min: must be <= broker.reconnect_max (" +
                   std::to_string(b.reconnect_min.count()) + " ms > " +
                   std::to_string(b.reconnect_max.count()) + " ms)");
  }
}

// The [broker] keys that uplink's [mqtt] section also has. False for any other key.
bool Loader::load_broker_limit(const std::string& key, const toml::node& v, const std::string& path, BrokerConfig& b) {
  if (key == "keep_alive") {
    // MQTT carries keep alive as a 16-bit number of seconds; 0 disables it.
    assign(b.keep_alive, int_as<int>(v, path, 0, 65535));
  } else if (key == "max_inflight") {
    assign(b.max_inflight, int_as<int>(v, path, 1, 65535));
  } else {
    return false;
  }
  return true;
}

// uplink's [mqtt]: its max_inflight and keep_alive mean what [broker]'s do; the rest are
// limits of uplink's own MQTT client.
void Loader::load_uplink_mqtt(const toml::table& t, const toml::table& root, BrokerConfig& b) {
  const toml::table* broker = root["broker"].as_table();
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string path = "mqtt." + key_part(key);
    if (key == "max_inflight" || key == "keep_alive") {
      if (broker && broker->contains(key)) {
        error(k.source(), path + ": broker." + key + " is set as well; keep one of them (edgelink reads [broker])");
        continue;
      }
      warn(k, path + ": uplink's name for broker." + key + "; read as broker." + key);
      load_broker_limit(key, v, path, b);
    } else if (key == "max_packet_size" || key == "network_timeout") {
      warn(k, path + ": uplink key ignored (edgelink's MQTT client sets its own limits)");
    } else {
      unknown(k, "in [mqtt]");
    }
  }
}

void Loader::load_tls(const toml::table& t, TlsConfig& tls) {
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string path = "broker.tls." + key;
    std::string* file = key == "ca_file" ? &tls.ca_file
                        : key == "cert_file" ? &tls.cert_file
                        : key == "key_file" ? &tls.key_file
                                            : nullptr;
    if (file) {
      auto value = string_value(v, path);
      std::string why;
      // Checked now so a missing certificate is a start-up error, not a reconnect loop.
      if (value && !check_readable(*value, why)) {
        error(v, path + ": cannot read " + quote(*value) + ": " + why);
      }
      assign(*file, std::move(value));
    } else if (key == "verify") {
      assign(tls.verify, bool_value(v, path));
    } else {
      unknown(k, "in [broker.tls]");
    }
  }
  const toml::node* cert = t.get("cert_file");
  const toml::node* key = t.get("key_file");
  if (cert && !key) error(*cert, "broker.tls.cert_file: needs broker.tls.key_file as well");
  if (key && !cert) error(*key, "broker.tls.key_file: needs broker.tls.cert_file as well");
}

void Loader::load_apps(const toml::table& t, std::map<std::string, AppConfig>& apps) {
  for (auto&& [k, v] : t) {
    const std::string name(k.str());
    const std::string path = "tcpapps." + key_part(name);
    if (!valid_name(name)) {
      error(k.source(), path + ": app name must be 1..64 letters, digits, '_' or '-'");
      continue;
    }
    const auto* at = table_value(v, path);
    if (!at) continue;
    AppConfig app;
    app.name = name;
    for (auto&& [ak, av] : *at) {
      const std::string key(ak.str());
      const std::string kpath = path + "." + key;
      if (key == "port") {
        assign(app.port, int_as<uint16_t>(av, kpath, 1, 65535));
      } else if (key == "bind") {
        assign(app.bind, bind_value(av, kpath));
      } else if (key == "actions") {
        load_actions(av, kpath, app);
      } else if (key == "max_line_bytes") {
        assign(app.max_line_bytes, int_as<size_t>(av, kpath, 1, kInt64Max));
      } else if (key == "upload_port" || key == "max_uploads" || key == "upload_routes") {
        load_app_upload_key(key, av, kpath, app);
      } else {
        unknown(ak, "in [" + path + "]");
      }
    }
    const toml::node* port_node = at->get("port");
    if (!port_node) missing(*at, path + ".port");
    if (port_node && app.port != 0) add_site(path, *at, *port_node, app.port, app.bind);
    if (const toml::node* up = at->get("upload_port"); up && app.upload_port != 0)
      add_site(path, *at, *up, app.upload_port, app.bind, "upload_port");
    apps[name] = std::move(app);
  }
}

void Loader::load_actions(const toml::node& n, const std::string& path, AppConfig& app) {
  const auto* arr = n.as_array();
  if (!arr) {
    error(n, path + ": must be an array of tables like { name = \"reboot\", timeout = 60 }, got " +
                 type_name(n));
    return;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& el = *arr->get(i);
    const std::string epath = path + "[" + std::to_string(i) + "]";
    const auto* et = el.as_table();
    if (!et) {
      error(el, epath + ": must be a table like { name = \"reboot\", timeout = 60 }, got " + type_name(el));
      continue;
    }
    ActionConfig action;
    for (auto&& [k, v] : *et) {
      const std::string key(k.str());
      if (key == "name") {
        auto name = string_value(v, epath + ".name");
        if (name) action_sites_.push_back({*name, app.name, &v});
        assign(action.name, std::move(name));
      } else if (key == "timeout") {
        assign(action.timeout, duration_value(v, epath + ".timeout"));
      } else {
        unknown(k, "in " + epath);
      }
    }
    if (!et->contains("name")) missing(*et, epath + ".name");
    app.actions.push_back(std::move(action));
  }
}

void Loader::load_streams(const toml::table& t, Config& c) {
  for (auto&& [k, v] : t) {
    const std::string name(k.str());
    const std::string path = "streams." + key_part(name);
    if (name == kActionStatusStream) {
      const auto* st = table_value(v, path);
      if (!st) continue;
      for (auto&& [sk, sv] : *st) {
        const std::string key(sk.str());
        if (key == "topic") {
          assign(c.streams[name].topic, topic_value(sv, path + ".topic", true, false));
        } else if (std::find(std::begin(kUplinkActionStatusKeys), std::end(kUplinkActionStatusKeys), key) !=
                   std::end(kUplinkActionStatusKeys)) {
          warn(sk, path + "." + key + ": uplink key ignored (edgelink publishes each action status at once, " +
                       "ahead of all data, and spools it like any batch)");
        } else {
          error(sk.source(), path + "." + key_part(key) +
                                 ": cannot be set; the built-in action_status stream takes only 'topic'");
        }
      }
      continue;
    }
    ++configured_streams_;
    if (!valid_name(name)) {
      error(k.source(), path + ": stream name must be 1..64 letters, digits, '_' or '-'");
      continue;
    }
    const auto* st = table_value(v, path);
    if (!st) continue;
    StreamConfig s = name == kUploadsStream ? uploads_stream_defaults(c) : c.default_stream;
    s.name = name;
    load_stream(*st, path, s);
    // uplink's rule: only the default topic of a compressed stream gets "/lz4"; a
    // configured topic (uplink's examples spell out ".../jsonarray/lz4") is used as written.
    if (s.compression == Compression::Lz4 && !st->contains("topic")) s.topic += "/lz4";
    c.streams[name] = std::move(s);
  }
}

void Loader::load_stream(const toml::table& t, const std::string& path, StreamConfig& s) {
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string kpath = path + "." + key;
    if (key == "topic") {
      assign(s.topic, topic_value(v, kpath, true, false));
    } else if (key == "batch_size") {
      assign(s.batch_size, int_as<size_t>(v, kpath, 1, 1000000));
    } else if (key == "flush_period") {
      assign(s.flush_period, duration_value(v, kpath));
    } else if (key == "compression") {
      assign(s.compression, enum_value<Compression>(v, kpath, {{"Lz4", Compression::Lz4},
                                                              {"Disabled", Compression::Disabled}}));
    } else if (key == "priority") {
      assign(s.priority, int_as<int>(v, kpath, 0, 255));
    } else if (key == "persistence") {
      warn(k, kpath + ": uplink key ignored (edgelink keeps unsent batches of every stream in its one disk spool, " +
                  "see [spool])");
    } else {
      unknown(k, "in [" + path + "]");
    }
  }
}

void Loader::load_spool(const toml::table& t, SpoolConfig& s) {
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string path = "spool." + key;
    if (key == "max_bytes") {
      assign(s.max_bytes, int_as<uint64_t>(v, path, 1, kInt64Max));
    } else if (key == "max_memory_bytes") {
      assign(s.max_memory_bytes, int_as<uint64_t>(v, path, 1, kInt64Max));
    } else if (key == "fsync") {
      assign(s.fsync, enum_value<FsyncPolicy>(v, path, {{"batch", FsyncPolicy::Batch},
                                                        {"interval", FsyncPolicy::Interval},
                                                        {"never", FsyncPolicy::Never}}));
    } else {
      unknown(k, "in [spool]");
    }
  }
}

void Loader::load_log(const toml::table& t, LogConfig& l) {
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    if (key == "level") {
      assign(l.level, enum_value<LogLevel>(v, "log.level", {{"trace", LogLevel::Trace},
                                                           {"debug", LogLevel::Debug},
                                                           {"info", LogLevel::Info},
                                                           {"warn", LogLevel::Warn},
                                                           {"error", LogLevel::Error}}));
    } else {
      unknown(k, "in [log]");
    }
  }
}

}  // namespace config_detail

namespace {
using namespace config_detail;

bool issue_before(const ConfigIssue& a, const ConfigIssue& b) {
  return a.line != b.line ? a.line < b.line : a.column < b.column;
}
}  // namespace

LoadResult load_config_string(std::string_view text, const std::string& source_name) {
  LoadResult result;
  Config config;
  config.source = source_name;
  config_detail::Loader loader(source_name, result);
  if (auto stray = stray_non_ascii(text)) {
    result.errors.push_back({source_name, stray->line, stray->column,
                             std::string("TOML syntax error: ") + stray->what});
    return result;
  }
  try {
    const toml::table root = toml::parse(text, source_name);
    loader.load(root, config);
  } catch (const toml::parse_error& e) {
    loader.error(e.source(), "TOML syntax error: " + std::string(e.description()));
    return result;
  }
  // Messages come out in file order although tables are walked in key order.
  std::stable_sort(result.errors.begin(), result.errors.end(), issue_before);
  std::stable_sort(result.unknown_keys.begin(), result.unknown_keys.end(), issue_before);
  std::stable_sort(result.warnings.begin(), result.warnings.end(), issue_before);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

LoadResult load_config_file(const std::string& path) {
  std::string text, why;
  if (!read_regular_file(path, kMaxConfigBytes, text, why)) {
    LoadResult result;
    result.errors.push_back({path, 0, 0, "cannot read " + path + ": " + why});
    return result;
  }
  return load_config_string(text, path);
}

}  // namespace edgelink

// Printing the effective configuration (`edgelink check`), topic expansion and the
// small to_string helpers of config.hpp. Written by hand rather than through toml++'s
// formatter so the output keeps the file's section order instead of alphabetical order.

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "edgelink/config/config.hpp"

namespace edgelink {
namespace {

// A TOML basic string: every control character escaped so any value prints validly.
std::string str(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\u%04x", c);
          out += hex;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

// A table-header key: bare when TOML allows it, quoted otherwise.
std::string key(std::string_view k) {
  bool bare = !k.empty();
  for (const char c : k) {
    bare = bare && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-');
  }
  return bare ? std::string(k) : str(k);
}

// Whole seconds print as integers; otherwise a float with millisecond precision,
// which the loader rounds back to the same millisecond count.
std::string seconds(Millis ms) {
  const long long v = ms.count();
  if (v % 1000 == 0) return std::to_string(v / 1000);
  const long long mag = std::llabs(v);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s%lld.%03lld", v < 0 ? "-" : "", mag / 1000, mag % 1000);
  std::string out = buf;
  while (out.back() == '0') out.pop_back();
  return out;
}

// Shortest form that reads back as the same double ("0.5", "10", "1e-05": all TOML).
std::string number(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

const char* to_string(Compression c) { return c == Compression::Lz4 ? "Lz4" : "Disabled"; }

}  // namespace

const char* to_string(FsyncPolicy f) {
  switch (f) {
    case FsyncPolicy::Batch: return "batch";
    case FsyncPolicy::Interval: return "interval";
    case FsyncPolicy::Never: return "never";
  }
  return "batch";
}

std::string to_toml(const Config& c) {
  std::ostringstream o;
  std::string origin = c.source;
  for (char& ch : origin) {
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';  // keep the comment one line
  }
  o << "# effective edgelink configuration" << (origin.empty() ? "" : " of " + origin)
    << " (defaults filled in)\n";
  o << "project_id = " << str(c.project_id) << "\n";
  o << "device_id = " << str(c.device_id) << "\n";
  o << "persistence_path = " << str(c.persistence_path) << "\n";
  o << "actions_subscription = " << str(c.actions_subscription) << "\n";
  o << "presence_topic = " << str(c.presence_topic) << "\n";
  o << "max_stream_count = " << c.max_stream_count << "\n";
  o << "shutdown_timeout = " << seconds(c.shutdown_timeout) << "\n";
  o << "prioritize_live_data = " << (c.prioritize_live_data ? "true" : "false") << "\n";

  const BrokerConfig& b = c.broker;
  o << "\n[broker]\n";
  if (b.servers.size() > 1) {
    o << "servers = [";
    for (size_t i = 0; i < b.servers.size(); ++i) {
      const BrokerServer& sv = b.servers[i];
      const std::string host = sv.host.find(':') != std::string::npos ? "[" + sv.host + "]" : sv.host;
      o << (i ? ", " : "") << str(host + ":" + std::to_string(sv.port));
    }
    o << "]\n";
  } else {
    o << "host = " << str(b.host) << "\n";
    o << "port = " << b.port << "\n";
  }
  o << "client_id = " << str(b.client_id) << "\n";
  if (!b.username.empty()) o << "username = " << str(b.username) << "\n";
  // The secret never reaches the output. With password_file the password came from
  // that file, so printing the file alone keeps the output loadable.
  if (!b.password_file.empty()) {
    o << "password_file = " << str(b.password_file) << "\n";
  } else if (!b.password.empty()) {
    o << "password = \"<redacted>\"\n";
  }
  o << "keep_alive = " << b.keep_alive << "\n";
  o << "max_inflight = " << b.max_inflight << "\n";
  o << "reconnect_min = " << seconds(b.reconnect_min) << "\n";
  o << "reconnect_max = " << seconds(b.reconnect_max) << "\n";
  if (b.tls) {
    o << "\n[broker.tls]\n";
    if (!b.tls->ca_file.empty()) o << "ca_file = " << str(b.tls->ca_file) << "\n";
    if (!b.tls->cert_file.empty()) o << "cert_file = " << str(b.tls->cert_file) << "\n";
    if (!b.tls->key_file.empty()) o << "key_file = " << str(b.tls->key_file) << "\n";
    o << "verify = " << (b.tls->verify ? "true" : "false") << "\n";
  }

  for (const auto& [name, app] : c.tcpapps) {
    o << "\n[tcpapps." << key(name) << "]\n";
    o << "port = " << app.port << "\n";
    o << "bind = " << str(app.bind) << "\n";
    o << "max_line_bytes = " << app.max_line_bytes << "\n";
    o << "actions = [";
    for (size_t i = 0; i < app.actions.size(); ++i) {
      o << (i ? ", " : "") << "{ name = " << str(app.actions[i].name)
        << ", timeout = " << seconds(app.actions[i].timeout) << " }";
    }
    o << "]\n";
    if (app.upload_routes.empty()) continue;
    if (app.upload_port) o << "upload_port = " << app.upload_port << "\n";
    o << "max_uploads = " << app.max_uploads << "\n";
    for (const UploadRouteConfig& r : app.upload_routes) {
      o << "\n[[tcpapps." << key(name) << ".upload_routes]]\n";
      o << "route = " << str(r.route) << "\n";
      o << "kind = \"" << to_string(r.kind) << "\"\n";
      o << "max_total_bytes = " << r.max_total_bytes << "\n";
      if (r.kind == UploadKind::File) {
        o << "dir = " << str(upload_dir(c, name, r)) << "\n";
      } else if (r.kind == UploadKind::Datastream) {
        if (!r.mime_type.empty()) o << "mime_type = " << str(r.mime_type) << "\n";
      } else {
        o << "file_type = \"" << to_string(r.file_type) << "\"\n";
        if (!r.endpoint.empty()) o << "endpoint = " << str(r.endpoint) << "\n";
        if (!r.file_name.empty()) o << "file_name = " << str(r.file_name) << "\n";
      }
    }
  }

  if (std::any_of(c.tcpapps.begin(), c.tcpapps.end(), [](const auto& a) { return !a.second.upload_routes.empty(); })) {
    const XStreamConfig& x = c.xstream;
    o << "\n[xstream]\n";
    o << "max_spool_bytes = " << x.max_spool_bytes << "\n";
    o << "min_free_bytes = " << x.min_free_bytes << "\n";
    o << "key_ttl = " << seconds(x.key_ttl) << "\n";
    o << "raw_idle_timeout = " << seconds(x.raw_idle_timeout) << "\n";
    o << "sync_bytes = " << x.sync_bytes << "\n";
    o << "device_restarts = " << x.device_restarts << "\n";
  }

  {
    const DataStreamsConfig& d = c.datastreams;
    o << "\n[datastreams]\n";
    o << "topic = " << str(d.topic) << "\n";
    o << "topic_in = " << str(d.topic_in) << "\n";
    o << "chunk_size = " << d.chunk_size << "\n";
    o << "chunk_delay_ms = " << d.chunk_delay.count() << "\n";
    o << "max_writers = " << d.max_writers << "\n";
    o << "max_readers = " << d.max_readers << "\n";
    o << "max_streams_per_topic = " << d.max_streams_per_topic << "\n";
    o << "idle_timeout = " << seconds(d.idle_timeout) << "\n";
    o << "max_buffered_bytes_per_stream = " << d.max_buffered_bytes_per_stream << "\n";
    o << "priority = " << d.priority << "\n";
  }

  for (const auto& [name, s] : c.streams) {
    o << "\n[streams." << key(name) << "]\n";
    o << "topic = " << str(s.topic) << "\n";
    if (name == kActionStatusStream) continue;  // only its topic is configurable
    o << "batch_size = " << s.batch_size << "\n";
    o << "flush_period = " << seconds(s.flush_period) << "\n";
    o << "compression = \"" << to_string(s.compression) << "\"\n";
    o << "priority = " << s.priority << "\n";
  }

  for (const auto& [name, d] : c.devices) {
    o << "\n[devices." << key(name) << "]\n";
    o << "transport = \"" << to_string(d.transport) << "\"\n";
    if (d.transport == DeviceTransport::Ble) {
      if (!d.ble_address.empty()) o << "address = " << str(d.ble_address) << "\n";
      if (!d.ble_name.empty()) o << "name = " << str(d.ble_name) << "\n";
      o << "adapter = " << str(d.ble_adapter) << "\n";
      // Empty: the primary Raft service UUID or the alternative one (ricrest.md §3.5).
      if (!d.ble_service_uuid.empty()) o << "service_uuid = " << str(d.ble_service_uuid) << "\n";
      o << "command_uuid = " << str(d.ble_command_uuid) << "\n";
      o << "response_uuid = " << str(d.ble_response_uuid) << "\n";
      o << "max_write = " << d.ble_max_write << "\n";
    } else {
      o << "path = " << str(d.path) << "\n";
      o << "baud = " << d.baud << "\n";
    }
    o << "framing = \"" << to_string(d.framing) << "\"\n";
    o << "max_frame_bytes = " << d.max_frame_bytes << "\n";
    // The loader refuses log_stream on an HDLC port, where it would mean nothing.
    if (d.framing == DeviceFraming::Console) o << "log_stream = " << str(d.log_stream) << "\n";
    for (const DevicePublishConfig& p : d.publish) {
      o << "\n[[devices." << key(name) << ".publish]]\n";
      o << "topic = " << str(p.topic) << "\n";
      o << "stream = " << str(p.stream) << "\n";
      o << "rate_hz = " << number(p.rate_hz) << "\n";
      o << "min_ms = " << p.min_ms << "\n";
      o << "trigger = " << str(p.trigger) << "\n";
    }
  }

  for (const auto& [name, r] : c.rtstreams) {
    o << "\n[rtstreams." << key(name) << "]\n";
    o << "device = " << str(r.device) << "\n";
    o << "endpoint = " << str(r.endpoint) << "\n";
    o << "file_name = " << str(r.file_name) << "\n";
    if (r.port != 0) {
      o << "port = " << r.port << "\n";
      o << "bind = " << str(r.bind) << "\n";
    }
    o << "mqtt = " << (r.mqtt ? "true" : "false") << "\n";
  }

  if (c.http.enabled) {
    const HttpConfig& h = c.http;
    o << "\n[http]\n";
    o << "bind = " << str(h.bind) << "\n";
    if (!h.jwt_public_key.empty()) o << "jwt_public_key = " << str(h.jwt_public_key) << "\n";
    if (!h.cors_allow_origin.empty()) o << "cors_allow_origin = " << str(h.cors_allow_origin) << "\n";
    o << "copost_timeout = " << seconds(h.copost_timeout) << "\n";
    o << "obget_establish_timeout = " << seconds(h.obget_establish_timeout) << "\n";
    o << "max_coposts_per_device = " << h.max_coposts_per_device << "\n";
    o << "max_observers_per_device = " << h.max_observers_per_device << "\n";
    o << "observer_queue_frames = " << h.observer_queue_frames << "\n";
    o << "max_connections = " << h.max_connections << "\n";
  }

  if (c.rtio.enabled) {
    const RtioConfig& r = c.rtio;
    o << "\n[rtio]\n";
    o << "bind = " << str(r.bind) << "\n";
    if (!r.secrets_file.empty()) o << "secrets_file = " << str(r.secrets_file) << "\n";
    o << "verify_timeout = " << seconds(r.verify_timeout) << "\n";
    o << "service_timeout = " << seconds(r.service_timeout) << "\n";
    o << "max_connections = " << r.max_connections << "\n";
    // Secrets never reach the output. Ids from secrets_file are not listed: the printed
    // secrets_file brings them back. The placeholder is itself a valid secret (24
    // printable characters) so the output still loads.
    bool header = false;
    for (const auto& [id, secret] : r.devices) {
      if (r.file_devices.count(id)) continue;
      if (!header) o << "\n[rtio.devices]\n";
      header = true;
      o << key(id) << " = \"<redacted-device-secret>\"\n";
    }
    for (const RtioServiceConfig& s : r.services) {
      o << "\n[[rtio.device_services]]\n";
      o << "uri = " << str(s.uri) << "\n";
      o << "topic = " << str(s.topic) << "\n";
    }
  }

  o << "\n[spool]\n";
  o << "max_bytes = " << c.spool.max_bytes << "\n";
  o << "max_memory_bytes = " << c.spool.max_memory_bytes << "\n";
  o << "fsync = \"" << to_string(c.spool.fsync) << "\"\n";

  o << "\n[log]\n";
  o << "level = \"" << to_string(c.log.level) << "\"\n";
  return o.str();
}

namespace {

// One left-to-right pass: a substituted value is never scanned again, so an id that
// happens to contain "{stream}" stays literal. Without an RTIO id its placeholder stays.
std::string expand(std::string_view tmpl, const Config& config, std::string_view stream,
                   const std::string_view* rtio_device_id) {
  std::string out;
  out.reserve(tmpl.size() + 32);
  size_t i = 0;
  while (i < tmpl.size()) {
    const std::string_view rest = tmpl.substr(i);
    if (rest.starts_with("{tenant_id}")) {
      out += config.project_id;
      i += 11;
    } else if (rest.starts_with("{device_id}")) {
      out += config.device_id;
      i += 11;
    } else if (rest.starts_with("{stream}")) {
      out += stream;
      i += 8;
    } else if (rtio_device_id && rest.starts_with("{rtio_device_id}")) {
      out += *rtio_device_id;
      i += 16;
    } else {
      out += tmpl[i++];
    }
  }
  return out;
}

}  // namespace

std::string expand_topic(std::string_view tmpl, const Config& config, std::string_view stream) {
  return expand(tmpl, config, stream, nullptr);
}

std::string expand_topic(std::string_view tmpl, const Config& config, std::string_view stream,
                         std::string_view rtio_device_id) {
  return expand(tmpl, config, stream, &rtio_device_id);
}

const char* to_string(LogLevel level) {
  switch (level) {
    case LogLevel::Trace: return "trace";
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
  }
  return "info";
}

const char* to_string(DeviceTransport transport) {
  switch (transport) {
    case DeviceTransport::Serial: return "serial";
    case DeviceTransport::Ble: return "ble";
  }
  return "serial";
}

const char* to_string(DeviceFraming framing) {
  return framing == DeviceFraming::Console ? "console" : "hdlc";
}

std::string ConfigIssue::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  return out + ": " + message;
}

const char* to_string(UploadKind kind) {
  switch (kind) {
    case UploadKind::File: return "file";
    case UploadKind::Datastream: return "datastream";
    case UploadKind::Device: return "device";
  }
  return "?";
}

const char* to_string(DeviceFileType type) { return type == DeviceFileType::Fs ? "fs" : "rtstream"; }

std::string upload_dir(const Config& c, const std::string& app, const UploadRouteConfig& route) {
  if (!route.dir.empty()) return route.dir;
  return c.persistence_path + "/uploads/" + app;
}

}  // namespace edgelink

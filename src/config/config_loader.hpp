#pragma once
// The Loader that walks the parsed TOML tree (config.cpp: top level, broker, apps,
// streams, spool, log; config_devices.cpp: [devices] and [rtstreams]). Internal to
// src/config; config_http.cpp: [http]; config_rtio.cpp: [rtio].

#include <array>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "config_reader.hpp"
#include "edgelink/config/config.hpp"

namespace edgelink::config_detail {

// A listening address (of a tcpapp or an rtstream) normalised for conflict checks.
struct AppSite {
  std::string label;  // "tcpapps.NAME" or "rtstreams.NAME", for messages
  std::string key = "port";  // or "upload_port"
  toml::source_position pos;
  const toml::node* port_node = nullptr;
  std::array<unsigned char, 16> addr{};
  bool any = false;  // 0.0.0.0 or :: also takes every other address on that port
  uint16_t port = 0;
  std::string bind;
};

// Where a device or rtstream value was set, for checks across sections.
struct ValueSite {
  std::string owner;  // device or rtstream name
  std::string value;
  const toml::node* node = nullptr;
};

inline bool before(const ValueSite& a, const ValueSite& b) { return a.node->source().begin < b.node->source().begin; }

// An RTIO device id and where it was given: an [rtio.devices] key, or a line of the
// secrets file (then `where` is the secrets_file value).
struct RtioIdSite {
  std::string id;
  toml::source_region where;
  std::string file_line;  // "FILE:LINE"; empty for [rtio.devices]
};

// A [[rtio.device_services]] uri already read.
struct ServiceUriSite {
  std::string uri;
  std::string path;  // "rtio.device_services[N]"
};

struct ActionSite {
  std::string name;
  std::string app;
  const toml::node* node = nullptr;
};

class Loader : public ValueReader {
 public:
  using ValueReader::ValueReader;

  void load(const toml::table& root, Config& c);

 private:
  void load_broker(const toml::table& t, BrokerConfig& b);
  void warn_dots(const toml::table& root);
  void load_broker_servers(const toml::node& v, const std::string& path, BrokerConfig& b);
  bool load_broker_limit(const std::string& key, const toml::node& v, const std::string& path, BrokerConfig& b);
  void load_uplink_mqtt(const toml::table& t, const toml::table& root, BrokerConfig& b);
  void load_tls(const toml::table& t, TlsConfig& tls);
  void load_apps(const toml::table& t, std::map<std::string, AppConfig>& apps);
  void load_actions(const toml::node& n, const std::string& path, AppConfig& app);
  void load_streams(const toml::table& t, Config& c);
  void load_stream(const toml::table& t, const std::string& path, StreamConfig& s);
  void load_devices(const toml::table& t, std::map<std::string, DeviceConfig>& devices);
  void load_device_publish(const toml::node& n, const std::string& path, DeviceConfig& d);
  void load_rtstreams(const toml::table& t, std::map<std::string, RtStreamConfig>& rtstreams);
  std::optional<std::string> bind_value(const toml::node& n, const std::string& path);
  std::optional<std::string> session_text(const toml::node& n, const std::string& path);
  void add_site(const std::string& label, const toml::table& at, const toml::node& port_node, uint16_t port,
                const std::string& bind, const char* key = "port");
  void check_sites();
  void check_devices();
  void load_http(const toml::table& t, HttpConfig& h);
  // A listener's "ADDRESS:PORT" ([http] and [rtio] bind); sets the outputs only when valid.
  bool listen_value(const toml::node& v, const std::string& path, uint16_t example_port, std::string& bind,
                    std::string& host, uint16_t& port, bool& loopback);
  // Seconds from 0.1 to 3600 ([http] and [rtio] timeouts).
  std::optional<Millis> timeout_value(const toml::node& v, const std::string& path);
  void load_rtio(const toml::table& t, RtioConfig& r);
  void load_rtio_devices(const toml::table& t, RtioConfig& r);
  void load_rtio_secrets_file(const toml::node& v, const toml::key& k, RtioConfig& r);
  void load_rtio_services(const toml::node& n, RtioConfig& r);
  std::optional<std::string> service_uri(const toml::node& v, const std::string& path,
                                         const std::vector<ServiceUriSite>& seen);
  void check_rtio(const Config& c);
  void check_reserved_devices(const toml::table& root, const Config& c);
  void load_xstream(const toml::table& t, XStreamConfig& x);
  void load_datastreams(const toml::table& t, DataStreamsConfig& d);
  void load_app_upload_key(const std::string& key, const toml::node& v, const std::string& path, AppConfig& app);
  void load_upload_routes(const toml::node& n, const std::string& path, AppConfig& app);
  void check_upload_devices();
  void load_spool(const toml::table& t, SpoolConfig& s);
  void load_log(const toml::table& t, LogConfig& l);

  std::vector<AppSite> sites_;
  std::vector<ActionSite> action_sites_;
  size_t configured_streams_ = 0;
  // Devices whose table was read (even with bad values): an rtstream naming one of
  // them gets no follow-on "unknown device" error.
  std::set<std::string> device_names_;
  std::vector<ValueSite> device_paths_;      // owner = device
  std::vector<ValueSite> rtstream_devices_;  // owner = rtstream, value = device
  std::vector<ValueSite> rtstream_files_;    // owner = rtstream, value = device + '\0' + file_name
  std::vector<RtioIdSite> rtio_ids_;
  std::vector<ValueSite> upload_devices_;  // owner = the route's key path, value = its device  // well-formed RTIO ids, for the checks across sections
};

}  // namespace edgelink::config_detail

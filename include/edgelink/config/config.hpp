#pragma once
// Configuration as plain data. toml++ fills these structs in load_config(); one
// validation pass checks them before any socket opens (spec/config.md).

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace edgelink {

using Millis = std::chrono::milliseconds;

enum class LogLevel { Trace, Debug, Info, Warn, Error };
enum class Compression { Disabled, Lz4 };
enum class FsyncPolicy { Batch, Interval, Never };
// How edgelink reaches a device. Only serial exists; "ble" is recognised and refused
// with "not supported yet" until the BLE transport lands.
enum class DeviceTransport { Serial, Ble };
// The byte format on the port (ricrest.md §3.3): plain HDLC on a CommandSerial UART,
// or OverAscii-wrapped HDLC mixed with log text on a SerialConsole port.
enum class DeviceFraming { Hdlc, Console };

struct TlsConfig {
  std::string ca_file;    // empty: the system's default CA store
  std::string cert_file;  // client certificate (optional, with key_file)
  std::string key_file;
  bool verify = true;     // server certificate and host name verification
  bool operator==(const TlsConfig&) const = default;
};

struct BrokerServer {
  std::string host;
  uint16_t port = 1883;
  bool operator==(const BrokerServer&) const = default;
};

struct BrokerConfig {
  std::string host = "localhost";
  uint16_t port = 1883;
  // [broker] servers = ["host:port", ...]: the nodes of one broker (a cluster), tried in
  // order; on a loss the next one. Always at least one: host/port alone make a list of
  // one, and host/port mirror servers[0].
  std::vector<BrokerServer> servers;
  std::string client_id;      // empty in the file: defaults to device_id
  std::string username;
  std::string password;       // from `password` or read from `password_file`
  std::string password_file;
  int keep_alive = 30;        // seconds
  int max_inflight = 100;     // QoS 1 publishes awaiting PUBACK
  Millis reconnect_min{1000};
  Millis reconnect_max{60000};
  std::optional<TlsConfig> tls;
  bool operator==(const BrokerConfig&) const = default;
};

struct ActionConfig {
  std::string name;
  Millis timeout{60000};
  bool operator==(const ActionConfig&) const = default;
};

// [[tcpapps.NAME.upload_routes]] (spec/xstream.md §1, §7).
enum class UploadKind { File, Datastream, Device };
enum class DeviceFileType { Rtstream, Fs };
// Device positions are 24 bits (xstream.md §7.3).
inline constexpr uint64_t kMaxDeviceUploadBytes = 16777215;

struct UploadRouteConfig {
  std::string route;  // "/upload-file", "/ds/<topic>", "/device/<name>/file"
  UploadKind kind = UploadKind::File;
  uint64_t max_total_bytes = 1ull << 30;  // device routes: at most kMaxDeviceUploadBytes
  std::string dir;                        // file: "" = <persistence_path>/uploads/<app>
  std::string mime_type;                  // datastream
  std::string device;                     // device: <name> of the route
  DeviceFileType file_type = DeviceFileType::Rtstream;
  std::string endpoint;                   // device rtstream endpoint; "" = the request must name one
  std::string file_name;                  // device file name when the request gives no "name"
  bool operator==(const UploadRouteConfig&) const = default;
};

struct AppConfig {
  std::string name;
  std::string bind = "127.0.0.1";
  uint16_t port = 0;
  std::vector<ActionConfig> actions;
  size_t max_line_bytes = 1 << 20;
  uint16_t upload_port = 0;  // 0 = none: stream requests on `port` only
  uint32_t max_uploads = 4;  // uploads at once, both ports together
  std::vector<UploadRouteConfig> upload_routes;
  bool operator==(const AppConfig&) const = default;
};

// [xstream] (spec/xstream.md §1).
struct XStreamConfig {
  uint64_t max_spool_bytes = 1ull << 30;
  uint64_t min_free_bytes = 64ull << 20;
  Millis key_ttl{86400 * 1000};
  Millis raw_idle_timeout{30000};
  uint64_t sync_bytes = 1 << 20;
  uint32_t device_restarts = 3;
  bool operator==(const XStreamConfig&) const = default;
};

// [datastreams] (spec/datastreams.md §1): chunked data streams to and from the cloud.
struct DataStreamsConfig {
  std::string topic = "/tenants/{tenant_id}/devices/{device_id}/datastreams/{topic}";
  std::string topic_in = "/tenants/{tenant_id}/devices/{device_id}/datastreams-in/{topic}";
  uint32_t chunk_size = 15000;        // 256..65536
  Millis chunk_delay{100};            // 0..10 s (chunk_delay_ms)
  uint32_t max_writers = 4;           // 1..32, daemon-wide
  uint32_t max_readers = 4;           // 1..32
  uint32_t max_streams_per_topic = 1; // 1..32
  Millis idle_timeout{30000};         // 1..3600 s
  uint64_t max_buffered_bytes_per_stream = 8ull << 20;  // 64 KiB..1 GiB
  int priority = 0;                   // 0..255
  bool operator==(const DataStreamsConfig&) const = default;
};

// The built-in stream that tells the cloud what arrived (xstream.md §8); it exists when an
// app has upload routes or [streams.uploads] is configured.
inline constexpr const char* kUploadsStream = "uploads";

// Priority of the built-in action_status stream: above every configurable 0..255.
inline constexpr int kActionStatusPriority = 256;
inline constexpr const char* kActionStatusStream = "action_status";

struct StreamConfig {
  std::string name;
  std::string topic;          // template, expanded with expand_topic()
  size_t batch_size = 100;
  Millis flush_period{60000};
  Compression compression = Compression::Disabled;
  int priority = 0;           // 0..255 from the file; kActionStatusPriority for statuses
  bool operator==(const StreamConfig&) const = default;
};

inline constexpr const char* kDefaultDeviceLogStream = "device_log";
// The device refuses a 5th session (ricrest.md §5.1), so more rtstreams per device
// could never all be open.
inline constexpr size_t kMaxRtStreamsPerDevice = 4;
// [devices.X] max_frame_bytes: below 512 even a `v` reply could be refused; above
// 16 MiB a noisy port could make edgelink hold that much per device waiting for a flag.
// The default fits boards with PSRAM (their REST text alone may be 200000 bytes);
// config stays data, so this is not the HDLC decoder's constant.
inline constexpr size_t kDefaultDeviceFrameBytes = 256 * 1024;
inline constexpr size_t kMinDeviceFrameBytes = 512;
inline constexpr size_t kMaxDeviceFrameBytes = 16 * 1024 * 1024;

// [devices.NAME]: one Raft MCU.
// One [[devices.NAME.publish]] entry.
struct DevicePublishConfig {
  std::string topic;   // the device's topic name, e.g. "devjson" (1..64 of [A-Za-z0-9._-])
  std::string stream;  // the edgelink stream its points go to
  double rate_hz = 1.0;                  // > 0 and <= 1000
  uint32_t min_ms = 50;                  // the device's minimum gap between publishes
  std::string trigger = "timeorchange";  // passed to the device as is
  bool operator==(const DevicePublishConfig&) const = default;
};

struct DeviceConfig {
  std::string name;
  DeviceTransport transport = DeviceTransport::Serial;
  // Absolute path of the serial port (a /dev/serial/by-id/... symlink is best). It need
  // not exist at check time: the transport reopens it on a backoff.
  std::string path;
  uint32_t baud = 921600;  // CommandSerial default; SerialConsole ports usually run 115200
  DeviceFraming framing = DeviceFraming::Hdlc;
  // Console framing only: each log line the device prints becomes a data point on this
  // stream. Shared by every console device unless set; points name their device.
  std::string log_stream = kDefaultDeviceLogStream;
  // The longest frame accepted from the device (unescaped bytes, CRC included); longer
  // ones are dropped, counted and logged. The device sizes frames to its messages, so
  // this must cover its largest reply or stream block (§3.1).
  size_t max_frame_bytes = kDefaultDeviceFrameBytes;
  // [[devices.NAME.publish]]: StatePublisher topics subscribed after every link-up and
  // reset, each publish forwarded as a data point on `stream` (ricrest.md §7.3–§7.4).
  std::vector<DevicePublishConfig> publish;
  // transport = "ble" (ricrest.md §3.5): the device by address or by advertised name
  // (exactly one), on a BlueZ adapter; the UUIDs default to the Raft service's.
  std::string ble_address;  // "AA:BB:CC:DD:EE:FF", upper case
  std::string ble_name;
  std::string ble_adapter = "hci0";
  std::string ble_service_uuid;   // empty: either Raft service UUID
  std::string ble_command_uuid = "aa76677e-9cfd-4626-a510-0d305be57c8e";
  std::string ble_response_uuid = "aa76677e-9cfd-4626-a510-0d305be57c8f";
  size_t ble_max_write = 512;  // bytes per GATT write, also bounded by the ATT MTU - 3
  bool operator==(const DeviceConfig&) const = default;
};

// [rtstreams.NAME]: one rtstream session on a device endpoint, bridged to a local TCP
// port and/or MQTT topics.
struct RtStreamConfig {
  std::string name;
  std::string device;     // a key of Config::devices
  std::string endpoint;   // the device's REST endpoint, e.g. "upyconsole"
  std::string file_name;  // ufStart fileName (the session name); defaults to endpoint
  uint16_t port = 0;      // local TCP listener; 0 = none
  std::string bind = "127.0.0.1";  // only used with a port
  bool mqtt = false;      // bridge to MQTT topics as well
  bool operator==(const RtStreamConfig&) const = default;
};

// [http] (spec/http-api.md §1). No section: no listener.
struct HttpConfig {
  bool enabled = false;  // true when [http] is present, unless it says enabled = false
  std::string bind = "127.0.0.1:17917";  // as written; host and port below
  std::string host = "127.0.0.1";        // without IPv6 brackets
  uint16_t port = 17917;
  std::string jwt_public_key;     // PEM file; set: device requests need a JWT (§4.8)
  std::string cors_allow_origin;  // "" adds no CORS headers
  Millis copost_timeout{10000};
  Millis obget_establish_timeout{20000};
  uint32_t max_coposts_per_device = 4;
  uint32_t max_observers_per_device = 8;
  uint32_t observer_queue_frames = 16;
  uint32_t max_connections = 64;
  bool operator==(const HttpConfig&) const = default;
};

// [[rtio.device_services]]: a device copost to `uri` is published to `topic`.
struct RtioServiceConfig {
  std::string uri;    // 5..128 bytes, unique (and unique CRC-32)
  std::string topic;  // may use {tenant_id}, {device_id} (the gateway), {rtio_device_id}
  bool operator==(const RtioServiceConfig&) const = default;
};

// [rtio] (spec/http-api.md §6.1): the RTIO device-access server. No section: none.
struct RtioConfig {
  bool enabled = false;  // true when [rtio] is present
  std::string bind = "127.0.0.1:17017";
  std::string host = "127.0.0.1";
  uint16_t port = 17017;
  std::string secrets_file;  // lines "<device id>:<secret>"; read at load time
  Millis verify_timeout{15000};
  Millis service_timeout{5000};
  uint32_t max_connections = 64;
  // Device id (36 of [A-Za-z0-9-]) -> secret (24..64 printable ASCII), from
  // [rtio.devices] and secrets_file together.
  std::map<std::string, std::string> devices;
  // The ids of `devices` that came from secrets_file: to_toml prints the file, not them.
  std::set<std::string> file_devices;
  std::vector<RtioServiceConfig> services;
  bool operator==(const RtioConfig&) const = default;
};

struct SpoolConfig {
  uint64_t max_bytes = 256ull << 20;
  uint64_t max_memory_bytes = 16ull << 20;
  FsyncPolicy fsync = FsyncPolicy::Batch;
};

struct LogConfig {
  LogLevel level = LogLevel::Info;
};

struct Config {
  std::string source;  // path the config was read from (for messages)
  std::string project_id;
  std::string device_id;
  std::string persistence_path = "/var/lib/edgelink";
  std::string actions_subscription = "/tenants/{tenant_id}/devices/{device_id}/actions";
  std::string presence_topic = "/tenants/{tenant_id}/devices/{device_id}/presence";
  size_t max_stream_count = 64;   // configured + dynamic streams, action_status excluded
  Millis shutdown_timeout{5000};  // SIGTERM: how long to wait for PUBACKs
  // uplink's key. false: every stream's batches reach the broker in order, spooled ones
  // first; true: live batches may overtake spooled ones of the same stream.
  bool prioritize_live_data = false;
  BrokerConfig broker;
  std::map<std::string, AppConfig> tcpapps;
  // Configured streams. Always holds "action_status" (batch_size 1, priority
  // kActionStatusPriority, topic ".../action/status" unless [streams.action_status] sets it).
  std::map<std::string, StreamConfig> streams;
  StreamConfig default_stream;                  // template for dynamic streams (name empty)
  std::map<std::string, DeviceConfig> devices;
  std::map<std::string, RtStreamConfig> rtstreams;  // each names a configured device
  HttpConfig http;
  RtioConfig rtio;
  XStreamConfig xstream;
  DataStreamsConfig datastreams;
  SpoolConfig spool;
  LogConfig log;
};

struct ConfigIssue {
  std::string file;
  int line = 0;    // 1-based; 0 when no position is known
  int column = 0;
  std::string message;
  // "FILE:LINE:COL: message" (or "FILE: message" without a position)
  std::string to_string() const;
};

struct LoadResult {
  std::optional<Config> config;         // set only when errors is empty
  std::vector<ConfigIssue> errors;      // parse and validation errors
  std::vector<ConfigIssue> unknown_keys;  // errors in `check`, warnings in `run`
  // uplink keys and sections that edgelink reads under another name or does without:
  // warnings in `check` and `run` alike, so a pasted uplink file still loads.
  std::vector<ConfigIssue> warnings;
};

// Parse and validate. Never throws for bad input; every problem is in the result.
LoadResult load_config_file(const std::string& path);
LoadResult load_config_string(std::string_view text, const std::string& source_name);

// The effective configuration (defaults filled in) as TOML, for `edgelink check`.
std::string to_toml(const Config& config);

// "{tenant_id}" -> project_id, "{device_id}" -> device_id, "{stream}" -> stream.
// "{rtio_device_id}" is left as written (the loader allows it only in RTIO topics).
std::string expand_topic(std::string_view topic_template, const Config& config,
                         std::string_view stream = {});
// The same, for [[rtio.device_services]] topics: "{rtio_device_id}" -> rtio_device_id too.
std::string expand_topic(std::string_view topic_template, const Config& config, std::string_view stream,
                         std::string_view rtio_device_id);

const char* to_string(LogLevel level);
const char* to_string(FsyncPolicy policy);  // "batch", "interval", "never"
const char* to_string(DeviceTransport transport);
const char* to_string(DeviceFraming framing);
const char* to_string(UploadKind kind);          // "file", "datastream", "device"
const char* to_string(DeviceFileType type);      // "rtstream", "fs"
// Where a file route stores its files: `dir`, else <persistence_path>/uploads/<app>.
std::string upload_dir(const Config& c, const std::string& app, const UploadRouteConfig& route);

}  // namespace edgelink

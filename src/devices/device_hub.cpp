#include "edgelink/devices/device_hub.hpp"

#include <rapidjson/writer.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <utility>

#include "device_hub_state.hpp"
#include "edgelink/devices/ble_transport.hpp"
#include "edgelink/devices/hdlc.hpp"
#include "edgelink/devices/ricrest.hpp"
#include "edgelink/util/wall_clock.hpp"

namespace edgelink::devices {
namespace {
constexpr char kLog[] = "devices";
using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// Bytes a TCP client or MQTT may queue for the device before the bridge stops reading
// (or an MQTT message is dropped). Small on purpose: an rtstream is a console, and
// whatever is queued is typed-ahead input the device sees seconds later (64 KiB is
// about 3 s at 921600 baud).
constexpr size_t kStreamQueueBytes = 64 * 1024;

// §6.1.3: a block counts as accepted when no complaint came within the window, so the
// window must cover the block's time on the wire, the blocks of the device's other
// streams queued ahead of it, the reply's way back and the device's turnaround (USB
// latency, the firmware's main loop, and the gateway's own scheduling when it is busy).
// A complaint that misses the window is a silent loss (counted as DataLost), so this
// errs on the generous side: 20 ms. With 10 ms, a CPU-starved gateway (tested with a
// Python simulator and two busy loops on 2 cores) already saw late BUSY replies.
// A reply that has reached the port but whose read the starved loop has not run yet
// is not late: every tick takes in what the port holds first (poll_input below).
constexpr std::chrono::milliseconds kDeviceTurnaround{20};
// A complaint that still comes late (a slow link, a loaded host, a device busier than
// that) doubles the device's turnaround, for all its streams, up to this (RtStream::
// on_late_notice). It costs throughput (one block per window), so it is bounded: a
// 250 ms turnaround makes a 115200-baud window about 335 ms instead of 105 ms.
constexpr std::chrono::milliseconds kDeviceTurnaroundMax{250};

uint64_t wall_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

}  // namespace

// BLE (ricrest.md §3.5) has no baud rate: a block crosses as several GATT writes through
// bluetoothd and the radio, and the complaint comes back as a notification, each way
// one or more connection intervals (7.5..50 ms, the central's choice). 50 ms covers a
// round trip at a 25 ms interval; a slower link's late complaints grow the window as a
// slow serial port's do.
constexpr std::chrono::milliseconds kBleRoundTrip{50};

std::chrono::milliseconds rtstream_block_window(const DeviceConfig& dc, size_t streams) {
  if (dc.transport == edgelink::DeviceTransport::Ble) return kBleRoundTrip + kDeviceTurnaround;
  // A FILEBLOCK frame: payload plus ~12 bytes of header, element, position and CRC;
  // OverAscii doubles it on a console port; 10 bits per byte on a UART.
  const double frame_bytes =
      static_cast<double>(kMaxBlockPayload + 12) * (dc.framing == DeviceFraming::Console ? 2 : 1);
  const double wire_ms = frame_bytes * 10.0 * 1000.0 / std::max<double>(dc.baud, 1);
  const double ahead = static_cast<double>(std::max<size_t>(streams, 1) + 1);  // ours, the others', the reply
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(wire_ms * ahead))) + kDeviceTurnaround;
}

// ESP-IDF colours its log lines (ESC [ 0;32m ... ESC [ 0m); a data point must stay
// valid JSON whatever bytes the device prints.
std::string clean_log_text(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  auto cont = [&](size_t k) { return i + k < in.size() && (static_cast<uint8_t>(in[i + k]) & 0xC0) == 0x80; };
  while (i < in.size()) {
    const auto c = static_cast<uint8_t>(in[i]);
    if (c == 0x1B) {  // CSI: ESC [ parameters final-byte (0x40..0x7E)
      size_t j = i + 1;
      if (j < in.size() && in[j] == '[') {
        ++j;
        while (j < in.size() && !(static_cast<uint8_t>(in[j]) >= 0x40 && static_cast<uint8_t>(in[j]) <= 0x7E)) ++j;
        i = std::min(j + 1, in.size());
      } else {
        i = j;
      }
      continue;
    }
    if (c < 0x80) {
      out += (c < 0x20 && c != '\t') || c == 0x7F ? ' ' : static_cast<char>(c);
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    }
    bool ok = n > 0;
    for (size_t k = 1; ok && k <= n; ++k) {
      ok = cont(k);
      if (ok) cp = (cp << 6) | (static_cast<uint8_t>(in[i + k]) & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
    if (ok &&
        ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))))
      ok = false;
    if (ok) {
      out.append(in.substr(i, n + 1));
      i += n + 1;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

namespace {
RtStreamOptions stream_options(const DeviceConfig& dc, size_t streams) {
  RtStreamOptions o;
  o.max_queue_bytes = kStreamQueueBytes;
  o.block_window = rtstream_block_window(dc, streams);
  o.turnaround = kDeviceTurnaround;  // the part of block_window that late complaints grow
  o.turnaround_max = kDeviceTurnaroundMax;
  return o;
}
}  // namespace

DeviceHub::DeviceHub(asio::io_context& io, const Config& config, DeviceHubCallbacks callbacks,
                     std::chrono::milliseconds quiet_close)
    : io_(io), config_(config), callbacks_(std::move(callbacks)), quiet_close_(quiet_close) {
  for (const auto& [name, dc] : config_.devices) devices_[name] = build(dc, streams_of(config_, name));
}

DeviceHub::~DeviceHub() {
  for (auto& [name, d] : devices_) shutdown(*d);
}

std::vector<RtStreamConfig> DeviceHub::streams_of(const Config& config, const std::string& device) const {
  std::vector<RtStreamConfig> out;
  for (const auto& [name, rc] : config.rtstreams)
    if (rc.device == device) out.push_back(rc);
  return out;
}

std::shared_ptr<DeviceHub::Device> DeviceHub::build(const DeviceConfig& dc,
                                                    const std::vector<RtStreamConfig>& streams) {
  auto d = std::make_shared<Device>();
  d->self = d;
  d->config = dc;
  d->stream_configs = streams;
  Device* raw = d.get();

  auto on_bytes = [this, raw](std::span<const uint8_t> bytes) {
    if (raw->stopped) return;
    raw->sessions->on_bytes(bytes);
    check_resets(*raw);
    if (!raw->ticking) rearm(*raw);  // on_due rearms once it is done
  };
  auto on_state = [this, raw](bool up, std::error_code ec) { on_transport(*raw, up, ec); };
  if (dc.transport == edgelink::DeviceTransport::Ble) {
    BleOptions bo;
    bo.target.adapter = dc.ble_adapter;
    bo.target.address = dc.ble_address;
    bo.target.name = dc.ble_name;
    bo.target.service_uuid = dc.ble_service_uuid;
    bo.target.command_uuid = dc.ble_command_uuid;
    bo.target.response_uuid = dc.ble_response_uuid;
    bo.max_write = dc.ble_max_write;
    // §3.5: bledisconnect before a deliberate disconnect (an unnumbered URL request).
    std::vector<uint8_t> message;
    if (encode_url(message, 0, "bledisconnect")) hdlc_encode(message, bo.goodbye);
    d->transport = std::make_unique<BleTransport>(io_, std::move(bo), on_bytes, on_state);
  } else {
    SerialOptions so;
    so.path = dc.path;
    so.baud = dc.baud;
    d->transport = std::make_unique<SerialTransport>(io_, so, on_bytes, on_state);
  }

  DeviceLinkOptions lo;
  lo.framing = dc.framing == DeviceFraming::Console ? Framing::Console : Framing::Hdlc;
  lo.hdlc.max_frame_len = dc.max_frame_bytes;
  DeviceLink::Handlers h;
  h.send = [raw](std::span<const uint8_t> frame) { return raw->transport->write(frame); };
  // A tick first takes what the port already holds: a BUSY waiting there when a block
  // window ends must count for that block (§6.1.3).
  h.poll_input = [raw] { return raw->transport->deliver_pending(); };
  h.on_log_line = [this, raw](std::string_view line, bool truncated) { on_log_line(*raw, line, truncated); };
  h.on_report = [raw](const Report&, std::string_view json) { log::info(kLog, raw->config.name, ": report ", json); };
  h.on_publish = [this, raw](std::span<const uint8_t> payload) { on_publish(*raw, payload); };
  h.on_oversize_frame = [this, raw](size_t len) {
    log::limited(limiter_, "oversize:" + raw->config.name, LogLevel::Warn, kLog, raw->config.name,
                 ": dropped a frame of ", len, " bytes from the device, above max_frame_bytes = ",
                 raw->config.max_frame_bytes, " (raise it if the device sends messages this large)");
  };
  h.on_notice = [this, raw](const DeviceReply& reply, std::string_view json) {
    if (raw->push && raw->push->on_notice(reply)) {
      if (!raw->ticking) rearm(*raw);
      return;
    }
    log::limited(limiter_, "notice:" + raw->config.name, LogLevel::Debug, kLog, raw->config.name,
                 ": notice for no stream: ", json);
  };
  DeviceSessionsOptions opt;
  opt.max_sessions = kMaxRtStreamsPerDevice;
  opt.stream = stream_options(dc, std::max<size_t>(streams.size(), 1));
  d->sessions = std::make_unique<DeviceSessions>(lo, std::move(h), opt);
  d->timer = std::make_unique<DeadlineTimer>(io_, [this, raw] {
    if (!raw->stopped) on_due(*raw);
  });

  for (const RtStreamConfig& rc : streams) {
    auto s = std::make_unique<Stream>();
    Stream* sp = s.get();
    s->config = rc;
    RtStreamCallbacks cb;
    cb.on_data = [this, raw, sp](std::span<const uint8_t> bytes) { on_stream_data(*raw, *sp, bytes); };
    cb.on_writable = [sp] {
      if (sp->bridge) sp->bridge->resume_input();
    };
    cb.on_event = [this, raw, sp](RtStreamEvent e, std::string_view detail) {
      const std::string who = raw->config.name + "/" + sp->config.name;
      // HTTP observers wait for the session, and end when it cannot be (re)opened.
      if (e == RtStreamEvent::Opened) on_stream_opened(*raw, *sp);
      if (e == RtStreamEvent::OpenFailed) on_stream_open_failed(*raw, *sp);
      switch (e) {
        case RtStreamEvent::Opened:
        case RtStreamEvent::Closed:
          log::info(kLog, who, ": rtstream ", to_string(e), detail.empty() ? "" : " (", detail,
                    detail.empty() ? "" : ")");
          break;
        case RtStreamEvent::DataLost:
          ++sp->data_lost;
          log::limited(limiter_, "lost:" + who, LogLevel::Warn, kLog, who, ": rtstream data lost: ", detail);
          break;
        case RtStreamEvent::WindowGrown:
          log::limited(limiter_, "window:" + who, LogLevel::Warn, kLog, who, ": rtstream ", detail);
          break;
        case RtStreamEvent::OpenFailed:
        case RtStreamEvent::SessionLost:
          log::limited(limiter_, "event:" + who, LogLevel::Warn, kLog, who, ": rtstream ", to_string(e), ": ", detail);
          break;
      }
    };
    const std::string file_name = rc.file_name.empty() ? rc.endpoint : rc.file_name;
    s->rt = d->sessions->add_stream(rc.name, rc.endpoint, file_name, std::move(cb));
    if (!s->rt) {
      // Config validation allows at most 4 streams and unique file names per device.
      log::error(kLog, dc.name, ": rtstream ", rc.name, " refused by the session router");
      continue;
    }
    if (rc.mqtt) {
      const std::string base = expand_topic("/tenants/{tenant_id}/devices/{device_id}/rtstreams/", config_) + rc.name;
      s->in_topic = base + "/in";
      s->out_topic = base + "/out";
    }
    if (rc.port) {
      RtStreamBridgeOptions bo;
      bo.name = rc.name;
      bo.bind = rc.bind;
      bo.port = rc.port;
      s->bridge = std::make_unique<RtStreamBridge>(
          io_, bo,
          [this, raw, sp](std::span<const uint8_t> bytes) {
            if (raw->stopped) return true;  // the bridge is closing anyway
            const bool taken = sp->rt->write_all(bytes);
            rearm(*raw);
            return taken;
          },
          [this, raw, sp](bool in_use) {
            if (raw->stopped) return;
            const TimePoint now = Clock::now();
            sp->client = in_use;
            if (in_use)
              sp->rt->open(now);
            else
              sp->last_input = now;  // the quiet period starts
            log::info(kLog, raw->config.name, "/", sp->config.name, ": TCP client ",
                      in_use ? "connected" : "disconnected");
            rearm(*raw);
          });
    }
    d->streams.push_back(std::move(s));
  }
  add_mappings(*d);
  return d;
}

std::vector<std::string> DeviceHub::open(Device& d) {
  std::vector<std::string> errors;
  for (auto& s : d.streams) {
    if (!s->bridge) continue;
    s->bridge_error = s->bridge->open();
    if (!s->bridge_error.empty()) errors.push_back(s->bridge_error);
  }
  log::info(kLog, d.config.name, ": ", d.transport->where(),
            d.config.transport == edgelink::DeviceTransport::Serial ? " at " + std::to_string(d.config.baud) + " baud" : "", ", ",
            to_string(d.config.framing),
            " framing, ", d.streams.size(), " rtstreams");
  if (std::error_code ec = d.transport->start())
    errors.push_back("device " + d.config.name + ": " + d.transport->where() + ": " + ec.message());
  rearm(d);
  return errors;
}

std::vector<std::string> DeviceHub::start() {
  running_ = true;
  std::vector<std::string> errors;
  for (auto& [name, d] : devices_)
    for (auto& e : open(*d)) errors.push_back(std::move(e));
  if (!errors.empty()) stop();
  return errors;
}

void DeviceHub::shutdown(Device& d) {
  if (d.stopped) return;
  for (auto& s : d.streams) {
    if (!s->out_buf.empty()) flush_mqtt(*s);
    if (s->bridge) s->bridge->close();
  }
  end_push(d, "stopped");
  d.stopped = true;
  d.timer->cancel();
  d.transport->stop();
  abandon_requests(d);
}

void DeviceHub::retire(std::shared_ptr<Device> d) {
  shutdown(*d);
  // A completion of its timer may already be queued: destroy it after that has run.
  asio::post(io_, [d = std::move(d)] {});
}

void DeviceHub::stop() {
  running_ = false;
  for (auto& [name, d] : devices_) shutdown(*d);
}

std::vector<std::string> DeviceHub::reload(const Config& config) {
  config_ = config;
  std::vector<std::string> errors;
  for (auto it = devices_.begin(); it != devices_.end();) {
    const auto next = config.devices.find(it->first);
    if (next != config.devices.end() && next->second == it->second->config &&
        streams_of(config, it->first) == it->second->stream_configs) {
      ++it;
      continue;
    }
    log::info(kLog, it->first, next == config.devices.end() ? ": removed" : ": configuration changed; restarting it");
    retire(std::move(it->second));
    it = devices_.erase(it);
  }
  for (const auto& [name, dc] : config.devices) {
    if (devices_.count(name)) continue;
    auto d = build(dc, streams_of(config, name));
    devices_[name] = d;
    if (running_)
      for (auto& e : open(*d)) errors.push_back(std::move(e));
  }
  return errors;
}

// ---- timing ------------------------------------------------------------------------

void DeviceHub::rearm(Device& d) {
  if (d.stopped) return;
  std::optional<TimePoint> due = d.sessions->next_deadline();
  auto earliest = [&due](TimePoint t) {
    if (!due || t < *due) due = t;
  };
  if (d.push)
    if (auto t = d.push->next_deadline()) earliest(*t);
  for (const auto& s : d.streams) {
    if (s->flush_at) earliest(*s->flush_at);
    if (s->rt && s->rt->state() != RtStreamState::Closed && !s->in_use()) earliest(s->last_input + quiet_close_);
  }
  if (due && *due == RtStream::kDueNow) due = Clock::now();
  d.timer->arm(due);
}

void DeviceHub::on_due(Device& d) {
  const TimePoint now = Clock::now();
  d.ticking = true;
  d.sessions->on_tick(now);  // polls the port first (DeviceLink::Handlers::poll_input)
  if (d.push) d.push->on_tick(now);
  d.ticking = false;
  for (auto& s : d.streams) {
    if (s->flush_at && now >= *s->flush_at) flush_mqtt(*s);
    if (s->rt && s->rt->state() != RtStreamState::Closed && !s->in_use() && now - s->last_input >= quiet_close_) {
      ++s->quiet_closes;
      log::info(kLog, d.config.name, "/", s->config.name, ": no client, no observer and no MQTT input for ",
                quiet_close_.count(), " ms; closing the session");
      s->rt->close(now);
    }
  }
  check_resets(d);
  rearm(d);
}

// ---- device events -----------------------------------------------------------------

void DeviceHub::on_transport(Device& d, bool up, std::error_code ec) {
  if (d.stopped) return;
  d.up = up;
  d.since_ms = unix_ms();
  if (up) {
    ++d.ups;
    log::info(kLog, d.config.name, ": ", d.transport->where(), " is open");
    status_point(d, "up", "");
  } else {
    ++d.downs;
    const std::string why = d.transport->error_text();
    d.last_down = !why.empty() ? why : ec ? ec.message() : "closed";
    log::warn(kLog, d.config.name, ": ", d.transport->where(), " closed (", d.last_down, "); reopening it on a backoff");
    status_point(d, "down", d.last_down);
  }
  d.sessions->on_transport_state(up, Clock::now());
  // The reset a transport change makes is handled here, not again by check_resets (where
  // a late second one would clear subscriptions just renewed).
  d.seen_device_resets = d.sessions->counters().device_resets;
  if (up) {
    // §6.1.6: a reconnect is a reset; the subscriptions are asked for again.
    d.subs.on_device_reset();
    pump_subscriptions(d);
  } else {
    on_link_down(d);
    end_push(d, "offline");
  }
  if (!d.ticking) rearm(d);
}

void DeviceHub::check_resets(Device& d) {
  const DeviceSessionsCounters& c = d.sessions->counters();
  if (c.reset_reports > d.seen_reports) {
    d.seen_reports = c.reset_reports;
    ++d.resets;
    log::info(kLog, d.config.name, ": the device is restarting (shutdown report); its sessions reopen in about ",
              kDeviceRestartWait.count(), " ms, in its new boot");
    status_point(d, "reset", "shutdown report");
    d.subs.on_device_reset();  // asked again once the restart is over (below)
    end_push(d, "the device restarted");
  }
  if (c.id_collisions > d.seen_collisions) {
    d.seen_collisions = c.id_collisions;
    ++d.resets;
    log::warn(kLog, d.config.name, ": the device handed out a streamID still in use: it restarted; sessions reopen");
    status_point(d, "reset", "streamID reused");
  }
  if (c.device_resets > d.seen_device_resets) {
    // The end of a restart wait, a collision, or the port going: the device lost its
    // subscriptions (§7.3); pump_subscriptions waits for the port and the restart.
    d.seen_device_resets = c.device_resets;
    d.subs.on_device_reset();
    pump_subscriptions(d);
    end_push(d, "the device restarted");
  }
}

void DeviceHub::emit_point(const std::string& stream, const Device& d, uint64_t& dropped,
                           const std::function<void(PointWriter&)>& fields) {
  // Every device point: the usual sequence/timestamp, the device's name, then its own fields.
  rapidjson::StringBuffer buf;
  PointWriter w(buf);
  w.StartObject();
  w.Key("sequence");
  w.Uint(++sequences_[stream]);
  w.Key("timestamp");
  w.Uint64(wall_ms());
  w.Key("device");
  w.String(d.config.name);
  fields(w);
  w.EndObject();
  const std::string json(buf.GetString(), buf.GetSize());
  DataPoint p;
  p.stream = stream;
  p.head = json;
  if (!callbacks_.point || !callbacks_.point(p)) ++dropped;
}

void DeviceHub::status_point(Device& d, const char* state, std::string_view detail) {
  emit_point(kDeviceStatusStream, d, d.status_points_dropped, [&](PointWriter& w) {
    w.Key("state");
    w.String(state);
    w.Key("path");  // the port, or the BLE address or name
    w.String(clean_log_text(d.transport->where()));
    if (!detail.empty()) {
      w.Key("detail");
      w.String(clean_log_text(detail));
    }
  });
}

void DeviceHub::on_log_line(Device& d, std::string_view line, bool truncated) {
  if (d.stopped) return;
  ++d.log_lines;
  const std::string text = clean_log_text(line);
  log::limited(log_lines_, "log:" + d.config.name, LogLevel::Info, kLog, d.config.name, "| ", text,
               truncated ? " [cut]" : "");
  emit_point(d.config.log_stream, d, d.log_points_dropped, [&](PointWriter& w) {
    w.Key("line");
    w.String(text);
    if (truncated) {
      w.Key("truncated");
      w.Bool(true);
    }
  });
}

}  // namespace edgelink::devices

#pragma once
// Builds the components from a Config and wires them on one io_context: app server
// -> stream batcher -> outbox -> MQTT link, and MQTT actions -> router -> tracker ->
// app. Signals: SIGTERM/SIGINT stop (flush, wait a bounded time for PUBACKs, exit 0),
// SIGHUP reloads (apply the difference; keep the old config if the new one is invalid).

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio.hpp>
#include <rapidjson/document.h>

#include "edgelink/actions/action_router.hpp"
#include "edgelink/actions/action_store.hpp"
#include "edgelink/actions/action_tracker.hpp"
#include "edgelink/apps/app_server.hpp"
#include "edgelink/broker/mqtt_link.hpp"
#include "edgelink/config/config.hpp"
#include "edgelink/daemon/status_server.hpp"
#include "edgelink/datastreams/data_streams.hpp"
#include "edgelink/devices/device_hub.hpp"
#include "edgelink/http/device_router.hpp"
#include "edgelink/http/http_api.hpp"
#include "edgelink/rtio/rtio_server.hpp"
#include "edgelink/outbox/disk_spool.hpp"
#include "edgelink/outbox/outbox.hpp"
#include "edgelink/streams/stream_batcher.hpp"
#include "edgelink/uploads/upload_store.hpp"
#include "edgelink/util/deadline_timer.hpp"
#include "edgelink/util/log.hpp"

namespace edgelink {

class Daemon : public AppSink {
 public:
  Daemon(asio::io_context& io, Config config);
  ~Daemon() override;

  // Opens the listeners and starts connecting. Returns the reasons it cannot run
  // (a port in use, an unusable persistence_path); empty when it runs.
  std::vector<std::string> start();
  void shutdown();
  void reload();
  // The status model (spec/http-api.md §3.1), built once per request and shared by
  // `edgelink status` (the Unix socket), GET /status and GET /metrics (MetricsWriter),
  // so they cannot disagree. Top level: version, started, uptime_s, project_id,
  // device_id, state, broker, outbox, spool, apps{}, streams{}, devices{}, actions,
  // counters, then whatever the status hooks add.
  rapidjson::Document status_document() const;
  // status_document() as JSON text with a final newline: pretty for people (the
  // socket), compact for programs that want fewer bytes.
  std::string status_json(bool pretty = true) const;

  // Components outside the daemon's core (the HTTP API, the RTIO device server) add
  // their own sections here: each hook runs, in the order added, at the end of every
  // status_document(), on the io_context thread. A hook adds its top-level section
  // ("http":{...}, "rtio":{...}; MetricsWriter reads the keys documented in
  // metrics_writer.hpp) and may fill counters.http_status or a device's
  // coposts/observers; it must not remove or rename existing keys. Whoever adds a hook
  // must outlive the Daemon or stop capturing itself (hooks are never removed).
  using StatusHook = std::function<void(rapidjson::Document&)>;
  void add_status_hook(StatusHook hook) { status_hooks_.push_back(std::move(hook)); }

  // AppSink
  bool on_point(const std::string& app, const DataPoint& point) override;
  void on_status(const std::string& app, ActionStatus&& status) override;
  bool accepting() const override { return !stopping_ && outbox_.accepting(); }

 private:
  void on_batch(Batch&& batch);
  void on_action_message(const std::string& payload);
  void on_mqtt_message(const std::string& topic, const std::string& payload);
  void publish_raw(std::string topic, std::string payload, const std::string& stream);
  uint64_t publish_datastream(std::string topic, std::string payload, int priority);
  std::vector<std::string> extra_subscriptions() const;
  void publish_device_copost(std::string topic, std::string payload, const std::string& device,
                             std::function<void()> acked);
  bool add_point(const DataPoint& point);
  void emit_status(const std::string& action_id, std::string_view state, int progress,
                   const std::vector<std::string>& errors, std::optional<uint64_t> timestamp_ms = {});
  void expire_actions();
  // `target` ended: the cancel_actions still waiting for it end too.
  void end_cancellations(const std::string& target, bool target_completed);
  void on_acked(uint64_t id);
  void open_spool();
  void on_spool_error(const std::string& what);
  void on_spool_dropped(const std::vector<SpoolDrop>& drops);
  bool drained() const;
  void restore_actions();
  void actions_changed();
  void save_actions();
  struct Dispatch {
    std::string action_id, app, line;
  };
  void dispatch(std::vector<Dispatch> dispatches);
  void wait_for_drain();
  void wait_for_signal();
  void start_watchdog();
  void watchdog_tick();
  void log_stats();
  void schedule_stats();
  void sample_rates();

  asio::io_context& io_;
  Config config_;
  Outbox outbox_;
  std::unique_ptr<DiskSpool> spool_;  // opened by start(), under persistence_path/spool
  StreamBatcher batcher_;
  ActionRouter router_;
  ActionTracker tracker_;
  ActionCounters action_counters_;
  std::map<std::string, ActionStateCounts> actions_by_app_;  // kept for apps a reload removed
  AppServer app_server_;
  MqttLink link_;
  devices::DeviceHub devices_;  // [devices.*] and their [rtstreams.*]
  uploads::UploadStore uploads_;          // x-stream uploads of the apps
  datastreams::DataStreams datastreams_;  // [datastreams]: chunked streams, both ways
  StatusServer status_server_;
  rtio::RtioServer rtio_;  // [rtio]: RTIO SDK devices connect here
  http::DeviceRouter device_router_;  // devices_ and rtio_, for the HTTP API
  http::HttpApi http_;  // [http]: health, status, metrics, device requests
  // Device coposts of rtio_ waiting for their PUBACK, by outbox id.
  std::map<uint64_t, std::function<void()>> ack_waiters_;
  asio::signal_set signals_;
  DeadlineTimer flush_timer_, action_timer_;
  asio::steady_timer watchdog_timer_, stats_timer_, shutdown_timer_, spool_retry_timer_, rate_timer_;
  bool actions_saving_ = false, actions_dirty_ = false;  // persistence_path/actions.json
  std::vector<Dispatch> unsaved_dispatches_;  // new actions waiting for the next save
  uint64_t last_replayed_ = 0;
  double replay_rate_ = 0;  // spooled batches acknowledged per second, over the last 5 s
  TimePoint shutdown_deadline_{};
  std::chrono::microseconds watchdog_interval_{0};
  uint32_t status_sequence_ = 0;
  bool stopping_ = false;
  bool uploads_stopping_ = false;  // SIGTERM: raw phases are still answering
  log::RateLimiter limiter_;
  std::vector<StatusHook> status_hooks_;
  // `started` is wall time for people; uptime is measured on the steady clock, which an
  // NTP step at boot does not move.
  std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
  std::chrono::steady_clock::time_point started_steady_ = std::chrono::steady_clock::now();
};

// systemd's notify protocol; no-ops outside systemd.
void notify_systemd(const std::string& state);

}  // namespace edgelink

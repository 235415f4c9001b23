#include "edgelink/daemon/daemon.hpp"

#include "edgelink/http/metrics_writer.hpp"

#include <systemd/sd-daemon.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "edgelink/util/wall_clock.hpp"

namespace edgelink {
namespace {
constexpr char kLog[] = "daemon";
}  // namespace

void notify_systemd(const std::string& state) { sd_notify(0, state.c_str()); }

Daemon::Daemon(asio::io_context& io, Config config)
    : io_(io),
      config_(std::move(config)),
      outbox_(config_.spool.max_memory_bytes),
      batcher_(config_, [this](Batch&& b) { on_batch(std::move(b)); }, [] { return SteadyClock::now(); }),
      router_(config_),
      app_server_(io, *this),
      link_(io, config_, outbox_,
            MqttLink::Callbacks{
                [this](std::string topic, std::string payload) { on_mqtt_message(topic, payload); },
                [this](uint64_t id) { on_acked(id); },
                [this](bool online) { outbox_.set_online(online); },
            }),
      devices_(io, config_,
               devices::DeviceHubCallbacks{
                   [this](std::string topic, std::string payload, const std::string& stream) {
                     publish_raw(std::move(topic), std::move(payload), stream);
                   },
                   [this](const DataPoint& point) { return add_point(point); },
               }),
      uploads_(io, config_,
               uploads::UploadsCallbacks{
                   [this](const DataPoint& point) { return add_point(point); },
                   [this](const uploads::PushJob& job, uploads::PushCallbacks cb) {
                     return devices_.push_file(job, std::move(cb));
                   },
                   [this](const uploads::StreamJob& job, uploads::StreamCallbacks cb) {
                     return datastreams_.publish_file(job, std::move(cb));
                   },
               }),
      datastreams_(io, config_,
                   datastreams::DataStreamsCallbacks{
                       [this](std::string topic, std::string payload, int priority) {
                         return publish_datastream(std::move(topic), std::move(payload), priority);
                       },
                   }),
      status_server_(io, [this] { return status_json(); }),
      rtio_(io, config_,
            rtio::RtioCallbacks{
                [this] { return link_.state() == MqttLink::State::Connected; },
                [this](std::string topic, std::string payload, std::string device, std::function<void()> acked) {
                  publish_device_copost(std::move(topic), std::move(payload), device, std::move(acked));
                },
            }),
      device_router_({&devices_, &rtio_}),
      http_(io, config_.http, device_router_,
            http::HttpHooks{
                [this] { return status_json(); },
                [this] { return http::write_metrics(status_document()); },
                [this] { return stopping_; },
            }),
      signals_(io, SIGTERM, SIGINT, SIGHUP),
      flush_timer_(io,
                   [this] {
                     batcher_.flush_due(SteadyClock::now());
                     flush_timer_.arm(batcher_.next_deadline());
                   }),
      action_timer_(io, [this] { expire_actions(); }),
      watchdog_timer_(io),
      stats_timer_(io),
      shutdown_timer_(io),
      spool_retry_timer_(io),
      rate_timer_(io) {
  // Until the broker is known to be reachable, batches are written to disk.
  outbox_.set_online(false);
  outbox_.set_live_first(config_.prioritize_live_data);
  add_status_hook([this](rapidjson::Document& doc) { rtio_.write_status(doc); });
  add_status_hook([this](rapidjson::Document& doc) { http_.write_status(doc); });
  add_status_hook([this](rapidjson::Document& doc) {
    rapidjson::Value uploads(rapidjson::kObjectType);
    JsonObject o(uploads, doc.GetAllocator());
    uploads_.write_status(o);
    doc.AddMember("uploads", uploads, doc.GetAllocator());
  });
  add_status_hook([this](rapidjson::Document& doc) {
    rapidjson::Value ds(rapidjson::kObjectType);
    JsonObject o(ds, doc.GetAllocator());
    datastreams_.write_status(o);
    doc.AddMember("datastreams", ds, doc.GetAllocator());
  });
}

Daemon::~Daemon() = default;

std::vector<std::string> Daemon::start() {
  std::vector<std::string> errors;
  std::error_code fs_ec;
  std::filesystem::create_directories(config_.persistence_path, fs_ec);
  if (fs_ec)
    errors.push_back("persistence_path " + config_.persistence_path + ": cannot create it: " + fs_ec.message());
  else if (auto e = status_server_.open(status_socket_path(config_.persistence_path)); !e.empty())
    errors.push_back(e);
  if (errors.empty()) {
    open_spool();
    restore_actions();
  }
  app_server_.set_upload_handler(&uploads_);
  app_server_.set_ds_handler(&datastreams_);
  app_server_.apply(config_.tcpapps);  // a port that cannot be bound yet is retried, not fatal
  if (errors.empty())
    for (auto& e : devices_.start()) errors.push_back(std::move(e));
  if (errors.empty())
    for (auto& e : uploads_.start()) errors.push_back(std::move(e));
  if (errors.empty())
    for (auto& e : datastreams_.start()) errors.push_back(std::move(e));
  if (errors.empty())
    if (auto e = rtio_.start(); !e.empty()) errors.push_back(std::move(e));
  if (errors.empty())
    if (auto e = http_.start(); !e.empty()) errors.push_back(std::move(e));
  if (!errors.empty()) {
    app_server_.close();
    http_.stop();
    rtio_.stop();
    devices_.stop();
    status_server_.close();
    return errors;
  }
  link_.set_extra_subscriptions(extra_subscriptions());

  wait_for_signal();
  link_.start();
  start_watchdog();
  schedule_stats();
  sample_rates();
  log::info(kLog, "edgelink ", EDGELINK_VERSION, " running as ", config_.project_id, "/", config_.device_id);
  notify_systemd("READY=1\nSTATUS=running");
  return errors;
}

bool Daemon::on_point(const std::string&, const DataPoint& point) { return add_point(point); }

bool Daemon::add_point(const DataPoint& point) {
  if (!batcher_.add(point)) return false;
  if (batcher_.take_opened()) flush_timer_.arm(batcher_.next_deadline());
  return true;
}

void Daemon::on_batch(Batch&& batch) {
  OutboxEntry e;
  e.topic = std::move(batch.topic);
  e.payload = std::make_shared<const std::string>(std::move(batch.payload));
  e.stream = std::move(batch.stream);
  e.points = batch.points;
  e.priority = batch.priority;
  outbox_.push(std::move(e));
  link_.pump();
}

void Daemon::open_spool() {
  DiskSpoolOptions o;
  o.dir = (std::filesystem::path(config_.persistence_path) / "spool").string();
  o.identity = {config_.project_id, config_.device_id};
  o.max_bytes = config_.spool.max_bytes;
  o.fsync = config_.spool.fsync;
  DiskSpool::Callbacks cb;
  cb.on_recovered = [this](const SpoolRecovery& r) {
    if (r.records || r.corrupt || r.truncated || !r.quarantined.empty())
      log::info(kLog, "spool: ", r.records, " batches to replay from ", r.segments, " segments (", r.acked,
                " already acknowledged, ", r.corrupt, " corrupt and ", r.truncated, " truncated records skipped)");
    for (const auto& q : r.quarantined)
      log::warn(kLog, "spool: ", spool_->options().dir, "/quarantine/", q.file, " is kept aside, not published: ",
                q.reason);
    if (!r.dropped.empty()) on_spool_dropped(r.dropped);
    datastreams_.send_leftover_trailers();
  };
  cb.on_dropped = [this](const std::vector<SpoolDrop>& drops) { on_spool_dropped(drops); };
  cb.on_error = [this](const std::string& what) { on_spool_error(what); };
  spool_ = std::make_unique<DiskSpool>(io_, outbox_, std::move(o), std::move(cb));
  outbox_.set_spool(spool_.get(), [this] {
    link_.pump();
    // With the broker away no PUBACK comes to resume paused apps: the disk catching up does.
    if (!stopping_ && outbox_.below_low_water()) app_server_.resume();
  });
  spool_->open();
}

void Daemon::on_spool_error(const std::string& what) {
  datastreams_.send_leftover_trailers();  // a spool that cannot be read holds nothing to wait for
  log::error(kLog, "spool: ", what, "; batches stay in memory (", outbox_.max_bytes(),
             " bytes at most, then the apps are paused) until the disk works again");
  // The Outbox stopped writing; offer it the disk again later.
  spool_retry_timer_.expires_after(spool_->options().retry_interval);
  spool_retry_timer_.async_wait([this](asio::error_code ec) {
    if (ec) return;
    outbox_.set_spool_healthy(true);
    if (!stopping_) app_server_.resume();
  });
  if (outbox_.below_low_water()) app_server_.resume();
}

void Daemon::on_spool_dropped(const std::vector<SpoolDrop>& drops) {
  std::map<std::string, uint64_t> by_stream;
  for (const auto& d : drops) ++by_stream[d.stream];
  for (const auto& [stream, n] : by_stream)
    log::limited(limiter_, "spool-drop", LogLevel::Warn, kLog, "spool full (", config_.spool.max_bytes,
                 " bytes): dropped the ", n, " oldest batches of stream ", stream);
  link_.pump();
}

static std::string actions_file(const Config& config) {
  return (std::filesystem::path(config.persistence_path) / "actions.json").string();
}

void Daemon::restore_actions() {
  const std::string path = actions_file(config_);
  std::ifstream in(path, std::ios::binary);
  if (!in) return;  // none in flight at the last stop
  std::stringstream text;
  text << in.rdbuf();
  ParsedActions parsed = parse_actions(text.str());
  if (!parsed.error.empty()) {
    log::error(kLog, path, ": ", parsed.error, "; no actions restored");
    return;
  }
  if (parsed.skipped) log::warn(kLog, path, ": ", parsed.skipped, " unusable entries skipped");
  const auto now = SteadyClock::now();
  const uint64_t wall = unix_ms();
  for (const PersistedAction& a : parsed.actions) {
    auto left = std::chrono::milliseconds(a.deadline_ms > wall ? a.deadline_ms - wall : 0);
    tracker_.add(TrackedAction{a.id, a.name, a.app, now + left, {}});
    log::info(kLog, "action ", a.id, " (", a.name, ") for ", a.app, " still in flight; deadline in ", left.count(),
              " ms");
  }
  if (!parsed.actions.empty()) {
    action_counters_.restored += parsed.actions.size();
    action_timer_.arm(tracker_.next_deadline());
  }
}

void Daemon::actions_changed() {
  actions_dirty_ = true;
  if (!actions_saving_) save_actions();
}

void Daemon::dispatch(std::vector<Dispatch> dispatches) {
  for (auto& d : dispatches) {
    if (!tracker_.in_flight(d.action_id)) continue;  // timed out meanwhile: reported already
    emit_status(d.action_id, "Received", 0, {});
    app_server_.deliver_action(d.app, d.action_id, std::move(d.line));
  }
}

void Daemon::save_actions() {
  if (!spool_) {
    dispatch(std::exchange(unsaved_dispatches_, {}));
    return;
  }
  actions_dirty_ = false;
  actions_saving_ = true;
  std::vector<PersistedAction> list;
  const auto now = SteadyClock::now();
  const uint64_t wall = unix_ms();
  for (const TrackedAction& a : tracker_.active()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(a.deadline - now).count();
    list.push_back({a.id, a.name, a.app, wall + static_cast<uint64_t>(std::max<int64_t>(left, 0))});
  }
  // Written on the disk worker: every change is on disk before the next one is written.
  spool_->save_file(actions_file(config_), encode_actions(list),
                    [this, waiting = std::exchange(unsaved_dispatches_, {})](std::string error) mutable {
                      actions_saving_ = false;
                      if (!error.empty())
                        log::limited(limiter_, "actions-save", LogLevel::Error, kLog,
                                     "in-flight actions not saved: ", error);
                      dispatch(std::move(waiting));  // a failed save is logged, not a reason to hold actions
                      if (actions_dirty_) save_actions();
                    });
}

void Daemon::on_acked(uint64_t id) {
  if (outbox_.below_low_water()) app_server_.resume();
  datastreams_.on_acked(id);
  if (ack_waiters_.empty()) return;
  if (auto it = ack_waiters_.find(id); it != ack_waiters_.end()) {
    auto acked = std::move(it->second);
    ack_waiters_.erase(it);
    acked();
  }
}

// An RTIO device's copost (spec/http-api.md §6.5): QoS 1 through the outbox at
// action-status priority; the device is answered when the PUBACK comes (RtioServer
// answers InternalServerError itself after service_timeout). An entry acknowledged only
// after a reconnect still finds its waiter, which then does nothing.
void Daemon::publish_device_copost(std::string topic, std::string payload, const std::string& device,
                                   std::function<void()> acked) {
  OutboxEntry e;
  e.topic = std::move(topic);
  e.payload = std::make_shared<const std::string>(std::move(payload));
  e.stream = "rtio/" + device;
  e.priority = kActionStatusPriority;
  const uint64_t id = outbox_.push(std::move(e));
  ack_waiters_[id] = std::move(acked);
  link_.pump();
}

void Daemon::emit_status(const std::string& action_id, std::string_view state, int progress,
                         const std::vector<std::string>& errors, std::optional<uint64_t> timestamp_ms) {
  const StreamConfig& sc = config_.streams.at(kActionStatusStream);
  OutboxEntry e;
  e.topic = expand_topic(sc.topic, config_, kActionStatusStream);
  e.payload = std::make_shared<const std::string>(
      status_payload(++status_sequence_, timestamp_ms.value_or(unix_ms()), action_id, state, progress, errors));
  e.stream = kActionStatusStream;
  e.points = 1;
  e.priority = kActionStatusPriority;
  outbox_.push(std::move(e));
  link_.pump();
}

void Daemon::on_mqtt_message(const std::string& topic, const std::string& payload) {
  if (devices_.on_mqtt_message(topic, payload)) return;
  if (datastreams_.on_mqtt_message(topic, payload)) return;
  on_action_message(payload);
}

// A data stream's header, chunk or trailer (datastreams.md §3): QoS 1 through the outbox,
// whose FIFO per priority keeps each stream's order across reconnects and the spool.
// The device rtstreams' /in topics and the data streams' inbound wildcard.
std::vector<std::string> Daemon::extra_subscriptions() const {
  auto topics = devices_.subscriptions();
  topics.push_back(datastreams_.subscription());
  return topics;
}

uint64_t Daemon::publish_datastream(std::string topic, std::string payload, int priority) {
  OutboxEntry e;
  e.topic = std::move(topic);
  e.payload = std::make_shared<const std::string>(std::move(payload));
  e.stream = "datastreams";
  e.priority = priority;
  const uint64_t id = outbox_.push(std::move(e));
  link_.pump();
  return id;
}

void Daemon::publish_raw(std::string topic, std::string payload, const std::string& stream) {
  // rtstream output (a console): interactive, so ahead of every data stream; action
  // statuses stay first.
  OutboxEntry e;
  e.topic = std::move(topic);
  e.payload = std::make_shared<const std::string>(std::move(payload));
  e.stream = "rtstream/" + stream;
  e.priority = kActionStatusPriority - 1;
  outbox_.push(std::move(e));
  link_.pump();
}

void Daemon::on_action_message(const std::string& payload) {
  if (stopping_) return;  // not acknowledged to the app; the cloud sees no Received
  auto parsed = parse_action(payload);
  if (auto* bad = std::get_if<InvalidAction>(&parsed)) {
    ++action_counters_.invalid;
    log::limited(limiter_, "invalid-action", LogLevel::Warn, kLog, "invalid action",
                 bad->id.empty() ? "" : " " + bad->id, ": ", bad->why);
    if (!bad->id.empty()) emit_status(bad->id, "Failed", 0, {"Invalid action: " + bad->why});
    return;
  }
  CloudAction& action = std::get<CloudAction>(parsed);
  if (tracker_.in_flight(action.id)) {
    ++action_counters_.duplicates;
    log::info(kLog, "action ", action.id, " is already in flight; redelivery ignored");
    return;
  }
  TrackedAction tracked{action.id, action.name, "", {}, ""};
  if (action.name == kCancelActionName) {
    auto routed = route_cancel(action, tracker_);
    if (auto* why = std::get_if<std::string>(&routed)) {
      ++action_counters_.cancels_refused;
      log::warn(kLog, "action ", action.id, ": ", *why);
      emit_status(action.id, "Failed", 0, {*why});
      return;
    }
    auto& cancel = std::get<CancelRoute>(routed);
    tracked.app = std::move(cancel.app);
    tracked.deadline = cancel.deadline;
    tracked.cancels = std::move(cancel.target);
  } else if (const ActionRouter::Route* route = router_.route(action.name)) {
    tracked.app = route->app;
    tracked.deadline = SteadyClock::now() + route->timeout;
  } else {
    ++action_counters_.unknown_name;
    log::warn(kLog, "action ", action.id, ": no app handles '", action.name, "'");
    emit_status(action.id, "Failed", 0, {"edgelink isn't configured to handle actions of type " + action.name});
    return;
  }
  ++action_counters_.received;
  ++actions_by_app_[tracked.app].received;
  log::info(kLog, "action ", action.id, " (", action.name, tracked.cancels.empty() ? "" : " of ", tracked.cancels,
            ") -> ", tracked.app);
  // "Received" and the delivery wait until the action is on disk: once the cloud has
  // seen Received, a restart still knows the action and its deadline.
  unsaved_dispatches_.push_back({action.id, tracked.app, action_line(action)});
  tracker_.add(std::move(tracked));
  action_timer_.arm(tracker_.next_deadline());
  actions_changed();
}

void Daemon::end_cancellations(const std::string& target, bool target_completed) {
  // uplink's outcome for a cancel_action its app did not answer before the target ended:
  // the target failed (or timed out), so it was stopped; or it completed, so it was not.
  auto ended = tracker_.take_cancellations(target);
  for (const TrackedAction& c : ended) {
    if (target_completed) {
      ++action_counters_.failed;
      ++actions_by_app_[c.app].failed;
      emit_status(c.id, "Failed", 100, {"Cancellation failed: action " + target + " completed"});
    } else {
      ++action_counters_.completed;
      ++actions_by_app_[c.app].completed;
      emit_status(c.id, "Completed", 100, {});
    }
  }
  if (!ended.empty()) actions_changed();
}

void Daemon::expire_actions() {
  auto expired = tracker_.expire(SteadyClock::now());
  if (!expired.empty()) actions_changed();
  for (const TrackedAction& a : expired) {
    ++action_counters_.timed_out;
    ++actions_by_app_[a.app].timed_out;
    log::warn(kLog, "action ", a.id, " (", a.name, ") timed out");
    app_server_.cancel_action(a.app, a.id);
    emit_status(a.id, "Failed", 100, {"Action timed out"});
    end_cancellations(a.id, false);
  }
  action_timer_.arm(tracker_.next_deadline());
}

void Daemon::on_status(const std::string& app, ActionStatus&& status) {
  bool terminal = status.terminal();
  if (tracker_.on_status(status.action_id, terminal) == ActionTracker::Verdict::Late) {
    ++action_counters_.late_statuses;
    log::limited(limiter_, "late-status", LogLevel::Warn, kLog, app, ": status '", status.state, "' for action ",
                 status.action_id, " dropped: it already timed out or finished");
    return;
  }
  ++action_counters_.statuses;
  if (terminal) {
    const bool completed = status.state == "Completed";
    ++(completed ? action_counters_.completed : action_counters_.failed);
    ++(completed ? actions_by_app_[app].completed : actions_by_app_[app].failed);
    actions_changed();
  }
  emit_status(status.action_id, status.state, status.progress, status.errors, status.timestamp);
  if (terminal) end_cancellations(status.action_id, status.state == "Completed");
}

void Daemon::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  notify_systemd("STOPPING=1");
  // Raw phases answer status 9 "shutdown" once their bytes are synced (xstream.md §10);
  // the drain below waits for that.
  datastreams_.shutdown();  // Shutdown trailers, queued before everything goes to the spool
  uploads_stopping_ = true;
  uploads_.shutdown([this] {
    uploads_stopping_ = false;
    app_server_.close();
  });
  devices_.stop();
  batcher_.flush_all();
  link_.pump();
  // Everything not acknowledged goes to disk now, so the drain below can end early
  // and a kill during it loses nothing.
  outbox_.spool_all();
  shutdown_deadline_ = SteadyClock::now() + config_.shutdown_timeout;
  log::info(kLog, "stopping: waiting up to ", config_.shutdown_timeout.count(), " ms for ",
            outbox_.queued() + outbox_.in_flight(), " publishes to be acknowledged");
  wait_for_drain();
}

bool Daemon::drained() const {
  if (uploads_stopping_) return false;
  if (outbox_.empty()) return true;
  // Everything left is on disk: waiting for PUBACKs is only worth it while connected.
  bool on_disk = outbox_.writing() == 0 && outbox_.memory_only() == 0;
  return on_disk && link_.state() != MqttLink::State::Connected;
}

void Daemon::wait_for_drain() {
  outbox_.spool_all();
  if (!drained() && SteadyClock::now() < shutdown_deadline_) {
    shutdown_timer_.expires_after(std::chrono::milliseconds(20));
    shutdown_timer_.async_wait([this](asio::error_code ec) {
      if (!ec) wait_for_drain();
    });
    return;
  }
  if (size_t lost = outbox_.memory_only() + outbox_.writing())
    log::error(kLog, lost, " publishes were neither acknowledged nor written to the spool before shutdown_timeout",
               " and are lost");
  if (size_t kept = outbox_.queued() + outbox_.in_flight() - outbox_.memory_only() - outbox_.writing())
    log::info(kLog, kept, " publishes are kept in the spool for the next start");
  spool_retry_timer_.cancel();
  flush_timer_.cancel();
  action_timer_.cancel();
  watchdog_timer_.cancel();
  stats_timer_.cancel();
  rate_timer_.cancel();
  signals_.cancel();
  status_server_.close();
  http_.stop();  // open until now: /healthz says "stopping" while the drain runs
  rtio_.stop();
  // Nothing else is pending now; keep run() going until Paho's disconnect completes.
  auto guard = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(io_.get_executor());
  link_.stop([this, guard] {
    auto finish = [this, guard] {
      log::info(kLog, "stopped");
      guard->reset();
      io_.stop();
    };
    if (spool_)
      spool_->flush(finish);  // acks of the last PUBACKs, and an fsync whatever the policy
    else
      finish();
  });
}

void Daemon::reload() {
  notify_systemd("RELOADING=1");
  log::info(kLog, "reloading ", config_.source);
  LoadResult r = load_config_file(config_.source);
  for (const auto& issue : r.unknown_keys) log::warn("config", issue.to_string());
  for (const auto& issue : r.warnings) log::warn("config", issue.to_string());
  if (!r.config) {
    for (const auto& issue : r.errors) log::error("config", issue.to_string());
    log::error(kLog, "the new configuration is invalid; keeping the current one");
    notify_systemd("READY=1");
    return;
  }
  Config next = std::move(*r.config);
  if (next.persistence_path != config_.persistence_path)
    log::warn(kLog, "persistence_path changes take effect at the next restart");
  if (next.project_id != config_.project_id || next.device_id != config_.device_id) {
    // The spool and every queued topic belong to the identity the daemon started with.
    log::warn(kLog, "project_id/device_id changes take effect at the next restart");
    next.project_id = config_.project_id;
    next.device_id = config_.device_id;
  }
  if (next.spool.fsync != config_.spool.fsync) {
    log::warn(kLog, "[spool] fsync changes take effect at the next restart");
    next.spool.fsync = config_.spool.fsync;
  }
  log::set_level(next.log.level);
  outbox_.set_max_bytes(next.spool.max_memory_bytes);
  outbox_.set_live_first(next.prioritize_live_data);
  if (spool_ && next.spool.max_bytes != config_.spool.max_bytes) spool_->set_max_bytes(next.spool.max_bytes);
  batcher_.reconfigure(next);
  router_ = ActionRouter(next);
  app_server_.apply(next.tcpapps);
  for (const auto& e : devices_.reload(next)) log::error(kLog, e);
  datastreams_.reload(next);
  for (const auto& e : http_.reload(next.http)) log::warn(kLog, e);
  for (const auto& e : rtio_.reload(next)) log::warn(kLog, e);
  link_.set_extra_subscriptions(extra_subscriptions());
  link_.reconfigure(next);
  next.persistence_path = config_.persistence_path;
  uploads_.reload(next);
  config_ = std::move(next);
  flush_timer_.arm(batcher_.next_deadline());
  app_server_.resume();  // a larger memory budget may have lifted back-pressure
  log::info(kLog, "configuration reloaded");
  notify_systemd("READY=1");
}

void Daemon::wait_for_signal() {
  signals_.async_wait([this](asio::error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      reload();
      wait_for_signal();
      return;
    }
    log::info(kLog, "signal ", sig, ": stopping");
    shutdown();
  });
}

void Daemon::start_watchdog() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
  // Pinging from the event loop means a stuck loop stops the pings and systemd restarts us.
  watchdog_interval_ = std::chrono::microseconds(usec / 2);
  watchdog_tick();
}

void Daemon::watchdog_tick() {
  notify_systemd("WATCHDOG=1");
  watchdog_timer_.expires_after(watchdog_interval_);
  watchdog_timer_.async_wait([this](asio::error_code ec) {
    if (!ec) watchdog_tick();
  });
}

void Daemon::log_stats() {
  const auto& lc = link_.counters();
  uint64_t points = 0;
  for (const auto& s : batcher_.streams()) points += s.counters.points;
  log::info(kLog, "broker ", link_.state_name(), ", points ", points, ", published ", lc.published, ", acked ",
            lc.acked, ", queued ", outbox_.queued(), " (", outbox_.bytes(), " bytes in memory), spool ",
            spool_ ? spool_->stats().bytes : 0, " bytes with ", outbox_.backlog(), " batches to replay, dropped ",
            outbox_.counters().dropped_total(), ", actions in flight ", tracker_.size(), ", timed out ",
            action_counters_.timed_out, devices_.device_count() ? ", " + devices_.summary() : "");
  schedule_stats();
}

void Daemon::sample_rates() {
  constexpr auto kPeriod = std::chrono::seconds(5);
  uint64_t replayed = outbox_.counters().replayed;
  replay_rate_ = static_cast<double>(replayed - last_replayed_) / static_cast<double>(kPeriod.count());
  last_replayed_ = replayed;
  rate_timer_.expires_after(kPeriod);
  rate_timer_.async_wait([this](asio::error_code ec) {
    if (!ec) sample_rates();
  });
}

void Daemon::schedule_stats() {
  stats_timer_.expires_after(std::chrono::seconds(60));
  stats_timer_.async_wait([this](asio::error_code ec) {
    if (!ec) log_stats();
  });
}

}  // namespace edgelink

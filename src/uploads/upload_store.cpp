#include "edgelink/uploads/upload_store.hpp"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "edgelink/util/wall_clock.hpp"

namespace edgelink::uploads {
namespace {
constexpr char kLog[] = "uploads";
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }
}  // namespace

struct UploadStore::Key {
  KeyRecord rec;
  std::shared_ptr<UploadSession> session;  // negotiating or in its raw phase
  std::shared_ptr<void> push;        // the device push running
  std::shared_ptr<void> stream;      // the data stream publishing it (datastream routes)
  std::string stream_id;
  std::weak_ptr<UploadPeer> peer;    // who gets the final reply after the raw phase
  bool negotiating = false;
  bool queued = false;      // waiting for its device's push slot
  bool installing = false;  // file route: being moved into place
  uint64_t reserved_end = 0;  // offset + grant while a raw phase runs (spool accounting)
  uint64_t written = 0;       // bytes in the part file (status)
  int device_step = 0;
  PartPtr part;
  Sha256 hash;  // of the bytes received, updated as they arrive
  bool busy() const { return negotiating || session || push || stream || queued || installing; }
};

// One raw phase (§3.2) on one connection.
class UploadStore::UploadSession : public RawReceiver, public std::enable_shared_from_this<UploadSession> {
 public:
  UploadSession(UploadStore& owner, Key& key, std::shared_ptr<UploadPeer> peer, uint64_t to_send, Millis idle)
      : owner_(owner), key_(key.rec.key), peer_(peer), to_send_(to_send), idle_timeout_(idle),
        idle_(owner.io_), alive_(owner.alive_), step_(progress_step(key.rec.offset, key.rec.total)) {}

  void start() { arm_idle(); }

  bool on_raw(std::span<const uint8_t> bytes) override {
    if (ended_) return true;
    Key* k = key();
    if (!k) return true;
    arm_idle();
    k->hash.update(bytes.data(), bytes.size());
    received_ += bytes.size();
    queued_ += bytes.size();
    owner_.disk_->append(k->part, std::vector<uint8_t>(bytes.begin(), bytes.end()),
                         [self = shared_from_this(), n = bytes.size()](PartProgress p) { self->on_written(n, p); });
    return queued_ <= kMaxQueuedBytes;
  }

  void on_peer_gone() override {
    if (ended_) return;
    end(Status::OK, "connection lost", false);
  }

  // SIGTERM (§10).
  void shut_down() {
    if (!ended_) end(Status::Internal, "shutdown", true);
  }

  bool ended() const { return ended_; }

 private:
  Key* key() {
    if (alive_.expired()) return nullptr;
    auto it = owner_.keys_.find(key_);
    return it == owner_.keys_.end() ? nullptr : it->second.get();
  }

  void arm_idle() {
    idle_.expires_after(idle_timeout_);
    idle_.async_wait([weak = weak_from_this()](asio::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->ended_) return;
      self->end(Status::Timeout, "no byte for raw_idle_timeout", true);
    });
  }

  void on_written(size_t n, const PartProgress& p) {
    queued_ -= n;
    Key* k = key();
    if (!k || ended_) return;
    auto& c = owner_.counters_[{k->rec.app, k->rec.route}];
    c.bytes += n;
    k->written = p.written;
    if (p.error) {
      end(p.error == ENOSPC || p.error == EDQUOT ? Status::NoSpace : Status::Internal,
          "cannot write the upload: " + errno_text(p.error), true);
      return;
    }
    if (p.synced > k->rec.offset) {
      k->rec.offset = p.synced;
      k->rec.last_activity = unix_ms();
      owner_.save(*k, false);
    }
    owner_.progress(*k, peer_.lock(), "receive", p.written, step_);
    if (auto peer = peer_.lock(); peer && queued_ <= kMaxQueuedBytes / 2) peer->resume_raw();
    if (received_ == to_send_ && queued_ == 0) all_in(*k);
  }

  // Every granted byte is written: make them durable, then the route (§3.3).
  void all_in(Key& k) {
    ended_ = true;
    idle_.cancel();
    owner_.disk_->finish(k.part, [self = shared_from_this()](PartProgress p) {
      Key* k = self->key();
      if (!k) return;
      auto peer = self->peer_.lock();
      k->part.reset();
      owner_session_ended(*self, *k);
      if (p.error) {
        k->rec.offset = std::min(k->rec.offset, p.synced);
        self->owner_.fail(k->rec.key, peer, Status::Internal, "cannot sync the upload: " + errno_text(p.error), false);
        return;
      }
      k->rec.offset = p.synced;
      k->rec.last_activity = unix_ms();
      if (k->rec.offset < k->rec.total) {
        // A partial grant (§3.1): the part is in, the rest comes with a resume.
        const std::string key = k->rec.key;
        self->owner_.save(*k, true, [owner = &self->owner_, alive = self->alive_, key, peer](int) {
          if (alive.expired()) return;
          auto it = owner->keys_.find(key);
          if (it == owner->keys_.end()) return;
          Key& k = *it->second;
          owner->point(k, "Partial", k.rec.offset);
          owner->finish(key, peer, final_partial(key, k.rec.total - k.rec.offset), Status::Partial, false);
        });
        return;
      }
      self->owner_.complete(k->rec.key, peer, k->hash.hex());
    });
  }

  static void owner_session_ended(UploadSession& s, Key& k) {
    if (k.session.get() == &s) k.session.reset();
    k.reserved_end = 0;
  }

  // The raw phase ends early: the connection went (`status` OK: no reply), the app was
  // idle, the disk failed, or edgelink stops. The durable bytes stay under the key.
  void end(Status status, std::string detail, bool reply) {
    ended_ = true;
    idle_.cancel();
    Key* k = key();
    if (!k) return;
    if (reply) ++owner_.replies_pending_;
    auto peer = peer_.lock();
    owner_.disk_->close(k->part, [self = shared_from_this(), status, detail, reply, peer](PartProgress p) {
      Key* k = self->key();
      if (!k) return;
      k->part.reset();
      owner_session_ended(*self, *k);
      k->rec.offset = std::min(std::max(k->rec.offset, p.error ? k->rec.offset : p.synced), k->rec.total);
      k->rec.last_activity = unix_ms();
      const std::string key = k->rec.key;
      self->owner_.save(*k, true, [owner = &self->owner_, alive = self->alive_, key, status, detail, reply,
                                   peer](int) {
        if (alive.expired()) return;
        if (reply) --owner->replies_pending_;
        auto it = owner->keys_.find(key);
        if (it == owner->keys_.end()) return;
        Key& k = *it->second;
        const uint64_t missing = k.rec.total - k.rec.offset;
        owner->point(k, "Interrupted", k.rec.offset, [&](Writer& w) {
          if (status == Status::OK) return;
          w.Key("status");
          w.Int(static_cast<int>(status));
          w.Key("error");
          w.String(to_string(status));
        });
        log::info(kLog, k.rec.app, ": upload ", key, " interrupted (", detail, ") at ", k.rec.offset, " of ",
                  k.rec.total, " bytes; resumable");
        if (reply)
          owner->finish(key, peer, final_error(status, key, missing, detail), status, true);
        else if (peer)
          peer->upload_done(false);
      });
    });
  }

  UploadStore& owner_;
  std::string key_;
  std::weak_ptr<UploadPeer> peer_;
  uint64_t to_send_;
  uint64_t received_ = 0;
  size_t queued_ = 0;
  Millis idle_timeout_;
  asio::steady_timer idle_;
  std::weak_ptr<int> alive_;
  int step_;
  bool ended_ = false;
};

UploadStore::UploadStore(asio::io_context& io, const Config& config, UploadsCallbacks callbacks)
    : io_(io), config_(config), callbacks_(std::move(callbacks)),
      dir_((std::filesystem::path(config.persistence_path) / "xstream").string()),
      disk_(std::make_unique<UploadIo>(io)), sweep_timer_(io) {}

UploadStore::~UploadStore() {
  sweep_timer_.cancel();
  disk_.reset();  // joins the worker before the keys it may still refer to go
}

std::string UploadStore::part_path(const std::string& key) const { return dir_ + "/" + key + ".part"; }
std::string UploadStore::record_path(const std::string& key) const { return dir_ + "/" + key + ".json"; }

const UploadRouteConfig* UploadStore::route_of(const std::string& app, const std::string& route) const {
  auto it = config_.tcpapps.find(app);
  if (it == config_.tcpapps.end()) return nullptr;
  for (const auto& r : it->second.upload_routes)
    if (r.route == route) return &r;
  return nullptr;
}

size_t UploadStore::active_of(const std::string& app) const {
  size_t n = 0;
  for (const auto& [key, k] : keys_)
    if (k->rec.app == app && (k->session || k->negotiating)) ++n;
  return n;
}

// §1: unfinished uploads count against max_spool_bytes; a raw phase counts what it was
// granted, so two uploads cannot both be promised the same room.
uint64_t UploadStore::spool_used() const {
  uint64_t used = 0;
  for (const auto& [key, k] : keys_)
    if (k->rec.state != KeyState::Done) used += std::max(k->rec.offset, k->reserved_end);
  return used;
}

uint64_t UploadStore::free_bytes() const {
  struct statvfs st {};
  if (::statvfs(dir_.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

std::vector<std::string> UploadStore::start() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return {"cannot create the upload spool " + dir_ + ": " + ec.message()};
  namespace fs = std::filesystem;
  std::set<std::string> kept;
  const uint64_t now = unix_ms();
  std::vector<std::string> push_again, publish_again;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string path = entry.path().string();
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    auto rec = decode_record(text.str());
    const std::string stem = entry.path().stem().string();
    if (!rec || rec->key != stem) {
      log::warn(kLog, "deleting ", path, ": not a readable upload record");
      fs::remove(path, ec);
      continue;
    }
    if (now > rec->last_activity + static_cast<uint64_t>(config_.xstream.key_ttl.count())) continue;  // swept below
    auto k = std::make_unique<Key>();
    k->rec = std::move(*rec);
    const std::string part = part_path(k->rec.key);
    const bool has_data = k->rec.state != KeyState::Done;
    if (has_data) {
      // §9: the part is cut to its recorded (durable) offset.
      const auto size = fs::file_size(part, ec);
      if (ec) {
        log::warn(kLog, "upload ", k->rec.key, ": its part file is missing; starting it over from byte 0");
        k->rec.offset = 0;
        k->rec.state = KeyState::Receiving;
      } else if (size > k->rec.offset) {
        fs::resize_file(part, k->rec.offset, ec);
      } else if (size < k->rec.offset) {
        log::warn(kLog, "upload ", k->rec.key, ": ", size, " bytes on disk, ", k->rec.offset,
                  " recorded; resuming from ", size);
        k->rec.offset = size;
        if (k->rec.state != KeyState::Receiving) k->rec.state = KeyState::Receiving;
      }
      kept.insert(part);
    }
    kept.insert(path);
    if (k->rec.kind == UploadKind::Device &&
        (k->rec.state == KeyState::Pushing || k->rec.state == KeyState::Stored))
      push_again.push_back(k->rec.key);
    if (k->rec.kind == UploadKind::Datastream && k->rec.state == KeyState::Stored) publish_again.push_back(k->rec.key);
    keys_[k->rec.key] = std::move(k);
  }
  // Files without a record, and temporaries of interrupted saves.
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string path = entry.path().string();
    const auto ext = entry.path().extension();
    if (ext == ".json" && !kept.count(path)) continue;  // expired: the sweep reports and deletes it
    if (!kept.count(path) && ext != ".json") fs::remove(path, ec);
  }
  sweep();
  for (const auto& key : push_again) {
    log::info(kLog, "upload ", key, ": pushing to device ", keys_[key]->rec.device, " again (unfinished at the last stop)");
    queue_push(key, nullptr);
  }
  for (const auto& key : publish_again) {
    log::info(kLog, "upload ", key, ": publishing its data stream again (unfinished at the last stop)");
    start_stream(key);
  }
  schedule_sweep();
  if (!keys_.empty()) log::info(kLog, keys_.size(), " upload keys in ", dir_);
  return {};
}

void UploadStore::reload(const Config& config) { config_ = config; }

void UploadStore::shutdown(std::function<void()> done) {
  stopping_ = true;
  sweep_timer_.cancel();
  for (auto& [device, queue] : push_queue_) queue.clear();
  for (auto& [key, k] : keys_) {
    k->push.reset();  // abandoned: state "pushing" runs again at the next start
    k->stream.reset();  // likewise a data stream being published
    if (k->session) k->session->shut_down();
  }
  shutdown_done_ = std::move(done);
  shutdown_deadline_ = std::chrono::steady_clock::now() + kShutdownWait;
  check_shutdown();
}

// The final replies of the raw phases follow their fdatasync and record on the worker.
void UploadStore::check_shutdown() {
  if (!shutdown_done_) return;
  const bool waiting = replies_pending_ > 0 ||
                       std::any_of(keys_.begin(), keys_.end(), [](const auto& k) { return k.second->session != nullptr; });
  if (waiting && std::chrono::steady_clock::now() < shutdown_deadline_) {
    sweep_timer_.expires_after(std::chrono::milliseconds(10));
    sweep_timer_.async_wait([this](asio::error_code ec) {
      if (!ec) check_shutdown();
    });
    return;
  }
  auto done = std::exchange(shutdown_done_, nullptr);
  done();
}

void UploadStore::schedule_sweep() {
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](asio::error_code ec) {
    if (ec || stopping_) return;
    sweep();
    schedule_sweep();
  });
}

// §9: a key expires key_ttl after its last activity; its files go and the cloud hears.
void UploadStore::sweep() {
  const uint64_t now = unix_ms();
  const uint64_t ttl = static_cast<uint64_t>(config_.xstream.key_ttl.count());
  // Records on disk that start() left for this (expired before the start).
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    if (entry.path().extension() != ".json") continue;
    const std::string key = entry.path().stem().string();
    if (keys_.count(key)) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (auto rec = decode_record(text.str())) {
      Key k;
      k.rec = std::move(*rec);
      ++expired_;
      point(k, "Expired", k.rec.offset);
      log::info(kLog, k.rec.app, ": upload key ", key, " expired");
    }
    disk_->remove({part_path(key), record_path(key)}, {});
  }
  for (auto it = keys_.begin(); it != keys_.end();) {
    Key& k = *it->second;
    if (k.busy() || now <= k.rec.last_activity + ttl) {
      ++it;
      continue;
    }
    ++expired_;
    point(k, "Expired", k.rec.offset);
    log::info(kLog, k.rec.app, ": upload key ", k.rec.key, " expired");
    disk_->remove({part_path(k.rec.key), record_path(k.rec.key)}, {});
    it = keys_.erase(it);
  }
}

void UploadStore::save(Key& k, bool durable, std::function<void(int)> done) {
  disk_->save(record_path(k.rec.key), encode_record(k.rec), durable, std::move(done));
}

void UploadStore::drop_key(std::string key) {
  disk_->remove({part_path(key), record_path(key)}, {});
  keys_.erase(key);
}

void UploadStore::refuse(UploadPeer& peer, const Refusal& refusal, const std::string& app, const std::string& route) {
  if (route_of(app, route)) ++counters_[{app, route}].by_status[static_cast<size_t>(refusal.status)];
  log::limited(limiter_, app + "-refused-" + std::to_string(static_cast<int>(refusal.status)), LogLevel::Info, kLog,
               app, ": stream request refused: ", to_string(refusal.status),
               refusal.detail.empty() ? "" : " (", refusal.detail, refusal.detail.empty() ? "" : ")");
  peer.send_line(refusal_reply(refusal));
  peer.answered(peer.upload_pending());
}

bool UploadStore::on_stream_request(const std::string& app, std::string_view line, bool upload_port,
                                std::shared_ptr<UploadPeer> peer) {
  (void)upload_port;
  auto it = config_.tcpapps.find(app);
  if (it == config_.tcpapps.end()) return false;
  auto parsed = parse_stream_request(line, it->second.upload_routes);
  if (!parsed) return false;
  if (auto* refusal = std::get_if<Refusal>(&*parsed)) {
    rapidjson::Document doc;
    doc.Parse(line.data(), line.size());
    std::string route = doc.IsObject() && doc.HasMember("route") && doc["route"].IsString() ? doc["route"].GetString() : "";
    refuse(*peer, *refusal, app, route);
    return true;
  }
  StreamRequest& req = std::get<StreamRequest>(*parsed);
  const std::string& route = req.route->route;
  if (stopping_) {
    refuse(*peer, {Status::Internal, "edgelink is stopping", req.key}, app, route);
    return true;
  }
  if (peer->upload_pending()) {
    refuse(*peer, {Status::Busy, "an upload on this connection waits for its final reply", req.key}, app, route);
    return true;
  }
  Key* k = nullptr;
  if (req.key) {
    auto kit = keys_.find(*req.key);
    const uint64_t ttl = static_cast<uint64_t>(config_.xstream.key_ttl.count());
    if (kit == keys_.end() || kit->second->rec.app != app || kit->second->rec.route != route ||
        kit->second->rec.total != req.total || unix_ms() > kit->second->rec.last_activity + ttl) {
      refuse(*peer,
             {Status::UnknownKey, "no upload of this app with this key, route and total (or it expired)", req.key},
             app, route);
      return true;
    }
    k = kit->second.get();
    if (k->busy()) {
      refuse(*peer, {Status::Busy, k->session || k->negotiating ? "the key is in use on another connection"
                                                                 : "the key's device push is running",
                     req.key},
             app, route);
      return true;
    }
  }
  if (active_of(app) >= it->second.max_uploads) {
    refuse(*peer, {Status::Busy, "max_uploads (" + std::to_string(it->second.max_uploads) + ") uploads are running",
                   req.key},
           app, route);
    return true;
  }
  const uint64_t offset = k ? k->rec.offset : 0;
  const uint64_t remaining = req.total - offset;
  uint64_t grant = remaining;
  if (remaining > 0) {
    const XStreamConfig& x = config_.xstream;
    const uint64_t used = spool_used();
    const uint64_t budget = x.max_spool_bytes > used ? x.max_spool_bytes - used : 0;
    const uint64_t free = free_bytes();
    const uint64_t disk = free > x.min_free_bytes ? free - x.min_free_bytes : 0;
    grant = std::min({remaining, budget, disk});
    if (grant == 0) {
      refuse(*peer, {Status::NoSpace, budget == 0 ? "max_spool_bytes is used up" : "the disk is full (min_free_bytes)",
                     req.key},
             app, route);
      return true;
    }
  }
  if (k)
    begin_resume(*k, req, std::move(peer), grant);
  else
    begin_new(app, req, std::move(peer), grant);
  return true;
}

void UploadStore::begin_new(const std::string& app, const StreamRequest& req, std::shared_ptr<UploadPeer> peer,
                        uint64_t grant) {
  auto k = std::make_unique<Key>();
  KeyRecord& r = k->rec;
  do {
    r.key = random_key();
  } while (keys_.count(r.key));
  r.app = app;
  r.route = req.route->route;
  r.kind = req.route->kind;
  r.name = req.name;
  r.total = req.total;
  r.sha256 = req.sha256;
  r.created = r.last_activity = unix_ms();
  r.dir = r.kind == UploadKind::File ? upload_dir(config_, app, *req.route) : "";
  r.device = req.route->device;
  r.file_type = req.file_type;
  r.endpoint = req.endpoint;
  r.mime_type = req.mime_type;
  r.attributes = req.attributes;
  k->negotiating = true;
  k->reserved_end = grant;
  const std::string key = r.key;
  Key& ref = *k;
  keys_[key] = std::move(k);
  // §9: the key goes to the app only once its record is durable.
  save(ref, true, [this, alive = std::weak_ptr<int>(alive_), key, peer, grant, bufsize = req.bufsize, app,
                   route = req.route->route](int error) {
    if (alive.expired()) return;
    auto it = keys_.find(key);
    if (it == keys_.end()) return;
    if (error) {
      log::error(kLog, "cannot write the record of a new upload: ", errno_text(error));
      drop_key(key);
      refuse(*peer, {Status::Internal, "cannot write the upload's record: " + errno_text(error), std::nullopt}, app,
             route);
      return;
    }
    open_part(key, peer, grant, bufsize, false);
  });
}

void UploadStore::begin_resume(Key& k, const StreamRequest& req, std::shared_ptr<UploadPeer> peer, uint64_t grant) {
  k.negotiating = true;
  k.rec.last_activity = unix_ms();
  k.reserved_end = k.rec.offset + grant;
  const uint32_t bufsize = advised_bufsize(req.bufsize);
  if (k.rec.offset < k.rec.total || k.rec.state == KeyState::Receiving) {
    open_part(k.rec.key, std::move(peer), grant, req.bufsize, true);
    return;
  }
  // Everything is stored (§5): no raw phase; the final reply follows at once.
  k.negotiating = false;
  k.reserved_end = 0;
  peer->send_line(negotiation_reply(k.rec.key, 0, 0, bufsize, k.rec.offset));
  point(k, "Resumed", k.rec.offset, [&](Writer& w) {
    w.Key("offset");
    w.Uint64(k.rec.offset);
  });
  peer->answered(true);
  if (k.rec.kind == UploadKind::Datastream) {
    // Stored is done for the app (§7.2): the stream is published (or will be, at the next start).
    finish(k.rec.key, peer, final_done(k.rec.key, k.rec.result_sha256, ""), Status::OK, false);
    return;
  }
  switch (k.rec.state) {
    case KeyState::Done:
      finish(k.rec.key, peer, final_done(k.rec.key, k.rec.result_sha256, k.rec.path), Status::OK, false);
      break;
    case KeyState::Stored:
    case KeyState::Pushing:
    case KeyState::Failed:
      if (k.rec.kind == UploadKind::File)
        install(k.rec.key, peer);
      else
        queue_push(k.rec.key, peer);
      break;
    case KeyState::Receiving:
      break;  // not reached: handled above
  }
}

void UploadStore::open_part(const std::string& key, std::shared_ptr<UploadPeer> peer, uint64_t grant, uint32_t bufsize,
                        bool resumed) {
  Key& k = *keys_.at(key);
  disk_->open(part_path(key), k.rec.offset, config_.xstream.sync_bytes,
              [this, alive = std::weak_ptr<int>(alive_), key, peer, grant, bufsize, resumed](PartPtr part, Sha256 prefix,
                                                                                            int error) {
                if (alive.expired()) return;
                auto it = keys_.find(key);
                if (it == keys_.end()) return;
                Key& k = *it->second;
                k.negotiating = false;
                if (error) {
                  k.reserved_end = 0;
                  log::error(kLog, k.rec.app, ": upload ", key, ": cannot open its part file: ", errno_text(error));
                  refuse(*peer, {Status::Internal, "cannot open the upload's file: " + errno_text(error),
                                 resumed ? std::optional<std::string>(key) : std::nullopt},
                         k.rec.app, k.rec.route);
                  if (!resumed) drop_key(key);
                  return;
                }
                k.part = std::move(part);
                k.hash = std::move(prefix);
                k.written = k.rec.offset;
                const uint64_t remaining = k.rec.total - k.rec.offset;
                peer->send_line(negotiation_reply(key, grant, remaining, advised_bufsize(bufsize), k.rec.offset));
                if (resumed) {
                  point(k, "Resumed", k.rec.offset, [&](Writer& w) {
                    w.Key("offset");
                    w.Uint64(k.rec.offset);
                  });
                } else {
                  point(k, "Started", 0);
                  log::info(kLog, k.rec.app, ": upload ", key, " started: ", k.rec.route, " ", k.rec.name, ", ",
                            k.rec.total, " bytes", grant < remaining ? " (partial grant of " : "",
                            grant < remaining ? std::to_string(grant) : "", grant < remaining ? ")" : "");
                }
                if (grant == 0) {
                  // A resume of a key whose bytes are all stored but not yet finished.
                  peer->answered(true);
                  disk_->finish(k.part, [this, alive, key, peer](PartProgress p) {
                    if (alive.expired()) return;
                    auto it = keys_.find(key);
                    if (it == keys_.end()) return;
                    it->second->part.reset();
                    std::string sha = it->second->hash.hex();
                    if (p.error) {
                      fail(key, peer, Status::Internal, "cannot sync the upload: " + errno_text(p.error), false);
                      return;
                    }
                    complete(key, peer, std::move(sha));
                  });
                  return;
                }
                auto session = std::make_shared<UploadSession>(*this, k, peer, grant, config_.xstream.raw_idle_timeout);
                k.session = session;
                k.peer = peer;
                session->start();
                peer->start_raw(grant, session);
              });
}

// Every byte is durable (§3.3): check the hash, then the route.
void UploadStore::complete(std::string key, std::shared_ptr<UploadPeer> peer, std::string sha256) {
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  Key& k = *it->second;
  k.rec.result_sha256 = std::move(sha256);
  k.rec.last_activity = unix_ms();
  if (!k.rec.sha256.empty() && k.rec.sha256 != k.rec.result_sha256) {
    const std::string detail = "sha256 of the upload is " + k.rec.result_sha256 + ", the request said " + k.rec.sha256;
    log::warn(kLog, k.rec.app, ": upload ", key, " deleted: ", detail);
    point(k, "Failed", k.rec.offset, [&](Writer& w) {
      w.Key("status");
      w.Int(static_cast<int>(Status::ChecksumMismatch));
      w.Key("error");
      w.String("ChecksumMismatch");
      w.Key("detail");
      w.String(detail.c_str());
      w.Key("resumable");
      w.Bool(false);
    });
    const uint64_t total = k.rec.total;
    ++counters_[{k.rec.app, k.rec.route}].by_status[static_cast<size_t>(Status::ChecksumMismatch)];
    drop_key(key);
    finish(key, peer, final_error(Status::ChecksumMismatch, key, total, detail), Status::ChecksumMismatch, false);
    return;
  }
  k.rec.state = KeyState::Stored;
  if (k.rec.kind == UploadKind::File) {
    install(key, std::move(peer));
  } else if (k.rec.kind == UploadKind::Datastream) {
    // §7.2: the final reply once the upload is durable; publishing follows.
    save(k, true, [this, alive = std::weak_ptr<int>(alive_), key, peer](int) {
      if (alive.expired() || !keys_.count(key)) return;
      Key& k = *keys_.at(key);
      finish(key, peer, final_done(key, k.rec.result_sha256, ""), Status::OK, false);
      start_stream(key);
    });
  } else {
    save(k, true);
    queue_push(key, std::move(peer));
  }
}

// §7.2: one byte data stream, read from the stored file as the outbox takes it; the file
// goes once the trailer is acknowledged. Interrupted (shutdown), it starts again from the
// beginning at the next start, under a new stream id.
void UploadStore::start_stream(const std::string& key) {
  Key& k = *keys_.at(key);
  StreamJob job{key,        k.rec.app,      k.rec.route.substr(4), k.rec.name, k.rec.mime_type, k.rec.attributes,
                part_path(key), k.rec.total};
  StreamCallbacks cb;
  cb.opened = [this, alive = std::weak_ptr<int>(alive_), key](const std::string& stream_id) {
    if (alive.expired() || !keys_.count(key)) return;
    keys_.at(key)->stream_id = stream_id;
  };
  cb.done = [this, alive = std::weak_ptr<int>(alive_), key](bool ok, std::string detail) {
    if (alive.expired() || !keys_.count(key)) return;
    Key& k = *keys_.at(key);
    k.stream.reset();
    k.rec.last_activity = unix_ms();
    if (!ok) {
      log::warn(kLog, k.rec.app, ": upload ", key, ": its data stream ended (", detail,
                "); it is published again at the next start");
      return;
    }
    k.rec.state = KeyState::Done;
    disk_->remove({part_path(key)}, {});
    save(k, true);
    log::info(kLog, k.rec.app, ": upload ", key, " published as data stream ", k.stream_id);
    point(k, "Completed", k.rec.total, [&](Writer& w) {
      w.Key("size");
      w.Uint64(k.rec.total);
      w.Key("sha256");
      w.String(k.rec.result_sha256.c_str());
      w.Key("topic");
      w.String(k.rec.route.substr(4).c_str());
      w.Key("stream_id");
      w.String(k.stream_id.c_str());
    });
  };
  k.stream = callbacks_.publish_stream ? callbacks_.publish_stream(job, std::move(cb)) : nullptr;
  if (!k.stream) log::error(kLog, k.rec.app, ": upload ", key, ": no data streams to publish it");
}

// §7.1: renamed into place, atomically, the directory synced.
void UploadStore::install(const std::string& key, std::shared_ptr<UploadPeer> peer) {
  Key& k = *keys_.at(key);
  k.installing = true;
  disk_->install(part_path(key), k.rec.dir, k.rec.name,
                 [this, alive = std::weak_ptr<int>(alive_), key, peer](std::string path, std::string error) {
                   if (alive.expired()) return;
                   auto it = keys_.find(key);
                   if (it == keys_.end()) return;
                   Key& k = *it->second;
                   k.installing = false;
                   if (!error.empty()) {
                     log::error(kLog, k.rec.app, ": upload ", key, ": ", error);
                     fail(key, peer, Status::Internal, error, false);
                     return;
                   }
                   k.rec.state = KeyState::Done;
                   k.rec.path = path;
                   k.rec.last_activity = unix_ms();
                   save(k, true, [this, alive, key, peer](int) {
                     if (alive.expired()) return;
                     auto it = keys_.find(key);
                     if (it == keys_.end()) return;
                     Key& k = *it->second;
                     log::info(kLog, k.rec.app, ": upload ", key, " complete: ", k.rec.path, " (", k.rec.total,
                               " bytes)");
                     point(k, "Completed", k.rec.total, [&](Writer& w) {
                       w.Key("size");
                       w.Uint64(k.rec.total);
                       w.Key("sha256");
                       w.String(k.rec.result_sha256.c_str());
                       w.Key("path");
                       w.String(k.rec.path.c_str());
                     });
                     finish(key, peer, final_done(key, k.rec.result_sha256, k.rec.path), Status::OK, false);
                   });
                 });
}

void UploadStore::queue_push(const std::string& key, std::shared_ptr<UploadPeer> peer) {
  Key& k = *keys_.at(key);
  k.peer = peer;
  k.queued = true;
  push_queue_[k.rec.device].push_back(key);
  if (!pushing_.count(k.rec.device)) next_push(k.rec.device);
}

// §7.3: one push per device at a time.
void UploadStore::next_push(const std::string& device) {
  auto& queue = push_queue_[device];
  while (!queue.empty() && !stopping_) {
    const std::string key = queue.front();
    queue.pop_front();
    auto it = keys_.find(key);
    if (it == keys_.end()) continue;
    Key& k = *it->second;
    k.queued = false;
    k.rec.state = KeyState::Pushing;
    k.rec.last_activity = unix_ms();
    k.device_step = 0;
    save(k, true);
    pushing_[device] = key;
    PushJob job{key, device, k.rec.name, k.rec.endpoint, k.rec.file_type, k.rec.total, config_.xstream.device_restarts};
    PushCallbacks cb;
    cb.read = [path = part_path(key)](uint64_t offset, std::span<uint8_t> out) {
      return read_at(path, offset, out.data(), out.size());
    };
    cb.progress = [this, alive = std::weak_ptr<int>(alive_), key](uint64_t bytes) {
      if (alive.expired()) return;
      auto it = keys_.find(key);
      if (it == keys_.end()) return;
      it->second->rec.last_activity = unix_ms();
      progress(*it->second, it->second->peer.lock(), "device", bytes, it->second->device_step);
    };
    cb.done = [this, alive = std::weak_ptr<int>(alive_), key, device](bool ok, std::string detail) {
      if (alive.expired()) return;
      pushing_.erase(device);
      auto it = keys_.find(key);
      if (it != keys_.end()) {
        Key& k = *it->second;
        k.push.reset();
        auto peer = k.peer.lock();
        k.rec.last_activity = unix_ms();
        if (ok) {
          k.rec.state = KeyState::Done;
          k.rec.detail.clear();
          disk_->remove({part_path(key)}, {});
          save(k, true);
          log::info(kLog, k.rec.app, ": upload ", key, " pushed to device ", device, " (", k.rec.total, " bytes)");
          point(k, "Completed", k.rec.total, [&](Writer& w) {
            w.Key("size");
            w.Uint64(k.rec.total);
            w.Key("sha256");
            w.String(k.rec.result_sha256.c_str());
            w.Key("device");
            w.String(device.c_str());
            w.Key("file_type");
            w.String(to_string(k.rec.file_type));
          });
          finish(key, peer, final_done(key, k.rec.result_sha256, ""), Status::OK, false);
        } else {
          log::warn(kLog, k.rec.app, ": upload ", key, ": push failed: ", detail, "; a resume with the key tries again");
          fail(key, peer, Status::Internal, detail, false);
        }
      }
      next_push(device);
    };
    k.push = callbacks_.push ? callbacks_.push(job, std::move(cb)) : nullptr;
    if (!k.push) {
      pushing_.erase(device);
      fail(key, k.peer.lock(), Status::Internal, "device " + device + ": not configured", false);
      continue;
    }
    return;
  }
}

// Status 9 after the raw phase (or 9 from a push): the bytes stay under the key.
void UploadStore::fail(std::string key, const std::shared_ptr<UploadPeer>& peer, Status status,
                   std::string detail, bool close) {
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  Key& k = *it->second;
  if (k.rec.state != KeyState::Receiving) k.rec.state = KeyState::Failed;
  k.rec.detail = detail;
  save(k, true);
  point(k, "Failed", k.rec.offset, [&](Writer& w) {
    w.Key("status");
    w.Int(static_cast<int>(status));
    w.Key("error");
    w.String(to_string(status));
    w.Key("detail");
    w.String(detail.c_str());
    w.Key("resumable");
    w.Bool(true);
  });
  finish(key, peer, final_error(status, key, k.rec.total - (k.rec.state == KeyState::Receiving ? k.rec.offset : k.rec.total), detail),
         status, close);
}

void UploadStore::finish(std::string key, const std::shared_ptr<UploadPeer>& peer, std::string line, Status status,
                     bool close) {
  // Counted by (app, route) when the key is still known; a deleted key's were counted by its caller.
  if (auto it = keys_.find(key); it != keys_.end())
    ++counters_[{it->second->rec.app, it->second->rec.route}].by_status[static_cast<size_t>(status)];
  if (!peer || !peer->connected()) return;
  peer->send_line(std::move(line));
  peer->upload_done(close);
}

void UploadStore::progress(Key& k, const std::shared_ptr<UploadPeer>& peer, const char* phase, uint64_t bytes, int& step) {
  const int reached = progress_step(bytes, k.rec.total);
  while (step < reached) {
    ++step;
    const int percent = step * 5;
    if (peer && peer->connected() && peer->hello())
      peer->send_line(progress_line(k.rec.key, k.rec.route, phase, bytes, k.rec.total, percent));
    point(k, "Progress", bytes, [&](Writer& w) {
      w.Key("phase");
      w.String(phase);
      w.Key("percent");
      w.Int(percent);
    });
  }
}

void UploadStore::point(const Key& k, const char* state, uint64_t bytes, const Extra& extra) {
  if (!callbacks_.point) return;
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("stream");
  w.String(kUploadsStream);
  w.Key("sequence");
  w.Uint(++sequence_);
  w.Key("timestamp");
  w.Uint64(unix_ms());
  w.Key("app");
  w.String(k.rec.app.c_str());
  w.Key("key");
  w.String(k.rec.key.c_str());
  w.Key("route");
  w.String(k.rec.route.c_str());
  w.Key("name");
  w.String(k.rec.name.c_str());
  w.Key("total");
  w.Uint64(k.rec.total);
  w.Key("bytes");
  w.Uint64(bytes);
  w.Key("state");
  w.String(state);
  if (extra) extra(w);
  w.EndObject();
  const std::string json(buf.GetString(), buf.GetSize());
  DataPoint p;
  p.stream = kUploadsStream;
  p.head = json;
  if (!callbacks_.point(p))
    log::limited(limiter_, "uploads-point", LogLevel::Warn, kLog, "an uploads point was refused (stream limit)");
}

void UploadStore::write_status(JsonObject& out) const {
  auto& a = out.allocator();
  rapidjson::Value active(rapidjson::kArrayType);
  std::map<std::string, uint64_t> by_state;
  std::map<std::string, uint64_t> active_by_app;
  for (const auto& [key, k] : keys_) {
    ++by_state[to_string(k->rec.state)];
    if (!k->session) continue;
    ++active_by_app[k->rec.app];
    rapidjson::Value item(rapidjson::kObjectType);
    JsonObject(item, a).str("app", k->rec.app).str("key", key).str("route", k->rec.route).u64("bytes", k->written).u64(
        "total", k->rec.total);
    active.PushBack(item, a);
  }
  out.add("active", std::move(active));
  out.u64("keys", keys_.size());
  out.u64("spool_bytes", spool_used());
  out.object("keys_by_state", [&](JsonObject& o) {
    for (const char* s : {"receiving", "stored", "pushing", "done", "failed"}) o.u64(s, by_state[s]);
  });
  out.u64("expired", expired_);
  out.object("apps", [&](JsonObject& apps) {
    for (const auto& entry : config_.tcpapps) {  // clang 14: no structured bindings in the lambdas below
      const std::string& name = entry.first;
      const AppConfig& app = entry.second;
      if (app.upload_routes.empty()) continue;
      apps.object(name, [&](JsonObject& o) {
        o.u64("active", active_by_app[name]);
        o.object("routes", [&](JsonObject& routes) {
          for (const auto& r : app.upload_routes) {
            auto c = counters_.find({name, r.route});
            routes.object(r.route, [&](JsonObject& ro) {
              ro.u64("bytes", c == counters_.end() ? 0 : c->second.bytes);
              ro.object("status", [&](JsonObject& st) {
                for (int s = 0; s < kStatusCount; ++s)
                  st.u64(std::to_string(s), c == counters_.end() ? 0 : c->second.by_status[static_cast<size_t>(s)]);
              });
            });
          }
        });
      });
    }
  });
}

}  // namespace edgelink::uploads

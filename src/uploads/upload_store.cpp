#include "upload_store_state.hpp"

namespace edgelink::uploads {


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

// UploadStore: what happens to an upload once every byte is durable (spec/xstream.md §7):
// the sha256 check, then the file route's install, the device route's push (one per
// device at a time) or the datastream route's stream.

#include "upload_store_state.hpp"

namespace edgelink::uploads {

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

}  // namespace edgelink::uploads

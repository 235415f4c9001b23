#pragma once
// Internal to src/uploads: a key's in-memory state and one raw phase (UploadSession), shared
// by upload_store.cpp (keys, negotiation, spool, sweep, status) and upload_routes.cpp
// (what happens to a complete upload: install, device push, data stream).

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "edgelink/uploads/upload_store.hpp"
#include "edgelink/util/wall_clock.hpp"

namespace edgelink::uploads {

inline constexpr char kLog[] = "uploads";
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

inline std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }

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

}  // namespace edgelink::uploads

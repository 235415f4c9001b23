#pragma once
// UploadStore: x-stream uploads (spec/xstream.md): the stream requests of every app, the
// keys and their durable bytes, and what happens to a complete upload (a file route
// installs the file; a device route pushes it to a RICREST device). One UploadSession
// (upload_store.cpp) is one raw phase on one connection: it hands the bytes to UploadIo
// and ends in the final reply, a partial, or an interruption.
//
//  * Negotiation (§3): parse_stream_request() checks route, syntax and size; here come
//    the key (5), concurrency (8) and space (4). A new key's record is durable before the
//    key is sent (§9).
//  * Raw phase: bytes go to UploadIo's worker (write, SHA-256, fdatasync every
//    sync_bytes); the connection stops reading while more than kMaxQueuedBytes wait for
//    the disk, so memory stays flat whatever the upload's size. The record's offset
//    follows every fdatasync; that offset is what a resume gets.
//  * The end: a final reply only once what it reports is durable (§3.3).
//  * The `uploads` stream (§8) reports each step as a data point.
//
// One io_context thread, like the rest of the daemon; the disk work is UploadIo's.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <array>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <asio.hpp>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "edgelink/apps/app_message.hpp"
#include "edgelink/apps/upload_peer.hpp"
#include "edgelink/config/config.hpp"
#include "edgelink/uploads/push_job.hpp"
#include "edgelink/uploads/upload_io.hpp"
#include "edgelink/uploads/xstream_request.hpp"
#include "edgelink/util/json_object.hpp"
#include "edgelink/util/log.hpp"

namespace edgelink::uploads {

struct UploadsCallbacks {
  // A point of the uploads stream (its head is the whole JSON object). False: refused.
  std::function<bool(const DataPoint&)> point;
  // Starts a push; `done` runs once unless the returned handle is destroyed first
  // (that abandons the push). Required for device routes.
  std::function<std::shared_ptr<void>(const PushJob&, PushCallbacks)> push;
  // Publishes a stored upload as a byte data stream (datastream routes, §7.2); the same
  // handle rules as `push`.
  std::function<std::shared_ptr<void>(const StreamJob&, StreamCallbacks)> publish_stream;
};

// While more than this many bytes wait for the disk, the connection is not read.
inline constexpr size_t kMaxQueuedBytes = 4 << 20;
// §9: expired keys are swept at start-up and every minute.
inline constexpr std::chrono::seconds kSweepInterval{60};
// SIGTERM: how long the raw phases may take to sync and answer.
inline constexpr std::chrono::seconds kShutdownWait{3};

class UploadStore : public StreamRequestHandler {
 public:
  UploadStore(asio::io_context& io, const Config& config, UploadsCallbacks callbacks);
  ~UploadStore() override;
  UploadStore(const UploadStore&) = delete;
  UploadStore& operator=(const UploadStore&) = delete;

  // Reads the spool (<persistence_path>/xstream): expired keys go, part files are cut to
  // their recorded offset, files without a record are deleted, unfinished device pushes
  // start again. Returns what stops the daemon (the directory cannot be made).
  std::vector<std::string> start();
  // SIGHUP: requests from now on use the new settings and routes (§9).
  void reload(const Config& config);
  // SIGTERM: every raw phase ends with status 9 "shutdown" once its bytes are synced;
  // pushes are abandoned (they run again at the next start). `done` runs when the final
  // replies are queued.
  void shutdown(std::function<void()> done);

  bool on_stream_request(const std::string& app, std::string_view line, bool upload_port,
                         std::shared_ptr<UploadPeer> peer) override;

  // The status document's "uploads" (§11).
  void write_status(JsonObject& uploads) const;

 private:
  class UploadSession;
  struct Key;
  struct RouteCounters {
    uint64_t bytes = 0;  // raw bytes written to the spool
    std::array<uint64_t, kStatusCount> by_status{};  // final replies and refusals
  };

  void refuse(UploadPeer& peer, const Refusal& refusal, const std::string& app, const std::string& route);
  void begin_new(const std::string& app, const StreamRequest& req, std::shared_ptr<UploadPeer> peer, uint64_t grant);
  void begin_resume(Key& k, const StreamRequest& req, std::shared_ptr<UploadPeer> peer, uint64_t grant);
  void open_part(const std::string& key, std::shared_ptr<UploadPeer> peer, uint64_t grant, uint32_t bufsize,
                 bool resumed);
  void complete(std::string key, std::shared_ptr<UploadPeer> peer, std::string sha256);
  void install(const std::string& key, std::shared_ptr<UploadPeer> peer);
  void queue_push(const std::string& key, std::shared_ptr<UploadPeer> peer);
  void start_stream(const std::string& key);
  void next_push(const std::string& device);
  void finish(std::string key, const std::shared_ptr<UploadPeer>& peer, std::string line, Status status,
              bool close);
  void fail(std::string key, const std::shared_ptr<UploadPeer>& peer, Status status, std::string detail,
            bool close);
  void session_ended(const std::string& key);
  void save(Key& k, bool durable, std::function<void(int)> done = {});
  void drop_key(std::string key);
  void sweep();
  void schedule_sweep();
  void check_shutdown();
  uint64_t spool_used() const;
  uint64_t free_bytes() const;
  const UploadRouteConfig* route_of(const std::string& app, const std::string& route) const;
  std::string part_path(const std::string& key) const;
  std::string record_path(const std::string& key) const;
  size_t active_of(const std::string& app) const;

  // The uploads stream.
  using Extra = std::function<void(rapidjson::Writer<rapidjson::StringBuffer>&)>;
  void point(const Key& k, const char* state, uint64_t bytes, const Extra& extra = {});
  void progress(Key& k, const std::shared_ptr<UploadPeer>& peer, const char* phase, uint64_t bytes, int& step);

  asio::io_context& io_;
  Config config_;
  UploadsCallbacks callbacks_;
  std::string dir_;  // <persistence_path>/xstream
  std::unique_ptr<UploadIo> disk_;
  std::map<std::string, std::unique_ptr<Key>> keys_;
  std::map<std::string, std::deque<std::string>> push_queue_;  // device -> keys waiting
  std::map<std::string, std::string> pushing_;                 // device -> key being pushed
  std::map<std::pair<std::string, std::string>, RouteCounters> counters_;  // (app, route)
  uint64_t refused_connections_ = 0;
  uint32_t sequence_ = 0;
  uint64_t expired_ = 0;
  asio::steady_timer sweep_timer_;
  bool stopping_ = false;
  int replies_pending_ = 0;  // raw phases ending with a final reply not sent yet
  std::function<void()> shutdown_done_;
  std::chrono::steady_clock::time_point shutdown_deadline_{};
  log::RateLimiter limiter_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace edgelink::uploads

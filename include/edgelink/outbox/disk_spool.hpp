#pragma once
// The Outbox's disk side: one SpoolStore owned by a worker thread, so file writes,
// reads and fsync never run on the event loop. The loop posts jobs (write, ack, load);
// the worker runs them in order and posts every result back to the loop, where it
// calls the Outbox's on_* methods. No state is shared between the threads except the
// job queue and the payload buffers (immutable, shared by reference count).
//
// fsync policy ([spool] fsync):
//   batch     after every run of jobs that wrote a record (group commit: the writes
//             queued while one fsync ran share the next one);
//   interval  at most once per `fsync_interval` while something is unsynced;
//   never     left to the kernel's writeback.
// Acks (the ack logs) never cause an fsync of their own: a lost ack replays a batch
// the broker already has, a duplicate QoS 1 allows. They are synced with the next
// records, by the interval, and at shutdown (flush()).
//
// A store that cannot be opened (directory unwritable, not a directory) or that fails
// a write is reported through on_error, and the Outbox keeps entries in memory; the
// next write after `retry_interval` tries to open it again.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>

#include "edgelink/config/config.hpp"
#include "edgelink/outbox/outbox.hpp"
#include "edgelink/outbox/spool.hpp"

namespace edgelink {

struct DiskSpoolOptions {
  std::string dir;
  SpoolIdentity identity;
  uint64_t max_bytes = 256u << 20;
  FsyncPolicy fsync = FsyncPolicy::Batch;
  std::chrono::milliseconds fsync_interval{1000};
  std::chrono::milliseconds retry_interval{5000};
  SpoolIo io;  // test seam, passed to the store
};

// What the worker last reported; the loop's copy.
struct DiskSpoolStats {
  bool open = false;
  uint64_t bytes = 0;
  uint64_t max_bytes = 0;
  uint64_t segments = 0;
  uint64_t records = 0;
  SpoolCounters counters;
  uint64_t fsyncs = 0;
  double fsync_last_ms = 0;
  double fsync_max_ms = 0;
  double fsync_total_ms = 0;
  uint64_t open_failures = 0;
  uint64_t io_errors = 0;  // failed writes, reads and syncs
  std::string last_error;  // with its path; empty when none yet
};

class DiskSpool : public SpoolBackend {
 public:
  struct Callbacks {
    // Start-up (or a late open after a failure): what recovery found.
    std::function<void(const SpoolRecovery&)> on_recovered;
    // The store evicted records to make room (already applied to the Outbox).
    std::function<void(const std::vector<SpoolDrop>&)> on_dropped;
    // A disk error, once per failure episode: the log line.
    std::function<void(const std::string&)> on_error;
  };

  DiskSpool(asio::io_context& loop, Outbox& outbox, DiskSpoolOptions options, Callbacks callbacks);
  ~DiskSpool() override;  // finishes the queued jobs, syncs, joins the worker
  DiskSpool(const DiskSpool&) = delete;
  DiskSpool& operator=(const DiskSpool&) = delete;

  // Opens the store on the worker; recovered records are restored into the Outbox.
  void open();
  void write(const OutboxEntry& entry) override;
  void ack(uint64_t spool_id) override;
  void load(uint64_t outbox_id, uint64_t spool_id) override;
  void set_max_bytes(uint64_t max_bytes);
  // Syncs everything written so far; `done` runs on the loop afterwards.
  void flush(std::function<void()> done);
  // Replaces `path` atomically and durably (temporary file, fsync, rename, fsync of the
  // directory) on the worker; `done` gets an error message, empty on success.
  void save_file(std::string path, std::string content, std::function<void(std::string)> done);

  const DiskSpoolStats& stats() const { return stats_; }
  const DiskSpoolOptions& options() const { return options_; }

 private:
  using Job = std::function<void()>;
  void post_job(Job job);
  void post_loop(std::function<void(DiskSpool&)> fn);
  void run();
  // Worker side.
  bool ensure_open();
  void after_jobs();
  void sync_now();
  void report_error(const std::string& what);
  void publish_stats();

  asio::io_context& loop_;
  Outbox& outbox_;
  DiskSpoolOptions options_;
  Callbacks callbacks_;
  DiskSpoolStats stats_;          // loop side
  std::shared_ptr<DiskSpool*> alive_ = std::make_shared<DiskSpool*>(this);

  // Shared with the worker.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  bool stopping_ = false;

  // Worker only (options_ is read-only after construction, on both threads).
  uint64_t max_bytes_ = 0;  // set_max_bytes() changes it
  std::unique_ptr<SpoolStore> store_;
  std::chrono::steady_clock::time_point next_open_attempt_{};
  std::chrono::steady_clock::time_point last_sync_{};
  bool dirty_ = false;
  bool failing_ = false;  // an error was reported and nothing has succeeded since
  DiskSpoolStats worker_stats_;
  std::thread worker_;
};

}  // namespace edgelink

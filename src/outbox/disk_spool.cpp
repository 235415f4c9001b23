#include "edgelink/outbox/disk_spool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>

namespace edgelink {
namespace {
using Clock = std::chrono::steady_clock;

// Segments are the unit of eviction: small enough that a full spool drops a small
// share of its data at a time, large enough that a busy spool is not mostly headers
// and directory entries.
uint64_t segment_bytes_for(uint64_t max_bytes) {
  return std::clamp<uint64_t>(max_bytes / 16, 64u << 10, 4u << 20);
}

bool refused(const std::error_code& ec) {
  return ec == SpoolErrc::record_too_large || ec == SpoolErrc::spool_full || ec == SpoolErrc::invalid_record;
}
}  // namespace

DiskSpool::DiskSpool(asio::io_context& loop, Outbox& outbox, DiskSpoolOptions options, Callbacks callbacks)
    : loop_(loop), outbox_(outbox), options_(std::move(options)), callbacks_(std::move(callbacks)) {
  stats_.max_bytes = max_bytes_ = options_.max_bytes;
  worker_ = std::thread([this] { run(); });
}

DiskSpool::~DiskSpool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  worker_.join();
}

void DiskSpool::post_job(Job job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void DiskSpool::post_loop(std::function<void(DiskSpool&)> fn) {
  asio::post(loop_, [weak = std::weak_ptr<DiskSpool*>(alive_), fn = std::move(fn)] {
    if (auto self = weak.lock()) fn(**self);
  });
}

void DiskSpool::open() {
  // Start-up only, before anything is published: recovered records must take their
  // place in the backlog ahead of anything spooled in this run, so wait for it.
  std::promise<void> done;
  post_job([this, &done] {
    ensure_open();
    publish_stats();
    done.set_value();
  });
  done.get_future().wait();
}

void DiskSpool::write(const OutboxEntry& entry) {
  post_job([this, id = entry.id, priority = entry.priority, points = entry.points, retained = entry.retained,
            stream = entry.stream, topic = entry.topic, payload = entry.payload] {
    if (!ensure_open()) {
      post_loop([id](DiskSpool& s) { s.outbox_.on_write_failed(id, false); });
      return;
    }
    SpoolRecordView view{0, priority, points, retained, stream, topic, payload ? std::string_view(*payload) : ""};
    SpoolAppend r = store_->append(view);
    std::vector<SpoolDrop> drops;
    for (auto& d : r.dropped)
      if (d.id != 0) drops.push_back(std::move(d));  // id 0 is this record: refused, kept in memory
    if (!drops.empty()) {
      post_loop([drops](DiskSpool& s) {
        for (const auto& d : drops) s.outbox_.on_dropped(d.id, d.stream, to_string(d.reason));
        if (s.callbacks_.on_dropped) s.callbacks_.on_dropped(drops);
      });
    }
    if (!r.error) {
      dirty_ = true;
      failing_ = false;
      post_loop([id, sid = r.id](DiskSpool& s) { s.outbox_.on_written(id, sid); });
      return;
    }
    bool no = refused(r.error);
    if (!no) report_error(store_->last_error().empty() ? r.error.message() : store_->last_error());
    post_loop([id, no](DiskSpool& s) { s.outbox_.on_write_failed(id, no); });
  });
}

void DiskSpool::ack(uint64_t spool_id) {
  post_job([this, spool_id] {
    if (!store_) return;
    // An ack alone never asks for an fsync: losing one in a crash only replays a batch
    // the broker already has (a duplicate). The next sync takes it along.
    std::error_code ec = store_->ack(spool_id);
    if (ec && ec != SpoolErrc::unknown_record) report_error(store_->last_error());
  });
}

void DiskSpool::load(uint64_t outbox_id, uint64_t spool_id) {
  post_job([this, outbox_id, spool_id] {
    SpoolRecord rec;
    std::error_code ec = store_ ? store_->read(spool_id, rec) : make_error_code(SpoolErrc::not_open);
    if (!ec) {
      auto payload = std::make_shared<const std::string>(std::move(rec.payload));
      post_loop([outbox_id, topic = std::move(rec.topic), payload, points = rec.points,
                 retained = rec.retained](DiskSpool& s) mutable {
        s.outbox_.on_loaded(outbox_id, std::move(topic), std::move(payload), points, retained);
      });
      return;
    }
    // A record that no longer verifies (or cannot be read at all) is lost: retrying
    // would fail the same way. The Outbox counts it. One that is no longer in the store
    // was dropped (or acknowledged) after the load was asked for: the Outbox has heard
    // of that already, and it is no disk error.
    if (ec != SpoolErrc::corrupt_record && ec != SpoolErrc::unknown_record)
      report_error(store_ ? store_->last_error() : ec.message());
    post_loop([outbox_id, corrupt = ec == SpoolErrc::corrupt_record](DiskSpool& s) {
      s.outbox_.on_load_failed(outbox_id, corrupt ? "corrupt" : "unreadable");
    });
  });
}

void DiskSpool::set_max_bytes(uint64_t max_bytes) {
  stats_.max_bytes = max_bytes;
  post_job([this, max_bytes] {
    max_bytes_ = max_bytes;
    if (!store_) return;
    std::vector<SpoolDrop> drops = store_->set_max_bytes(max_bytes);
    if (drops.empty()) return;
    post_loop([drops](DiskSpool& s) {
      for (const auto& d : drops) s.outbox_.on_dropped(d.id, d.stream, to_string(d.reason));
      if (s.callbacks_.on_dropped) s.callbacks_.on_dropped(drops);
    });
  });
}

void DiskSpool::flush(std::function<void()> done) {
  post_job([this, done = std::move(done)]() mutable {
    sync_now();  // records and acks alike: the store syncs only the files it wrote
    post_loop([done = std::move(done)](DiskSpool&) { done(); });
  });
}

namespace {
std::string write_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  auto fail = [&](const char* what, const std::string& p) { return std::string(what) + " " + p + ": " + std::strerror(errno); };
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail("cannot create", tmp);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string e = fail("cannot write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    std::string e = fail("cannot fsync", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string e = fail("cannot rename", tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}
}  // namespace

void DiskSpool::save_file(std::string path, std::string content, std::function<void(std::string)> done) {
  post_job([this, path = std::move(path), content = std::move(content), done = std::move(done)]() mutable {
    std::string error = write_atomically(path, content);
    post_loop([error = std::move(error), done = std::move(done)](DiskSpool&) { done(error); });
  });
}

void DiskSpool::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (jobs_.empty()) {
      if (stopping_) break;
      if (dirty_ && options_.fsync == FsyncPolicy::Interval) {
        wake_.wait_until(lock, last_sync_ + options_.fsync_interval);
        if (jobs_.empty() && Clock::now() >= last_sync_ + options_.fsync_interval) {
          lock.unlock();
          sync_now();
          publish_stats();
          lock.lock();
        }
      } else {
        wake_.wait(lock);
      }
      continue;
    }
    std::deque<Job> batch;
    batch.swap(jobs_);
    lock.unlock();
    for (auto& job : batch) job();
    after_jobs();
    lock.lock();
  }
  lock.unlock();
  // Shutting down: whatever the policy, what was written (acks too) is synced once.
  sync_now();
}

bool DiskSpool::ensure_open() {
  if (store_) return true;
  auto now = Clock::now();
  if (now < next_open_attempt_) return false;
  SpoolOptions so;
  so.dir = options_.dir;
  so.identity = options_.identity;
  so.max_bytes = max_bytes_;
  so.segment_bytes = segment_bytes_for(max_bytes_);
  so.io = options_.io;
  auto store = std::make_unique<SpoolStore>(std::move(so));
  if (std::error_code ec = store->open()) {
    ++worker_stats_.open_failures;
    next_open_attempt_ = now + options_.retry_interval;
    report_error("cannot open the spool in " + options_.dir + ": " +
                 (store->last_error().empty() ? ec.message() : store->last_error()));
    return false;
  }
  store_ = std::move(store);
  failing_ = false;
  std::vector<RestoredEntry> restored;
  for (const SpoolPending& p : store_->pending()) restored.push_back({p.id, p.priority, p.size, p.stream});
  post_loop([restored = std::move(restored), recovery = store_->recovery()](DiskSpool& s) {
    s.outbox_.restore(restored);
    for (const auto& d : recovery.dropped) s.outbox_.count_dropped(d.stream, to_string(d.reason));
    if (s.callbacks_.on_recovered) s.callbacks_.on_recovered(recovery);
  });
  return true;
}

void DiskSpool::after_jobs() {
  if (dirty_) {
    if (options_.fsync == FsyncPolicy::Batch) sync_now();
    else if (options_.fsync == FsyncPolicy::Interval && Clock::now() >= last_sync_ + options_.fsync_interval)
      sync_now();
  }
  publish_stats();
}

void DiskSpool::sync_now() {
  dirty_ = false;
  if (!store_) return;
  auto start = Clock::now();
  std::error_code ec = store_->sync();
  auto end = Clock::now();
  last_sync_ = end;
  double ms = std::chrono::duration<double, std::milli>(end - start).count();
  ++worker_stats_.fsyncs;
  worker_stats_.fsync_last_ms = ms;
  worker_stats_.fsync_max_ms = std::max(worker_stats_.fsync_max_ms, ms);
  worker_stats_.fsync_total_ms += ms;
  if (ec) report_error(store_->last_error());
}

void DiskSpool::report_error(const std::string& what) {
  ++worker_stats_.io_errors;
  worker_stats_.last_error = what;
  if (failing_) return;
  failing_ = true;
  post_loop([what](DiskSpool& s) {
    if (s.callbacks_.on_error) s.callbacks_.on_error(what);
  });
}

void DiskSpool::publish_stats() {
  DiskSpoolStats& st = worker_stats_;
  st.open = store_ != nullptr;
  st.max_bytes = max_bytes_;
  if (store_) {
    st.bytes = store_->bytes();
    st.segments = store_->segments();
    st.records = store_->records();
    st.counters = store_->counters();
  }
  post_loop([st](DiskSpool& s) {
    s.stats_ = st;
    s.outbox_.set_spool_usage(st.bytes, st.max_bytes);
  });
}

}  // namespace edgelink

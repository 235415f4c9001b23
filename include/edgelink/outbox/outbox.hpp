#pragma once
// Everything that must reach the broker waits here until its PUBACK: stream batches,
// action statuses and, later, other payloads. Entries leave only through ack(); a lost
// connection puts everything in flight back at the front, in its original order
// (duplicates possible, loss not).
//
// Two lanes per priority, both FIFO by id (a stream has one priority, so each lane
// keeps each stream's order):
//   live     entries whose payload is only in memory;
//   backlog  entries written to the disk spool (payload loaded back before publishing).
// next() takes the highest priority that has something ready. Inside a priority:
//   in order (the default): the oldest entry of the two lanes, so every stream's
//     batches reach the broker in the order they were pushed, whatever went to disk on
//     the way; a priority whose oldest entry is still being read waits (lower
//     priorities, other streams, go on meanwhile);
//   live first (set_live_first(true), uplink's prioritize_live_data = true): the lanes
//     alternate, so a long backlog does not hold live data back; a stream's live
//     batches then reach the broker before its older spooled ones.
//
// The disk spool (when set_spool() gave one) is used when it is needed:
//   - the broker is unreachable (set_online(false)): every entry is written;
//   - memory over max_memory_bytes while the spool is already the path (a backlog is
//     queued, or live first): the newest live entries are written, and payloads
//     already on disk leave memory (newest first; the head of each backlog lane is
//     kept loaded: up to `prefetch` entries ahead in all, fewer when memory is
//     over budget, but always the head of each lane). Connected with no backlog, the
//     budget is back-pressure only: a burst waits in the apps' sockets, lossless and
//     without a write and a read per batch;
//   - spool_all() (shutdown).
// Writing is asynchronous: the spool calls back on_written/on_write_failed, and
// on_loaded/on_load_failed for reads, on_dropped when it evicted records.
//
// Back-pressure (accepting() false: the apps' sockets are not read) when payloads that
// cannot leave memory (not yet on disk) reach max_memory_bytes, or, while the broker is
// connected, when the spool is at 90 % of its disk budget: the backlog is draining, so
// waiting loses nothing. While the broker is unreachable the spool keeps accepting and
// drops its oldest batches of the lowest priority when full: a gateway that is offline
// for hours keeps its newest data. An entry the spool cannot take (disk error, no room
// without dropping higher priority) stays in memory and counts against the budget.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace edgelink {

struct OutboxEntry {
  uint64_t id = 0;  // assigned by push(), increasing
  std::string topic;
  // Shared and immutable: the publish in flight (Paho's message), the disk writer and
  // the Outbox's copy for a resend are the same bytes, never copied. Null while the
  // payload is only on disk.
  std::shared_ptr<const std::string> payload;
  std::string stream;  // for counters and logs
  uint32_t points = 0;
  int priority = 0;
  bool retained = false;

  // Disk state (managed by the Outbox).
  enum class Disk : uint8_t { None, Writing, Written, Refused };
  Disk disk = Disk::None;
  bool loading = false;     // a read from disk is pending
  bool prefetched = false;  // loaded back for replay; not evicted again
  uint64_t spool_id = 0;    // valid when Written
  uint64_t size = 0;      // payload bytes, also while the payload is on disk only
};

// The disk side, implemented by DiskSpool (a worker thread) and by fakes in tests.
// Every call is asynchronous; results come back through the Outbox's on_* methods,
// on the event loop.
class SpoolBackend {
 public:
  virtual ~SpoolBackend() = default;
  virtual void write(const OutboxEntry& entry) = 0;            // -> on_written / on_write_failed
  virtual void ack(uint64_t spool_id) = 0;                     // fire and forget
  virtual void load(uint64_t outbox_id, uint64_t spool_id) = 0;  // -> on_loaded / on_load_failed
};

// A record the spool holds from before this start (SpoolStore::pending()).
struct RestoredEntry {
  uint64_t spool_id;
  int priority;
  uint64_t size;
  std::string stream;
};

struct OutboxCounters {
  uint64_t pushed = 0;
  uint64_t acked = 0;
  uint64_t requeued = 0;   // sent again after a reconnect or a failed publish
  uint64_t spooled = 0;    // entries written to disk
  uint64_t replayed = 0;   // entries acknowledged that had been written to disk
  uint64_t loads = 0;
  uint64_t write_failures = 0;  // writes the spool refused or failed: kept in memory
  uint64_t evicted_payloads = 0;  // payloads dropped from memory (they are on disk)
  uint64_t restored = 0;   // entries found in the spool at start
  // PUBACKs by OutboxEntry::stream: a stream's batches the broker has acknowledged (a
  // map lookup per PUBACK; PUBACKs come per batch, not per point).
  std::map<std::string, uint64_t> acked_by_stream;
  // Entries lost, by (stream, reason): "spool_full", "corrupt", "unreadable".
  std::map<std::pair<std::string, std::string>, uint64_t> dropped;
  uint64_t dropped_total() const {
    uint64_t n = 0;
    for (const auto& [key, count] : dropped) n += count;
    return n;
  }
};

class Outbox {
 public:
  explicit Outbox(uint64_t max_memory_bytes, size_t prefetch = 128);

  // The spool to use; null: memory only (the budget is then only back-pressure).
  // `on_ready` runs when an entry became publishable (a load finished) or pressure
  // eased (a write finished, the spool shrank), so the link can pump again and paused
  // apps can be resumed.
  void set_spool(SpoolBackend* spool, std::function<void()> on_ready);
  // The spool's size against its budget, for back-pressure (the spool reports it).
  void set_spool_usage(uint64_t bytes, uint64_t max_bytes);
  // uplink's prioritize_live_data: live batches may overtake spooled ones (see above).
  void set_live_first(bool live_first);
  // Whether the broker is connected. Going offline writes everything to disk.
  void set_online(bool online);
  // A spool that failed (disk full, unwritable) is not written to until this is
  // called with true again; entries stay in memory meanwhile.
  void set_spool_healthy(bool healthy);
  // Entries found in the spool at start, in replay order.
  void restore(const std::vector<RestoredEntry>& entries);

  uint64_t push(OutboxEntry entry);
  // The next entry to publish; it moves to in-flight. nullptr when nothing is ready
  // (empty, or the backlog's next payloads are still being read). The pointer stays
  // valid until ack/requeue.
  const OutboxEntry* next();
  // PUBACK for `id`. False when `id` is not in flight (a stale acknowledgement).
  bool ack(uint64_t id);
  // Puts one in-flight entry back at the front of its lane (its publish failed).
  void requeue(uint64_t id);
  // Puts every in-flight entry back, in order (connection lost).
  void requeue_all();
  // Shutdown: write every entry that is not on disk yet.
  void spool_all();

  // Results from the spool.
  void on_written(uint64_t id, uint64_t spool_id);
  // `refused`: the spool will not take it (too large, full of higher priority data);
  // otherwise a disk error. Either way the entry stays in memory.
  void on_write_failed(uint64_t id, bool refused);
  void on_loaded(uint64_t id, std::string topic, std::shared_ptr<const std::string> payload, uint32_t points,
                 bool retained);
  // The record cannot be read back ("corrupt": it no longer verifies; "unreadable": a
  // disk error): the entry is dropped and counted under `reason`.
  void on_load_failed(uint64_t id, const std::string& reason);
  void on_dropped(uint64_t spool_id, const std::string& stream, const std::string& reason);
  // A loss the Outbox never held (records evicted while the spool was recovered).
  void count_dropped(const std::string& stream, const std::string& reason) { ++counters_.dropped[{stream, reason}]; }

  bool accepting() const;
  // Back-pressure releases only below 3/4 of each limit, so apps are not toggled on
  // and off by every single acknowledgement.
  bool below_low_water() const;
  bool empty() const { return entries_.empty(); }
  size_t queued() const { return entries_.size() - inflight_.size(); }
  size_t in_flight() const { return inflight_.size(); }
  size_t backlog() const { return backlog_count_; }
  // Entries whose write to disk has not finished (shutdown waits for 0).
  size_t writing() const { return writing_; }
  // Entries that are only in memory (not on disk, not being written).
  size_t memory_only() const;
  // What a stream has in the outbox (queued, in flight, spooled), by OutboxEntry::stream.
  // `points` counts the entries whose payload has been in memory this run: a batch
  // restored from the spool at start counts once it has been read back. Walks every
  // entry: for the status document, not for a hot path.
  struct StreamPending {
    uint64_t batches = 0;
    uint64_t points = 0;
  };
  std::map<std::string, StreamPending> pending_by_stream() const;
  // Payload bytes held in memory, and the part of it that cannot leave (not on disk).
  uint64_t bytes() const { return mem_bytes_; }
  uint64_t pinned_bytes() const { return pinned_bytes_; }
  uint64_t max_bytes() const { return max_bytes_; }
  void set_max_bytes(uint64_t n);
  const OutboxCounters& counters() const { return counters_; }

 private:
  using Lane = std::map<int, std::set<uint64_t>, std::greater<>>;  // priority -> ids, oldest first

  static uint64_t cost(const OutboxEntry& e) { return e.size + e.topic.size() + 64; }
  bool spooling() const { return spool_ && spool_healthy_; }
  Lane& lane_of(const OutboxEntry& e) { return e.disk == OutboxEntry::Disk::Written ? backlog_ : live_; }
  bool queued(const OutboxEntry& e) const { return inflight_.count(e.id) == 0; }
  void enqueue(OutboxEntry& e);
  void unqueue(OutboxEntry& e);
  // Membership of a queued entry in writable_ / evictable_, from its state.
  void index(const OutboxEntry& e);
  void unindex(const OutboxEntry& e);
  void write(OutboxEntry& e);
  void drop_payload(OutboxEntry& e);
  void hold_payload(OutboxEntry& e, std::shared_ptr<const std::string> payload);
  void erase(std::unordered_map<uint64_t, OutboxEntry>::iterator it);
  // Writes and evicts to honour the memory budget and the online state; starts the
  // reads the backlog heads need.
  void balance();
  void prefetch();

  uint64_t max_bytes_;
  size_t prefetch_;
  SpoolBackend* spool_ = nullptr;
  std::function<void()> on_ready_;
  bool spool_healthy_ = true;
  bool online_ = true;
  bool live_first_ = false;
  uint64_t spool_bytes_ = 0;
  uint64_t spool_max_bytes_ = 0;

  uint64_t next_id_ = 1;
  uint64_t mem_bytes_ = 0;     // cost() of entries whose payload is in memory
  uint64_t pinned_bytes_ = 0;  // ... and not on disk
  size_t writing_ = 0;
  size_t backlog_count_ = 0;
  std::unordered_map<uint64_t, OutboxEntry> entries_;  // queued and in flight
  std::unordered_map<uint64_t, uint64_t> by_spool_id_;  // spool id -> entry id
  std::unordered_set<uint64_t> ack_when_written_;       // acked while their write was pending
  Lane live_, backlog_;
  // Candidates for writing (not on disk) and for payload eviction (on disk, in memory,
  // not prefetched), queued only; begin() is the lowest priority's newest entry.
  struct LowestNewest {
    bool operator()(const std::pair<int, uint64_t>& a, const std::pair<int, uint64_t>& b) const {
      return a.first != b.first ? a.first < b.first : a.second > b.second;
    }
  };
  std::set<std::pair<int, uint64_t>, LowestNewest> writable_, evictable_;
  uint64_t writing_bytes_ = 0;
  size_t loading_ = 0, prefetched_ = 0;
  std::map<int, bool> backlog_turn_;  // per priority: the backlog goes next
  std::set<uint64_t> inflight_;       // ids: original order
  OutboxCounters counters_;
};

}  // namespace edgelink

#pragma once
// Everything that must reach the broker waits here until its PUBACK: stream batches,
// action statuses and, later, other payloads. Priority-ordered (higher first); FIFO
// within a priority, which keeps each stream's batches in order because a stream has
// one priority. Entries leave only through ack(); a lost connection puts everything
// in flight back at the front, in its original order (duplicates possible, loss not).
//
// The memory budget is soft: push() never refuses, and accepting() turns false once
// the budget is reached so the apps' sockets stop being read (back-pressure). The disk
// spool slots in behind this interface: entries over budget move to segment files.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace edgelink {

struct OutboxEntry {
  uint64_t id = 0;  // assigned by push(), increasing
  std::string topic;
  // Shared and immutable: the publish in flight (Paho's message) and the Outbox's copy
  // for a resend are the same bytes, never copied.
  std::shared_ptr<const std::string> payload;
  std::string stream;  // for counters and logs
  uint32_t points = 0;
  int priority = 0;
  bool retained = false;
};

struct OutboxCounters {
  uint64_t pushed = 0;
  uint64_t acked = 0;
  uint64_t requeued = 0;  // sent again after a reconnect or a failed publish
};

class Outbox {
 public:
  explicit Outbox(uint64_t max_memory_bytes);

  uint64_t push(OutboxEntry entry);
  // The next entry to publish (highest priority, oldest first); it moves to in-flight.
  // nullptr when nothing is queued. The pointer stays valid until ack/requeue.
  const OutboxEntry* next();
  // PUBACK for `id`. False when `id` is not in flight (a stale acknowledgement).
  bool ack(uint64_t id);
  // Puts one in-flight entry back at the front of its queue (its publish failed).
  void requeue(uint64_t id);
  // Puts every in-flight entry back, in order (connection lost).
  void requeue_all();

  bool accepting() const { return bytes_ < max_bytes_; }
  // Back-pressure releases only below 3/4 of the budget, so apps are not toggled
  // on and off by every single acknowledgement.
  bool below_low_water() const { return bytes_ < max_bytes_ - max_bytes_ / 4; }
  bool empty() const { return queued_ == 0 && inflight_.empty(); }
  size_t queued() const { return queued_; }
  size_t in_flight() const { return inflight_.size(); }
  uint64_t bytes() const { return bytes_; }
  uint64_t max_bytes() const { return max_bytes_; }
  void set_max_bytes(uint64_t n) { max_bytes_ = n; }
  const OutboxCounters& counters() const { return counters_; }

 private:
  static uint64_t cost(const OutboxEntry& e) { return (e.payload ? e.payload->size() : 0) + e.topic.size() + 64; }

  uint64_t max_bytes_;
  uint64_t bytes_ = 0;
  uint64_t next_id_ = 1;
  size_t queued_ = 0;
  std::map<int, std::deque<OutboxEntry>, std::greater<>> queues_;  // by priority, highest first
  std::map<uint64_t, OutboxEntry> inflight_;                        // by id: original order
  OutboxCounters counters_;
};

}  // namespace edgelink

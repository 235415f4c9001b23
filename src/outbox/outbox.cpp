#include "edgelink/outbox/outbox.hpp"

#include <cassert>

namespace edgelink {

Outbox::Outbox(uint64_t max_memory_bytes) : max_bytes_(max_memory_bytes) {}

uint64_t Outbox::push(OutboxEntry entry) {
  entry.id = next_id_++;
  bytes_ += cost(entry);
  ++queued_;
  ++counters_.pushed;
  uint64_t id = entry.id;
  queues_[entry.priority].push_back(std::move(entry));
  return id;
}

const OutboxEntry* Outbox::next() {
  for (auto it = queues_.begin(); it != queues_.end(); ++it) {
    if (it->second.empty()) continue;
    OutboxEntry entry = std::move(it->second.front());
    it->second.pop_front();
    --queued_;
    auto [pos, inserted] = inflight_.emplace(entry.id, std::move(entry));
    assert(inserted);
    return &pos->second;
  }
  return nullptr;
}

bool Outbox::ack(uint64_t id) {
  auto it = inflight_.find(id);
  if (it == inflight_.end()) return false;
  bytes_ -= cost(it->second);
  inflight_.erase(it);
  ++counters_.acked;
  return true;
}

void Outbox::requeue(uint64_t id) {
  auto it = inflight_.find(id);
  if (it == inflight_.end()) return;
  auto& queue = queues_[it->second.priority];
  // Keep id order inside the queue: in-flight entries are older than queued ones,
  // but an older sibling may already have been requeued ahead of this one.
  auto pos = queue.begin();
  while (pos != queue.end() && pos->id < id) ++pos;
  queue.insert(pos, std::move(it->second));
  inflight_.erase(it);
  ++queued_;
  ++counters_.requeued;
}

void Outbox::requeue_all() {
  while (!inflight_.empty()) requeue(inflight_.begin()->first);
}

}  // namespace edgelink

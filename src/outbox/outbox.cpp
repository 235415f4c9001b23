#include "edgelink/outbox/outbox.hpp"

#include <algorithm>
#include <cassert>
#include <iterator>

namespace edgelink {

using Disk = OutboxEntry::Disk;

Outbox::Outbox(uint64_t max_memory_bytes, size_t prefetch)
    : max_bytes_(max_memory_bytes), prefetch_(prefetch) {}

void Outbox::set_spool(SpoolBackend* spool, std::function<void()> on_ready) {
  spool_ = spool;
  on_ready_ = std::move(on_ready);
  balance();
}

void Outbox::set_spool_usage(uint64_t bytes, uint64_t max_bytes) {
  bool eased = bytes < spool_bytes_ || max_bytes > spool_max_bytes_;
  spool_bytes_ = bytes;
  spool_max_bytes_ = max_bytes;
  if (eased && on_ready_) on_ready_();
}

void Outbox::set_online(bool online) {
  if (online_ == online) return;
  online_ = online;
  balance();
}

void Outbox::set_live_first(bool live_first) {
  live_first_ = live_first;
  balance();
}

void Outbox::set_spool_healthy(bool healthy) {
  if (spool_healthy_ == healthy) return;
  spool_healthy_ = healthy;
  balance();
}

void Outbox::set_max_bytes(uint64_t n) {
  max_bytes_ = n;
  balance();
}

void Outbox::index(const OutboxEntry& e) {
  // In flight too: writing a payload that Paho also holds frees nothing now, but lets it
  // leave memory at once if the connection drops; only eviction must wait for requeue.
  if (e.disk == Disk::None) writable_.emplace(e.priority, e.id);
  if (queued(e) && e.disk == Disk::Written && e.payload && !e.prefetched) evictable_.emplace(e.priority, e.id);
}

void Outbox::unindex(const OutboxEntry& e) {
  writable_.erase({e.priority, e.id});
  evictable_.erase({e.priority, e.id});
}

void Outbox::enqueue(OutboxEntry& e) {
  if (e.disk == Disk::Written) ++backlog_count_;
  lane_of(e)[e.priority].insert(e.id);
  index(e);
}

void Outbox::unqueue(OutboxEntry& e) {
  evictable_.erase({e.priority, e.id});
  Lane& lane = lane_of(e);
  auto it = lane.find(e.priority);
  if (it == lane.end() || it->second.erase(e.id) == 0) return;
  if (it->second.empty()) lane.erase(it);
  if (e.disk == Disk::Written) --backlog_count_;
}

void Outbox::hold_payload(OutboxEntry& e, std::shared_ptr<const std::string> payload) {
  assert(!e.payload);
  e.payload = std::move(payload);
  mem_bytes_ += cost(e);
  if (e.disk != Disk::Written) pinned_bytes_ += cost(e);
}

void Outbox::drop_payload(OutboxEntry& e) {
  if (!e.payload) return;
  mem_bytes_ -= cost(e);
  if (e.disk != Disk::Written) pinned_bytes_ -= cost(e);
  e.payload.reset();
}

void Outbox::erase(std::unordered_map<uint64_t, OutboxEntry>::iterator it) {
  OutboxEntry& e = it->second;
  if (queued(e)) unqueue(e);
  unindex(e);
  inflight_.erase(e.id);
  drop_payload(e);
  if (e.loading) --loading_;
  if (e.prefetched) --prefetched_;
  if (e.disk == Disk::Written) by_spool_id_.erase(e.spool_id);
  entries_.erase(it);
}

uint64_t Outbox::push(OutboxEntry entry) {
  entry.id = next_id_++;
  entry.disk = Disk::None;
  entry.loading = entry.prefetched = false;
  entry.spool_id = 0;
  auto payload = std::move(entry.payload);
  entry.size = payload ? payload->size() : 0;
  ++counters_.pushed;
  uint64_t id = entry.id;
  OutboxEntry& e = entries_.emplace(id, std::move(entry)).first->second;
  hold_payload(e, payload ? std::move(payload) : std::make_shared<const std::string>());
  enqueue(e);
  if (!online_) write(e);
  balance();
  return id;
}

void Outbox::restore(const std::vector<RestoredEntry>& restored) {
  for (const auto& r : restored) {
    OutboxEntry e;
    e.id = next_id_++;
    e.stream = r.stream;
    e.priority = r.priority;
    e.size = r.size;
    e.disk = Disk::Written;
    e.spool_id = r.spool_id;
    by_spool_id_[r.spool_id] = e.id;
    OutboxEntry& stored = entries_.emplace(e.id, std::move(e)).first->second;
    enqueue(stored);
    ++counters_.restored;
  }
  prefetch();
}

const OutboxEntry* Outbox::next() {
  auto li = live_.begin();
  auto bi = backlog_.begin();
  while (li != live_.end() || bi != backlog_.end()) {
    int p = li == live_.end() ? bi->first : bi == backlog_.end() ? li->first : std::max(li->first, bi->first);
    std::set<uint64_t>* live = li != live_.end() && li->first == p ? &li->second : nullptr;
    std::set<uint64_t>* back = bi != backlog_.end() && bi->first == p ? &bi->second : nullptr;
    bool back_ready = back && entries_.at(*back->begin()).payload != nullptr;
    bool take_back;
    if (live_first_) {
      bool& turn = backlog_turn_[p];
      take_back = back_ready && (!live || turn);
      if (live || back_ready) turn = !take_back;
    } else {
      // In order: the older head of the two lanes, and nothing of this priority while
      // that head is a backlog entry still being read.
      take_back = back && (!live || *back->begin() < *live->begin());
      if (take_back && !back_ready) live = nullptr;
    }
    if (live || (take_back && back_ready)) {
      OutboxEntry& e = entries_.at(*(take_back ? back : live)->begin());
      unqueue(e);
      inflight_.insert(e.id);
      if (e.prefetched) {
        e.prefetched = false;
        --prefetched_;
      }
      if (take_back) prefetch();
      return &e;
    }
    if (li != live_.end() && li->first == p) ++li;
    if (back) ++bi;
  }
  return nullptr;
}

bool Outbox::ack(uint64_t id) {
  if (inflight_.count(id) == 0) return false;
  auto it = entries_.find(id);
  assert(it != entries_.end());
  OutboxEntry& e = it->second;
  if (e.disk == Disk::Written) {
    spool_->ack(e.spool_id);
    ++counters_.replayed;
  } else if (e.disk == Disk::Writing) {
    ack_when_written_.insert(id);
    writing_bytes_ -= cost(e);
  }
  ++counters_.acked_by_stream[e.stream];
  erase(it);
  ++counters_.acked;
  prefetch();
  return true;
}

void Outbox::requeue(uint64_t id) {
  if (inflight_.erase(id) == 0) return;
  OutboxEntry& e = entries_.at(id);
  assert(e.payload);  // in-flight payloads are never evicted
  enqueue(e);
  ++counters_.requeued;
  if (!online_) write(e);
}

void Outbox::requeue_all() {
  while (!inflight_.empty()) requeue(*inflight_.begin());
  balance();
}

void Outbox::spool_all() {
  if (!spooling()) return;
  std::vector<uint64_t> ids;
  for (const auto& [id, e] : entries_)
    if (e.disk == Disk::None) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (uint64_t id : ids) write(entries_.at(id));
}

void Outbox::write(OutboxEntry& e) {
  if (!spooling() || e.disk != Disk::None) return;
  unindex(e);
  e.disk = Disk::Writing;
  ++writing_;
  writing_bytes_ += cost(e);
  spool_->write(e);
}

void Outbox::on_written(uint64_t id, uint64_t spool_id) {
  auto it = entries_.find(id);
  if (ack_when_written_.erase(id) || it == entries_.end()) {
    // Acknowledged by the broker while it was being written: it is done.
    --writing_;
    spool_->ack(spool_id);
    return;
  }
  OutboxEntry& e = it->second;
  assert(e.disk == Disk::Writing);
  --writing_;
  writing_bytes_ -= cost(e);
  ++counters_.spooled;
  bool was_queued = queued(e);
  if (was_queued) unqueue(e);
  pinned_bytes_ -= cost(e);  // the payload is in memory (a Writing entry always has it)
  e.disk = Disk::Written;
  e.spool_id = spool_id;
  by_spool_id_[spool_id] = id;
  if (was_queued) enqueue(e);
  balance();
  if (on_ready_) on_ready_();  // memory pinned by it is free to leave now
}

void Outbox::on_write_failed(uint64_t id, bool refused) {
  --writing_;
  ++counters_.write_failures;
  auto it = entries_.find(id);
  if (ack_when_written_.erase(id) || it == entries_.end()) return;
  OutboxEntry& e = it->second;
  writing_bytes_ -= cost(e);
  // Stays in memory: published when the broker takes it. A refused entry is not
  // offered to the spool again; after a disk error the spool is retried as a whole.
  e.disk = refused ? Disk::Refused : Disk::None;
  if (!refused) spool_healthy_ = false;
  index(e);
}

void Outbox::on_loaded(uint64_t id, std::string topic, std::shared_ptr<const std::string> payload, uint32_t points,
                       bool retained) {
  auto it = entries_.find(id);
  if (it == entries_.end() || !it->second.loading) return;  // dropped meanwhile
  OutboxEntry& e = it->second;
  e.loading = false;
  --loading_;
  ++counters_.loads;
  e.topic = std::move(topic);
  e.points = points;
  e.retained = retained;
  e.size = payload->size();
  hold_payload(e, std::move(payload));
  e.prefetched = true;
  ++prefetched_;
  if (on_ready_) on_ready_();
}

void Outbox::on_load_failed(uint64_t id, const std::string& reason) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  ++counters_.dropped[{it->second.stream, reason}];
  erase(it);
  prefetch();
  if (on_ready_) on_ready_();
}

void Outbox::on_dropped(uint64_t spool_id, const std::string& stream, const std::string& reason) {
  auto found = by_spool_id_.find(spool_id);
  if (found == by_spool_id_.end()) return;  // acknowledged already: nothing is lost
  auto it = entries_.find(found->second);
  assert(it != entries_.end());
  OutboxEntry& e = it->second;
  if (!queued(e)) {
    // Being published right now, from memory: keep it, it is simply no longer on disk.
    by_spool_id_.erase(found);
    e.disk = Disk::None;
    e.spool_id = 0;
    pinned_bytes_ += cost(e);
    index(e);
    return;
  }
  ++counters_.dropped[{stream, reason}];
  erase(it);
  // It may have been a backlog head, or read ahead (a smaller spool budget drops the
  // oldest records): the entries behind it must be asked for, nothing else would.
  prefetch();
  if (on_ready_) on_ready_();
}

size_t Outbox::memory_only() const {
  size_t n = 0;
  for (const auto& [id, e] : entries_)
    if (e.disk == Disk::None || e.disk == Disk::Refused) ++n;
  return n;
}

std::map<std::string, Outbox::StreamPending> Outbox::pending_by_stream() const {
  std::map<std::string, StreamPending> out;
  for (const auto& [id, e] : entries_) {
    StreamPending& p = out[e.stream];
    ++p.batches;
    p.points += e.points;
  }
  return out;
}

bool Outbox::accepting() const {
  if (pinned_bytes_ >= max_bytes_) return false;
  return !(online_ && spool_ && spool_max_bytes_ && spool_bytes_ >= spool_max_bytes_ / 10 * 9);
}

bool Outbox::below_low_water() const {
  if (pinned_bytes_ >= max_bytes_ - max_bytes_ / 4) return false;
  return !(online_ && spool_ && spool_max_bytes_ && spool_bytes_ >= spool_max_bytes_ / 4 * 3);
}

void Outbox::balance() {
  prefetch();  // pins the backlog heads before anything is evicted
  if (spooling()) {
    if (!online_) {
      // Everything goes to disk, oldest first within each priority.
      while (!writable_.empty()) write(entries_.at(std::prev(writable_.end())->second));
    } else if (mem_bytes_ > max_bytes_ && (live_first_ || backlog_count_ > 0)) {
      // Over budget while the backlog is the path anyway: the entries published last
      // (lowest priority, newest) go to disk until what must stay in memory is back at
      // 3/4 of the budget. Without a backlog the budget is back-pressure (accepting()).
      const uint64_t target = max_bytes_ - max_bytes_ / 4;
      while (!writable_.empty() && pinned_bytes_ - writing_bytes_ > target)
        write(entries_.at(writable_.begin()->second));
    }
  }
  // Payloads already on disk leave memory, lowest priority and newest first.
  while (mem_bytes_ > max_bytes_ && !evictable_.empty()) {
    OutboxEntry& e = entries_.at(evictable_.begin()->second);
    evictable_.erase(evictable_.begin());
    drop_payload(e);
    ++counters_.evicted_payloads;
  }
  prefetch();
}

void Outbox::prefetch() {
  if (!spool_ || backlog_count_ == 0) return;
  // The head of every backlog lane first, whatever the window and the budget: next()
  // waits for it, and what was read ahead behind it cannot leave before it. Without
  // this an evicted head (a requeued entry, or one written while still in memory) sat
  // behind a window already full of entries queued after it, and the backlog stalled
  // for good. Pinned (prefetched) so eviction does not take it back.
  for (auto& [priority, ids] : backlog_) {
    OutboxEntry& head = entries_.at(*ids.begin());
    if (head.payload) {
      if (!head.prefetched) {
        head.prefetched = true;
        ++prefetched_;
        evictable_.erase({head.priority, head.id});
      }
    } else if (!head.loading) {
      head.loading = true;
      ++loading_;
      spool_->load(head.id, head.spool_id);
    }
  }
  // Read ahead at most prefetch_ entries, and only while memory has room (one at a
  // time when it has none, so the backlog still moves).
  auto room = [this] {
    size_t ahead = loading_ + prefetched_;
    return ahead < prefetch_ && (ahead == 0 || mem_bytes_ < max_bytes_);
  };
  for (auto& [priority, ids] : backlog_) {
    size_t looked = 0;
    for (uint64_t id : ids) {
      if (!room() || looked++ >= prefetch_) break;
      OutboxEntry& e = entries_.at(id);
      if (e.payload || e.loading) continue;
      e.loading = true;
      ++loading_;
      spool_->load(e.id, e.spool_id);
    }
    if (!room()) return;
  }
}

}  // namespace edgelink

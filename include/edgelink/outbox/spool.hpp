#pragma once
// SpoolStore: the outbox's disk spool, one directory of append-only segment files
// (format in spool_format.hpp). Synchronous, single-threaded, no locks: the daemon owns
// one store on its disk worker thread and posts results back to the event loop. Every
// call returns an error_code (errno values in generic_category, or SpoolErrc); nothing
// throws across the API.
//
// Layout of `dir`:
//   00000000000000000042.seg   segment 42: header + records, written once, in order
//   00000000000000000042.ack   its ack log: 16-byte entries "ELAK", u64 record id, CRC-32C
//   quarantine/                segments that must not be replayed here (see below)
//
// Segments hold records of one priority each, and there is one open segment per
// priority. So "drop the oldest batches of the lowest priority first" frees disk in
// whole files: the oldest segment of the lowest priority is deleted, and every record
// still live in it is counted as dropped by stream and reason. A segment is rolled when
// the next record would take it past segment_bytes.
//
// Acks survive a restart through the ack log: ack(id) appends one entry to the log of
// the record's segment; when the last live record of a segment is acked the segment and
// its log are unlinked instead (the open segment too: the next append starts a new
// one). Recovery replays a segment's records minus the ids in
// its log. An ack lost in a crash (written but not yet synced) only replays a batch
// that the broker already has: a duplicate, which QoS 1 allows; a record lost is not.
// A torn ack entry is skipped (entries are found by magic and CRC, not by position).
//
// Durability is the caller's: append() and ack() write (no fsync); sync() fsyncs every
// file written since the last sync, and the directory when files were created or
// removed. The [spool] fsync policy (batch / interval / never) decides when to call it.
// File descriptors: the directory, one per open segment (one per priority in use), one
// per segment with an ack log, one cached for read(); sealed segments are closed.
//
// Budget: bytes() is the size of every segment and ack log. append() evicts until the
// record fits under max_bytes; an ack log entry (16 bytes) can take bytes() a little
// over it, which the next append() settles.
//
// Recovery (open()) scans the segments in order: records are checked one by one;
// a corrupt record is skipped and counted (the rest of the segment is kept), and a
// truncated tail (a write cut short by a crash) is counted. Segments written under a
// different identity (project_id, device_id), with a newer format version, or with an
// unreadable header are moved to quarantine/ and listed in recovery(): they are kept
// for an operator, never published under this identity. New segments start after the
// highest existing number; recovered segments are never appended to again.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "edgelink/outbox/spool_format.hpp"

// Wiring it behind the Outbox (the next step, not done yet):
//  1. One store at persistence_path/spool on a disk worker thread; results are posted
//     back to the loop. Log recovery() at start-up (quarantined files, corrupt and
//     truncated counts, drops).
//  2. Spool ids are not Outbox ids: keep the mapping; on PUBACK ack(spool_id); replay
//     pending() + read() interleaved with live data (neither starves the other).
//  3. sync() per [spool] fsync: after each write (batch), on a timer (interval), never;
//     time it for the fsync-latency metric.
//  4. Log and count every SpoolAppend::dropped / recovery().dropped and forget those
//     ids; a corrupt record from read() means forget that entry.
//  5. Back-pressure from bytes() against max_bytes() before appends start evicting.

namespace edgelink {

enum class SpoolErrc {
  not_open = 1,      // open() has not succeeded
  unknown_record,    // ack/read of an id that is not (or no longer) in the spool
  invalid_record,    // stream or topic longer than the format allows
  record_too_large,  // bigger than max_bytes on its own: dropped
  spool_full,        // no room, and everything on disk has a higher priority: dropped
  corrupt_record,    // read() found the record damaged on disk: dropped
  invalid_identity,  // project_id/device_id too long for a segment header
};
const std::error_category& spool_category();
std::error_code make_error_code(SpoolErrc e);

enum class SpoolDropReason { SpoolFull, TooLarge, Corrupt };
const char* to_string(SpoolDropReason reason);

// Test seam: the store's writes and fsyncs go through these when set (else write(2),
// fsync(2)), so tests can inject ENOSPC, EIO or a short write.
struct SpoolIo {
  std::function<ssize_t(int fd, const void* data, size_t size)> write;
  std::function<int(int fd)> fsync;
};

struct SpoolOptions {
  std::string dir;  // created (with parents) when missing
  SpoolIdentity identity;
  uint64_t max_bytes = 256u << 20;     // disk budget: segments and ack logs
  uint64_t segment_bytes = 4u << 20;  // roll size; a bigger record gets a segment of its own
  SpoolIo io;
};

struct SpoolDrop {
  uint64_t id;
  std::string stream;
  SpoolDropReason reason;
};

struct SpoolCounters {
  uint64_t appended = 0;
  uint64_t appended_bytes = 0;
  uint64_t acked = 0;
  uint64_t corrupt_records = 0;  // damaged regions skipped (recovery) or records failing read()
  uint64_t corrupt_bytes = 0;
  uint64_t truncated_records = 0;
  uint64_t quarantined_segments = 0;
  uint64_t segments_created = 0;
  uint64_t segments_deleted = 0;
  uint64_t write_errors = 0;
  uint64_t sync_errors = 0;
  uint64_t syncs = 0;
  std::map<std::pair<std::string, SpoolDropReason>, uint64_t> drops;  // by (stream, reason)
  uint64_t dropped() const;
};

struct QuarantinedSegment {
  std::string file;    // name inside quarantine/
  std::string reason;  // for the log line
};

struct SpoolRecovery {
  uint64_t segments = 0;   // segments kept with live records
  uint64_t records = 0;    // live records found (replay these)
  uint64_t acked = 0;      // records skipped because their ack was logged
  uint64_t corrupt = 0;    // corrupt regions skipped
  uint64_t truncated = 0;  // truncated tails
  uint64_t removed = 0;    // empty or fully acked segments, orphan ack logs: unlinked
  std::vector<QuarantinedSegment> quarantined;
  std::vector<SpoolDrop> dropped;  // over max_bytes after a budget cut
};

// A live record, without its bytes (read() fetches them).
struct SpoolPending {
  uint64_t id;
  int32_t priority;
  uint32_t size;  // bytes on disk
  std::string stream;
};

struct SpoolAppend {
  std::error_code error;
  uint64_t id = 0;             // the record's id in this store
  uint64_t bytes_written = 0;  // record, plus a segment header when one was started
  std::vector<SpoolDrop> dropped;  // evicted to make room (or this record, on error)
};

class SpoolStore {
 public:
  explicit SpoolStore(SpoolOptions options);
  ~SpoolStore();
  SpoolStore(const SpoolStore&) = delete;
  SpoolStore& operator=(const SpoolStore&) = delete;

  // Creates the directory and recovers what is in it. Call once.
  std::error_code open();

  // Writes `rec` (its id is ignored: the store numbers records) to the open segment of
  // its priority, evicting older, lower-or-equal priority segments when over budget.
  SpoolAppend append(const SpoolRecordView& rec);
  // The broker acknowledged record `id`. unknown_record for a stale or unknown id.
  std::error_code ack(uint64_t id);
  // Reads a live record back. A record that no longer verifies is dropped (reason
  // Corrupt) and corrupt_record returned.
  std::error_code read(uint64_t id, SpoolRecord& out);
  std::error_code sync();

  // Live records in replay order: higher priority first, then oldest first (which is
  // each stream's order, a stream having one priority).
  std::vector<SpoolPending> pending() const;
  bool contains(uint64_t id) const { return index_.count(id) > 0; }

  // A lower budget evicts at once.
  std::vector<SpoolDrop> set_max_bytes(uint64_t max_bytes);
  uint64_t max_bytes() const { return options_.max_bytes; }
  uint64_t bytes() const { return bytes_; }
  size_t segments() const { return segments_.size(); }
  size_t records() const { return index_.size(); }
  const SpoolCounters& counters() const { return counters_; }
  const SpoolRecovery& recovery() const { return recovery_; }
  // The last error with its path and operation, for the log line.
  const std::string& last_error() const { return last_error_; }

 private:
  struct Meta {
    uint64_t seq;
    uint64_t offset;
    uint32_t size;
    int32_t priority;
    std::string stream;
  };
  struct Segment {
    uint64_t seq = 0;
    uint16_t version = kSpoolFormatVersion;
    int32_t priority = 0;  // lowest priority among its records
    uint64_t bytes = 0;    // segment file size
    uint64_t ack_bytes = 0;
    std::vector<uint64_t> ids;  // every record written, acked ones included
    size_t live = 0;
    int fd = -1;  // open for appending, or dirty and waiting for sync()
    bool appendable = false;
    bool dirty = false;
    int ack_fd = -1;
    bool ack_dirty = false;
  };

  std::string seg_path(uint64_t seq) const;
  std::string ack_path(uint64_t seq) const;
  std::error_code fail(int err, const std::string& what, const std::string& path);
  std::error_code write_all(int fd, std::string_view data, size_t& written);
  int do_fsync(int fd);

  std::error_code recover_segment(uint64_t seq, bool has_ack);
  void read_ack_log(uint64_t seq, std::vector<uint64_t>& ids);
  void quarantine(uint64_t seq, const std::string& reason);
  std::error_code create_segment(int32_t priority, Segment*& out);
  void seal(Segment& seg);
  void forget(uint64_t id, Segment& seg);
  std::error_code delete_segment(uint64_t seq);
  void drop_segment(uint64_t seq, SpoolDropReason reason, std::vector<SpoolDrop>& dropped);
  // The segment to evict for a record of `priority`: the oldest of the lowest priority,
  // unless everything on disk has a higher priority than the record.
  std::optional<uint64_t> victim(int32_t priority) const;
  void count_drop(const std::string& stream, SpoolDropReason reason);

  SpoolOptions options_;
  bool open_ = false;
  int dir_fd_ = -1;
  bool dir_dirty_ = false;
  uint64_t next_seq_ = 1;
  uint64_t next_id_ = 1;
  uint64_t bytes_ = 0;
  std::map<uint64_t, Segment> segments_;     // by sequence number: oldest first
  std::map<int32_t, uint64_t> open_by_prio_;  // priority -> its appendable segment
  std::map<uint64_t, Meta> index_;           // live records by id
  int read_fd_ = -1;                         // cached for read(): replay reads in order
  uint64_t read_seq_ = 0;
  std::string scratch_;
  std::string last_error_;
  SpoolCounters counters_;
  SpoolRecovery recovery_;
};

}  // namespace edgelink

template <>
struct std::is_error_code_enum<edgelink::SpoolErrc> : std::true_type {};

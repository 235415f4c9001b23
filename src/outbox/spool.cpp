#include "edgelink/outbox/spool.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace edgelink {

namespace {

constexpr size_t kReadChunk = 256u << 10;
constexpr size_t kMaxAckLogRead = 64u << 20;  // 4M acks: more than any segment holds
constexpr const char* kQuarantineDir = "quarantine";

class SpoolCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "spool"; }
  std::string message(int e) const override {
    switch (static_cast<SpoolErrc>(e)) {
      case SpoolErrc::not_open: return "spool not open";
      case SpoolErrc::unknown_record: return "no such record in the spool";
      case SpoolErrc::invalid_record: return "stream or topic too long for a spool record";
      case SpoolErrc::record_too_large: return "record larger than the spool's max_bytes";
      case SpoolErrc::spool_full: return "spool full of higher-priority records";
      case SpoolErrc::corrupt_record: return "spool record damaged on disk";
      case SpoolErrc::invalid_identity: return "project_id/device_id too long for a spool segment";
    }
    return "unknown spool error";
  }
};

// "<20 digits>.seg" / "<20 digits>.ack" -> sequence number.
bool parse_name(const char* name, const char* ext, uint64_t& seq) {
  const size_t len = std::strlen(name);
  if (len != 24 || std::strcmp(name + 20, ext) != 0) return false;
  seq = 0;
  for (size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    const uint64_t d = static_cast<uint64_t>(name[i] - '0');
    if (seq > (UINT64_MAX - d) / 10) return false;
    seq = seq * 10 + d;
  }
  return true;
}

std::string seq_name(uint64_t seq, const char* ext) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020llu%s", static_cast<unsigned long long>(seq), ext);
  return buf;
}

std::error_code errno_code(int err) { return {err, std::generic_category()}; }

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// pread until `size` bytes or end of file; false on an I/O error (errno set).
bool pread_full(int fd, char* out, size_t size, uint64_t offset, size_t& got) {
  got = 0;
  while (got < size) {
    const ssize_t n = ::pread(fd, out + got, size - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

const std::error_category& spool_category() {
  static const SpoolCategory category;
  return category;
}
std::error_code make_error_code(SpoolErrc e) { return {static_cast<int>(e), spool_category()}; }

const char* to_string(SpoolDropReason reason) {
  switch (reason) {
    case SpoolDropReason::SpoolFull: return "spool_full";
    case SpoolDropReason::TooLarge: return "too_large";
    case SpoolDropReason::Corrupt: return "corrupt";
  }
  return "unknown";
}

uint64_t SpoolCounters::dropped() const {
  uint64_t n = 0;
  for (const auto& [key, count] : drops) n += count;
  return n;
}

SpoolStore::SpoolStore(SpoolOptions options) : options_(std::move(options)) {}

SpoolStore::~SpoolStore() {
  for (auto& [seq, seg] : segments_) {
    close_fd(seg.fd);
    close_fd(seg.ack_fd);
  }
  close_fd(read_fd_);
  close_fd(dir_fd_);
}

std::string SpoolStore::seg_path(uint64_t seq) const { return options_.dir + "/" + seq_name(seq, ".seg"); }
std::string SpoolStore::ack_path(uint64_t seq) const { return options_.dir + "/" + seq_name(seq, ".ack"); }

std::error_code SpoolStore::fail(int err, const std::string& what, const std::string& path) {
  last_error_ = "spool: " + what + " " + path + ": " + std::strerror(err);
  return errno_code(err);
}

std::error_code SpoolStore::write_all(int fd, std::string_view data, size_t& written) {
  written = 0;
  while (written < data.size()) {
    const ssize_t n = options_.io.write ? options_.io.write(fd, data.data() + written, data.size() - written)
                                        : ::write(fd, data.data() + written, data.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_code(errno);
    if (n == 0) return errno_code(EIO);  // write(2) of a non-empty buffer never returns 0 on a file
    written += static_cast<size_t>(n);
  }
  return {};
}

int SpoolStore::do_fsync(int fd) { return options_.io.fsync ? options_.io.fsync(fd) : ::fsync(fd); }

std::error_code SpoolStore::open() {
  if (open_) return {};
  if (spool_header_size(options_.identity) > kSpoolMaxHeaderBytes) return SpoolErrc::invalid_identity;
  std::error_code ec;
  std::filesystem::create_directories(options_.dir, ec);
  if (ec) return fail(ec.value(), "cannot create directory", options_.dir);
  dir_fd_ = ::open(options_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) return fail(errno, "cannot open directory", options_.dir);
  // Root passes this check whatever the mode; its writes then fail in append() instead.
  if (::access(options_.dir.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    close_fd(dir_fd_);
    return fail(err, "cannot write to directory", options_.dir);
  }

  std::set<uint64_t> segs, acks;
  DIR* d = ::opendir(options_.dir.c_str());
  if (!d) {
    const int err = errno;
    close_fd(dir_fd_);
    return fail(err, "cannot list directory", options_.dir);
  }
  while (const dirent* e = ::readdir(d)) {
    uint64_t seq = 0;
    if (parse_name(e->d_name, ".seg", seq)) segs.insert(seq);
    else if (parse_name(e->d_name, ".ack", seq)) acks.insert(seq);
  }
  ::closedir(d);

  for (uint64_t seq : segs) {
    next_seq_ = std::max(next_seq_, seq + 1);
    if (auto err = recover_segment(seq, acks.count(seq) > 0)) return err;
  }
  for (uint64_t seq : acks) {
    next_seq_ = std::max(next_seq_, seq + 1);
    if (segs.count(seq)) continue;
    // The segment went first (delete_segment), the crash came before its log followed.
    if (::unlink(ack_path(seq).c_str()) == 0) ++recovery_.removed, dir_dirty_ = true;
  }
  recovery_.segments = segments_.size();
  recovery_.records = index_.size();
  open_ = true;
  recovery_.dropped = set_max_bytes(options_.max_bytes);
  return {};
}

void SpoolStore::read_ack_log(uint64_t seq, std::vector<uint64_t>& ids) {
  const std::string path = ack_path(seq);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st {};
  std::string buf;
  size_t got = 0;
  if (::fstat(fd, &st) == 0) {
    buf.resize(std::min<uint64_t>(static_cast<uint64_t>(st.st_size), kMaxAckLogRead));
    if (!pread_full(fd, buf.data(), buf.size(), 0, got)) got = 0;
  }
  ::close(fd);
  buf.resize(got);
  decode_ack_log(buf, ids);
}

std::error_code SpoolStore::recover_segment(uint64_t seq, bool has_ack) {
  const std::string path = seg_path(seq);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    quarantine(seq, std::string("unreadable: ") + std::strerror(errno));
    return {};
  }
  struct RecoveredRecord {
    uint64_t id, offset;
    uint32_t size;
    int32_t priority;
    std::string stream;
  };
  std::vector<RecoveredRecord> found;
  SegmentReader reader;
  std::string chunk(kReadChunk, '\0');
  uint64_t offset = 0;
  std::string verdict;  // non-empty: quarantine with this reason
  bool empty_header = false, done = false, eof = false;
  while (!done) {
    const ssize_t n = ::pread(fd, chunk.data(), chunk.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      verdict = std::string("read error: ") + std::strerror(errno);
      break;
    }
    if (n == 0) {
      if (eof) break;  // the reader always ends after finish(); this is only a guard
      eof = true;
      reader.finish();
    }
    reader.feed(std::string_view(chunk.data(), static_cast<size_t>(n)));
    offset += static_cast<uint64_t>(n);
    for (;;) {
      const SegmentReader::Result r = reader.next();
      using S = SegmentReader::Status;
      if (r.status == S::NeedMore) break;
      if (r.status == S::End) {
        done = true;
        break;
      }
      switch (r.status) {
        case S::Header:
          if (!(reader.header().identity == options_.identity)) {
            verdict = "written under project_id \"" + reader.header().identity.project_id +
                      "\", device_id \"" + reader.header().identity.device_id + "\"";
          }
          break;
        case S::Record: {
          const SpoolRecordView& rec = reader.record();
          found.push_back({rec.id, r.offset, static_cast<uint32_t>(r.size), rec.priority, std::string(rec.stream)});
          break;
        }
        case S::Corrupt:
          ++recovery_.corrupt, ++counters_.corrupt_records;
          counters_.corrupt_bytes += r.size;
          break;
        case S::TruncatedTail:
          ++recovery_.truncated, ++counters_.truncated_records;
          break;
        case S::TruncatedHeader:
          empty_header = true;  // created, crashed before its header was whole: holds nothing
          break;
        case S::BadHeader: verdict = "not a spool segment (bad header)"; break;
        case S::UnsupportedVersion:
          verdict = "format version " + std::to_string(reader.header().version) + " is newer than " +
                    std::to_string(kSpoolFormatVersion);
          break;
        default: break;
      }
      if (!verdict.empty()) {
        done = true;
        break;
      }
    }
  }
  ::close(fd);
  if (!verdict.empty()) {
    quarantine(seq, verdict);
    return {};
  }

  Segment seg;
  seg.seq = seq;
  seg.version = reader.header().version;
  seg.bytes = offset;
  std::vector<uint64_t> acked;
  if (has_ack) read_ack_log(seq, acked);
  std::sort(acked.begin(), acked.end());
  for (auto& rec : found) {
    next_id_ = std::max(next_id_, rec.id + 1);
    if (std::binary_search(acked.begin(), acked.end(), rec.id)) {
      ++recovery_.acked;
      continue;
    }
    if (index_.count(rec.id)) {  // the same id twice (a copied segment): keep the first
      ++recovery_.corrupt, ++counters_.corrupt_records;
      continue;
    }
    seg.priority = seg.live == 0 ? rec.priority : std::min(seg.priority, rec.priority);
    seg.ids.push_back(rec.id);
    ++seg.live;
    index_.emplace(rec.id, Meta{seq, rec.offset, rec.size, rec.priority, std::move(rec.stream)});
  }
  if (seg.live == 0 || empty_header) {
    ::unlink(path.c_str());
    ::unlink(ack_path(seq).c_str());
    ++recovery_.removed;
    dir_dirty_ = true;
    return {};
  }
  struct stat st {};
  if (has_ack && ::stat(ack_path(seq).c_str(), &st) == 0) seg.ack_bytes = static_cast<uint64_t>(st.st_size);
  bytes_ += seg.bytes + seg.ack_bytes;
  segments_.emplace(seq, std::move(seg));
  return {};
}

void SpoolStore::quarantine(uint64_t seq, const std::string& reason) {
  const std::string qdir = options_.dir + "/" + kQuarantineDir;
  if (::mkdir(qdir.c_str(), 0700) != 0 && errno != EEXIST) {
    fail(errno, "cannot create", qdir);
    recovery_.quarantined.push_back({"", reason + "; left in place: " + last_error_});
    return;
  }
  // Never overwrite an earlier quarantined file of the same name.
  std::string name = seq_name(seq, ".seg");
  std::string suffix;
  for (int k = 1; k < 10000; ++k) {
    struct stat st {};
    if (::stat((qdir + "/" + name + suffix).c_str(), &st) != 0) break;
    suffix = "." + std::to_string(k);
  }
  if (::rename(seg_path(seq).c_str(), (qdir + "/" + name + suffix).c_str()) != 0) {
    fail(errno, "cannot move to quarantine", seg_path(seq));
    recovery_.quarantined.push_back({"", reason + "; left in place: " + last_error_});
    return;
  }
  ::rename(ack_path(seq).c_str(), (qdir + "/" + seq_name(seq, ".ack") + suffix).c_str());
  dir_dirty_ = true;
  ++counters_.quarantined_segments;
  recovery_.quarantined.push_back({name + suffix, reason});
}

std::error_code SpoolStore::create_segment(int32_t priority, Segment*& out) {
  const uint64_t seq = next_seq_++;
  const std::string path = seg_path(seq);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    ++counters_.write_errors;
    return fail(errno, "cannot create", path);
  }
  scratch_.clear();
  encode_segment_header(options_.identity, scratch_);
  size_t written = 0;
  if (auto ec = write_all(fd, scratch_, written)) {
    ::close(fd);
    ::unlink(path.c_str());
    ++counters_.write_errors;
    return fail(ec.value(), "cannot write", path);
  }
  Segment seg;
  seg.seq = seq;
  seg.priority = priority;
  seg.bytes = scratch_.size();
  seg.fd = fd;
  seg.appendable = true;
  seg.dirty = true;
  dir_dirty_ = true;
  bytes_ += seg.bytes;
  ++counters_.segments_created;
  open_by_prio_[priority] = seq;
  out = &segments_.emplace(seq, std::move(seg)).first->second;
  return {};
}

// No more appends to `seg`. Its fd is closed now (sync() reopens it if it is still dirty)
// so a "never" fsync policy does not keep one descriptor per segment.
void SpoolStore::seal(Segment& seg) {
  seg.appendable = false;
  close_fd(seg.fd);
  auto it = open_by_prio_.find(seg.priority);
  if (it != open_by_prio_.end() && it->second == seg.seq) open_by_prio_.erase(it);
}

std::optional<uint64_t> SpoolStore::victim(int32_t priority) const {
  std::optional<uint64_t> best;
  int32_t best_priority = 0;
  for (const auto& [seq, seg] : segments_) {  // oldest first, so ties keep the oldest
    if (!best || seg.priority < best_priority) best = seq, best_priority = seg.priority;
  }
  if (best && best_priority > priority) return std::nullopt;
  return best;
}

void SpoolStore::count_drop(const std::string& stream, SpoolDropReason reason) {
  ++counters_.drops[{stream, reason}];
}

SpoolAppend SpoolStore::append(const SpoolRecordView& in) {
  SpoolAppend result;
  if (!open_) {
    result.error = SpoolErrc::not_open;
    return result;
  }
  SpoolRecordView rec = in;
  rec.id = next_id_;
  const size_t size = spool_record_size(rec);
  if (size == 0) {
    result.error = SpoolErrc::invalid_record;
    return result;
  }
  const size_t header = spool_header_size(options_.identity);
  if (size + header > options_.max_bytes) {
    count_drop(std::string(rec.stream), SpoolDropReason::TooLarge);
    result.dropped.push_back({0, std::string(rec.stream), SpoolDropReason::TooLarge});
    result.error = SpoolErrc::record_too_large;
    return result;
  }

  Segment* seg = nullptr;
  if (auto it = open_by_prio_.find(rec.priority); it != open_by_prio_.end()) seg = &segments_.at(it->second);
  if (seg && seg->bytes + size > options_.segment_bytes && !seg->ids.empty()) {
    seal(*seg);
    seg = nullptr;
  }
  while (bytes_ + size + (seg ? 0 : header) > options_.max_bytes) {
    const auto v = victim(rec.priority);
    if (!v) {
      count_drop(std::string(rec.stream), SpoolDropReason::SpoolFull);
      result.dropped.push_back({0, std::string(rec.stream), SpoolDropReason::SpoolFull});
      result.error = SpoolErrc::spool_full;
      return result;
    }
    if (seg && seg->seq == *v) seg = nullptr;
    drop_segment(*v, SpoolDropReason::SpoolFull, result.dropped);
  }
  if (!seg) {
    if (auto ec = create_segment(rec.priority, seg)) {
      result.error = ec;
      return result;
    }
    result.bytes_written += seg->bytes;
  }

  scratch_.clear();
  encode_record(rec, scratch_);
  size_t written = 0;
  if (auto ec = write_all(seg->fd, scratch_, written)) {
    ++counters_.write_errors;
    result.error = fail(ec.value(), "cannot write", seg_path(seg->seq));
    // Cut a partial record off again; if that fails too, leave it as a truncated
    // record for recovery to skip and write nothing more after it.
    if (written > 0 && ::ftruncate(seg->fd, static_cast<off_t>(seg->bytes)) != 0) seal(*seg);
    if (seg->ids.empty()) delete_segment(seg->seq);  // only the header: not worth keeping
    return result;
  }
  index_.emplace(rec.id, Meta{seg->seq, seg->bytes, static_cast<uint32_t>(size), rec.priority, std::string(rec.stream)});
  seg->ids.push_back(rec.id);
  ++seg->live;
  seg->bytes += size;
  seg->dirty = true;
  bytes_ += size;
  ++next_id_;
  ++counters_.appended;
  counters_.appended_bytes += size;
  result.id = rec.id;
  result.bytes_written += size;
  return result;
}

// Removes `id` from the index; a segment left without live records is deleted.
void SpoolStore::forget(uint64_t id, Segment& seg) {
  index_.erase(id);
  if (--seg.live == 0) delete_segment(seg.seq);
}

std::error_code SpoolStore::ack(uint64_t id) {
  if (!open_) return SpoolErrc::not_open;
  const auto it = index_.find(id);
  if (it == index_.end()) return SpoolErrc::unknown_record;
  Segment& seg = segments_.at(it->second.seq);
  ++counters_.acked;
  if (seg.live == 1) {  // the last one: the whole segment goes, no log entry needed
    index_.erase(it);
    seg.live = 0;
    return delete_segment(seg.seq);
  }
  index_.erase(it);
  --seg.live;
  if (seg.ack_fd < 0) {
    seg.ack_fd = ::open(ack_path(seg.seq).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (seg.ack_fd < 0) {
      ++counters_.write_errors;
      return fail(errno, "cannot open", ack_path(seg.seq));
    }
    if (seg.ack_bytes == 0) dir_dirty_ = true;
  }
  std::string entry;
  encode_ack_entry(id, entry);
  size_t written = 0;
  if (auto ec = write_all(seg.ack_fd, entry, written)) {
    // The ack holds in memory; after a restart this record is replayed once more.
    ++counters_.write_errors;
    if (written > 0 && ::ftruncate(seg.ack_fd, static_cast<off_t>(seg.ack_bytes)) != 0) close_fd(seg.ack_fd);
    return fail(ec.value(), "cannot write", ack_path(seg.seq));
  }
  seg.ack_bytes += written;
  seg.ack_dirty = true;
  bytes_ += written;
  return {};
}

std::error_code SpoolStore::delete_segment(uint64_t seq) {
  auto it = segments_.find(seq);
  if (it == segments_.end()) return {};
  Segment& seg = it->second;
  seal(seg);
  close_fd(seg.ack_fd);
  if (read_seq_ == seq) close_fd(read_fd_);
  std::error_code ec;
  // The segment first: a crash in between leaves an orphan log, which recovery removes.
  if (::unlink(seg_path(seq).c_str()) != 0 && errno != ENOENT) ec = fail(errno, "cannot delete", seg_path(seq));
  if (::unlink(ack_path(seq).c_str()) != 0 && errno != ENOENT && !ec) ec = fail(errno, "cannot delete", ack_path(seq));
  for (uint64_t id : seg.ids) index_.erase(id);
  bytes_ -= seg.bytes + seg.ack_bytes;
  segments_.erase(it);
  dir_dirty_ = true;
  ++counters_.segments_deleted;
  return ec;
}

void SpoolStore::drop_segment(uint64_t seq, SpoolDropReason reason, std::vector<SpoolDrop>& dropped) {
  const Segment& seg = segments_.at(seq);
  for (uint64_t id : seg.ids) {
    const auto it = index_.find(id);
    if (it == index_.end()) continue;  // acked already
    count_drop(it->second.stream, reason);
    dropped.push_back({id, it->second.stream, reason});
  }
  delete_segment(seq);
}

std::vector<SpoolDrop> SpoolStore::set_max_bytes(uint64_t max_bytes) {
  options_.max_bytes = max_bytes;
  std::vector<SpoolDrop> dropped;
  while (bytes_ > options_.max_bytes && !segments_.empty()) {
    drop_segment(*victim(INT32_MAX), SpoolDropReason::SpoolFull, dropped);
  }
  return dropped;
}

std::error_code SpoolStore::read(uint64_t id, SpoolRecord& out) {
  if (!open_) return SpoolErrc::not_open;
  const auto it = index_.find(id);
  if (it == index_.end()) return SpoolErrc::unknown_record;
  const Meta& meta = it->second;
  Segment& seg = segments_.at(meta.seq);
  if (read_fd_ < 0 || read_seq_ != meta.seq) {
    close_fd(read_fd_);
    read_fd_ = ::open(seg_path(meta.seq).c_str(), O_RDONLY | O_CLOEXEC);
    if (read_fd_ < 0) return fail(errno, "cannot open", seg_path(meta.seq));
    read_seq_ = meta.seq;
  }
  scratch_.resize(meta.size);
  size_t got = 0;
  if (!pread_full(read_fd_, scratch_.data(), meta.size, meta.offset, got)) {
    return fail(errno, "cannot read", seg_path(meta.seq));
  }
  SpoolRecordView view;
  if (got == meta.size && decode_record(scratch_, seg.version, view) && view.id == id) {
    out = SpoolRecord::from(view);
    return {};
  }
  // Damaged after recovery read it (disk, or someone else's write): drop it for good.
  ++counters_.corrupt_records;
  counters_.corrupt_bytes += meta.size;
  count_drop(meta.stream, SpoolDropReason::Corrupt);
  forget(id, seg);
  return SpoolErrc::corrupt_record;
}

std::error_code SpoolStore::sync() {
  if (!open_) return SpoolErrc::not_open;
  std::error_code first;
  auto sync_fd = [&](int fd, const std::string& path) {
    if (do_fsync(fd) == 0) return true;
    ++counters_.sync_errors;
    auto ec = fail(errno, "cannot fsync", path);
    if (!first) first = ec;
    return false;
  };
  for (auto& [seq, seg] : segments_) {
    if (seg.dirty) {
      int fd = seg.fd;
      if (fd < 0) fd = ::open(seg_path(seq).c_str(), O_RDONLY | O_CLOEXEC);  // sealed since
      if (fd >= 0 && sync_fd(fd, seg_path(seq))) seg.dirty = false;
      if (fd >= 0 && fd != seg.fd) ::close(fd);
    }
    if (seg.ack_dirty && seg.ack_fd >= 0 && sync_fd(seg.ack_fd, ack_path(seq))) seg.ack_dirty = false;
  }
  if (dir_dirty_ && sync_fd(dir_fd_, options_.dir)) dir_dirty_ = false;
  ++counters_.syncs;
  return first;
}

std::vector<SpoolPending> SpoolStore::pending() const {
  std::vector<SpoolPending> out;
  out.reserve(index_.size());
  for (const auto& [id, meta] : index_) out.push_back({id, meta.priority, meta.size, meta.stream});
  std::stable_sort(out.begin(), out.end(),
                   [](const SpoolPending& a, const SpoolPending& b) { return a.priority > b.priority; });
  return out;
}

}  // namespace edgelink

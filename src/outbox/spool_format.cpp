#include "edgelink/outbox/spool_format.hpp"

#include <algorithm>
#include <array>

namespace edgelink {

namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    table[i] = crc;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

void put16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v & 0xFF));
  out.push_back(static_cast<char>(v >> 8));
}
void put32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
// Callers check bounds first; these only assemble bytes.
uint64_t get_le(std::string_view b, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + static_cast<size_t>(i)]);
  return v;
}
uint16_t get16(std::string_view b, size_t at) { return static_cast<uint16_t>(get_le(b, at, 2)); }
uint32_t get32(std::string_view b, size_t at) { return static_cast<uint32_t>(get_le(b, at, 4)); }

// True when the first bytes of `v` (up to the magic's length) agree with `magic`.
bool starts_like(std::string_view v, std::string_view magic) {
  const size_t n = std::min(v.size(), magic.size());
  return v.substr(0, n) == magic.substr(0, n);
}

constexpr size_t kHeaderFixed = 8 + 2 + 2 + 2 + 2 + 4;  // magic, version, length, 2 lengths, CRC

}  // namespace

uint32_t crc32c(std::string_view data, uint32_t crc) {
  crc = ~crc;
  for (char c : data) crc = kCrc32cTable[(crc ^ static_cast<uint8_t>(c)) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

size_t spool_header_size(const SpoolIdentity& id) {
  return kHeaderFixed + id.project_id.size() + id.device_id.size();
}

size_t spool_record_size(const SpoolRecordView& rec, uint16_t version) {
  if (version > kSpoolFormatVersion) return 0;
  if (rec.stream.size() > 0xFFFF || rec.topic.size() > 0xFFFF) return 0;
  const size_t fixed = spool_record_fixed_body(version);
  if (rec.payload.size() > kSpoolMaxRecordBody - fixed - rec.stream.size() - rec.topic.size()) return 0;
  return kSpoolRecordPrefixBytes + fixed + rec.stream.size() + rec.topic.size() + rec.payload.size() +
         kSpoolRecordCrcBytes;
}

bool encode_segment_header(const SpoolIdentity& id, std::string& out, uint16_t version) {
  const size_t size = spool_header_size(id);
  if (size > kSpoolMaxHeaderBytes) return false;
  const size_t start = out.size();
  out.append(kSpoolSegmentMagic);
  put16(out, version);
  put16(out, static_cast<uint16_t>(size));
  put16(out, static_cast<uint16_t>(id.project_id.size()));
  out.append(id.project_id);
  put16(out, static_cast<uint16_t>(id.device_id.size()));
  out.append(id.device_id);
  put32(out, crc32c(std::string_view(out).substr(start)));
  return true;
}

bool encode_record(const SpoolRecordView& rec, std::string& out, uint16_t version) {
  const size_t size = spool_record_size(rec, version);
  if (size == 0) return false;
  const size_t start = out.size();
  out.reserve(start + size);
  out.append(kSpoolRecordMagic);
  put32(out, static_cast<uint32_t>(size - kSpoolRecordPrefixBytes - kSpoolRecordCrcBytes));
  put32(out, crc32c(std::string_view(out).substr(start, 8)));
  put64(out, rec.id);
  put32(out, static_cast<uint32_t>(rec.priority));
  if (version >= 1) put32(out, rec.points);
  out.push_back(rec.retained ? 1 : 0);
  put16(out, static_cast<uint16_t>(rec.stream.size()));
  put16(out, static_cast<uint16_t>(rec.topic.size()));
  put32(out, static_cast<uint32_t>(rec.payload.size()));
  out.append(rec.stream);
  out.append(rec.topic);
  out.append(rec.payload);
  put32(out, crc32c(std::string_view(out).substr(start)));
  return true;
}

bool decode_record(std::string_view b, uint16_t version, SpoolRecordView& out) {
  if (version > kSpoolFormatVersion) return false;
  const size_t fixed = spool_record_fixed_body(version);
  if (b.size() < kSpoolRecordPrefixBytes + fixed + kSpoolRecordCrcBytes) return false;
  if (b.substr(0, 4) != kSpoolRecordMagic) return false;
  if (crc32c(b.substr(0, 8)) != get32(b, 8)) return false;
  const size_t body = get32(b, 4);
  if (body < fixed || body > kSpoolMaxRecordBody) return false;
  if (kSpoolRecordPrefixBytes + body + kSpoolRecordCrcBytes != b.size()) return false;
  if (crc32c(b.substr(0, kSpoolRecordPrefixBytes + body)) != get32(b, kSpoolRecordPrefixBytes + body))
    return false;

  size_t o = kSpoolRecordPrefixBytes;
  out.id = get_le(b, o, 8);
  o += 8;
  out.priority = static_cast<int32_t>(get32(b, o));
  o += 4;
  out.points = 0;
  if (version >= 1) {
    out.points = get32(b, o);
    o += 4;
  }
  const uint8_t flags = static_cast<uint8_t>(b[o++]);
  if (flags & ~1u) return false;  // no other flag exists in these versions
  out.retained = flags & 1;
  const size_t stream_len = get16(b, o);
  const size_t topic_len = get16(b, o + 2);
  const size_t payload_len = get32(b, o + 4);
  o += 8;
  if (stream_len + topic_len + payload_len != body - fixed) return false;
  out.stream = b.substr(o, stream_len);
  out.topic = b.substr(o + stream_len, topic_len);
  out.payload = b.substr(o + stream_len + topic_len, payload_len);
  return true;
}

void encode_ack_entry(uint64_t id, std::string& out) {
  const size_t start = out.size();
  out.append(kSpoolAckMagic);
  put64(out, id);
  put32(out, crc32c(std::string_view(out).substr(start)));
}

size_t decode_ack_log(std::string_view log, std::vector<uint64_t>& ids) {
  size_t skipped = 0;
  for (size_t i = 0; i < log.size();) {
    const std::string_view e = log.substr(i, kSpoolAckEntryBytes);
    if (e.size() == kSpoolAckEntryBytes && e.substr(0, 4) == kSpoolAckMagic && crc32c(e.substr(0, 12)) == get32(e, 12)) {
      ids.push_back(get_le(e, 4, 8));
      i += kSpoolAckEntryBytes;
    } else {
      ++skipped;  // a torn or damaged entry: resynchronise on the next magic
      ++i;
    }
  }
  return skipped;
}

void SegmentReader::feed(std::string_view bytes) {
  if (state_ == State::Stopped) return;
  // Drop consumed bytes once they are at least half the buffer: amortised O(1).
  if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    base_ += pos_;
    pos_ = 0;
  }
  buf_.append(bytes);
}

SegmentReader::Result SegmentReader::parse_header() {
  const std::string_view v(buf_);
  auto stop = [&](Status s, uint64_t size) {
    state_ = State::Stopped;
    pos_ = buf_.size();
    return Result{s, 0, size};
  };
  if (!starts_like(v, kSpoolSegmentMagic)) return stop(Status::BadHeader, 0);
  if (v.size() < 12) return finished_ ? stop(Status::TruncatedHeader, v.size()) : Result{Status::NeedMore};
  header_.version = get16(v, 8);
  if (header_.version > kSpoolFormatVersion) return stop(Status::UnsupportedVersion, 0);
  const size_t size = get16(v, 10);
  if (size < kHeaderFixed || size > kSpoolMaxHeaderBytes) return stop(Status::BadHeader, 0);
  if (v.size() < size) return finished_ ? stop(Status::TruncatedHeader, v.size()) : Result{Status::NeedMore};
  if (crc32c(v.substr(0, size - 4)) != get32(v, size - 4)) return stop(Status::BadHeader, 0);
  const size_t project_len = get16(v, 12);
  if (14 + project_len + 2 > size - 4) return stop(Status::BadHeader, 0);
  const size_t device_len = get16(v, 14 + project_len);
  if (16 + project_len + device_len != size - 4) return stop(Status::BadHeader, 0);
  header_.identity.project_id.assign(v.substr(14, project_len));
  header_.identity.device_id.assign(v.substr(16 + project_len, device_len));
  state_ = State::Records;
  pos_ = size;
  return {Status::Header, 0, size};
}

SegmentReader::Try SegmentReader::try_record(size_t p, size_t& total) {
  const std::string_view v = std::string_view(buf_).substr(p);
  if (!starts_like(v, kSpoolRecordMagic)) return Try::BadPrefix;
  if (v.size() < kSpoolRecordPrefixBytes) return Try::NeedMore;
  if (crc32c(v.substr(0, 8)) != get32(v, 8)) return Try::BadPrefix;
  const size_t body = get32(v, 4);
  if (body < spool_record_fixed_body(header_.version) || body > kSpoolMaxRecordBody) return Try::BadPrefix;
  total = kSpoolRecordPrefixBytes + body + kSpoolRecordCrcBytes;
  if (v.size() < total) return Try::NeedMore;
  return decode_record(v.substr(0, total), header_.version, record_) ? Try::Ok : Try::BadBody;
}

// The next position at or after `from` where a record could start: a full record
// magic, or a partial one at the very end of the buffer (it may complete later).
size_t SegmentReader::find_candidate(size_t from) const {
  const std::string_view v(buf_);
  if (from >= v.size()) return v.size();
  const size_t q = v.find(kSpoolRecordMagic, from);
  if (q != std::string_view::npos) return q;
  for (size_t k = std::min(kSpoolRecordMagic.size() - 1, v.size() - from); k > 0; --k) {
    if (v.substr(v.size() - k) == kSpoolRecordMagic.substr(0, k)) return v.size() - k;
  }
  return v.size();
}

SegmentReader::Result SegmentReader::flush_corrupt() {
  const Result r{Status::Corrupt, corrupt_start_, corrupt_len_};
  corrupt_len_ = 0;
  return r;
}

SegmentReader::Result SegmentReader::next() {
  if (state_ == State::Stopped) return {Status::End};
  if (state_ == State::Header) return parse_header();
  for (;;) {
    if (pos_ == buf_.size()) {
      if (!finished_) return {Status::NeedMore};
      if (corrupt_len_ > 0) return flush_corrupt();
      return {Status::End};
    }
    size_t total = 0;
    switch (try_record(pos_, total)) {
      case Try::Ok: {
        // A pending corrupt region is reported first; the record is parsed again next call.
        if (corrupt_len_ > 0) return flush_corrupt();
        const Result r{Status::Record, base_ + pos_, total};
        pos_ += total;
        return r;
      }
      case Try::NeedMore: {
        if (!finished_) return {Status::NeedMore};
        if (corrupt_len_ > 0) return flush_corrupt();
        const Result r{Status::TruncatedTail, base_ + pos_, buf_.size() - pos_};
        pos_ = buf_.size();
        return r;
      }
      case Try::BadBody:
        // The prefix CRC vouches for the length: skip the whole record, not byte by byte,
        // so a payload that happens to contain a record magic is never mistaken for one.
        if (corrupt_len_ == 0) corrupt_start_ = base_ + pos_;
        corrupt_len_ += total;
        pos_ += total;
        break;
      case Try::BadPrefix: {
        if (corrupt_len_ == 0) corrupt_start_ = base_ + pos_;
        const size_t q = find_candidate(pos_ + 1);
        corrupt_len_ += q - pos_;
        pos_ = q;
        break;
      }
    }
  }
}

}  // namespace edgelink

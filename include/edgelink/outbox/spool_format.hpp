#pragma once
// On-disk format of the outbox's disk spool: segment files of checksummed records.
// Pure encode/decode, no I/O: unit-tested (tests/unit/outbox/spool_format_test.cpp),
// fuzzed (tests/fuzz/spool_fuzz.cpp), and frozen by the fixtures in tests/fixtures/spool/
// (written by tests/fixtures/make_spool_fixtures.py, a second, independent encoder).
//
// All integers little-endian. A segment is a header followed by records, append-only.
//
//   segment header                          record (version 1)
//   0  8  magic "ELSPOOL\n"                 0  4  magic "ELRC"
//   8  2  format version                    4  4  body length B
//  10  2  header length H (incl. its CRC)   8  4  CRC-32C of bytes 0..8 (guards B)
//  12  2  project_id length, bytes         12  B  body:
//   .  2  device_id length, bytes                 8 id, 4 priority (int32), 4 points,
// H-4  4  CRC-32C of bytes 0..H-4                 1 flags (bit 0 retained),
//                                                 2 stream len, 2 topic len, 4 payload len,
//                                                 stream, topic, payload bytes
//                                        12+B  4  CRC-32C of bytes 0..12+B
//
// Version 0 records have no `points` field (read as 0); everything else is the same.
// The length has its own CRC so that a damaged length is never trusted: a record whose
// prefix verifies but whose end lies past the end of the file is a truncated tail (a
// write cut short), anything else that fails is corrupt, and the reader resynchronises
// on the next record magic.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgelink {

inline constexpr uint16_t kSpoolFormatVersion = 1;
inline constexpr std::string_view kSpoolSegmentMagic{"ELSPOOL\n", 8};
inline constexpr std::string_view kSpoolRecordMagic{"ELRC", 4};
inline constexpr size_t kSpoolRecordPrefixBytes = 12;
inline constexpr size_t kSpoolRecordCrcBytes = 4;
// A header only carries the identity; this bound keeps a damaged length cheap.
inline constexpr size_t kSpoolMaxHeaderBytes = 4096;
// Largest record body the reader accepts (the reader buffers one whole record).
inline constexpr size_t kSpoolMaxRecordBody = 256u << 20;

// CRC-32C (Castagnoli, reflected, init and xorout 0xFFFFFFFF). Pass a previous
// result as `crc` to continue over several pieces.
uint32_t crc32c(std::string_view data, uint32_t crc = 0);

struct SpoolIdentity {
  std::string project_id;
  std::string device_id;
  bool operator==(const SpoolIdentity&) const = default;
};

struct SegmentHeader {
  uint16_t version = kSpoolFormatVersion;
  SpoolIdentity identity;
};

// One spooled publish. The view form points into a buffer (the reader's, or the
// caller's when encoding); SpoolRecord owns its bytes.
struct SpoolRecordView {
  uint64_t id = 0;
  int32_t priority = 0;
  uint32_t points = 0;
  bool retained = false;
  std::string_view stream;
  std::string_view topic;
  std::string_view payload;
};

struct SpoolRecord {
  uint64_t id = 0;
  int32_t priority = 0;
  uint32_t points = 0;
  bool retained = false;
  std::string stream;
  std::string topic;
  std::string payload;

  SpoolRecordView view() const { return {id, priority, points, retained, stream, topic, payload}; }
  static SpoolRecord from(const SpoolRecordView& v) {
    return {v.id, v.priority, v.points, v.retained, std::string(v.stream), std::string(v.topic),
            std::string(v.payload)};
  }
};

// Fixed body bytes before the three strings.
constexpr size_t spool_record_fixed_body(uint16_t version) { return version == 0 ? 21 : 25; }

// Encoded size of `rec`, or 0 when it cannot be encoded (a string over its length
// field, or a body over kSpoolMaxRecordBody).
size_t spool_record_size(const SpoolRecordView& rec, uint16_t version = kSpoolFormatVersion);
size_t spool_header_size(const SpoolIdentity& identity);

// Append the encoding to `out`. False (and `out` unchanged) when it cannot be encoded.
// `version` exists so tests can write version 0; the store writes only the current one.
bool encode_segment_header(const SpoolIdentity& identity, std::string& out,
                           uint16_t version = kSpoolFormatVersion);
bool encode_record(const SpoolRecordView& rec, std::string& out,
                   uint16_t version = kSpoolFormatVersion);

// Decodes exactly one whole record (prefix, body, CRC) as written by encode_record.
// False on any mismatch; `out` then holds nothing useful. Views point into `bytes`.
bool decode_record(std::string_view bytes, uint16_t version, SpoolRecordView& out);

// Ack log entry (see spool.hpp): magic "ELAK", u64 record id, CRC-32C of those 12 bytes.
inline constexpr std::string_view kSpoolAckMagic{"ELAK", 4};
inline constexpr size_t kSpoolAckEntryBytes = 16;
void encode_ack_entry(uint64_t id, std::string& out);
// Appends the ids of every intact entry to `ids`; returns the bytes skipped (torn entries).
size_t decode_ack_log(std::string_view log, std::vector<uint64_t>& ids);

// Incremental, bounds-checked segment reader. Feed bytes in any pieces, call next()
// until NeedMore, feed more; call finish() at the end of the file and drain next()
// until End. Any input gives a well-defined sequence of results, and the same one
// however it is split into pieces (the fuzz target checks this).
class SegmentReader {
 public:
  enum class Status {
    Header,              // header() is valid; records follow
    Record,              // record() is valid until the next feed()/next()
    NeedMore,            // feed more bytes, or finish()
    Corrupt,             // `size` bytes at `offset` held no valid record: skipped
    TruncatedTail,       // after finish(): `size` bytes at `offset` are an incomplete record
    TruncatedHeader,     // after finish(): the file ends inside the header (size 0 included)
    BadHeader,           // not a segment (magic, CRC or lengths); nothing more is read
    UnsupportedVersion,  // header().version is newer than this reader; nothing more is read
    End,                 // after finish(): everything has been reported
  };
  struct Result {
    Status status;
    uint64_t offset = 0;  // in the segment file
    uint64_t size = 0;    // bytes of the header, record, or skipped region
  };

  void feed(std::string_view bytes);
  void finish() { finished_ = true; }
  Result next();

  const SegmentHeader& header() const { return header_; }
  const SpoolRecordView& record() const { return record_; }
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  enum class State { Header, Records, Stopped };
  enum class Try { Ok, NeedMore, BadPrefix, BadBody };

  Result parse_header();
  Try try_record(size_t p, size_t& total);
  size_t find_candidate(size_t from) const;
  Result flush_corrupt();

  std::string buf_;
  size_t pos_ = 0;     // first unconsumed byte in buf_
  uint64_t base_ = 0;  // file offset of buf_[0]
  bool finished_ = false;
  State state_ = State::Header;
  SegmentHeader header_;
  SpoolRecordView record_;
  uint64_t corrupt_start_ = 0;  // file offset of a pending corrupt region
  uint64_t corrupt_len_ = 0;    // 0: none pending
};

}  // namespace edgelink

#include <catch2/catch.hpp>

#include "edgelink/outbox/spool_format.hpp"

using namespace edgelink;
using Status = SegmentReader::Status;

namespace {

const SpoolIdentity kIdentity{"demo", "gw-001"};

SpoolRecord make(uint64_t id, std::string stream = "imu", size_t payload = 40, int32_t priority = 0) {
  SpoolRecord r;
  r.id = id;
  r.priority = priority;
  r.points = 3;
  r.stream = stream;
  r.topic = "/tenants/demo/devices/gw-001/events/" + stream + "/jsonarray";
  r.payload = std::string(payload, static_cast<char>('a' + id % 26));
  return r;
}

std::string segment(const std::vector<SpoolRecord>& recs, uint16_t version = kSpoolFormatVersion) {
  std::string out;
  REQUIRE(encode_segment_header(kIdentity, out, version));
  for (const auto& r : recs) REQUIRE(encode_record(r.view(), out, version));
  return out;
}

struct Event {
  Status status;
  uint64_t offset, size, id;
  bool operator==(const Event&) const = default;
};

void drain(SegmentReader& reader, std::vector<Event>& out) {
  for (;;) {
    const auto r = reader.next();
    if (r.status == Status::NeedMore || r.status == Status::End) return;
    out.push_back({r.status, r.offset, r.size, r.status == Status::Record ? reader.record().id : 0});
  }
}

// Reads `bytes` fed in pieces of `chunk` bytes (0: all at once), through finish().
std::vector<Event> read_all(std::string_view bytes, size_t chunk = 0) {
  SegmentReader reader;
  std::vector<Event> out;
  if (chunk == 0) chunk = bytes.size() + 1;
  for (size_t off = 0; off < bytes.size(); off += chunk) {
    reader.feed(bytes.substr(off, chunk));
    drain(reader, out);
  }
  reader.finish();
  drain(reader, out);
  CHECK(reader.next().status == Status::End);
  return out;
}

std::vector<Status> statuses(const std::vector<Event>& events) {
  std::vector<Status> out;
  for (const auto& e : events) out.push_back(e.status);
  return out;
}

}  // namespace

TEST_CASE("crc32c matches the Castagnoli check value and continues across pieces") {
  CHECK(crc32c("123456789") == 0xE3069283u);
  CHECK(crc32c("") == 0);
  CHECK(crc32c("56789", crc32c("1234")) == 0xE3069283u);
}

TEST_CASE("a record encodes and decodes to itself, in both versions") {
  SpoolRecord r = make(42, "imu", 100, -7);
  r.retained = true;
  for (uint16_t version : {uint16_t{0}, uint16_t{1}}) {
    std::string bytes;
    REQUIRE(encode_record(r.view(), bytes, version));
    CHECK(bytes.size() == spool_record_size(r.view(), version));
    SpoolRecordView v;
    REQUIRE(decode_record(bytes, version, v));
    CHECK(v.id == 42);
    CHECK(v.priority == -7);
    CHECK(v.points == (version == 0 ? 0u : 3u));
    CHECK(v.retained);
    CHECK(v.stream == r.stream);
    CHECK(v.topic == r.topic);
    CHECK(v.payload == r.payload);
    CHECK_FALSE(decode_record(bytes, version == 0 ? 1 : 0, v));  // the other layout
  }
}

TEST_CASE("every single flipped bit in a record is detected") {
  std::string bytes;
  REQUIRE(encode_record(make(7).view(), bytes));
  SpoolRecordView v;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string copy = bytes;
      copy[i] = static_cast<char>(copy[i] ^ (1 << bit));
      INFO("byte " << i << " bit " << bit);
      CHECK_FALSE(decode_record(copy, kSpoolFormatVersion, v));
    }
  }
  CHECK_FALSE(decode_record(std::string_view(bytes).substr(0, bytes.size() - 1), kSpoolFormatVersion, v));
  CHECK_FALSE(decode_record(bytes + "x", kSpoolFormatVersion, v));
  CHECK_FALSE(decode_record(bytes, kSpoolFormatVersion + 1, v));
}

TEST_CASE("records whose strings do not fit their length fields are refused") {
  SpoolRecord r = make(1);
  r.stream = std::string(70000, 's');
  std::string out = "keep";
  CHECK(spool_record_size(r.view()) == 0);
  CHECK_FALSE(encode_record(r.view(), out));
  CHECK(out == "keep");
  SpoolIdentity long_id{std::string(5000, 'p'), "d"};
  CHECK_FALSE(encode_segment_header(long_id, out));
}

TEST_CASE("the reader returns the header, then the records, whatever the piece size") {
  const std::string bytes = segment({make(1), make(2, "gps", 0), make(3, "imu", 3000)});
  const auto whole = read_all(bytes);
  REQUIRE(statuses(whole) == std::vector<Status>{Status::Header, Status::Record, Status::Record, Status::Record});
  CHECK(whole[0].size == spool_header_size(kIdentity));
  CHECK(whole[1].offset == whole[0].size);
  CHECK(whole[2].offset == whole[1].offset + whole[1].size);
  CHECK(whole[3].offset + whole[3].size == bytes.size());
  CHECK(whole[3].id == 3);
  for (size_t chunk : {1, 2, 3, 7, 64, 1000}) {
    INFO("chunk " << chunk);
    CHECK(read_all(bytes, chunk) == whole);
  }
  SegmentReader reader;
  reader.feed(bytes);
  REQUIRE(reader.next().status == Status::Header);
  CHECK(reader.header().identity == kIdentity);
  CHECK(reader.header().version == kSpoolFormatVersion);
  REQUIRE(reader.next().status == Status::Record);
  CHECK(reader.record().payload == make(1).payload);
  CHECK(reader.record().topic == make(1).topic);
  CHECK(reader.record().points == 3);
}

TEST_CASE("a version 0 segment is read with points 0") {
  const std::string bytes = segment({make(1), make(2)}, 0);
  SegmentReader reader;
  reader.feed(bytes);
  reader.finish();
  REQUIRE(reader.next().status == Status::Header);
  CHECK(reader.header().version == 0);
  REQUIRE(reader.next().status == Status::Record);
  CHECK(reader.record().points == 0);
  CHECK(reader.record().payload == make(1).payload);
  REQUIRE(reader.next().status == Status::Record);
  CHECK(reader.next().status == Status::End);
}

TEST_CASE("headers: empty, cut short, foreign, damaged, newer") {
  CHECK(read_all("") == std::vector<Event>{{Status::TruncatedHeader, 0, 0, 0}});
  const std::string good = segment({});
  for (size_t n = 1; n < good.size(); ++n) {
    INFO("cut at " << n);
    CHECK(read_all(good.substr(0, n)) == std::vector<Event>{{Status::TruncatedHeader, 0, n, 0}});
  }
  CHECK(statuses(read_all("GIF89a......")) == std::vector<Status>{Status::BadHeader});
  // The foreign magic is seen at once, before the end of the file.
  SegmentReader early;
  early.feed("X");
  CHECK(early.next().status == Status::BadHeader);

  std::string damaged = good;
  damaged[13] ^= 1;  // inside the project_id length: the header CRC fails
  CHECK(statuses(read_all(damaged)) == std::vector<Status>{Status::BadHeader});

  std::string newer = good + "whatever a later version writes";
  newer[8] = 9;
  SegmentReader reader;
  reader.feed(newer);
  CHECK(reader.next().status == Status::UnsupportedVersion);
  CHECK(reader.header().version == 9);
  CHECK(reader.next().status == Status::End);
}

TEST_CASE("a record cut anywhere is a truncated tail; the records before it stand") {
  const std::string full = segment({make(1), make(2)});
  std::string last;
  encode_record(make(2).view(), last);
  const size_t keep = full.size() - last.size();
  for (size_t cut = 1; cut < last.size(); ++cut) {
    INFO("cut after " << cut << " bytes of the last record");
    const auto events = read_all(std::string_view(full).substr(0, keep + cut));
    REQUIRE(statuses(events) == std::vector<Status>{Status::Header, Status::Record, Status::TruncatedTail});
    CHECK(events[2].offset == keep);
    CHECK(events[2].size == cut);
    CHECK(read_all(std::string_view(full).substr(0, keep + cut), 5) == events);
  }
}

TEST_CASE("a corrupt record in the middle is skipped, whole, and the rest is kept") {
  std::string bytes = segment({make(1), make(2), make(3)});
  const auto clean = read_all(bytes);
  std::string middle;
  encode_record(make(2).view(), middle);
  const size_t at = clean[2].offset;

  SECTION("payload byte") { bytes[at + middle.size() - 10] ^= 0x40; }
  SECTION("length field: the prefix CRC catches it, the reader resynchronises") { bytes[at + 5] ^= 0x01; }
  SECTION("magic") { bytes[at] = 'X'; }
  SECTION("record CRC") { bytes[at + middle.size() - 1] ^= 0xFF; }

  const auto events = read_all(bytes);
  REQUIRE(statuses(events) == std::vector<Status>{Status::Header, Status::Record, Status::Corrupt, Status::Record});
  CHECK(events[2].offset == at);
  CHECK(events[2].size == middle.size());
  CHECK(events[3].id == 3);
  for (size_t chunk : {1, 3, 17}) CHECK(read_all(bytes, chunk) == events);
}

TEST_CASE("garbage between and after records is one corrupt region each") {
  const std::string a = segment({make(1)});
  std::string b;
  encode_record(make(2).view(), b);
  const std::string junk = "junk ELR ELRC ELRCxxxxxxxxxxxx not a record";
  const auto events = read_all(a + junk + b + "ELR");
  REQUIRE(statuses(events) ==
          std::vector<Status>{Status::Header, Status::Record, Status::Corrupt, Status::Record, Status::TruncatedTail});
  CHECK(events[2].offset == a.size());
  CHECK(events[2].size == junk.size());
  CHECK(events[4].size == 3);
  CHECK(read_all(a + junk + b + "ELR", 1) == events);
  // Trailing bytes that cannot begin a record are corrupt, not a truncated tail.
  CHECK(statuses(read_all(a + "zzz")) == std::vector<Status>{Status::Header, Status::Record, Status::Corrupt});
}

TEST_CASE("ack entries decode; a torn one is skipped and the next still found") {
  std::string log;
  encode_ack_entry(5, log);
  encode_ack_entry(0x0102030405060708ull, log);
  CHECK(log.size() == 2 * kSpoolAckEntryBytes);
  std::string torn = log.substr(0, 16) + log.substr(16, 9);  // a write cut short
  encode_ack_entry(9, torn);
  std::vector<uint64_t> ids;
  CHECK(decode_ack_log(torn, ids) == 9);
  CHECK(ids == std::vector<uint64_t>{5, 9});
  ids.clear();
  CHECK(decode_ack_log(log, ids) == 0);
  CHECK(ids == std::vector<uint64_t>{5, 0x0102030405060708ull});
}

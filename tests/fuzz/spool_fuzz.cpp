// libFuzzer target for the spool segment reader (spool_format.hpp). The first byte
// chooses whether a valid header (version 0 or 1) is put in front of the rest, so the
// fuzzer spends its time on records rather than on the header's CRC. Beyond "no crash":
// the same events whatever the piece sizes; the events tile the input exactly (every
// byte is header, record, corrupt or truncated tail); every record re-encodes to the
// very bytes it was read from. The ack log decoder gets the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "edgelink/outbox/spool_format.hpp"

using namespace edgelink;
using Status = SegmentReader::Status;

namespace {

struct Event {
  Status status;
  uint64_t offset, size;
  SpoolRecord record;
  bool operator==(const Event& o) const {
    return status == o.status && offset == o.offset && size == o.size && record.id == o.record.id &&
           record.priority == o.record.priority && record.points == o.record.points &&
           record.retained == o.record.retained && record.stream == o.record.stream &&
           record.topic == o.record.topic && record.payload == o.record.payload;
  }
};

void check(bool ok) {
  if (!ok) std::abort();
}

void drain(SegmentReader& reader, std::vector<Event>& out) {
  for (;;) {
    const auto r = reader.next();
    if (r.status == Status::NeedMore || r.status == Status::End) return;
    Event e{r.status, r.offset, r.size, {}};
    if (r.status == Status::Record) e.record = SpoolRecord::from(reader.record());
    out.push_back(std::move(e));
  }
}

std::vector<Event> run(std::string_view input, const uint8_t* sizes, size_t nsizes) {
  SegmentReader reader;
  std::vector<Event> out;
  size_t off = 0, k = 0;
  while (off < input.size()) {
    const size_t n = nsizes == 0 ? input.size() : std::min<size_t>(1 + sizes[k++ % nsizes] % 64, input.size() - off);
    reader.feed(input.substr(off, n));
    drain(reader, out);
    check(reader.buffered() <= input.size());
    off += n;
  }
  reader.finish();
  drain(reader, out);
  check(reader.next().status == Status::End);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  std::string input;
  const uint16_t version = (mode & 2) ? 0 : kSpoolFormatVersion;
  if (mode & 1) encode_segment_header({"demo", "gw-001"}, input, version);
  input.append(reinterpret_cast<const char*>(data) + 1, size - 1);

  const std::vector<Event> whole = run(input, nullptr, 0);
  check(run(input, data, size) == whole);
  const uint8_t one = 0;
  check(run(input, &one, 1) == whole);

  // The events tile the input: no byte is reported twice or silently lost.
  if (!whole.empty() && whole[0].status == Status::Header) {
    uint64_t end = 0;
    for (const auto& e : whole) {
      check(e.offset == end);
      end += e.size;
      if (e.status == Status::Record) {
        const uint16_t read_as = static_cast<uint16_t>(static_cast<uint8_t>(input[8]) | static_cast<uint8_t>(input[9]) << 8);
        std::string again;
        check(encode_record(e.record.view(), again, read_as));
        check(again == std::string_view(input).substr(e.offset, e.size));
      }
    }
    check(end == input.size());
  } else {
    check(whole.size() <= 1);  // a bad, newer or truncated header stops the reader
  }

  std::vector<uint64_t> ids;
  const size_t skipped = decode_ack_log(input, ids);
  check(skipped + ids.size() * kSpoolAckEntryBytes == input.size());
  return 0;
}

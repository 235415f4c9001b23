// libFuzzer target for LineFramer. The first two bytes choose max_line_bytes; the rest
// is fed in chunks whose sizes come from the data itself. Every split must give the same
// events as framing the whole input at once, and the framer's bounds must hold.

#include "edgelink/apps/line_framer.hpp"

#include <cstdlib>
#include <string>
#include <vector>

namespace {

struct Event {
  edgelink::LineFramer::Status status;
  std::string line;
  uint64_t number;
  bool operator==(const Event&) const = default;
};

void check(bool ok) {
  if (!ok) std::abort();
}

void run(edgelink::LineFramer& framer, std::string_view input, size_t max, std::vector<Event>& out) {
  for (;;) {
    const auto r = framer.next(input);
    check(r.consumed <= input.size());
    check(framer.buffered() <= max + 1);
    if (r.status == edgelink::LineFramer::Status::NeedMore) {
      check(r.consumed == input.size());
      return;
    }
    check(r.consumed > 0);
    if (r.consumed == input.size()) check(framer.buffered() == 0);
    if (r.status == edgelink::LineFramer::Status::Line) {
      check(r.line.size() <= max);
      check(r.line.find('\n') == std::string_view::npos);
    }
    out.push_back({r.status, std::string(r.line), r.line_number});
    check(r.line_number == out.size());
    input.remove_prefix(r.consumed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t max = (data[0] | (data[1] << 8)) % 300;
  const std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  std::vector<Event> whole;
  edgelink::LineFramer a(max);
  run(a, input, max, whole);

  // Chunk sizes 1..16 taken from the input bytes, so splits land everywhere; an empty
  // chunk now and then too.
  std::vector<Event> chunked;
  edgelink::LineFramer b(max);
  size_t off = 0, k = 0;
  while (off < input.size()) {
    const unsigned pick = static_cast<unsigned char>(input[k++ % input.size()]);
    if (pick % 7 == 0) run(b, {}, max, chunked);
    const size_t n = std::min<size_t>(1 + pick % 16, input.size() - off);
    run(b, input.substr(off, n), max, chunked);
    off += n;
  }
  check(whole == chunked);

  std::vector<Event> bytewise;
  edgelink::LineFramer c(max);
  for (size_t i = 0; i < input.size(); ++i) run(c, input.substr(i, 1), max, bytewise);
  check(whole == bytewise);

  // End of stream: the unterminated tail is one more line (or TooLong), the same for
  // every way the input was split, and then the framer is empty.
  const auto tail_a = a.finish(), tail_b = b.finish();
  check(tail_a.status == tail_b.status && tail_a.line == tail_b.line && tail_a.line_number == tail_b.line_number);
  if (tail_a.status == edgelink::LineFramer::Status::Line) check(tail_a.line.size() <= max);
  check(a.buffered() == 0 && a.finish().status == edgelink::LineFramer::Status::NeedMore);
  return 0;
}

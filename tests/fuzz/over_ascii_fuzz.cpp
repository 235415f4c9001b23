// libFuzzer target for OverAscii and the console demultiplexer. Checks: the encoding
// is all >= 0x80 and decodes back exactly, demultiplexing is independent of read
// sizes, and a console-encoded frame always comes back out of the demultiplexer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "edgelink/devices/over_ascii.hpp"

using namespace edgelink::devices;

namespace {

struct Event {
  ConsoleDemux::Status status;
  std::vector<uint8_t> frame;
  std::string line;
  bool truncated;
  bool operator==(const Event&) const = default;
};

std::vector<Event> run(ConsoleDemux& d, std::span<const uint8_t> input, size_t chunk) {
  std::vector<Event> events;
  while (!input.empty()) {
    auto piece = input.first(std::min(chunk, input.size()));
    input = input.subspan(piece.size());
    while (true) {
      const auto r = d.next(piece);
      if (r.consumed > piece.size()) abort();
      piece = piece.subspan(r.consumed);
      if (r.status == ConsoleDemux::Status::NeedMore) {
        if (!piece.empty()) abort();
        break;
      }
      if (r.status == ConsoleDemux::Status::LogLine) {
        for (char c : r.line) {
          if (static_cast<unsigned char>(c) >= 0x80 || c == '\n') abort();
        }
      }
      events.push_back({r.status, {r.frame.begin(), r.frame.end()}, std::string(r.line), r.line_truncated});
    }
  }
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + (data[0] % 13);
  const size_t max_line = 1 + (data[0] % 40);
  const std::span<const uint8_t> input(data + 1, size - 1);

  std::vector<uint8_t> enc;
  over_ascii_encode(input, enc);
  for (uint8_t b : enc) {
    if (b < 0x80) abort();
  }
  OverAsciiDecoder oa;
  std::vector<uint8_t> dec;
  for (uint8_t b : enc) {
    if (auto d = oa.push(b)) dec.push_back(*d);
  }
  if (!std::equal(dec.begin(), dec.end(), input.begin(), input.end())) abort();

  ConsoleDemux whole(max_line);
  ConsoleDemux split(max_line);
  const auto a = run(whole, input, input.size() + 1);
  const auto b = run(split, input, chunk);
  if (a != b || whole.partial_line() != split.partial_line()) abort();

  // Text, then the input as a console frame: the frame must come out intact
  // (the text before it has no byte >= 0x80, so it cannot disturb the frame).
  std::vector<uint8_t> stream = {'l', 'o', 'g', '\n'};
  encode_console_frame(input, stream, HdlcOptions{.max_frame_len = input.size() + 2});
  ConsoleDemux fresh(max_line, HdlcOptions{.max_frame_len = input.size() + 2});
  const auto c = run(fresh, stream, chunk);
  size_t frames = 0;
  for (const Event& e : c) frames += e.status == ConsoleDemux::Status::Frame;
  if (frames != 1 || c.back().status != ConsoleDemux::Status::Frame ||
      !std::equal(input.begin(), input.end(), c.back().frame.begin(), c.back().frame.end())) {
    abort();
  }
  return 0;
}

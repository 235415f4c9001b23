// libFuzzer target for the MiniHDLC decoder and encoder. Checks, beyond "no crash":
// decoding is independent of how the input is split into reads, every delivered
// frame re-encodes and decodes to itself, and any byte string survives encode+decode.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "edgelink/devices/hdlc.hpp"

using namespace edgelink::devices;

namespace {

struct Event {
  HdlcDecoder::Status status;
  std::vector<uint8_t> frame;
  bool operator==(const Event&) const = default;
};

std::vector<Event> run(HdlcDecoder& dec, std::span<const uint8_t> input, size_t chunk) {
  std::vector<Event> events;
  while (!input.empty()) {
    auto piece = input.first(std::min(chunk, input.size()));
    input = input.subspan(piece.size());
    while (true) {
      const auto r = dec.next(piece);
      if (r.consumed > piece.size()) abort();
      piece = piece.subspan(r.consumed);
      if (r.status == HdlcDecoder::Status::NeedMore) {
        if (!piece.empty()) abort();
        break;
      }
      events.push_back({r.status, {r.frame.begin(), r.frame.end()}});
    }
  }
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // First byte: read size for the split run and a small max frame length.
  const size_t chunk = 1 + (data[0] % 17);
  const HdlcOptions small{.max_frame_len = 2 + static_cast<size_t>(data[0] % 64)};
  const std::span<const uint8_t> input(data + 1, size - 1);

  for (const HdlcOptions& opts : {HdlcOptions{}, small}) {
    HdlcDecoder whole(opts);
    HdlcDecoder split(opts);
    const auto a = run(whole, input, input.size() + 1);
    const auto b = run(split, input, chunk);
    if (a != b) abort();
    uint64_t frames = 0;
    for (const Event& e : a) {
      if (e.status != HdlcDecoder::Status::Frame) continue;
      ++frames;
      if (e.frame.size() + 2 > opts.max_frame_len) abort();
      std::vector<uint8_t> again;
      hdlc_encode(e.frame, again, opts);
      HdlcDecoder check(opts);
      const auto c = run(check, again, again.size());
      if (c.size() != 1 || c[0] != e) abort();
    }
    if (whole.stats().frames != frames || whole.stats().bytes != input.size()) abort();
  }

  // Any message survives a round trip, and fits the documented worst case.
  std::vector<uint8_t> encoded;
  hdlc_encode(input, encoded);
  if (encoded.size() > hdlc_max_encoded_size(input.size())) abort();
  HdlcDecoder dec(HdlcOptions{.max_frame_len = input.size() + 2});
  const auto r = run(dec, encoded, chunk);
  if (input.empty()) {
    // An empty message is the 2-byte frame FF FF, which decodes to an empty message.
    if (r.size() != 1 || !r[0].frame.empty()) abort();
  } else if (r.size() != 1 || r[0].status != HdlcDecoder::Status::Frame ||
             !std::equal(input.begin(), input.end(), r[0].frame.begin(), r[0].frame.end())) {
    abort();
  }
  return 0;
}

#include "edgelink/devices/over_ascii.hpp"

namespace edgelink::devices {
namespace {

constexpr uint8_t kEscLow = 0x85;   // next byte carries 0x00..0x0F
constexpr uint8_t kEscHigh = 0x8E;  // next byte carries 0x80..0x8F
constexpr uint8_t kEscRaw = 0x8F;   // next byte carries 0x90..0xFF unchanged

}  // namespace

void over_ascii_encode(std::span<const uint8_t> in, std::vector<uint8_t>& out) {
  out.reserve(out.size() + 2 * in.size());
  for (uint8_t b : in) {
    if (b <= 0x0F) {
      out.push_back(kEscLow);
      out.push_back(static_cast<uint8_t>((b ^ 0x20) | 0x80));
    } else if (b <= 0x7F) {
      out.push_back(static_cast<uint8_t>(b | 0x80));
    } else if (b <= 0x8F) {
      out.push_back(kEscHigh);
      out.push_back(static_cast<uint8_t>(b ^ 0x20));
    } else {
      out.push_back(kEscRaw);
      out.push_back(b);
    }
  }
}

void encode_console_frame(std::span<const uint8_t> message, std::vector<uint8_t>& out,
                          const HdlcOptions& options) {
  std::vector<uint8_t> frame;
  hdlc_encode(message, frame, options);
  over_ascii_encode(frame, out);
}

std::optional<uint8_t> OverAsciiDecoder::push(uint8_t b) {
  const uint8_t esc = escape_;
  escape_ = 0;
  switch (esc) {
    case kEscLow:
      return static_cast<uint8_t>((b ^ 0x20) & 0x7F);
    case kEscHigh:
      return static_cast<uint8_t>(b ^ 0x20);
    case kEscRaw:
      return b;
    default:
      break;
  }
  if (b == kEscLow || b == kEscHigh || b == kEscRaw) {
    escape_ = b;
    return std::nullopt;
  }
  return static_cast<uint8_t>(b & 0x7F);
}

ConsoleDemux::ConsoleDemux(size_t max_line_len, const HdlcOptions& options)
    : max_line_len_(max_line_len == 0 ? 1 : max_line_len), hdlc_(options) {}

void ConsoleDemux::reset() {
  over_ascii_.reset();
  hdlc_.reset();
  line_.clear();
  line_done_ = false;
}

std::string ConsoleDemux::take_partial_line() {
  if (line_done_) {
    line_.clear();
    line_done_ = false;
  }
  std::string out;
  out.swap(line_);
  return out;
}

ConsoleDemux::Result ConsoleDemux::next(std::span<const uint8_t> input) {
  if (line_done_) {
    line_.clear();
    line_done_ = false;
  }
  for (size_t i = 0; i < input.size(); ++i) {
    const uint8_t b = input[i];
    if (b < 0x80) {
      ++stats_.text_bytes;
      if (b == '\n') {
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        ++stats_.lines;
        line_done_ = true;
        return {Status::LogLine, {}, line_, false, i + 1};
      }
      line_.push_back(static_cast<char>(b));
      if (line_.size() >= max_line_len_) {
        // Log text is informational: cut it rather than lose it.
        ++stats_.lines;
        ++stats_.long_lines;
        line_done_ = true;
        return {Status::LogLine, {}, line_, true, i + 1};
      }
      continue;
    }
    const std::optional<uint8_t> decoded = over_ascii_.push(b);
    if (!decoded) continue;
    const HdlcDecoder::Result r = hdlc_.next(std::span<const uint8_t>(&*decoded, 1));
    switch (r.status) {
      case HdlcDecoder::Status::Frame:
        return {Status::Frame, r.frame, {}, false, i + 1};
      case HdlcDecoder::Status::BadCrc:
        return {Status::BadCrc, {}, {}, false, i + 1};
      case HdlcDecoder::Status::Oversize:
        return {Status::Oversize, {}, {}, false, i + 1, r.dropped_len};
      case HdlcDecoder::Status::NeedMore:
        break;
    }
  }
  return {Status::NeedMore, {}, {}, false, input.size()};
}

}  // namespace edgelink::devices

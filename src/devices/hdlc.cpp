#include "edgelink/devices/hdlc.hpp"

#include <array>
#include <utility>

namespace edgelink::devices {
namespace {

constexpr std::array<uint16_t, 256> make_crc_table() {
  std::array<uint16_t, 256> table{};
  for (unsigned i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
    }
    table[i] = crc;
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrcTable = make_crc_table();

void put_escaped(uint8_t b, std::vector<uint8_t>& out, const HdlcOptions& o) {
  if (b == o.flag || b == o.escape) {
    out.push_back(o.escape);
    out.push_back(static_cast<uint8_t>(b ^ kHdlcEscapeXor));
  } else {
    out.push_back(b);
  }
}

}  // namespace

uint16_t crc16_ccitt(std::span<const uint8_t> data, uint16_t crc) {
  for (uint8_t b : data) {
    crc = static_cast<uint16_t>((crc << 8) ^ kCrcTable[((crc >> 8) ^ b) & 0xFF]);
  }
  return crc;
}

void hdlc_encode(std::span<const uint8_t> message, std::vector<uint8_t>& out, const HdlcOptions& options) {
  out.reserve(out.size() + hdlc_max_encoded_size(message.size()));
  const uint16_t crc = crc16_ccitt(message);
  out.push_back(options.flag);
  for (uint8_t b : message) put_escaped(b, out, options);
  put_escaped(static_cast<uint8_t>(crc >> 8), out, options);
  put_escaped(static_cast<uint8_t>(crc & 0xFF), out, options);
  out.push_back(options.flag);
}

HdlcDecoder::HdlcDecoder(const HdlcOptions& options) : options_(options) {
  // Small reserve only: a frame that grows past it reallocates, max_frame_len bounds it.
  buf_.reserve(256);
}

void HdlcDecoder::reset() {
  buf_.clear();
  escaped_ = false;
  delivered_ = false;
  discarded_ = 0;
}

HdlcDecoder::Result HdlcDecoder::next(std::span<const uint8_t> input) {
  if (delivered_) {
    buf_.clear();
    delivered_ = false;
  }
  for (size_t i = 0; i < input.size(); ++i) {
    const uint8_t b = input[i];
    ++stats_.bytes;
    if (b == options_.flag) {
      // A flag always ends the frame, even directly after an escape (§3.2 step 1).
      escaped_ = false;
      if (discarded_ > 0) {
        ++stats_.oversize;
        return {Status::Oversize, {}, i + 1, std::exchange(discarded_, 0)};
      }
      const size_t n = buf_.size();
      if (n < 2) {  // empty frame, E7 E7, or a lone byte: ignored like the device does
        buf_.clear();
        continue;
      }
      const auto body = std::span<const uint8_t>(buf_).first(n - 2);
      const uint16_t got = static_cast<uint16_t>((buf_[n - 2] << 8) | buf_[n - 1]);
      if (crc16_ccitt(body) == got) {
        ++stats_.frames;
        delivered_ = true;
        return {Status::Frame, body, i + 1};
      }
      ++stats_.bad_crc;
      buf_.clear();
      return {Status::BadCrc, {}, i + 1};
    }
    if (b == options_.escape) {
      escaped_ = true;
      continue;
    }
    const uint8_t unescaped = escaped_ ? static_cast<uint8_t>(b ^ kHdlcEscapeXor) : b;
    escaped_ = false;
    if (discarded_ > 0) {
      ++discarded_;
      continue;
    }
    buf_.push_back(unescaped);
    if (buf_.size() > options_.max_frame_len) {
      // Only the length is kept from here to the flag: memory stays bounded by the
      // limit, and the frame is reported once, with its size, not as a CRC error.
      discarded_ = buf_.size();
      buf_.clear();
    }
  }
  return {Status::NeedMore, {}, input.size()};
}

}  // namespace edgelink::devices

// RTIO transport and REST-like codecs (see rtio_codec.hpp, spec/http-api.md §6.3–§6.4).

#include "edgelink/rtio/rtio_codec.hpp"

#include <openssl/crypto.h>

#include <array>
#include <cstdlib>

namespace edgelink::rtio {
namespace {

void put_u16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xFF);
}

void put_u32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xFF);
}

uint8_t byte_at(std::string_view s, size_t i) { return static_cast<uint8_t>(s[i]); }

uint16_t get_u16(std::string_view s, size_t at) {
  return static_cast<uint16_t>(byte_at(s, at) << 8 | byte_at(s, at + 1));
}

uint32_t get_u32(std::string_view s, size_t at) {
  return static_cast<uint32_t>(byte_at(s, at)) << 24 | static_cast<uint32_t>(byte_at(s, at + 1)) << 16 |
         static_cast<uint32_t>(byte_at(s, at + 2)) << 8 | static_cast<uint32_t>(byte_at(s, at + 3));
}

char first_byte(uint8_t method, uint8_t status) {
  return static_cast<char>((method & 0x0F) << 4 | (status & 0x0F));
}

// Reflected polynomial 0xEDB88320, one table entry per byte value (zlib's crc32).
constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}
constexpr auto kCrcTable = make_crc_table();

}  // namespace

std::string encode_message(uint8_t type, uint8_t code, uint16_t id, std::string_view body) {
  // BodyLength cannot say more; edgelink's callers send at most 512 bytes.
  if (body.size() > kMaxBodyBytes) std::abort();
  std::string out;
  out.reserve(kHeaderBytes + body.size());
  out += static_cast<char>((type & 0x0F) << 4 | (code & 0x07));
  put_u16(out, id);
  put_u16(out, static_cast<uint16_t>(body.size()));
  out.append(body);
  return out;
}

Header decode_header(const uint8_t* b) {
  Header h;
  h.type = b[0] >> 4;
  h.v = (b[0] & 0x08) != 0;
  h.code = b[0] & 0x07;
  h.id = static_cast<uint16_t>(b[1] << 8 | b[2]);
  h.body_len = static_cast<uint16_t>(b[3] << 8 | b[4]);
  return h;
}

StreamDecoder::StreamDecoder(size_t capacity) : capacity_(capacity) {}

void StreamDecoder::set_capacity(size_t capacity) { capacity_ = capacity; }

void StreamDecoder::append(std::span<const uint8_t> bytes) {
  if (too_long_) return;  // the connection is being closed; nothing more is read
  // Drop the consumed prefix before growing, so the buffer stays near one message plus
  // one read.
  if (start_ > 0 && (start_ == buf_.size() || start_ >= buf_.size() / 2)) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(start_));
    start_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

StreamDecoder::Result StreamDecoder::next(Message& out) {
  if (too_long_) return Result::BodyTooLong;
  if (buffered() < kHeaderBytes) return Result::NeedMore;
  const Header h = decode_header(buf_.data() + start_);
  // Checked on the header alone, so a hostile BodyLength never makes us wait for (or
  // hold) more than the capacity.
  if (h.body_len > capacity_) {
    too_long_ = true;
    buf_.clear();
    buf_.shrink_to_fit();
    start_ = 0;
    out.header = h;
    out.body.clear();
    return Result::BodyTooLong;
  }
  if (buffered() < kHeaderBytes + h.body_len) return Result::NeedMore;
  const auto* body = reinterpret_cast<const char*>(buf_.data() + start_ + kHeaderBytes);
  out.header = h;
  out.body.assign(body, h.body_len);
  start_ += kHeaderBytes + h.body_len;
  if (start_ == buf_.size()) {
    buf_.clear();
    start_ = 0;
  }
  return Result::Message;
}

uint32_t crc32(std::string_view bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (const char ch : bytes) c = kCrcTable[(c ^ static_cast<uint8_t>(ch)) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string encode_co_req(uint8_t method, uint32_t digest, std::string_view data) {
  std::string out;
  out.reserve(5 + data.size());
  out += first_byte(method, 0);
  put_u32(out, digest);
  out.append(data);
  return out;
}

std::string encode_co_resp(uint8_t method, uint8_t status, std::string_view data) {
  std::string out;
  out.reserve(1 + data.size());
  out += first_byte(method, status);
  out.append(data);
  return out;
}

std::string encode_obget_estab_req(uint16_t observer, uint32_t digest, std::string_view data) {
  std::string out;
  out.reserve(7 + data.size());
  out += first_byte(static_cast<uint8_t>(Method::ObservedGet), 0);
  put_u16(out, observer);
  put_u32(out, digest);
  out.append(data);
  return out;
}

std::string encode_obget_estab_resp(uint16_t observer, uint8_t status) {
  return encode_obget_notify_req(observer, status, {});
}

std::string encode_obget_notify_req(uint16_t observer, uint8_t status, std::string_view data) {
  std::string out;
  out.reserve(3 + data.size());
  out += first_byte(static_cast<uint8_t>(Method::ObservedGet), status);
  put_u16(out, observer);
  out.append(data);
  return out;
}

std::string encode_obget_notify_resp(uint16_t observer, uint8_t status) {
  return encode_obget_notify_req(observer, status, {});
}

std::optional<CoReq> decode_co_req(std::string_view body) {
  if (body.size() < 5) return std::nullopt;
  return CoReq{static_cast<uint8_t>(byte_at(body, 0) >> 4), get_u32(body, 1), body.substr(5)};
}

std::optional<CoResp> decode_co_resp(std::string_view body) {
  if (body.empty()) return std::nullopt;
  return CoResp{static_cast<uint8_t>(byte_at(body, 0) >> 4), static_cast<uint8_t>(byte_at(body, 0) & 0x0F),
                body.substr(1)};
}

std::optional<ObGet> decode_obget(std::string_view body) {
  if (body.size() < 3) return std::nullopt;
  return ObGet{static_cast<uint8_t>(byte_at(body, 0) >> 4), static_cast<uint8_t>(byte_at(body, 0) & 0x0F),
               get_u16(body, 1), body.substr(3)};
}

std::optional<ObGetEstabReq> decode_obget_estab_req(std::string_view body) {
  if (body.size() < 7) return std::nullopt;
  return ObGetEstabReq{static_cast<uint8_t>(byte_at(body, 0) >> 4), get_u16(body, 1), get_u32(body, 3),
                       body.substr(7)};
}

http::Code code_of(uint8_t status) {
  switch (static_cast<Status>(status)) {
    case Status::Ok: return http::Code::Ok;
    case Status::Continue: return http::Code::Continue;
    case Status::Terminate: return http::Code::Terminate;
    case Status::NotFound: return http::Code::NotFound;
    case Status::BadRequest: return http::Code::BadRequest;
    case Status::MethodNotAllowed: return http::Code::MethodNotAllowed;
    case Status::TooManyRequests: return http::Code::TooManyRequests;
    case Status::TooManyObservers: return http::Code::TooManyObservers;
    case Status::Unknown:
    case Status::InternalServerError: break;
  }
  return http::Code::InternalServerError;
}

std::optional<VerifyRequest> parse_verify(std::string_view body) {
  constexpr size_t kMin = 1 + kDeviceIdBytes + 1 + kMinSecretBytes;  // 62
  constexpr size_t kMax = 1 + kDeviceIdBytes + 1 + kMaxSecretBytes;  // 102
  if (body.size() < kMin || body.size() > kMax) return std::nullopt;
  const std::string_view text = body.substr(1);
  const size_t colon = text.find(':');
  // Split at the first ':' (the secret may hold more): the id must end exactly there.
  if (colon != kDeviceIdBytes) return std::nullopt;
  VerifyRequest r;
  r.level = byte_at(body, 0) >> 6;
  r.capacity = kDefaultCapacity << r.level;
  r.id = text.substr(0, colon);
  r.secret = text.substr(colon + 1);
  // With the id at 36 bytes the body bounds already hold the secret to 24..64 bytes.
  return r;
}

Ping parse_ping(std::string_view body) {
  if (body.empty()) return {Ping::Kind::Keep, 0};
  if (body.size() != 2) return {Ping::Kind::BadLength, 0};
  const uint16_t s = get_u16(body, 0);
  if (s == 0) return {Ping::Kind::Keep, 0};
  if (s >= kMinPingSeconds && s <= kMaxPingSeconds) return {Ping::Kind::Set, s};
  return {Ping::Kind::OutOfRange, s};
}

bool secrets_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  // OpenSSL's comparison is written so the compiler cannot turn it into an early exit.
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace edgelink::rtio

#pragma once
// RTIO's device protocol (spec/http-api.md §6.3, §6.4): the 5-byte transport header,
// an incremental bounded decoder for the TCP stream, and the REST-like messages carried
// in the bodies. Pure: no sockets, no clocks, no exceptions; unit-tested
// (tests/unit/rtio/rtio_codec_test.cpp) and fuzzed (tests/fuzz/rtio_fuzz.cpp).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "edgelink/http/device_access.hpp"

namespace edgelink::rtio {

inline constexpr size_t kHeaderBytes = 5;
// The body limit before verify, and the most edgelink ever sends (§6.3 Capacity).
inline constexpr size_t kDefaultCapacity = 512;
inline constexpr size_t kMaxBodyBytes = 0xFFFF;  // BodyLength is a u16

enum class MsgType : uint8_t {
  DeviceVerifyReq = 1,
  DeviceVerifyResp = 2,
  DevicePingReq = 3,
  DevicePingResp = 4,
  DeviceSendReq = 5,
  DeviceSendResp = 6,
  ServerSendReq = 7,
  ServerSendResp = 8,
};

// The header's Code in responses (§6.3).
enum class RespCode : uint8_t {
  Failure = 0,
  Success = 1,
  TypeError = 2,
  VerifyFailed = 3,
  InvalidParam = 4,
  BodyLengthError = 5,
  NotFound = 6,
};

// Byte 0 = Type << 4 | V << 3 | Code; then MessageID and BodyLength, u16 big-endian.
// `type` is the raw 4-bit value, so types the enum does not name (0, 9..15) survive for
// the caller to refuse; Code and V are reported as sent and carry no meaning in requests.
struct Header {
  uint8_t type = 0;
  bool v = false;
  uint8_t code = 0;
  uint16_t id = 0;
  uint16_t body_len = 0;
};

// Header (V = 0; type and code masked to their 4 and 3 bits) + body.
// Precondition: body.size() <= 65535 (a longer body is a broken invariant: abort).
std::string encode_message(uint8_t type, uint8_t code, uint16_t id, std::string_view body);
Header decode_header(const uint8_t* five_bytes);

struct Message {
  Header header;
  std::string body;
};

// Splits the TCP byte stream into messages. append() bytes as they arrive, in any
// slicing; next() yields whole messages until NeedMore. A header whose BodyLength is
// above the capacity is refused before its body is waited for (§6.6: the connection must
// be closed); the decoder then stays in that state and drops whatever is appended.
class StreamDecoder {
 public:
  explicit StreamDecoder(size_t capacity = kDefaultCapacity);

  // The verified device's declared capacity (§6.2 item 2); applies to every header not
  // yet returned by next().
  void set_capacity(size_t capacity);
  size_t capacity() const { return capacity_; }

  void append(std::span<const uint8_t> bytes);

  enum class Result { NeedMore, Message, BodyTooLong };
  // Message: `out` holds the next message. BodyTooLong: `out.header` is the offending
  // header (for the log), `out.body` is empty; every later call says BodyTooLong again.
  Result next(Message& out);

  size_t buffered() const { return buf_.size() - start_; }

 private:
  std::vector<uint8_t> buf_;
  size_t start_ = 0;  // consumed prefix of buf_, compacted lazily
  size_t capacity_;
  bool too_long_ = false;
};

// REST-like layer (§6.4). First body byte = Method << 4 | Status.
enum class Method : uint8_t { Unknown = 0, ConstrainedGet = 1, ConstrainedPost = 2, ObservedGet = 3 };
enum class Status : uint8_t {
  Unknown = 0,
  InternalServerError = 1,
  Ok = 2,
  Continue = 3,
  Terminate = 4,
  NotFound = 5,
  BadRequest = 6,
  MethodNotAllowed = 7,
  TooManyRequests = 8,
  TooManyObservers = 9,
};

// CRC-32/IEEE as zlib's crc32() computes it: the URIDigest. Check value of "123456789"
// is 0xCBF43926.
uint32_t crc32(std::string_view bytes);

// Layouts of §6.4 (u16 and u32 big-endian). Method and status are masked to 4 bits.
std::string encode_co_req(uint8_t method, uint32_t digest, std::string_view data);  // [M<<4][digest][data]
std::string encode_co_resp(uint8_t method, uint8_t status, std::string_view data);  // [M<<4|st][data]
// [3<<4][observer][digest][data]
std::string encode_obget_estab_req(uint16_t observer, uint32_t digest, std::string_view data);
std::string encode_obget_estab_resp(uint16_t observer, uint8_t status);  // [3<<4|st][observer]
// [3<<4|st][observer][data]
std::string encode_obget_notify_req(uint16_t observer, uint8_t status, std::string_view data);
std::string encode_obget_notify_resp(uint16_t observer, uint8_t status);  // [3<<4|st][observer]

// The decoders return views into `body`. The low nibble of a request's first byte
// (Status, 0 in requests) is not reported.
struct CoReq {
  uint8_t method = 0;
  uint32_t digest = 0;
  std::string_view data;
};
std::optional<CoReq> decode_co_req(std::string_view body);  // nullopt if < 5 bytes

struct CoResp {
  uint8_t method = 0;
  uint8_t status = 0;
  std::string_view data;
};
std::optional<CoResp> decode_co_resp(std::string_view body);  // nullopt if empty

// ObGetEstabResp, ObGetNotifyReq and ObGetNotifyResp share this layout; `data` is empty
// for the two responses unless the sender added bytes.
struct ObGet {
  uint8_t method = 0;
  uint8_t status = 0;
  uint16_t observer = 0;
  std::string_view data;
};
std::optional<ObGet> decode_obget(std::string_view body);  // nullopt if < 3 bytes

// ObGetEstabReq, as a device reads it (edgelink only sends it; tests and fakes decode it).
struct ObGetEstabReq {
  uint8_t method = 0;
  uint16_t observer = 0;
  uint32_t digest = 0;
  std::string_view data;
};
std::optional<ObGetEstabReq> decode_obget_estab_req(std::string_view body);  // nullopt if < 7 bytes

// The JSON code of a REST-like status (§6.4 table; 0, 1 and 10..15 ->
// INTERNAL_SERVER_ERROR). Values above 15 cannot come from a nibble and map the same way.
http::Code code_of(uint8_t status);

// DeviceVerifyReq body (§6.2 item 2): 1 byte whose top 2 bits are the capacity level CL
// (512 << CL bytes; the other 6 bits are ignored), then "<id>:<secret>" split at the
// first ':'; id exactly 36 bytes, secret 24..64 bytes, so the body is 62..102 bytes.
// Only lengths are checked: an id of other characters is simply unknown (code 3).
// nullopt = malformed (reply code 4).
struct VerifyRequest {
  uint8_t level = 0;
  size_t capacity = kDefaultCapacity;
  std::string_view id;
  std::string_view secret;
};
inline constexpr size_t kDeviceIdBytes = 36;
inline constexpr size_t kMinSecretBytes = 24;
inline constexpr size_t kMaxSecretBytes = 64;
std::optional<VerifyRequest> parse_verify(std::string_view body);

// DevicePingReq body (§6.2 item 4): empty -> Keep; a u16 BE of 0 -> Keep, 30..43200 ->
// Set, anything else -> OutOfRange (reply code 4, `seconds` holds the value); any other
// length -> BadLength (reply code 5).
inline constexpr uint16_t kMinPingSeconds = 30;
inline constexpr uint16_t kMaxPingSeconds = 43200;
struct Ping {
  enum class Kind { Keep, Set, OutOfRange, BadLength } kind = Kind::Keep;
  uint16_t seconds = 0;
};
Ping parse_ping(std::string_view body);

// Secrets compared in constant time for equal lengths (a length mismatch returns at
// once: the length is not the secret).
bool secrets_equal(std::string_view a, std::string_view b);

}  // namespace edgelink::rtio

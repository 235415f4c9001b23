#pragma once
// The data-stream lines of an app connection and the MQTT payloads of a stream
// (spec/datastreams.md §2–§7): pure parsing and encoding, so it is unit-tested and fuzzed
// (tests/fuzz/ds_fuzz.cpp). Names follow LiveKit's data streams: header, chunk, trailer.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace edgelink::datastreams {

using Attributes = std::vector<std::pair<std::string, std::string>>;

// §6.1: stream end reasons with a number ("" has none; other reasons pass through).
std::optional<int> reason_code(std::string_view reason);
inline constexpr const char* kAbnormalEnd = "AbnormalEnd";
inline constexpr const char* kDecodeFailed = "DecodeFailed";
inline constexpr const char* kLengthExceeded = "LengthExceeded";
inline constexpr const char* kIncomplete = "Incomplete";
inline constexpr const char* kTimeout = "Timeout";
inline constexpr const char* kShutdown = "Shutdown";
inline constexpr const char* kCancelled = "Cancelled";
inline constexpr const char* kOverflow = "Overflow";

// §6.2: local errors.
enum class ErrorCode : int {
  BadRequest = 1,
  Full = 3,
  Closed = 5,
  UnknownStream = 6,
  HandlerAlreadyRegistered = 7,
  HeaderTooLarge = 9,
};
const char* to_string(ErrorCode code);

// §5 limits.
inline constexpr size_t kMaxTopicBytes = 128;
inline constexpr size_t kMaxReasonChars = 15;
inline constexpr size_t kMaxAttributes = 16;
inline constexpr size_t kMaxAttributeKey = 64;
inline constexpr size_t kMaxAttributeValue = 512;
inline constexpr size_t kMaxHeaderBytes = 4096;
inline constexpr uint64_t kMaxTotalLength = uint64_t{1} << 53;

struct TextMeta {
  std::string operation = "create";  // create | update | delete | reaction
  int64_t version = 0;
  std::string reply_to;
  std::vector<std::string> attached;
  bool generated = false;
};

struct OpenLine {
  std::optional<uint32_t> req;
  std::string topic;
  bool text = false;
  std::string mime_type;  // the default for the kind when not given
  std::optional<uint64_t> total_length;
  std::optional<std::string> name;
  Attributes attributes;
  std::optional<TextMeta> text_meta;
};
struct WriteLine {
  std::string stream_id;
  bool text = false;      // "text" was given (else "data")
  std::string bytes;      // decoded
  bool decode_failed = false;  // bad base64, or text that is not valid Unicode
};
struct CloseLine {
  std::string stream_id;
  Attributes attributes;
};
struct AbortLine {
  std::string stream_id;
  std::string reason = kCancelled;
};
struct SubscribeLine {
  std::optional<uint32_t> req;
  std::string topic;
  bool subscribe = true;  // false: unsubscribe
};
struct LineError {
  ErrorCode code = ErrorCode::BadRequest;
  std::string message;
  std::optional<uint32_t> req;
  std::optional<std::string> stream_id;
};
using DsLine = std::variant<OpenLine, WriteLine, CloseLine, AbortLine, SubscribeLine, LineError>;

// Cheap test before a JSON parse, on every app line.
inline bool may_be_ds_line(std::string_view line) {
  return line.find("\"ds\"") != std::string_view::npos || line.find("\\u") != std::string_view::npos;
}
// nullopt: not a data-stream line (no "ds" string key, or a "stream" key: a data point).
// A long base64 write's value is found by hand and decoded from the line; the rest is
// parsed without it.
std::optional<DsLine> parse_ds_line(std::string_view line);
// The same result from RapidJSON on the whole line: the reference the fast path is tested
// and fuzzed against.
std::optional<DsLine> parse_ds_line_whole(std::string_view line);
bool valid_topic(std::string_view topic);

// ---- replies to the app (each ends with '\n') ----
std::string opened_line(std::optional<uint32_t> req, std::string_view stream_id);
std::string closed_line(std::string_view stream_id, uint64_t bytes, uint64_t chunks, std::string_view reason);
std::string error_line(const LineError& error);
std::string subscribed_line(std::optional<uint32_t> req, std::string_view topic, bool subscribed);

// ---- MQTT payloads (§3) ----
struct Header {
  std::string stream_id;
  uint64_t timestamp = 0;
  std::string topic;
  bool text = false;
  std::string mime_type;
  std::optional<uint64_t> total_length;
  std::optional<std::string> name;
  Attributes attributes;
  std::optional<TextMeta> text_meta;
  std::string sender;
};
std::string encode_header(const Header& h);
std::string encode_chunk(std::string_view stream_id, uint64_t index, std::string_view bytes);
std::string encode_trailer(std::string_view stream_id, std::string_view reason, const Attributes& attributes);

// Inbound (§7): what a message is, or why it is dropped ("invalid").
struct InHeader {
  Header header;
  std::string raw_text_meta;  // as received, passed through to rx_open
};
struct InChunk {
  std::string stream_id;
  uint64_t index = 0;
  std::string content;  // decoded
  uint64_t version = 0;
};
struct InTrailer {
  std::string stream_id;
  std::string reason;
  Attributes attributes;
};
struct Invalid {
  std::string why;
  std::string stream_id;  // when one could be read (a chunk with bad content ends its stream)
};
using InMessage = std::variant<InHeader, InChunk, InTrailer, Invalid>;
InMessage parse_inbound(std::string_view payload);

// ---- lines to a subscribed app ----
std::string rx_open_line(const InHeader& h, std::string_view routed_topic);
std::string rx_chunk_line(std::string_view stream_id, uint64_t index, std::string_view content, bool text,
                          std::optional<uint64_t> replace_version);
std::string rx_close_line(std::string_view stream_id, std::string_view reason, const Attributes& attributes);

// §4: how many of the first `max` bytes of `buf` make the next chunk; text cuts never
// split a UTF-8 sequence (0 only when max is 0).
size_t cut_point(std::string_view buf, size_t max, bool text);
bool valid_utf8(std::string_view s);
// A random UUIDv4, lowercase.
std::string new_stream_id();

}  // namespace edgelink::datastreams

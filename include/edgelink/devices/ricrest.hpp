#pragma once
// RICSerial messages and RICREST elements (spec/ricrest.md §4, §5, §7), plus the
// JSON bodies the gateway sends and reads. A "message" here is what travels inside
// one HDLC frame: [msgNum][msgType<<6 | protocol][payload...]. Decoders take the
// bytes of one frame and return a typed error for anything malformed; decoded
// views point into the caller's bytes. Encoders append to a caller's buffer.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace edgelink::devices {

enum class RicMsgType : uint8_t { Command = 0, Response = 1, Publish = 2, Report = 3 };

namespace ric_protocol {
inline constexpr uint8_t kRosSerial = 0x00;  // StatePublisher publishes use this
inline constexpr uint8_t kRicRest = 0x02;
inline constexpr uint8_t kBridgeRicRest = 0x03;
inline constexpr uint8_t kMax = 0x3F;  // 6 bits on the wire
}  // namespace ric_protocol

enum class RicElementCode : uint8_t { Url = 0, CmdRespJson = 1, Body = 2, CommandFrame = 3, FileBlock = 4 };

inline constexpr uint8_t kStreamIdAny = 0;         // "any session on this channel"; never on data blocks
inline constexpr uint8_t kMaxStreamId = 254;       // device IDs run 1..254
inline constexpr uint32_t kMaxFilePos = 0xFFFFFF;  // positions are 24 bits on the wire
inline constexpr size_t kMaxBlockPayload = 475;    // rtstream block limit (§6.1.1)

struct RicHeader {
  uint8_t msg_num = 0;  // 0 = unnumbered, 1..255 = tracked request and its reply
  RicMsgType msg_type = RicMsgType::Command;
  uint8_t protocol = ric_protocol::kRicRest;  // 0..0x3F
};

enum class RicErrorCode {
  Truncated,          // too short for its header or element layout
  UnknownElement,     // RICREST element code above 4
  MissingTerminator,  // text element without its 0x00
  BadJson,            // not JSON (or not UTF-8)
  NotAnObject,        // JSON, but not an object
  MissingField,       // a field the message needs is absent
  BadField,           // a field has the wrong type or is out of range
  BadArgument,        // an encoder was asked for something the wire cannot carry
};
const char* to_string(RicErrorCode code);

struct RicError {
  RicErrorCode code;
  std::string_view what;  // static text: the field or element concerned
};

// Element bodies; views into the decoded bytes.
struct UrlElement {  // code 0: request string up to its 0x00
  std::string_view url;
};
struct CmdRespJsonElement {  // code 1: device replies, notices, reports
  std::string_view json;
};
struct BodyElement {  // code 2: the device ignores it (no reply)
  uint32_t buffer_pos = 0;
  uint32_t total_bytes = 0;
  std::span<const uint8_t> data;
};
struct CommandFrameElement {  // code 3: JSON + 0x00 [+ binary tail, which the device mishandles]
  std::string_view json;
  std::span<const uint8_t> tail;
};
struct FileBlockElement {  // code 4: [streamID][pos u24 BE][payload]
  uint8_t stream_id = 0;
  uint32_t pos = 0;
  std::span<const uint8_t> data;  // may be empty on input (the device answers INVALID_DATA)
};
// Any protocol other than RICREST: publishes (0x80), bridged messages, ROS serial.
struct RawPayload {
  std::span<const uint8_t> bytes;
};

using RicBody = std::variant<RawPayload, UrlElement, CmdRespJsonElement, BodyElement, CommandFrameElement,
                             FileBlockElement>;

struct RicMessage {
  RicHeader header;
  RicBody body;
};

// Decodes one message (the bytes of one HDLC frame). Protocol RICREST yields its
// element; every other protocol yields RawPayload. msgType is not checked, as on
// the device: the router decides what a combination means.
std::variant<RicMessage, RicError> decode_message(std::span<const uint8_t> message);

// Encoders append one message to `out` and return false (appending nothing) when
// the wire cannot carry the request: text containing 0x00, a position above 24
// bits, protocol above 0x3F, and, because the device rejects them, an empty block
// or a block for stream 0.
[[nodiscard]] bool encode_message(std::vector<uint8_t>& out, const RicMessage& message);
[[nodiscard]] bool encode_url(std::vector<uint8_t>& out, uint8_t msg_num, std::string_view url);
[[nodiscard]] bool encode_command_frame(std::vector<uint8_t>& out, uint8_t msg_num, std::string_view json);
// CMDRESPJSON with any header: replies (Response), reports (Report).
[[nodiscard]] bool encode_cmdresp(std::vector<uint8_t>& out, RicHeader header, std::string_view json);
// FILEBLOCK with header 0x02 (COMMAND|RICREST), used in both directions, msgNum 0.
[[nodiscard]] bool encode_file_block(std::vector<uint8_t>& out, uint8_t stream_id, uint32_t pos,
                                     std::span<const uint8_t> data);
// Publish frame: msgNum 0, header 0x80, the publisher's bytes, no element code.
void encode_publish(std::vector<uint8_t>& out, std::span<const uint8_t> payload);

// ---- JSON the gateway sends (key order as the reference client emits it) -----------

// Percent-encodes a URL query value (the device decodes %xx; §4.9).
std::string url_encode_component(std::string_view value);
// JSON string literal with quotes; control characters as \u00XX.
std::string json_quote(std::string_view text);

// V2: {"cmdName":"ufStart","reqStr":"ufStart","fileType":"rtstream","fileName":..,"endpoint":..,"fileLen":0}
std::string ufstart_rtstream_json(std::string_view file_name, std::string_view endpoint, uint32_t file_len = 0);
// V10: {"cmdName":"ufEnd","reqStr":"ufEnd","streamID":N}; "ufCancel" likewise.
std::string ufend_json(uint8_t stream_id);
std::string ufcancel_json(uint8_t stream_id);

struct PubRec {
  std::string name;                      // topic, for example "devjson"
  std::string trigger = "timeorchange";  // contains "time"+"change", "change", or other = time
  double rate_hz = 1.0;                  // 0 disables the topic
  uint32_t min_ms = 50;
};
// V14: {"cmdName":"subscription","action":"update","pubRecs":[{"name":..,"trigger":..,"rateHz":..,"minMs":..}]}
std::string subscription_json(std::span<const PubRec> recs);

// ---- JSON the device sends (built here for simulators and tests) -------------------

// {"req":"ufStart","streamID":N,"rslt":"ok"} (V3)
std::string ufstart_ok_json(uint8_t stream_id);
// {"req":"ufStart","reason":"sessionNotStarted","rslt":"fail"} (session limit or endpoint refused)
std::string session_not_started_json();
// ufEnd/ufCancel reply: with streamID when the session exists (V10 reply), without when not.
std::string session_cmd_reply_json(std::string_view req, std::optional<uint8_t> stream_id);
// {"req":"ufBlock","streamID":S,"sokto":P[,"reason":R],"rslt":"ok"} (V7, V8; no reason = end of stream)
std::string sokto_json(uint8_t stream_id, uint32_t sokto, std::string_view reason);
// {"req":"ufBlock","streamID":S,"reason":R,"rslt":"fail"} (V11)
std::string block_fail_json(uint8_t stream_id, std::string_view reason);
// {"req":"ufBlock","length":0,"reason":"INVALID_DATA","rslt":"fail"}
std::string empty_block_json();
// {"msgType":"sysevent","msgName":"shutdown","isRestart":1[,"reason":R]} (V13)
std::string shutdown_report_json(bool is_restart, std::string_view reason);

// ---- JSON the gateway reads --------------------------------------------------------

enum class Rslt { Absent, Ok, Fail, Other };  // no rslt counts as OK (§4.8)

struct TopicIndex {
  std::string name;
  int idx = 0;
};

// Any CMDRESPJSON: reply, notice or report. Absent fields stay empty/nullopt.
struct DeviceReply {
  std::string req;
  Rslt rslt = Rslt::Absent;
  std::string error;
  std::string reason;
  std::string cmd_name;  // ufCancel/dfCancel notices carry it with "req":""
  std::optional<uint8_t> stream_id;
  std::optional<uint32_t> sokto;
  std::optional<uint32_t> okto;
  std::optional<uint32_t> max_block_size;
  std::optional<uint32_t> length;
  std::vector<TopicIndex> topics;  // subscription / pubtopics replies

  bool ok() const { return rslt == Rslt::Ok || rslt == Rslt::Absent; }
};
std::variant<DeviceReply, RicError> parse_reply(std::string_view json);

enum class StreamReason {
  None,  // no reason field
  Busy,
  PosMismatch,
  SessionNotFound,
  InvalidData,
  InvalidOperation,
  SessionNotStarted,
  Other,  // any other string: the device has many codes and clients must accept all
};
StreamReason parse_stream_reason(std::string_view reason);

// What a "req":"ufBlock" notice (msgNum 0) means for an rtstream (§5.4, §5.5).
enum class BlockNoticeKind {
  EndOfStream,  // sokto, rslt ok, no reason: final block accepted, session closed
  Busy,         // sokto = pos+len of the dropped block; session open
  PosMismatch,  // sokto = the device's stream position; block dropped
  SoktoOther,   // sokto with rslt ok and an unexpected reason
  Failed,       // rslt fail: SESSION_NOT_FOUND, INVALID_DATA, hard failure (session gone)
  Okto,         // OKTO upload acknowledgement (not an rtstream)
};
struct BlockNotice {
  BlockNoticeKind kind = BlockNoticeKind::Failed;
  std::optional<uint8_t> stream_id;  // absent on the empty-block INVALID_DATA reply
  uint32_t position = 0;             // sokto or okto
  StreamReason reason = StreamReason::None;
  std::string reason_text;
};
// Error unless req is "ufBlock" and the fields fit one of the kinds.
std::variant<BlockNotice, RicError> parse_block_notice(const DeviceReply& reply);

struct UfStartReply {
  bool ok = false;
  uint8_t stream_id = 0;             // 1..254 when ok
  uint32_t max_block_size = kMaxBlockPayload;  // the reply's value if present and smaller
  StreamReason reason = StreamReason::None;
  std::string reason_text;           // for example "sessionNotStarted"
  std::string error;
};
// Error if req is not "ufStart" or an ok reply has no valid streamID.
std::variant<UfStartReply, RicError> parse_ufstart_reply(const DeviceReply& reply);

struct Report {
  std::string msg_type;  // "sysevent"
  std::string msg_name;  // "shutdown"
  bool is_restart = false;
  std::string reason;
  bool is_shutdown() const { return msg_type == "sysevent" && msg_name == "shutdown"; }
};
std::variant<Report, RicError> parse_report(std::string_view json);

enum class PublishFormat { Json, DevBin };
struct DevBinRecord {
  uint8_t bus = 0;  // without the online bit
  bool online = false;
  uint32_t addr = 0;
  uint16_t dev_type_idx = 0;
  std::span<const uint8_t> data;
};
struct Publish {
  PublishFormat format = PublishFormat::Json;
  std::optional<int> topic_idx;  // "_t", or devbin byte 1 unless 0xFF
  int version = 0;               // "_v", or devbin magic - 0xDA
  std::string_view json;         // Json: the whole payload
  std::vector<DevBinRecord> records;  // DevBin
};
// `payload` is the message after its 2-byte header (RawPayload of a 0x80 message).
std::variant<Publish, RicError> parse_publish(std::span<const uint8_t> payload);

}  // namespace edgelink::devices

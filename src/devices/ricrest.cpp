#include "edgelink/devices/ricrest.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <charconv>
#include <cmath>
#include <cstring>

namespace edgelink::devices {
namespace {

using Json = rapidjson::Document;

void put_u24(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 16));
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 24));
  put_u24(out, v & 0xFFFFFF);
}

uint32_t get_u32(std::span<const uint8_t> b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

uint8_t header_byte(const RicHeader& h) {
  return static_cast<uint8_t>((static_cast<uint8_t>(h.msg_type) << 6) | (h.protocol & 0x3F));
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

std::string_view as_text(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Text element: the bytes up to the first 0x00, which must be there (§4.4).
std::optional<std::string_view> take_text(std::span<const uint8_t> body, size_t* after_nul) {
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] == 0) {
      *after_nul = i + 1;
      return as_text(body.first(i));
    }
  }
  return std::nullopt;
}

void append_text_element(std::vector<uint8_t>& out, RicHeader h, RicElementCode code, std::string_view text) {
  out.push_back(h.msg_num);
  out.push_back(header_byte(h));
  out.push_back(static_cast<uint8_t>(code));
  out.insert(out.end(), text.begin(), text.end());
  out.push_back(0);
}

std::string number(uint64_t v) { return std::to_string(v); }

std::string number(double v) {
  if (!std::isfinite(v)) return "0";  // JSON has no NaN/inf
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form: 0.1 -> "0.1"
  return std::string(buf, r.ptr);
}

// ---- reading ---------------------------------------------------------------------

// Iterative parsing: a deep [[[[... from a device must not exhaust the stack.
constexpr unsigned kParseFlags = rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;

std::optional<RicError> parse_object(Json& doc, std::string_view json) {
  doc.Parse<kParseFlags>(json.data(), json.size());
  if (doc.HasParseError()) return RicError{RicErrorCode::BadJson, "json"};
  if (!doc.IsObject()) return RicError{RicErrorCode::NotAnObject, "json"};
  return std::nullopt;
}

const rapidjson::Value* member(const rapidjson::Value& obj, const char* name) {
  const auto it = obj.FindMember(name);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

// Optional string field: absent is fine, present must be a string.
bool read_string(const rapidjson::Value& obj, const char* name, std::string& out) {
  const rapidjson::Value* v = member(obj, name);
  if (!v) return true;
  if (!v->IsString()) return false;
  out.assign(v->GetString(), v->GetStringLength());
  return true;
}

template <typename T>
bool read_uint(const rapidjson::Value& obj, const char* name, std::optional<T>& out, uint64_t max) {
  const rapidjson::Value* v = member(obj, name);
  if (!v) return true;
  if (!v->IsUint64() || v->GetUint64() > max) return false;
  out = static_cast<T>(v->GetUint64());
  return true;
}

}  // namespace

const char* to_string(RicErrorCode code) {
  switch (code) {
    case RicErrorCode::Truncated: return "truncated";
    case RicErrorCode::UnknownElement: return "unknown element";
    case RicErrorCode::MissingTerminator: return "missing 0x00 terminator";
    case RicErrorCode::BadJson: return "bad JSON";
    case RicErrorCode::NotAnObject: return "JSON is not an object";
    case RicErrorCode::MissingField: return "missing field";
    case RicErrorCode::BadField: return "bad field";
    case RicErrorCode::BadArgument: return "bad argument";
  }
  return "unknown";
}

// ---- messages ------------------------------------------------------------------------

std::variant<RicMessage, RicError> decode_message(std::span<const uint8_t> message) {
  if (message.size() < 2) return RicError{RicErrorCode::Truncated, "header"};
  RicMessage m;
  m.header.msg_num = message[0];
  m.header.msg_type = static_cast<RicMsgType>(message[1] >> 6);
  m.header.protocol = message[1] & 0x3F;
  const auto payload = message.subspan(2);
  if (m.header.protocol != ric_protocol::kRicRest) {
    m.body = RawPayload{payload};
    return m;
  }
  if (payload.empty()) return RicError{RicErrorCode::Truncated, "element code"};
  const uint8_t code = payload[0];
  const auto body = payload.subspan(1);
  size_t after = 0;
  switch (code) {
    case static_cast<uint8_t>(RicElementCode::Url): {
      const auto text = take_text(body, &after);
      if (!text) return RicError{RicErrorCode::MissingTerminator, "URL"};
      m.body = UrlElement{*text};
      return m;
    }
    case static_cast<uint8_t>(RicElementCode::CmdRespJson): {
      const auto text = take_text(body, &after);
      if (!text) return RicError{RicErrorCode::MissingTerminator, "CMDRESPJSON"};
      m.body = CmdRespJsonElement{*text};
      return m;
    }
    case static_cast<uint8_t>(RicElementCode::Body): {
      if (body.size() < 8) return RicError{RicErrorCode::Truncated, "BODY"};
      m.body = BodyElement{get_u32(body), get_u32(body.subspan(4)), body.subspan(8)};
      return m;
    }
    case static_cast<uint8_t>(RicElementCode::CommandFrame): {
      const auto text = take_text(body, &after);
      if (!text) return RicError{RicErrorCode::MissingTerminator, "COMMAND_FRAME"};
      m.body = CommandFrameElement{*text, body.subspan(after)};
      return m;
    }
    case static_cast<uint8_t>(RicElementCode::FileBlock): {
      if (body.size() < 4) return RicError{RicErrorCode::Truncated, "FILEBLOCK"};
      // The device reads these 4 bytes as one BE u32: streamID on top, 24-bit position.
      const uint32_t word = get_u32(body);
      m.body = FileBlockElement{static_cast<uint8_t>(word >> 24), word & kMaxFilePos, body.subspan(4)};
      return m;
    }
    default:
      return RicError{RicErrorCode::UnknownElement, "element code"};
  }
}

bool encode_message(std::vector<uint8_t>& out, const RicMessage& m) {
  if (m.header.protocol > ric_protocol::kMax) return false;
  const bool ricrest = m.header.protocol == ric_protocol::kRicRest;
  // A RawPayload under protocol RICREST would decode as an element: refuse the mix.
  if (ricrest == std::holds_alternative<RawPayload>(m.body)) return false;
  const RicHeader& h = m.header;
  if (const auto* raw = std::get_if<RawPayload>(&m.body)) {
    out.push_back(h.msg_num);
    out.push_back(header_byte(h));
    out.insert(out.end(), raw->bytes.begin(), raw->bytes.end());
    return true;
  }
  if (const auto* url = std::get_if<UrlElement>(&m.body)) {
    if (has_nul(url->url)) return false;
    append_text_element(out, h, RicElementCode::Url, url->url);
    return true;
  }
  if (const auto* js = std::get_if<CmdRespJsonElement>(&m.body)) {
    if (has_nul(js->json)) return false;
    append_text_element(out, h, RicElementCode::CmdRespJson, js->json);
    return true;
  }
  if (const auto* cf = std::get_if<CommandFrameElement>(&m.body)) {
    if (has_nul(cf->json)) return false;
    append_text_element(out, h, RicElementCode::CommandFrame, cf->json);
    out.insert(out.end(), cf->tail.begin(), cf->tail.end());
    return true;
  }
  if (const auto* bd = std::get_if<BodyElement>(&m.body)) {
    out.push_back(h.msg_num);
    out.push_back(header_byte(h));
    out.push_back(static_cast<uint8_t>(RicElementCode::Body));
    put_u32(out, bd->buffer_pos);
    put_u32(out, bd->total_bytes);
    out.insert(out.end(), bd->data.begin(), bd->data.end());
    return true;
  }
  const auto& fb = std::get<FileBlockElement>(m.body);
  if (fb.pos > kMaxFilePos || fb.data.empty() || fb.stream_id == kStreamIdAny) return false;
  out.push_back(h.msg_num);
  out.push_back(header_byte(h));
  out.push_back(static_cast<uint8_t>(RicElementCode::FileBlock));
  out.push_back(fb.stream_id);
  put_u24(out, fb.pos);
  out.insert(out.end(), fb.data.begin(), fb.data.end());
  return true;
}

bool encode_url(std::vector<uint8_t>& out, uint8_t msg_num, std::string_view url) {
  return encode_message(out, {{msg_num, RicMsgType::Command, ric_protocol::kRicRest}, UrlElement{url}});
}

bool encode_command_frame(std::vector<uint8_t>& out, uint8_t msg_num, std::string_view json) {
  return encode_message(out,
                        {{msg_num, RicMsgType::Command, ric_protocol::kRicRest}, CommandFrameElement{json, {}}});
}

bool encode_cmdresp(std::vector<uint8_t>& out, RicHeader header, std::string_view json) {
  if (header.protocol != ric_protocol::kRicRest) return false;
  return encode_message(out, {header, CmdRespJsonElement{json}});
}

bool encode_file_block(std::vector<uint8_t>& out, uint8_t stream_id, uint32_t pos, std::span<const uint8_t> data) {
  return encode_message(
      out, {{0, RicMsgType::Command, ric_protocol::kRicRest}, FileBlockElement{stream_id, pos, data}});
}

void encode_publish(std::vector<uint8_t>& out, std::span<const uint8_t> payload) {
  out.push_back(0);
  out.push_back(header_byte({0, RicMsgType::Publish, ric_protocol::kRosSerial}));
  out.insert(out.end(), payload.begin(), payload.end());
}

// ---- JSON builders -------------------------------------------------------------------

std::string url_encode_component(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (unsigned char c : value) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                            c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

std::string json_quote(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('"');
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

std::string ufstart_rtstream_json(std::string_view file_name, std::string_view endpoint, uint32_t file_len) {
  return R"({"cmdName":"ufStart","reqStr":"ufStart","fileType":"rtstream","fileName":)" + json_quote(file_name) +
         R"(,"endpoint":)" + json_quote(endpoint) + R"(,"fileLen":)" + number(uint64_t{file_len}) + "}";
}

std::string ufend_json(uint8_t stream_id) {
  return R"({"cmdName":"ufEnd","reqStr":"ufEnd","streamID":)" + number(uint64_t{stream_id}) + "}";
}

std::string ufcancel_json(uint8_t stream_id) {
  return R"({"cmdName":"ufCancel","reqStr":"ufCancel","streamID":)" + number(uint64_t{stream_id}) + "}";
}

std::string subscription_json(std::span<const PubRec> recs) {
  std::string out = R"({"cmdName":"subscription","action":"update","pubRecs":[)";
  for (size_t i = 0; i < recs.size(); ++i) {
    const PubRec& r = recs[i];
    if (i) out.push_back(',');
    out += R"({"name":)" + json_quote(r.name) + R"(,"trigger":)" + json_quote(r.trigger) + R"(,"rateHz":)" +
           number(r.rate_hz) + R"(,"minMs":)" + number(uint64_t{r.min_ms}) + "}";
  }
  out += "]}";
  return out;
}

std::string ufstart_ok_json(uint8_t stream_id) {
  return R"({"req":"ufStart","streamID":)" + number(uint64_t{stream_id}) + R"(,"rslt":"ok"})";
}

std::string session_not_started_json() { return R"({"req":"ufStart","reason":"sessionNotStarted","rslt":"fail"})"; }

std::string session_cmd_reply_json(std::string_view req, std::optional<uint8_t> stream_id) {
  std::string out = R"({"req":)" + json_quote(req);
  if (stream_id) out += R"(,"streamID":)" + number(uint64_t{*stream_id});
  return out + R"(,"rslt":"ok"})";
}

std::string sokto_json(uint8_t stream_id, uint32_t sokto, std::string_view reason) {
  std::string out = R"({"req":"ufBlock","streamID":)" + number(uint64_t{stream_id}) + R"(,"sokto":)" +
                    number(uint64_t{sokto});
  if (!reason.empty()) out += R"(,"reason":)" + json_quote(reason);
  return out + R"(,"rslt":"ok"})";
}

std::string block_fail_json(uint8_t stream_id, std::string_view reason) {
  return R"({"req":"ufBlock","streamID":)" + number(uint64_t{stream_id}) + R"(,"reason":)" + json_quote(reason) +
         R"(,"rslt":"fail"})";
}

std::string empty_block_json() { return R"({"req":"ufBlock","length":0,"reason":"INVALID_DATA","rslt":"fail"})"; }

std::string shutdown_report_json(bool is_restart, std::string_view reason) {
  std::string out = R"({"msgType":"sysevent","msgName":"shutdown","isRestart":)" + std::string(is_restart ? "1" : "0");
  if (!reason.empty()) out += R"(,"reason":)" + json_quote(reason);
  return out + "}";
}

// ---- JSON readers --------------------------------------------------------------------

std::variant<DeviceReply, RicError> parse_reply(std::string_view json) {
  Json doc;
  if (auto err = parse_object(doc, json)) return *err;
  DeviceReply r;
  std::string rslt;
  if (!read_string(doc, "req", r.req)) return RicError{RicErrorCode::BadField, "req"};
  if (!read_string(doc, "rslt", rslt)) return RicError{RicErrorCode::BadField, "rslt"};
  if (!read_string(doc, "error", r.error)) return RicError{RicErrorCode::BadField, "error"};
  if (!read_string(doc, "reason", r.reason)) return RicError{RicErrorCode::BadField, "reason"};
  if (!read_string(doc, "cmdName", r.cmd_name)) return RicError{RicErrorCode::BadField, "cmdName"};
  if (!read_uint(doc, "streamID", r.stream_id, 0xFF)) return RicError{RicErrorCode::BadField, "streamID"};
  if (!read_uint(doc, "sokto", r.sokto, 0xFFFFFFFF)) return RicError{RicErrorCode::BadField, "sokto"};
  if (!read_uint(doc, "okto", r.okto, 0xFFFFFFFF)) return RicError{RicErrorCode::BadField, "okto"};
  if (!read_uint(doc, "maxBlockSize", r.max_block_size, 0xFFFFFFFF))
    return RicError{RicErrorCode::BadField, "maxBlockSize"};
  if (!read_uint(doc, "length", r.length, 0xFFFFFFFF)) return RicError{RicErrorCode::BadField, "length"};
  if (member(doc, "rslt")) {
    r.rslt = rslt == "ok" ? Rslt::Ok : rslt == "fail" ? Rslt::Fail : Rslt::Other;
  }
  if (const rapidjson::Value* topics = member(doc, "topics")) {
    if (!topics->IsArray()) return RicError{RicErrorCode::BadField, "topics"};
    for (const auto& t : topics->GetArray()) {
      if (!t.IsObject()) return RicError{RicErrorCode::BadField, "topics"};
      TopicIndex ti;
      std::optional<int> idx;
      if (!read_string(t, "name", ti.name) || !read_uint(t, "idx", idx, 0x7FFFFFFF) || !idx) {
        return RicError{RicErrorCode::BadField, "topics"};
      }
      ti.idx = *idx;
      r.topics.push_back(std::move(ti));
    }
  }
  return r;
}

StreamReason parse_stream_reason(std::string_view reason) {
  if (reason.empty()) return StreamReason::None;
  if (reason == "BUSY") return StreamReason::Busy;
  if (reason == "POS_MISMATCH") return StreamReason::PosMismatch;
  if (reason == "SESSION_NOT_FOUND") return StreamReason::SessionNotFound;
  if (reason == "INVALID_DATA") return StreamReason::InvalidData;
  if (reason == "INVALID_OPERATION") return StreamReason::InvalidOperation;
  if (reason == "sessionNotStarted") return StreamReason::SessionNotStarted;
  return StreamReason::Other;
}

std::variant<BlockNotice, RicError> parse_block_notice(const DeviceReply& reply) {
  if (reply.req != "ufBlock") return RicError{RicErrorCode::BadField, "req"};
  BlockNotice n;
  n.stream_id = reply.stream_id;
  n.reason_text = reply.reason;
  n.reason = parse_stream_reason(reply.reason);
  if (reply.rslt == Rslt::Fail) {
    // Hard failures and SESSION_NOT_FOUND name the stream; only the empty-block
    // INVALID_DATA reply has no streamID (§5.4).
    if (!n.stream_id && n.reason != StreamReason::InvalidData) return RicError{RicErrorCode::MissingField, "streamID"};
    n.kind = BlockNoticeKind::Failed;
    return n;
  }
  if (reply.rslt != Rslt::Ok) return RicError{RicErrorCode::BadField, "rslt"};
  if (reply.okto && !reply.sokto) {
    n.kind = BlockNoticeKind::Okto;
    n.position = *reply.okto;
    return n;
  }
  if (!reply.sokto) return RicError{RicErrorCode::MissingField, "sokto"};
  if (!n.stream_id) return RicError{RicErrorCode::MissingField, "streamID"};
  n.position = *reply.sokto;
  switch (n.reason) {
    case StreamReason::None: n.kind = BlockNoticeKind::EndOfStream; break;
    case StreamReason::Busy: n.kind = BlockNoticeKind::Busy; break;
    case StreamReason::PosMismatch: n.kind = BlockNoticeKind::PosMismatch; break;
    default: n.kind = BlockNoticeKind::SoktoOther; break;
  }
  return n;
}

std::variant<UfStartReply, RicError> parse_ufstart_reply(const DeviceReply& reply) {
  if (reply.req != "ufStart") return RicError{RicErrorCode::BadField, "req"};
  UfStartReply r;
  r.ok = reply.rslt == Rslt::Ok;  // raftjs also insists on an explicit ok and a streamID
  r.reason_text = reply.reason;
  r.reason = parse_stream_reason(reply.reason);
  r.error = reply.error;
  if (reply.max_block_size && *reply.max_block_size > 0 && *reply.max_block_size < r.max_block_size) {
    r.max_block_size = *reply.max_block_size;
  }
  if (!r.ok) return r;
  if (!reply.stream_id) return RicError{RicErrorCode::MissingField, "streamID"};
  if (*reply.stream_id == kStreamIdAny || *reply.stream_id > kMaxStreamId) {
    return RicError{RicErrorCode::BadField, "streamID"};
  }
  r.stream_id = *reply.stream_id;
  return r;
}

std::variant<Report, RicError> parse_report(std::string_view json) {
  Json doc;
  if (auto err = parse_object(doc, json)) return *err;
  Report r;
  if (!read_string(doc, "msgType", r.msg_type)) return RicError{RicErrorCode::BadField, "msgType"};
  if (!read_string(doc, "msgName", r.msg_name)) return RicError{RicErrorCode::BadField, "msgName"};
  if (!read_string(doc, "reason", r.reason)) return RicError{RicErrorCode::BadField, "reason"};
  if (r.msg_type.empty()) return RicError{RicErrorCode::MissingField, "msgType"};
  if (const rapidjson::Value* v = member(doc, "isRestart")) {
    if (v->IsBool()) {
      r.is_restart = v->GetBool();
    } else if (v->IsNumber()) {
      r.is_restart = v->GetDouble() != 0;
    } else {
      return RicError{RicErrorCode::BadField, "isRestart"};
    }
  }
  return r;
}

std::variant<Publish, RicError> parse_publish(std::span<const uint8_t> payload) {
  if (payload.empty()) return RicError{RicErrorCode::Truncated, "publish"};
  Publish p;
  if (payload[0] == '{') {
    p.format = PublishFormat::Json;
    p.json = as_text(payload);
    Json doc;
    if (auto err = parse_object(doc, p.json)) return *err;
    std::optional<int> t;
    std::optional<int> v;
    if (!read_uint(doc, "_t", t, 0x7FFFFFFF)) return RicError{RicErrorCode::BadField, "_t"};
    if (!read_uint(doc, "_v", v, 0x7FFFFFFF)) return RicError{RicErrorCode::BadField, "_v"};
    p.topic_idx = t;
    p.version = v.value_or(0);
    return p;
  }
  if (payload[0] < 0xDB || payload[0] > 0xDF) return RicError{RicErrorCode::BadField, "publish format"};
  if (payload.size() < 2) return RicError{RicErrorCode::Truncated, "devbin header"};
  p.format = PublishFormat::DevBin;
  p.version = payload[0] - 0xDA;
  if (payload[1] != 0xFF) p.topic_idx = payload[1];
  auto rest = payload.subspan(2);
  // Record: [len u16 BE][bus|0x80 online][addr u32 BE][devTypeIdx u16 BE][poll data]; len counts what follows it.
  while (!rest.empty()) {
    if (rest.size() < 2) return RicError{RicErrorCode::Truncated, "devbin record"};
    const size_t len = (size_t{rest[0]} << 8) | rest[1];
    if (len < 7 || rest.size() - 2 < len) return RicError{RicErrorCode::Truncated, "devbin record"};
    const auto rec = rest.subspan(2, len);
    DevBinRecord r;
    r.bus = rec[0] & 0x7F;
    r.online = (rec[0] & 0x80) != 0;
    r.addr = get_u32(rec.subspan(1));
    r.dev_type_idx = static_cast<uint16_t>((rec[5] << 8) | rec[6]);
    r.data = rec.subspan(7);
    p.records.push_back(r);
    rest = rest.subspan(2 + len);
  }
  return p;
}

}  // namespace edgelink::devices

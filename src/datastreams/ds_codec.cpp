#include "edgelink/datastreams/ds_codec.hpp"

#include <openssl/rand.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "edgelink/http/base64.hpp"

namespace edgelink::datastreams {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
using Value = rapidjson::Value;

std::string_view sv(const Value& v) { return {v.GetString(), v.GetStringLength()}; }

const Value* member(const Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

void str(Writer& w, std::string_view key, std::string_view value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

std::string line_of(const rapidjson::StringBuffer& buf) {
  std::string out(buf.GetString(), buf.GetSize());
  out += '\n';
  return out;
}

void write_attributes(Writer& w, const Attributes& attributes) {
  w.Key("attributes");
  w.StartObject();
  for (const auto& [k, v] : attributes) str(w, k, v);
  w.EndObject();
}

void write_text_meta(Writer& w, const TextMeta& m) {
  w.Key("text_meta");
  w.StartObject();
  str(w, "operation", m.operation);
  w.Key("version");
  w.Int64(m.version);
  str(w, "reply_to", m.reply_to);
  w.Key("attached");
  w.StartArray();
  for (const auto& a : m.attached) w.String(a.data(), static_cast<rapidjson::SizeType>(a.size()));
  w.EndArray();
  w.Key("generated");
  w.Bool(m.generated);
  w.EndObject();
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A \uXXXX escape at `i` (pointing at the backslash): its value, or -1.
int escape_at(std::string_view s, size_t i) {
  if (i + 6 > s.size() || s[i] != '\\' || s[i + 1] != 'u') return -1;
  int v = 0;
  for (size_t k = i + 2; k < i + 6; ++k) {
    const int h = hexval(s[k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

// A lone surrogate escape cannot become UTF-8: such a line is still read (to know which
// stream it ends), with the lone escapes replaced, and marked as not valid Unicode.
bool replace_lone_surrogates(std::string& line) {
  bool found = false;
  for (size_t i = 0; i + 1 < line.size(); ++i) {
    if (line[i] != '\\') continue;
    if (line[i + 1] != 'u') {
      ++i;  // an escaped character, e.g. "\\\\"
      continue;
    }
    const int v = escape_at(line, i);
    if (v >= 0xD800 && v <= 0xDBFF) {
      const int next = escape_at(line, i + 6);
      if (next >= 0xDC00 && next <= 0xDFFF) {
        i += 11;
        continue;
      }
    }
    if (v >= 0xD800 && v <= 0xDFFF) {
      line.replace(i, 6, "\\u003f");
      found = true;
    }
    i += 5;
  }
  return found;
}

std::optional<uint32_t> req_of(const Value& doc, bool& bad) {
  const Value* r = member(doc, "req");
  if (!r) return std::nullopt;
  if (r->IsUint()) return r->GetUint();
  bad = true;
  return std::nullopt;
}

bool valid_reason(std::string_view r) {
  return !r.empty() && r.size() <= kMaxReasonChars && std::all_of(r.begin(), r.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// Attributes: an object of strings within §5's limits. An error message, or "".
std::string read_attributes(const Value* v, Attributes& out, bool& too_large) {
  too_large = false;
  if (!v) return {};
  if (!v->IsObject()) return "attributes must be an object of strings";
  for (auto m = v->MemberBegin(); m != v->MemberEnd(); ++m) {
    if (!m->value.IsString()) return "attributes must be an object of strings";
    const std::string_view k = sv(m->name), val = sv(m->value);
    if (k.empty() || k.size() > kMaxAttributeKey || val.size() > kMaxAttributeValue || out.size() >= kMaxAttributes) {
      too_large = true;
      return "attributes: at most 16 pairs, keys of 1..64 bytes, values of at most 512 bytes";
    }
    out.emplace_back(std::string(k), std::string(val));
  }
  return {};
}

std::optional<TextMeta> read_text_meta(const Value& v, std::string& error) {
  if (!v.IsObject()) {
    error = "text_meta must be an object";
    return std::nullopt;
  }
  TextMeta m;
  if (const Value* op = member(v, "operation")) {
    if (!op->IsString() || (sv(*op) != "create" && sv(*op) != "update" && sv(*op) != "delete" && sv(*op) != "reaction")) {
      error = "text_meta.operation must be create, update, delete or reaction";
      return std::nullopt;
    }
    m.operation = std::string(sv(*op));
  }
  if (const Value* ver = member(v, "version")) {
    if (!ver->IsInt64()) {
      error = "text_meta.version must be an integer";
      return std::nullopt;
    }
    m.version = ver->GetInt64();
  }
  if (const Value* rt = member(v, "reply_to")) {
    if (!rt->IsString()) {
      error = "text_meta.reply_to must be a string";
      return std::nullopt;
    }
    m.reply_to = std::string(sv(*rt));
  }
  if (const Value* at = member(v, "attached")) {
    if (!at->IsArray()) {
      error = "text_meta.attached must be an array of strings";
      return std::nullopt;
    }
    for (const auto& a : at->GetArray()) {
      if (!a.IsString()) {
        error = "text_meta.attached must be an array of strings";
        return std::nullopt;
      }
      m.attached.emplace_back(sv(a));
    }
  }
  if (const Value* g = member(v, "generated")) {
    if (!g->IsBool()) {
      error = "text_meta.generated must be a boolean";
      return std::nullopt;
    }
    m.generated = g->GetBool();
  }
  return m;
}

LineError bad(std::string message, std::optional<uint32_t> req = std::nullopt,
              std::optional<std::string> stream_id = std::nullopt, ErrorCode code = ErrorCode::BadRequest) {
  return LineError{code, std::move(message), req, std::move(stream_id)};
}

}  // namespace

std::optional<int> reason_code(std::string_view r) {
  if (r == kAbnormalEnd) return 1;
  if (r == kDecodeFailed) return 2;
  if (r == kLengthExceeded) return 3;
  if (r == kIncomplete) return 4;
  if (r == kTimeout) return 20;
  if (r == kShutdown) return 21;
  if (r == kCancelled) return 22;
  if (r == kOverflow) return 23;
  return std::nullopt;
}

const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::BadRequest: return "BadRequest";
    case ErrorCode::Full: return "Full";
    case ErrorCode::Closed: return "Closed";
    case ErrorCode::UnknownStream: return "UnknownStream";
    case ErrorCode::HandlerAlreadyRegistered: return "HandlerAlreadyRegistered";
    case ErrorCode::HeaderTooLarge: return "HeaderTooLarge";
  }
  return "BadRequest";
}

bool valid_topic(std::string_view topic) {
  return !topic.empty() && topic.size() <= kMaxTopicBytes && topic.find_first_of(std::string_view("+#\0", 3)) ==
                                                                   std::string_view::npos &&
         valid_utf8(topic);
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

namespace {

bool json_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// The characters of the value of a `"data"` key whose value is a string without escapes,
// found by hand: the base64 of a write is nearly all of its line. The opening quote of
// `"data"` follows '{' or ',' (so it is not escaped: a token, not string content) and a
// ':' and a '"' follow it. The value ends at the next '"'; a '\' before it (an escape) is
// not in the base64 alphabet, so the decode refuses it and the line is parsed whole.
std::optional<std::pair<size_t, size_t>> data_value(std::string_view line) {
  for (size_t from = 0;;) {
    const size_t k = line.find("\"data\"", from);
    if (k == std::string_view::npos) return std::nullopt;
    from = k + 1;
    size_t p = k;
    while (p > 0 && json_space(line[p - 1])) --p;
    if (p == 0 || (line[p - 1] != ',' && line[p - 1] != '{')) continue;
    size_t q = k + 6;
    while (q < line.size() && json_space(line[q])) ++q;
    if (q >= line.size() || line[q] != ':') continue;
    ++q;
    while (q < line.size() && json_space(line[q])) ++q;
    if (q >= line.size() || line[q] != '"') continue;
    const size_t begin = q + 1;
    const void* end = std::memchr(line.data() + begin, '"', line.size() - begin);
    if (end == nullptr) return std::nullopt;
    return std::pair{begin, static_cast<size_t>(static_cast<const char*>(end) - line.data())};
  }
}

// In place of a long data value: "\u0000", which no line taking this path has elsewhere
// (it has no \u at all), so the parsed document shows whether the value found by hand is
// the object's own "data".
constexpr std::string_view kMarker = "\\u0000";
constexpr size_t kFastDataChars = 256;

std::optional<DsLine> parse_ds_doc(const rapidjson::Document& doc, bool lone, std::string* decoded_data);

}  // namespace

std::optional<DsLine> parse_ds_line(std::string_view line) {
  if (!may_be_ds_line(line) || line.find("\\u") != std::string_view::npos) return parse_ds_line_whole(line);
  if (auto span = data_value(line); span && span->second - span->first >= kFastDataChars) {
    // A long base64 write: RapidJSON parses the line with the value cut out, the value is
    // decoded straight from the line. Whatever does not fit this is parsed whole, with the
    // same errors.
    const std::string_view data = line.substr(span->first, span->second - span->first);
    std::string rest;
    rest.reserve(line.size() - data.size() + kMarker.size());
    rest.append(line.substr(0, span->first)).append(kMarker).append(line.substr(span->second));
    rapidjson::Document doc;
    doc.Parse(rest.data(), rest.size());
    // A raw CR or LF makes the JSON invalid; base64_decode would skip it.
    const bool breaks = data.find('\r') != std::string_view::npos || data.find('\n') != std::string_view::npos;
    if (!breaks && !doc.HasParseError() && doc.IsObject()) {
      const Value* v = member(doc, "data");
      if (v && v->IsString() && v->GetStringLength() == 1 && v->GetString()[0] == '\0') {
        if (auto decoded = http::base64_decode(data)) return parse_ds_doc(doc, false, &*decoded);
      }
    }
  }
  return parse_ds_line_whole(line);
}

std::optional<DsLine> parse_ds_line_whole(std::string_view line) {
  if (!may_be_ds_line(line)) return std::nullopt;
  // Only a line with a \u escape can hold a lone surrogate: the others are parsed as they
  // are, without a copy.
  std::string text;
  bool lone = false;
  if (line.find("\\u") != std::string_view::npos) {
    text.assign(line);
    lone = replace_lone_surrogates(text);
    line = text;
  }
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  return parse_ds_doc(doc, lone, nullptr);
}

namespace {

// `decoded_data`: the decoded bytes of a "data" value parse_ds_line cut out of the line.
std::optional<DsLine> parse_ds_doc(const rapidjson::Document& doc, bool lone, std::string* decoded_data) {
  if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
  const Value* ds = member(doc, "ds");
  if (!ds || !ds->IsString() || member(doc, "stream")) return std::nullopt;
  const std::string_view kind = sv(*ds);
  bool bad_req = false;
  const auto req = req_of(doc, bad_req);

  if (kind == "open") {
    if (bad_req) return bad("req must be an integer 0..4294967295");
    OpenLine o;
    o.req = req;
    const Value* topic = member(doc, "topic");
    if (!topic || !topic->IsString() || !valid_topic(sv(*topic)))
      return bad("topic must be 1..128 UTF-8 bytes without '+', '#' or NUL", req);
    o.topic = std::string(sv(*topic));
    const Value* k = member(doc, "kind");
    if (!k || !k->IsString() || (sv(*k) != "text" && sv(*k) != "byte"))
      return bad("kind must be \"text\" or \"byte\"", req);
    o.text = sv(*k) == "text";
    o.mime_type = o.text ? "text/plain" : "application/octet-stream";
    if (const Value* mt = member(doc, "mime_type")) {
      if (!mt->IsString() || mt->GetStringLength() > 255) return bad("mime_type must be a string of at most 255 bytes", req);
      o.mime_type = std::string(sv(*mt));
    }
    if (const Value* tl = member(doc, "total_length")) {
      if (!tl->IsUint64() || tl->GetUint64() > kMaxTotalLength) return bad("total_length must be an integer 0..2^53", req);
      o.total_length = tl->GetUint64();
    }
    if (const Value* n = member(doc, "name")) {
      if (o.text) return bad("name is for byte streams", req);
      if (!n->IsString() || n->GetStringLength() > 255) return bad("name must be a string of at most 255 bytes", req);
      o.name = std::string(sv(*n));
    }
    bool too_large = false;
    if (auto e = read_attributes(member(doc, "attributes"), o.attributes, too_large); !e.empty())
      return bad(e, req, std::nullopt, too_large ? ErrorCode::HeaderTooLarge : ErrorCode::BadRequest);
    if (const Value* tm = member(doc, "text_meta")) {
      if (!o.text) return bad("text_meta is for text streams", req);
      std::string e;
      o.text_meta = read_text_meta(*tm, e);
      if (!o.text_meta) return bad(e, req);
    }
    if (lone) return bad("not valid Unicode (a lone surrogate escape)", req);
    return o;
  }
  // Topics, ids, attributes and reasons are UTF-8 text: a lone surrogate escape makes any
  // line but a text write (which ends its stream, §2.2) a bad request.
  if (lone && kind != "write") return bad("not valid Unicode (a lone surrogate escape)", bad_req ? std::nullopt : req);
  if (kind == "subscribe" || kind == "unsubscribe") {
    if (bad_req) return bad("req must be an integer 0..4294967295");
    const Value* topic = member(doc, "topic");
    if (!topic || !topic->IsString() || !valid_topic(sv(*topic)))
      return bad("topic must be 1..128 UTF-8 bytes without '+', '#' or NUL", req);
    return SubscribeLine{req, std::string(sv(*topic)), kind == "subscribe"};
  }
  if (kind == "write" || kind == "close" || kind == "abort") {
    const Value* id = member(doc, "stream_id");
    if (!id || !id->IsString() || id->GetStringLength() == 0 || id->GetStringLength() > 64)
      return bad("stream_id must be a string", req);
    const std::string stream_id(sv(*id));
    if (kind == "write") {
      const Value* data = member(doc, "data");
      const Value* txt = member(doc, "text");
      if ((data != nullptr) == (txt != nullptr)) return bad("a write has either data or text", std::nullopt, stream_id);
      WriteLine w;
      w.stream_id = stream_id;
      w.text = txt != nullptr;
      const Value& v = txt ? *txt : *data;
      if (!v.IsString()) return bad(txt ? "text must be a string" : "data must be a base64 string", std::nullopt, stream_id);
      if (txt) {
        w.bytes = std::string(sv(v));
        w.decode_failed = lone || !valid_utf8(w.bytes);
      } else if (decoded_data) {
        w.bytes = std::move(*decoded_data);
      } else if (auto decoded = http::base64_decode(sv(v))) {
        w.bytes = std::move(*decoded);
      } else {
        w.decode_failed = true;
      }
      return w;
    }
    if (kind == "close") {
      CloseLine c;
      c.stream_id = stream_id;
      bool too_large = false;
      if (auto e = read_attributes(member(doc, "attributes"), c.attributes, too_large); !e.empty())
        return bad(e, std::nullopt, stream_id, too_large ? ErrorCode::HeaderTooLarge : ErrorCode::BadRequest);
      return c;
    }
    AbortLine a;
    a.stream_id = stream_id;
    if (const Value* r = member(doc, "reason")) {
      if (!r->IsString() || !valid_reason(sv(*r)))
        return bad("reason must be 1..15 characters of [A-Za-z0-9_-]", std::nullopt, stream_id);
      a.reason = std::string(sv(*r));
    }
    return a;
  }
  return bad("unknown ds value", req);
}

}  // namespace

std::string opened_line(std::optional<uint32_t> req, std::string_view stream_id) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  str(w, "ds", "opened");
  if (req) {
    w.Key("req");
    w.Uint(*req);
  }
  str(w, "stream_id", stream_id);
  w.EndObject();
  return line_of(buf);
}

std::string closed_line(std::string_view stream_id, uint64_t bytes, uint64_t chunks, std::string_view reason) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  str(w, "ds", "closed");
  str(w, "stream_id", stream_id);
  w.Key("bytes");
  w.Uint64(bytes);
  w.Key("chunks");
  w.Uint64(chunks);
  str(w, "reason", reason);
  if (auto code = reason_code(reason)) {
    w.Key("code");
    w.Int(*code);
  }
  w.EndObject();
  return line_of(buf);
}

std::string error_line(const LineError& e) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  str(w, "ds", "error");
  if (e.stream_id) {
    str(w, "stream_id", *e.stream_id);
  } else if (e.req) {
    w.Key("req");
    w.Uint(*e.req);
  }
  str(w, "reason", to_string(e.code));
  w.Key("code");
  w.Int(static_cast<int>(e.code));
  if (!e.message.empty()) str(w, "message", e.message);
  w.EndObject();
  return line_of(buf);
}

std::string subscribed_line(std::optional<uint32_t> req, std::string_view topic, bool subscribed) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  str(w, "ds", subscribed ? "subscribed" : "unsubscribed");
  if (req) {
    w.Key("req");
    w.Uint(*req);
  }
  str(w, "topic", topic);
  w.EndObject();
  return line_of(buf);
}

std::string encode_header(const Header& h) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  str(w, "t", "header");
  str(w, "stream_id", h.stream_id);
  w.Key("timestamp");
  w.Uint64(h.timestamp);
  str(w, "topic", h.topic);
  str(w, "kind", h.text ? "text" : "byte");
  str(w, "mime_type", h.mime_type);
  if (h.total_length) {
    w.Key("total_length");
    w.Uint64(*h.total_length);
  }
  if (h.name) str(w, "name", *h.name);
  write_attributes(w, h.attributes);
  if (h.text_meta) write_text_meta(w, *h.text_meta);
  str(w, "sender", h.sender);
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

std::string encode_chunk(std::string_view stream_id, uint64_t index, std::string_view bytes) {
  // Built around the base64, which is most of the message and needs no escaping; the same
  // JSON as a Writer would give.
  std::string out;
  out.reserve(80 + stream_id.size() + (bytes.size() + 2) / 3 * 4);
  out += R"({"t":"chunk","stream_id":)";
  {
    rapidjson::StringBuffer buf;
    Writer w(buf);
    w.String(stream_id.data(), static_cast<rapidjson::SizeType>(stream_id.size()));
    out.append(buf.GetString(), buf.GetSize());
  }
  out += R"(,"chunk_index":)";
  out += std::to_string(index);
  out += R"(,"content":")";
  http::base64_append(out, bytes);
  out += R"(","version":0})";
  return out;
}

std::string encode_trailer(std::string_view stream_id, std::string_view reason, const Attributes& attributes) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  str(w, "t", "trailer");
  str(w, "stream_id", stream_id);
  str(w, "reason", reason);
  write_attributes(w, attributes);
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

InMessage parse_inbound(std::string_view payload) {
  rapidjson::Document doc;
  doc.Parse(payload.data(), payload.size());
  if (doc.HasParseError() || !doc.IsObject()) return Invalid{"not a JSON object", {}};
  const Value* t = member(doc, "t");
  const Value* id = member(doc, "stream_id");
  if (!t || !t->IsString() || !id || !id->IsString() || id->GetStringLength() == 0 || id->GetStringLength() > 64)
    return Invalid{"no t or stream_id", {}};
  const std::string stream_id(sv(*id));
  const std::string_view type = sv(*t);
  if (type == "header") {
    InHeader in;
    Header& h = in.header;
    h.stream_id = stream_id;
    const Value* k = member(doc, "kind");
    if (!k || !k->IsString() || (sv(*k) != "text" && sv(*k) != "byte")) return Invalid{"kind", stream_id};
    h.text = sv(*k) == "text";
    if (const Value* ts = member(doc, "timestamp"); ts && ts->IsUint64()) h.timestamp = ts->GetUint64();
    if (const Value* tp = member(doc, "topic"); tp && tp->IsString()) h.topic = std::string(sv(*tp));
    h.mime_type = h.text ? "text/plain" : "application/octet-stream";
    if (const Value* mt = member(doc, "mime_type")) {
      if (!mt->IsString() || mt->GetStringLength() > 255) return Invalid{"mime_type", stream_id};
      h.mime_type = std::string(sv(*mt));
    }
    if (const Value* tl = member(doc, "total_length")) {
      if (!tl->IsUint64() || tl->GetUint64() > kMaxTotalLength) return Invalid{"total_length", stream_id};
      h.total_length = tl->GetUint64();
    }
    if (const Value* n = member(doc, "name")) {
      if (!n->IsString() || n->GetStringLength() > 255) return Invalid{"name", stream_id};
      h.name = std::string(sv(*n));
    }
    bool too_large = false;
    if (!read_attributes(member(doc, "attributes"), h.attributes, too_large).empty())
      return Invalid{"attributes", stream_id};
    if (const Value* tm = member(doc, "text_meta")) {
      rapidjson::StringBuffer b;
      Writer w(b);
      tm->Accept(w);
      in.raw_text_meta = std::string(b.GetString(), b.GetSize());
    }
    if (const Value* s = member(doc, "sender"); s && s->IsString()) h.sender = std::string(sv(*s));
    if (payload.size() > kMaxHeaderBytes) return Invalid{"header over 4096 bytes", stream_id};
    return in;
  }
  if (type == "chunk") {
    InChunk c;
    c.stream_id = stream_id;
    const Value* idx = member(doc, "chunk_index");
    const Value* content = member(doc, "content");
    if (!idx || !idx->IsUint64() || !content || !content->IsString()) return Invalid{"chunk fields", {}};
    c.index = idx->GetUint64();
    if (const Value* v = member(doc, "version")) {
      if (!v->IsUint64()) return Invalid{"version", {}};
      c.version = v->GetUint64();
    }
    auto decoded = http::base64_decode(sv(*content));
    if (!decoded) return Invalid{"content is not base64", stream_id};
    c.content = std::move(*decoded);
    return c;
  }
  if (type == "trailer") {
    InTrailer tr;
    tr.stream_id = stream_id;
    if (const Value* r = member(doc, "reason")) {
      if (!r->IsString() || r->GetStringLength() > kMaxReasonChars) return Invalid{"reason", {}};
      tr.reason = std::string(sv(*r));
    }
    bool too_large = false;
    read_attributes(member(doc, "attributes"), tr.attributes, too_large);
    return tr;
  }
  return Invalid{"unknown t", {}};
}

std::string rx_open_line(const InHeader& in, std::string_view routed_topic) {
  const Header& h = in.header;
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  str(w, "ds", "rx_open");
  str(w, "stream_id", h.stream_id);
  str(w, "topic", routed_topic);
  str(w, "kind", h.text ? "text" : "byte");
  w.Key("timestamp");
  w.Uint64(h.timestamp);
  str(w, "mime_type", h.mime_type);
  if (h.total_length) {
    w.Key("total_length");
    w.Uint64(*h.total_length);
  }
  if (h.name) str(w, "name", *h.name);
  write_attributes(w, h.attributes);
  if (!in.raw_text_meta.empty()) {
    w.Key("text_meta");
    w.RawValue(in.raw_text_meta.data(), in.raw_text_meta.size(), rapidjson::kObjectType);
  }
  if (!h.sender.empty()) str(w, "sender", h.sender);
  w.EndObject();
  return line_of(buf);
}

std::string rx_chunk_line(std::string_view stream_id, uint64_t index, std::string_view content, bool text,
                          std::optional<uint64_t> replace_version) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  str(w, "ds", "rx_chunk");
  str(w, "stream_id", stream_id);
  w.Key("chunk_index");
  w.Uint64(index);
  if (text)
    str(w, "text", content);
  else
    str(w, "data", http::base64_encode(content));
  if (replace_version) {
    w.Key("version");
    w.Uint64(*replace_version);
    w.Key("replace");
    w.Bool(true);
  }
  w.EndObject();
  return line_of(buf);
}

std::string rx_close_line(std::string_view stream_id, std::string_view reason, const Attributes& attributes) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  str(w, "ds", "rx_close");
  str(w, "stream_id", stream_id);
  str(w, "reason", reason);
  write_attributes(w, attributes);
  if (auto code = reason_code(reason)) {
    w.Key("code");
    w.Int(*code);
  }
  w.EndObject();
  return line_of(buf);
}

size_t cut_point(std::string_view buf, size_t max, bool text) {
  size_t n = std::min(buf.size(), max);
  if (!text || n == buf.size() || n == 0) return n;
  // Back over continuation bytes to the first byte of the character that would be split.
  size_t cut = n;
  while (cut > 0 && (static_cast<unsigned char>(buf[cut]) & 0xC0) == 0x80) --cut;
  return cut > 0 ? cut : n;
}

std::string new_stream_id() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("no random bytes for a stream id");
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  char out[37];
  std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return out;
}

}  // namespace edgelink::datastreams

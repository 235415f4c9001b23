// The app's data-stream control lines (spec/datastreams.md §2.1–§2.4, §6.2): parsing
// {"ds":...} lines, with a fast path for long base64 writes, and the replies.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstring>

#include "ds_json.hpp"
#include "edgelink/datastreams/ds_codec.hpp"
#include "edgelink/http/base64.hpp"

namespace edgelink::datastreams {
namespace {

using namespace json;

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


LineError bad(std::string message, std::optional<uint32_t> req = std::nullopt,
              std::optional<std::string> stream_id = std::nullopt, ErrorCode code = ErrorCode::BadRequest) {
  return LineError{code, std::move(message), req, std::move(stream_id)};
}


}  // namespace

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

}  // namespace edgelink::datastreams

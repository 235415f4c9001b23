#include "edgelink/datastreams/ds_codec.hpp"

#include <openssl/rand.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "ds_json.hpp"
#include "edgelink/http/base64.hpp"

namespace edgelink::datastreams {

using namespace json;

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

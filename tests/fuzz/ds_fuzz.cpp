// libFuzzer target for the data-stream codec of spec/datastreams.md (§2–§7, §10 item 8):
// the app's control lines, the inbound MQTT payloads, the chunk cut and the UTF-8 check.
// Checks, beyond "no crash":
//  - an accepted open has a valid topic, total_length <= 2^53, mime_type and name of at
//    most 255 bytes, name only on byte and text_meta only on text streams, and attributes
//    within §5; subscribe topics are valid; abort reasons are 1..15 of [A-Za-z0-9_-];
//  - a text write without decode_failed holds valid UTF-8;
//  - every reply and rx_* line is one JSON object on one line;
//  - an inbound chunk encoded again with encode_chunk parses back to the same id, index
//    and content; an inbound header's rx_open line is a JSON object;
//  - cut_point never passes max, is 0 only for max 0 or an empty buffer, is min(size,
//    max) for bytes, and for text cuts of valid UTF-8 with max >= 4 leaves two valid
//    halves;
//  - valid_utf8 agrees with a table-driven reference (Unicode Table 3-7);
//  - parse_ds_line (a long base64 value found by hand) gives what parse_ds_line_whole
//    gives, for the input and for the input with a 300-character value spliced in at
//    each '@' (so the hand-found value meets every surrounding the fuzzer makes).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include <rapidjson/document.h>

#include "edgelink/datastreams/ds_codec.hpp"

using namespace edgelink;
using namespace edgelink::datastreams;

namespace {

// One JSON object, one '\n' at the end and no other.
void check_line(const std::string& line) {
  if (line.empty() || line.back() != '\n' || line.find('\n') != line.size() - 1) abort();
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size() - 1);
  if (doc.HasParseError() || !doc.IsObject()) abort();
}

void check_payload(const std::string& payload) {
  if (payload.find('\n') != std::string::npos) abort();
  check_line(payload + "\n");
}

bool attributes_ok(const Attributes& a) {
  if (a.size() > kMaxAttributes) return false;
  for (const auto& [k, v] : a)
    if (k.empty() || k.size() > kMaxAttributeKey || v.size() > kMaxAttributeValue) return false;
  return true;
}

bool reason_ok(std::string_view r) {
  if (r.empty() || r.size() > kMaxReasonChars) return false;
  for (char c : r)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return false;
  return true;
}

void check_ds_line(std::string_view text) {
  const auto parsed = parse_ds_line(text);
  if (!parsed) return;
  if (!may_be_ds_line(text)) abort();
  if (const auto* o = std::get_if<OpenLine>(&*parsed)) {
    if (!valid_topic(o->topic)) abort();
    if (o->total_length && *o->total_length > kMaxTotalLength) abort();
    if (o->mime_type.size() > 255 || o->mime_type.empty()) abort();
    if (o->name && (o->text || o->name->size() > 255)) abort();
    if (o->text_meta && !o->text) abort();
    if (!attributes_ok(o->attributes)) abort();
    check_line(opened_line(o->req, new_stream_id()));
    Header h;
    h.stream_id = new_stream_id();
    h.topic = o->topic;
    h.text = o->text;
    h.mime_type = o->mime_type;
    h.total_length = o->total_length;
    h.name = o->name;
    h.attributes = o->attributes;
    h.text_meta = o->text_meta;
    h.sender = "app:fuzz";
    const std::string enc = encode_header(h);
    check_payload(enc);
    // What edgelink sends, it reads back (when within 4096 bytes).
    const auto back = parse_inbound(enc);
    if (enc.size() <= kMaxHeaderBytes) {
      const auto* in = std::get_if<InHeader>(&back);
      if (!in || in->header.topic != h.topic || in->header.text != h.text || in->header.mime_type != h.mime_type ||
          in->header.total_length != h.total_length || in->header.name != h.name || in->header.attributes != h.attributes)
        abort();
    }
  } else if (const auto* w = std::get_if<WriteLine>(&*parsed)) {
    if (w->stream_id.empty() || w->stream_id.size() > 64) abort();
    if (w->text && !w->decode_failed && !valid_utf8(w->bytes)) abort();
    if (w->decode_failed && !w->bytes.empty() && !w->text) abort();
    check_line(closed_line(w->stream_id, w->bytes.size(), 1, w->decode_failed ? kDecodeFailed : ""));
  } else if (const auto* c = std::get_if<CloseLine>(&*parsed)) {
    if (!attributes_ok(c->attributes)) abort();
    check_payload(encode_trailer(c->stream_id, "", c->attributes));
    check_line(closed_line(c->stream_id, 0, 0, ""));
  } else if (const auto* a = std::get_if<AbortLine>(&*parsed)) {
    if (!reason_ok(a->reason)) abort();
    check_line(closed_line(a->stream_id, 0, 0, a->reason));
    check_payload(encode_trailer(a->stream_id, a->reason, {}));
  } else if (const auto* s = std::get_if<SubscribeLine>(&*parsed)) {
    if (!valid_topic(s->topic)) abort();
    check_line(subscribed_line(s->req, s->topic, s->subscribe));
  } else {
    const auto& e = std::get<LineError>(*parsed);
    if (e.message.empty()) abort();
    check_line(error_line(e));
  }
}

void check_inbound(std::string_view text) {
  const auto m = parse_inbound(text);
  if (const auto* h = std::get_if<InHeader>(&m)) {
    if (text.size() > kMaxHeaderBytes || !attributes_ok(h->header.attributes)) abort();
    if (h->header.total_length && *h->header.total_length > kMaxTotalLength) abort();
    if (h->header.stream_id.empty() || h->header.stream_id.size() > 64) abort();
    check_line(rx_open_line(*h, "fuzz/topic"));
  } else if (const auto* c = std::get_if<InChunk>(&m)) {
    const std::string enc = encode_chunk(c->stream_id, c->index, c->content);
    check_payload(enc);
    const auto back = parse_inbound(enc);
    const auto* b = std::get_if<InChunk>(&back);
    if (!b || b->stream_id != c->stream_id || b->index != c->index || b->content != c->content || b->version != 0)
      abort();
    check_line(rx_chunk_line(c->stream_id, c->index, c->content, false, std::nullopt));
    if (valid_utf8(c->content)) check_line(rx_chunk_line(c->stream_id, c->index, c->content, true, c->version));
  } else if (const auto* t = std::get_if<InTrailer>(&m)) {
    if (t->reason.size() > kMaxReasonChars) abort();
    check_line(rx_close_line(t->stream_id, t->reason, t->attributes));
    check_payload(encode_trailer(t->stream_id, t->reason, t->attributes));
  } else {
    const auto& i = std::get<Invalid>(m);
    if (i.why.empty()) abort();
  }
}

// Unicode Table 3-7, "Well-Formed UTF-8 Byte Sequences".
bool reference_utf8(std::string_view s) {
  size_t i = 0;
  const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const auto in = [](unsigned v, unsigned lo, unsigned hi) { return v >= lo && v <= hi; };
  while (i < s.size()) {
    const unsigned b = at(i);
    size_t n = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (b <= 0x7F) {
      ++i;
      continue;
    }
    if (in(b, 0xC2, 0xDF)) n = 1;
    else if (b == 0xE0) n = 2, lo = 0xA0;
    else if (in(b, 0xE1, 0xEC) || in(b, 0xEE, 0xEF)) n = 2;
    else if (b == 0xED) n = 2, hi = 0x9F;
    else if (b == 0xF0) n = 3, lo = 0x90;
    else if (in(b, 0xF1, 0xF3)) n = 3;
    else if (b == 0xF4) n = 3, hi = 0x8F;
    else return false;
    if (i + n >= s.size()) return false;
    if (!in(at(i + 1), lo, hi)) return false;
    for (size_t k = 2; k <= n; ++k)
      if (!in(at(i + k), 0x80, 0xBF)) return false;
    i += n + 1;
  }
  return true;
}

void check_cut(std::string_view buf, size_t max) {
  for (const bool text : {false, true}) {
    const size_t c = cut_point(buf, max, text);
    if (c > max || c > buf.size()) abort();
    if ((c == 0) != (max == 0 || buf.empty())) abort();
    if (!text && c != std::min(buf.size(), max)) abort();
    if (text && max >= 4 && valid_utf8(buf) && (!valid_utf8(buf.substr(0, c)) || !valid_utf8(buf.substr(c)))) abort();
  }
}

// 300 base64 characters (225 bytes): past the length that takes parse_ds_line's fast path.
const std::string kLongBase64 = [] {
  std::string s;
  for (int i = 0; i < 75; ++i) s += "QUJD";
  return s;
}();

std::string describe(const std::optional<DsLine>& p) {
  if (!p) return "none";
  std::string out = std::to_string(p->index());
  if (const auto* w = std::get_if<WriteLine>(&*p))
    out += w->stream_id + '|' + std::to_string(w->text) + std::to_string(w->decode_failed) + '|' + w->bytes;
  if (const auto* e = std::get_if<LineError>(&*p))
    out += std::to_string(static_cast<int>(e->code)) + e->message + '|' + e->stream_id.value_or("-") + '|' +
           (e->req ? std::to_string(*e->req) : "-");
  if (const auto* c = std::get_if<CloseLine>(&*p)) out += c->stream_id;
  if (const auto* a = std::get_if<AbortLine>(&*p)) out += a->stream_id + '|' + a->reason;
  return out;
}

void check_same_parse(std::string_view line) {
  if (describe(parse_ds_line(line)) != describe(parse_ds_line_whole(line))) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_ds_line(text);
  check_same_parse(text);
  if (text.find('@') != std::string_view::npos) {
    std::string spliced;
    for (char c : text) {
      if (c == '@')
        spliced += kLongBase64;
      else
        spliced += c;
    }
    check_same_parse(spliced);
  }
  check_inbound(text);
  if (valid_utf8(text) != reference_utf8(text)) abort();
  // The first byte picks max (0..255); the rest is the buffer. Chunking the whole buffer
  // consumes it exactly.
  if (size > 0) {
    const size_t max = data[0];
    std::string_view rest = text.substr(1);
    check_cut(rest, max);
    check_cut(rest, max + 1);
    size_t chunks = 0;
    while (!rest.empty() && max > 0) {
      const size_t c = cut_point(rest, max, true);
      if (c == 0 || c > rest.size()) abort();
      rest.remove_prefix(c);
      if (++chunks > size) abort();
    }
  }
  return 0;
}

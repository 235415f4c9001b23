// libFuzzer target for parse_app_line and is_valid_json.
//
// Differential checks, each an abort on disagreement:
// - is_valid_json against RapidJSON (kParseValidateEncodingFlag), with the documented
//   differences allowed: our nesting limit (64), our rejection of lone low-surrogate
//   escapes (RapidJSON 1.1 accepts "\uDC00"), RapidJSON stopping at a NUL byte,
//   RapidJSON skipping a leading UTF-8 byte-order mark (its memory stream drops any of
//   the bytes EF, BB, BF at the start; we reject a BOM, a line protocol has no use for
//   it), and RapidJSON refusing numbers beyond double range (1e400 is valid JSON).
// - parse_app_line agrees with is_valid_json on what is BadJson.
// - a DataPoint's head+tail is valid JSON and equals the line's object minus "stream",
//   and its sequence/timestamp equal what RapidJSON reads.

#include "edgelink/apps/app_message.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdlib>
#include <string>

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

std::string serialise(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buf);
  v.Accept(writer);
  return std::string(buf.GetString(), buf.GetSize());
}

bool deeper_than_limit(std::string_view s) {
  size_t open = 0;
  for (char c : s) open += c == '[' || c == '{';
  return open > 64;
}

bool starts_with_bom_byte(std::string_view s) {
  if (s.empty()) return false;
  const auto c = static_cast<unsigned char>(s[0]);
  return c == 0xEF || c == 0xBB || c == 0xBF;
}

bool has_low_surrogate_escape(std::string_view s) {
  for (size_t i = 0; i + 3 < s.size(); ++i) {
    if (s[i] == '\\' && s[i + 1] == 'u' && (s[i + 2] | 0x20) == 'd' && (s[i + 3] | 0x20) >= 'c' &&
        (s[i + 3] | 0x20) <= 'f') {
      return true;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const bool ours = edgelink::is_valid_json(line);

  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(line.data(), line.size());
  const bool theirs = !doc.HasParseError();
  if (ours && !theirs) check(doc.GetParseError() == rapidjson::kParseErrorNumberTooBig);
  if (!ours && theirs) {
    check(deeper_than_limit(line) || has_low_surrogate_escape(line) || starts_with_bom_byte(line) ||
          line.find('\0') != std::string_view::npos);
  }

  const edgelink::AppMessage msg = edgelink::parse_app_line(line);
  if (const auto* e = std::get_if<edgelink::AppError>(&msg)) {
    check(!e->message.empty());
    check(ours || e->code == edgelink::AppErrorCode::BadJson);
    return 0;
  }
  check(ours);

  if (const auto* p = std::get_if<edgelink::DataPoint>(&msg)) {
    const std::string out = std::string(p->head) + std::string(p->tail);
    check(edgelink::is_valid_json(out));
    check(!p->head.empty() && p->head.front() == '{' && !p->tail.empty() && p->tail.back() == '}');
    check(!p->stream.empty() && p->stream.size() <= 64);
    check(p->stream.data() >= line.data() && p->stream.data() + p->stream.size() <= line.data() + line.size());
    if (theirs) {
      check(doc.IsObject());
      check(doc["sequence"].IsUint() && doc["sequence"].GetUint() == p->sequence);
      check(doc["timestamp"].IsUint64() && doc["timestamp"].GetUint64() == p->timestamp);
      check(doc["stream"].IsString() && p->stream == doc["stream"].GetString());
      // EraseMember keeps member order; compare serialisations, since RapidJSON's ==
      // matches members by name and so mis-pairs repeated column keys.
      doc.EraseMember("stream");
      check(!doc.HasMember("stream"));
      rapidjson::Document cut;
      cut.Parse<rapidjson::kParseValidateEncodingFlag>(out.data(), out.size());
      check(!cut.HasParseError());
      check(serialise(cut) == serialise(doc));
    }
  }
  return 0;
}

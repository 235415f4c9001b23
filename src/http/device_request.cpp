#include "edgelink/http/device_request.hpp"

#include "edgelink/http/base64.hpp"

#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace edgelink::http {

namespace {

enum class Field { Other, Method, Id, Uri, Data };

Field classify(std::string_view key) {
  if (key == "method") return Field::Method;
  if (key == "id") return Field::Id;
  if (key == "uri") return Field::Uri;
  if (key == "data") return Field::Data;
  return Field::Other;
}

// `text` is a number RapidJSON has already checked against the JSON grammar. Only plain
// digits are an integer to Go's json into a uint32 ("1.0", "1e2" and "-0" are not).
bool parse_u32(std::string_view text, uint32_t& out) {
  if (text.empty() || text.size() > 10) return false;
  uint64_t v = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > UINT32_MAX) return false;
  out = static_cast<uint32_t>(v);
  return true;
}

// SAX rather than a DOM: the members are taken in document order (so a repeated key's
// last value counts, as in Go) and `id` is judged on its text, which a DOM would have
// turned into a double or a sign-less integer already. Returning false stops the parse.
class BodyHandler : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, BodyHandler> {
 public:
  explicit BodyHandler(DeviceRequestBody& out) : out_(out) {}

  bool StartObject() { return open(); }
  bool StartArray() { return depth_ > 0 && open(); }
  bool EndObject(rapidjson::SizeType) { return close(); }
  bool EndArray(rapidjson::SizeType) { return close(); }

  bool Key(const char* str, rapidjson::SizeType len, bool) {
    if (depth_ == 1) field_ = classify({str, len});
    return true;
  }

  // JSON null leaves the field as it was, as Go's json does.
  bool Null() { return scalar(true); }
  bool Bool(bool) { return scalar(false); }
  bool RawNumber(const char* str, rapidjson::SizeType len, bool) {
    if (depth_ != 1 || field_ != Field::Id) return scalar(false);
    field_ = Field::Other;
    return parse_u32({str, len}, out_.id);
  }
  bool String(const char* str, rapidjson::SizeType len, bool) {
    if (depth_ != 1) return depth_ > 1;
    std::string* target = nullptr;
    switch (field_) {
      case Field::Method: target = &out_.method; break;
      case Field::Uri: target = &out_.uri; break;
      case Field::Data: target = &out_.data; break;
      case Field::Id: return false;
      case Field::Other: return true;
    }
    field_ = Field::Other;
    target->assign(str, len);
    return true;
  }

 private:
  bool open() {
    // A container is never a valid value for one of the four fields.
    if (depth_ == 1 && field_ != Field::Other) return false;
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    if (depth_ == 1) field_ = Field::Other;
    return true;
  }
  // A non-string scalar: fine inside ignored members, a type error for our fields
  // unless `ok_for_fields`, and never the whole document.
  bool scalar(bool ok_for_fields) {
    if (depth_ == 0) return false;
    if (depth_ > 1) return true;
    const bool ok = field_ == Field::Other || ok_for_fields;
    field_ = Field::Other;
    return ok;
  }

  DeviceRequestBody& out_;
  int depth_ = 0;
  Field field_ = Field::Other;
};

}  // namespace

const char* body_error_text(BodyError error) {
  switch (error) {
    case BodyError::None: return "";
    case BodyError::TooLong: return "Read body failed\n";
    case BodyError::BadJson: return "Read body json unmarshall failed\n";
  }
  return "";
}

BodyError parse_device_request(std::string_view body, DeviceRequestBody& out) {
  if (body.size() > kMaxBodyBytes) return BodyError::TooLong;
  // RapidJSON's streams report '\0' at the end of input, so a NUL byte after the object
  // would pass as the end. A raw NUL is never valid JSON anywhere.
  if (body.find('\0') != std::string_view::npos) return BodyError::BadJson;
  DeviceRequestBody parsed;
  BodyHandler handler(parsed);
  rapidjson::MemoryStream stream(body.data(), body.size());
  rapidjson::Reader reader;
  // Without kParseStopWhenDoneFlag, anything but whitespace after the object fails.
  constexpr unsigned kFlags = rapidjson::kParseFullPrecisionFlag | rapidjson::kParseNumbersAsStringsFlag |
                              rapidjson::kParseIterativeFlag;
  if (reader.Parse<kFlags>(stream, handler).IsError()) return BodyError::BadJson;
  out = std::move(parsed);
  return BodyError::None;
}

CheckedRequest check_device_request(const DeviceRequestBody& body, size_t min_uri) {
  CheckedRequest r;
  if (body.method == "copost") {
    r.method = Method::Copost;
  } else if (body.method == "obget") {
    r.method = Method::Obget;
  } else {
    r.code = Code::MethodNotAllowed;
    return r;
  }
  if (body.uri.size() < min_uri || body.uri.size() > kMaxUriBytes || body.data.size() > kMaxDataChars) {
    r.code = Code::BadRequest;
    return r;
  }
  auto decoded = base64_decode(body.data);
  if (!decoded || decoded->size() > kMaxDataBytes) {
    r.code = Code::BadRequest;
    return r;
  }
  r.data = std::move(*decoded);
  return r;
}

bool valid_device_id(std::string_view segment) {
  if (segment.empty() || segment.size() > kMaxDeviceIdBytes) return false;
  for (const char c : segment) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string_view first_path_segment(std::string_view target) {
  if (target.empty() || target.front() != '/') return {};
  target.remove_prefix(1);
  return target.substr(0, target.find_first_of("/?#"));
}

std::string copost_reply_json(uint32_t id, uint32_t fid, Code code, std::string_view raw_data) {
  // Every piece is ASCII that needs no JSON escaping: digits, a code name, base64.
  std::string out;
  out.reserve(48 + (raw_data.size() + 2) / 3 * 4);
  out += "{\"id\":";
  out += std::to_string(id);
  out += ",\"fid\":";
  out += std::to_string(fid);
  out += ",\"code\":\"";
  out += to_string(code);
  out += "\",\"data\":\"";
  out += base64_encode(raw_data);
  out += "\"}";
  return out;
}

}  // namespace edgelink::http

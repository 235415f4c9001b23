// libFuzzer target for the RTIO request body and the codecs around it. Checks, beyond
// "no crash": the length rule is exact; a parsed body written back as JSON parses to
// the same fields; rows 6–9 only pass what they promise; base64 decodes only canonical
// lengths and round-trips any bytes; the first path segment is a prefix of the target.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "edgelink/http/base64.hpp"
#include "edgelink/http/device_request.hpp"

using namespace edgelink::http;

namespace {

std::string to_json(const DeviceRequestBody& b) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("method");
  w.String(b.method.data(), static_cast<rapidjson::SizeType>(b.method.size()));
  w.Key("id");
  w.Uint(b.id);
  w.Key("uri");
  w.String(b.uri.data(), static_cast<rapidjson::SizeType>(b.uri.size()));
  w.Key("data");
  w.String(b.data.data(), static_cast<rapidjson::SizeType>(b.data.size()));
  w.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

void check_rows_6_to_9(const DeviceRequestBody& body, size_t min_uri) {
  const CheckedRequest c = check_device_request(body, min_uri);
  if (c.code == Code::Ok) {
    if (c.method != (body.method == "copost" ? Method::Copost : Method::Obget)) abort();
    if (body.method != "copost" && body.method != "obget") abort();
    if (body.uri.size() < min_uri || body.uri.size() > kMaxUriBytes) abort();
    if (body.data.size() > kMaxDataChars || c.data.size() > kMaxDataBytes) abort();
    if (base64_decode(body.data) != c.data) abort();
  } else if (c.code != Code::MethodNotAllowed && c.code != Code::BadRequest) {
    abort();
  }
  // The reply echoing it is one JSON object with the four keys, in order.
  const std::string reply = copost_reply_json(body.id, 0, c.code, c.data);
  rapidjson::Document doc;
  doc.Parse(reply.data(), reply.size());
  if (doc.HasParseError() || !doc.IsObject() || doc.MemberCount() != 4) abort();
  static constexpr const char* kKeys[] = {"id", "fid", "code", "data"};
  size_t i = 0;
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it, ++i) {
    if (std::string_view(it->name.GetString()) != kKeys[i]) abort();
  }
  if (!doc["id"].IsUint() || doc["id"].GetUint() != body.id) abort();
  if (base64_decode({doc["data"].GetString(), doc["data"].GetStringLength()}) != c.data) abort();
}

void check_base64(std::string_view input) {
  if (base64_decode(base64_encode(input)) != input) abort();
  if (base64url_decode_raw(base64url_encode_raw(input)) != input) abort();

  if (const auto decoded = base64_decode(input)) {
    std::string compact;
    for (const char c : input)
      if (c != '\r' && c != '\n') compact += c;
    // Re-encoding gives the same text, but for bits after the last byte.
    const std::string again = base64_encode(*decoded);
    if (again.size() != compact.size()) abort();
    const size_t pad = compact.size() - compact.find_last_not_of('=') - 1;
    if (pad > 2 || (compact.empty() && !decoded->empty())) abort();
    const size_t exact = again.size() - (pad == 0 ? 0 : pad + 1);
    if (again.compare(0, exact, compact, 0, exact) != 0) abort();
  }
  if (const auto decoded = base64url_decode_raw(input)) {
    const std::string again = base64url_encode_raw(*decoded);
    if (again.size() != input.size()) abort();
    if (!input.empty() && again.compare(0, input.size() - 1, input, 0, input.size() - 1) != 0) abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  DeviceRequestBody body;
  const BodyError error = parse_device_request(input, body);
  if ((size > kMaxBodyBytes) != (error == BodyError::TooLong)) abort();
  if (error == BodyError::None) {
    const std::string json = to_json(body);
    if (json.size() <= kMaxBodyBytes) {
      DeviceRequestBody again;
      if (parse_device_request(json, again) != BodyError::None || !(again == body)) abort();
    }
    check_rows_6_to_9(body, kMinUriRtio);
    check_rows_6_to_9(body, kMinUriRicrest);
  }

  check_base64(input);

  const std::string_view segment = first_path_segment(input);
  if (!segment.empty()) {
    if (input[0] != '/' || segment.data() != input.data() + 1) abort();
    if (segment.find_first_of("/?#") != std::string_view::npos) abort();
  }
  if (valid_device_id(segment) && (segment.empty() || segment.size() > kMaxDeviceIdBytes)) abort();
  return 0;
}

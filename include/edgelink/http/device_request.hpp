#pragma once
// The RTIO device-request body and the checks HttpApi makes before a request reaches a
// device (spec/http-api.md §4.1–§4.4, rows 1 and 4–9 of §4.3). Pure: no I/O, no
// clock; fuzzed by tests/fuzz/http_body_fuzz.cpp.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "edgelink/http/device_access.hpp"

namespace edgelink::http {

// §4.2 / §4.7. 504 = 512-byte device frame − 8 bytes of REST-like header; 672 = 504 × 4/3.
inline constexpr size_t kMaxBodyBytes = 864;  // the caller reads at most one byte more
inline constexpr size_t kMaxDataChars = 672;
inline constexpr size_t kMaxDataBytes = 504;
inline constexpr size_t kMaxUriBytes = 128;
inline constexpr size_t kMinUriRtio = 5;     // also for ids that name no device
inline constexpr size_t kMinUriRicrest = 2;  // so "/v" works
inline constexpr size_t kMaxDeviceIdBytes = 64;

// The body as sent; `data` is still base64 text.
struct DeviceRequestBody {
  std::string method;
  uint32_t id = 0;
  std::string uri;
  std::string data;
  bool operator==(const DeviceRequestBody&) const = default;
};

enum class BodyError { None, TooLong, BadJson };

// The exact 400 reply texts of rows 4 and 5 (RTIO); "" for None.
const char* body_error_text(BodyError error);

// Rows 4–5: at most kMaxBodyBytes, exactly one JSON object (surrounding whitespace
// allowed), `method`/`uri`/`data` strings and `id` an integer 0..4294967295 when
// present. Missing fields and JSON null leave the default ("" / 0); other keys are
// ignored; a repeated key: the last one counts. `out` is set only on None.
BodyError parse_device_request(std::string_view body, DeviceRequestBody& out);

// The outcome of rows 6–9: Code::Ok, or the code of the first failed row (then
// `method` and `data` are meaningless).
struct CheckedRequest {
  Code code = Code::Ok;
  Method method = Method::Copost;
  std::string data;  // decoded bytes
};

// Rows 6–9 in order: method "copost"/"obget" (exact) else METHOD_NOT_ALLOWED; uri
// min_uri..kMaxUriBytes bytes, data ≤ kMaxDataChars characters, data decodes as
// standard base64 to ≤ kMaxDataBytes bytes, else BAD_REQUEST.
CheckedRequest check_device_request(const DeviceRequestBody& body, size_t min_uri);

// §4.1: 1..64 bytes of [A-Za-z0-9._-], taken as-is (never percent-decoded).
bool valid_device_id(std::string_view segment);

// The first path segment of an origin-form request target: "/mcu1/x?y=1" → "mcu1",
// "/" → "", "/a%20b" → "a%20b" (not decoded). A target that does not start with '/'
// (absolute-form, "*") gives "", which valid_device_id refuses.
std::string_view first_path_segment(std::string_view target);

// A copost reply, or an obget frame without its "\n" (§4.4, §4.5): exactly
// {"id":<id>,"fid":<fid>,"code":"<CODE>","data":"<base64 of raw_data>"}.
std::string copost_reply_json(uint32_t id, uint32_t fid, Code code, std::string_view raw_data);

}  // namespace edgelink::http

#pragma once
// Base64 for the HTTP API (spec/http-api.md §4.2, §4.8). Pure; fuzzed by
// tests/fuzz/http_body_fuzz.cpp.
//
// The request body's `data` is decoded the way RTIO's Go server decodes it
// (base64.StdEncoding.DecodeString), so a body RTIO accepts is accepted here and the
// other way round. JWT segments use the URL-safe alphabet without padding (RFC 7515 §2).

#include <optional>
#include <string>
#include <string_view>

namespace edgelink::http {

// Standard alphabet, '=' padded.
std::string base64_encode(std::string_view bytes);
// The same, appended to `out` (a message built around the encoding needs no second copy).
void base64_append(std::string& out, std::string_view bytes);

// RFC 4648 §4, padding required. As Go's StdEncoding: '\r' and '\n' are skipped
// anywhere; what remains is a multiple of 4 characters with '=' only as the last one
// or two; non-zero bits after the last byte are accepted. Anything else: nullopt.
std::optional<std::string> base64_decode(std::string_view text);

// URL-safe alphabet ('-', '_') without padding.
std::string base64url_encode_raw(std::string_view bytes);

// URL-safe alphabet, no '=' and no line breaks; a length of 4n+1 cannot be the end of
// any encoding. Non-zero trailing bits are accepted, as Go's RawURLEncoding does.
std::optional<std::string> base64url_decode_raw(std::string_view text);

}  // namespace edgelink::http

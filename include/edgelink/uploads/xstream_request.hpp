#pragma once
// The x-stream lines of an app connection (spec/xstream.md §2–§4, §6, §9): the stream
// request an app sends, the replies and progress lines edgelink sends, and the key
// record kept on disk. Pure: no sockets, no files, so it is unit-tested and fuzzed
// (tests/fuzz/xstream_fuzz.cpp).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "edgelink/apps/upload_peer.hpp"
#include "edgelink/config/config.hpp"

namespace edgelink::uploads {

// §4. The numbers are the wire's.
enum class Status : int {
  OK = 0,
  BadRequest = 1,
  UnknownRoute = 2,
  TooLarge = 3,
  NoSpace = 4,
  UnknownKey = 5,
  Timeout = 6,
  ChecksumMismatch = 7,
  Busy = 8,
  Internal = 9,
  Partial = 10,
};
inline constexpr int kStatusCount = 11;
const char* to_string(Status status);  // "OK", "BadRequest", ...

// A request's "x-stream": "<total>" or "<total>:<bufsize>" (§3), decimal digits only.
struct XStreamValue {
  uint64_t total = 0;
  uint32_t bufsize = 4096;
};
inline constexpr uint32_t kMaxRequestBufsize = 16777216;
// Malformed, total 0 or bufsize out of 1..16777216: BadRequest; a total with more digits
// than any size has (or above 2^63): TooLarge.
std::variant<XStreamValue, Status> parse_xstream_value(std::string_view text);
// The bufsize a reply advises: the requested one clamped to 512..65536.
uint32_t advised_bufsize(uint32_t requested);

// may_be_stream_request(line), the cheap test before a JSON parse, is in
// apps/upload_peer.hpp: the app connection uses it on every line.

struct StreamRequest {
  const UploadRouteConfig* route = nullptr;  // into the routes given to parse_stream_request
  uint64_t total = 0;
  uint32_t bufsize = 4096;                   // as requested (advised_bufsize() for the reply)
  std::optional<std::string> key;            // a resume (§5); other fields then do not apply
  std::string name;                          // file name; device file name (route's file_name applied)
  std::string sha256;                        // lowercase hex, or empty
  std::string mime_type;                     // datastream
  std::string attributes;                    // datastream: a JSON object of strings, or empty
  DeviceFileType file_type = DeviceFileType::Rtstream;  // device: the route's, or the request's fileType
  std::string endpoint;                      // device rtstream endpoint (route's, or the request's)
};

struct Refusal {
  Status status = Status::BadRequest;
  std::string detail;
  std::optional<std::string> key;  // echoed when the request had one
};

// Not a stream request at all (the line is a data point, a status, ...): nullopt.
// Otherwise the request checked in the order of §3 as far as it can be without the
// store: route (2), syntax and fields (1), size (3). Key, concurrency and space are the
// store's. `routes` are the app's.
std::optional<std::variant<StreamRequest, Refusal>> parse_stream_request(std::string_view line,
                                                                          const std::vector<UploadRouteConfig>& routes);

// 22 characters of base64url: the shape of every key edgelink hands out.
bool valid_key(std::string_view key);
// Upload file names of a file route: 1..128 of [A-Za-z0-9._-], not starting with '.'.
bool valid_file_name(std::string_view name);

// ---- lines edgelink sends (each ends with '\n') ----
// §3.1 accept: `grant` bytes of `remaining`; "0:<bufsize>" when grant == remaining.
std::string negotiation_reply(std::string_view key, uint64_t grant, uint64_t remaining, uint32_t bufsize,
                              uint64_t offset);
std::string refusal_reply(const Refusal& refusal);
// §3.3
std::string final_done(std::string_view key, std::string_view sha256, std::string_view path);
std::string final_partial(std::string_view key, uint64_t remaining);
std::string final_error(Status status, std::string_view key, uint64_t missing, std::string_view detail);
// §6
std::string progress_line(std::string_view key, std::string_view route, std::string_view phase, uint64_t bytes,
                          uint64_t total, int percent);
// §6: the step (0..20) reached with `bytes` of `total`: floor(20 * bytes / total).
int progress_step(uint64_t bytes, uint64_t total);

// ---- the key record, <persistence_path>/xstream/<key>.json (§9) ----
enum class KeyState { Receiving, Stored, Pushing, Done, Failed };
const char* to_string(KeyState state);  // "receiving", ...

struct KeyRecord {
  std::string key;
  std::string app;
  std::string route;
  UploadKind kind = UploadKind::File;
  std::string name;
  uint64_t total = 0;
  uint64_t offset = 0;      // durable bytes
  std::string sha256;       // requested, lowercase; empty when none was given
  KeyState state = KeyState::Receiving;
  uint64_t created = 0;     // Unix ms
  uint64_t last_activity = 0;
  // The route's settings when the upload started (they apply to its resumes, §9).
  std::string dir;          // file
  std::string device;       // device
  DeviceFileType file_type = DeviceFileType::Rtstream;
  std::string endpoint;
  std::string mime_type;    // datastream
  std::string attributes;
  // Done: what the final reply repeats. Failed: why.
  std::string result_sha256;
  std::string path;
  std::string detail;
};

std::string encode_record(const KeyRecord& record);
// nullopt for anything that is not a complete record (the file is then deleted).
std::optional<KeyRecord> decode_record(std::string_view json);

}  // namespace edgelink::uploads

#include "edgelink/uploads/xstream_request.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>

namespace edgelink::uploads {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void put(Writer& w, std::string_view key, std::string_view value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void put(Writer& w, std::string_view key, uint64_t value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.Uint64(value);
}

std::string line_of(const rapidjson::StringBuffer& buf) {
  std::string out(buf.GetString(), buf.GetSize());
  out += '\n';
  return out;
}

bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

// Decimal digits only; nullopt for empty, non-digits, or a value above `max`
// (`too_big` then says so).
std::optional<uint64_t> digits(std::string_view s, uint64_t max, bool& too_big) {
  too_big = false;
  if (s.empty() || !std::all_of(s.begin(), s.end(), is_digit)) return std::nullopt;
  uint64_t v = 0;
  for (char ch : s) {
    const uint64_t d = static_cast<uint64_t>(ch - '0');
    if (v > (max - d) / 10) {
      too_big = true;
      return std::nullopt;
    }
    v = v * 10 + d;
  }
  return v;
}

bool is_hex(char ch) { return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'); }

bool printable_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) { return ch >= 0x20 && ch < 0x7f; });
}

std::string_view sv(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

const rapidjson::Value* member(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

Refusal refuse(Status status, std::string detail, const std::optional<std::string>& key) {
  return Refusal{status, std::move(detail), key};
}

}  // namespace

const char* to_string(Status status) {
  switch (status) {
    case Status::OK: return "OK";
    case Status::BadRequest: return "BadRequest";
    case Status::UnknownRoute: return "UnknownRoute";
    case Status::TooLarge: return "TooLarge";
    case Status::NoSpace: return "NoSpace";
    case Status::UnknownKey: return "UnknownKey";
    case Status::Timeout: return "Timeout";
    case Status::ChecksumMismatch: return "ChecksumMismatch";
    case Status::Busy: return "Busy";
    case Status::Internal: return "Internal";
    case Status::Partial: return "Partial";
  }
  return "Internal";
}

std::variant<XStreamValue, Status> parse_xstream_value(std::string_view text) {
  const size_t colon = text.find(':');
  const std::string_view total_text = text.substr(0, colon);
  bool too_big = false;
  // 2^63: no file or budget comes near it, and it keeps every sum below 2^64.
  const auto total = digits(total_text, uint64_t{1} << 63, too_big);
  if (!total) {
    // Too many digits counts as too large only when the rest is well formed (fields come
    // before size in the order of checks, §3).
    if (!too_big) return Status::BadRequest;
    if (colon == std::string_view::npos) return Status::TooLarge;
    const auto bufsize = digits(text.substr(colon + 1), kMaxRequestBufsize, too_big);
    return bufsize && *bufsize > 0 ? Status::TooLarge : Status::BadRequest;
  }
  if (*total == 0) return Status::BadRequest;
  XStreamValue v;
  v.total = *total;
  if (colon != std::string_view::npos) {
    const auto bufsize = digits(text.substr(colon + 1), kMaxRequestBufsize, too_big);
    if (!bufsize || *bufsize == 0) return Status::BadRequest;
    v.bufsize = static_cast<uint32_t>(*bufsize);
  }
  return v;
}

uint32_t advised_bufsize(uint32_t requested) { return std::clamp<uint32_t>(requested, 512, 65536); }


bool valid_key(std::string_view key) {
  return key.size() == 22 && std::all_of(key.begin(), key.end(), [](char ch) {
           return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '-' || ch == '_';
         });
}

bool valid_file_name(std::string_view name) {
  return !name.empty() && name.size() <= 128 && name[0] != '.' && std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '.' || ch == '_' ||
           ch == '-';
  });
}

std::optional<std::variant<StreamRequest, Refusal>> parse_stream_request(
    std::string_view line, const std::vector<UploadRouteConfig>& routes) {
  if (!may_be_stream_request(line)) return std::nullopt;
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
  const rapidjson::Value* route_v = member(doc, "route");
  const rapidjson::Value* xs = member(doc, "x-stream");
  if (!route_v || !xs || member(doc, "stream")) return std::nullopt;

  std::optional<std::string> key;
  const rapidjson::Value* key_v = member(doc, "x-stream-key");
  if (key_v && key_v->IsString()) key = std::string(sv(*key_v));

  // Route (2).
  const UploadRouteConfig* route = nullptr;
  if (route_v->IsString()) {
    for (const auto& r : routes)
      if (r.route == sv(*route_v)) route = &r;
  }
  if (!route) {
    return refuse(Status::UnknownRoute,
                  route_v->IsString() ? "no upload route " + std::string(sv(*route_v)).substr(0, 200) +
                                            " is configured for this app"
                                      : "route must be a string",
                  key);
  }

  // Syntax and fields (1), then size (3).
  if (!xs->IsString()) return refuse(Status::BadRequest, "x-stream must be a string \"<total>[:<bufsize>]\"", key);
  const auto value = parse_xstream_value(sv(*xs));
  if (const auto* st = std::get_if<Status>(&value); st && *st == Status::BadRequest)
    return refuse(Status::BadRequest,
                  "x-stream must be \"<total>\" or \"<total>:<bufsize>\" in decimal digits, total >= 1, "
                  "bufsize 1..16777216",
                  key);
  if (key_v && !key_v->IsString()) return refuse(Status::BadRequest, "x-stream-key must be a string", key);
  if (const rapidjson::Value* df = member(doc, "data-format"); df && !(df->IsString() && sv(*df) == "bytes"))
    return refuse(Status::BadRequest, "data-format must be \"bytes\"", key);

  StreamRequest req;
  req.route = route;
  req.key = key;
  req.file_type = route->file_type;
  req.endpoint = route->endpoint;
  req.mime_type = route->mime_type;
  // A resume takes the original's fields (§5): the others are not checked.
  if (!key) {
    const rapidjson::Value* name = member(doc, "name");
    if (name && !name->IsString()) return refuse(Status::BadRequest, "name must be a string", key);
    const std::string_view n = name ? sv(*name) : std::string_view();
    switch (route->kind) {
      case UploadKind::File:
        if (!valid_file_name(n))
          return refuse(Status::BadRequest,
                        name ? "name must be 1..128 of [A-Za-z0-9._-], not starting with '.'"
                             : "name is required for a file route",
                        key);
        break;
      case UploadKind::Datastream:
        if (n.size() > 256) return refuse(Status::BadRequest, "name must be at most 256 bytes", key);
        break;
      case UploadKind::Device:
        if (name && (n.empty() || n.size() > 128 || !printable_ascii(n)))
          return refuse(Status::BadRequest, "name must be 1..128 printable ASCII characters", key);
        if (!name && route->file_name.empty())
          return refuse(Status::BadRequest, "name is required (the route has no file_name)", key);
        break;
    }
    req.name = name ? std::string(n) : route->file_name;

    if (const rapidjson::Value* sha = member(doc, "sha256")) {
      if (!sha->IsString() || sha->GetStringLength() != 64 ||
          !std::all_of(sha->GetString(), sha->GetString() + 64, is_hex))
        return refuse(Status::BadRequest, "sha256 must be 64 hex digits", key);
      req.sha256 = std::string(sv(*sha));
      std::transform(req.sha256.begin(), req.sha256.end(), req.sha256.begin(),
                     [](char ch) { return static_cast<char>(ch >= 'A' && ch <= 'F' ? ch - 'A' + 'a' : ch); });
    }

    if (route->kind == UploadKind::Datastream) {
      if (const rapidjson::Value* mt = member(doc, "mime_type")) {
        if (!mt->IsString() || mt->GetStringLength() == 0 || mt->GetStringLength() > 255)
          return refuse(Status::BadRequest, "mime_type must be a string of 1..255 bytes", key);
        req.mime_type = std::string(sv(*mt));
      }
      if (const rapidjson::Value* at = member(doc, "attributes")) {
        bool ok = at->IsObject();
        if (ok)
          for (auto m = at->MemberBegin(); m != at->MemberEnd(); ++m) ok = ok && m->value.IsString();
        if (!ok) return refuse(Status::BadRequest, "attributes must be an object of strings", key);
        req.attributes = to_json(*at);
      }
    }

    if (route->kind == UploadKind::Device) {
      if (const rapidjson::Value* ft = member(doc, "fileType")) {
        if (ft->IsString() && sv(*ft) == "rtstream")
          req.file_type = DeviceFileType::Rtstream;
        else if (ft->IsString() && sv(*ft) == "fs")
          req.file_type = DeviceFileType::Fs;
        else
          return refuse(Status::BadRequest, "fileType must be \"rtstream\" or \"fs\"", key);
      }
      if (const rapidjson::Value* ep = member(doc, "endpoint")) {
        if (!ep->IsString() || ep->GetStringLength() == 0 || ep->GetStringLength() > 128 || !printable_ascii(sv(*ep)))
          return refuse(Status::BadRequest, "endpoint must be 1..128 printable ASCII characters", key);
        req.endpoint = std::string(sv(*ep));
      }
      if (req.file_type == DeviceFileType::Rtstream && req.endpoint.empty())
        return refuse(Status::BadRequest, "endpoint is required: the route names none for its rtstream", key);
    }
  }

  if (std::holds_alternative<Status>(value))
    return refuse(Status::TooLarge, "total is larger than this route takes (" +
                                        std::to_string(route->max_total_bytes) + " bytes)", key);
  const XStreamValue& v = std::get<XStreamValue>(value);
  if (v.total > route->max_total_bytes)
    return refuse(Status::TooLarge, "total " + std::to_string(v.total) + " is larger than this route takes (" +
                                        std::to_string(route->max_total_bytes) + " bytes)", key);
  req.total = v.total;
  req.bufsize = v.bufsize;
  return req;
}

std::string negotiation_reply(std::string_view key, uint64_t grant, uint64_t remaining, uint32_t bufsize,
                              uint64_t offset) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  put(w, "status", uint64_t{0});
  put(w, "x-stream", std::to_string(grant < remaining ? grant : 0) + ":" + std::to_string(bufsize));
  put(w, "x-stream-key", key);
  put(w, "data-format", "bytes");
  put(w, "x-stream-offset", offset);
  w.EndObject();
  return line_of(buf);
}

std::string refusal_reply(const Refusal& r) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  put(w, "status", static_cast<uint64_t>(r.status));
  put(w, "x-stream", "-1");
  put(w, "error", to_string(r.status));
  if (r.key) put(w, "x-stream-key", *r.key);
  if (!r.detail.empty()) put(w, "detail", r.detail);
  w.EndObject();
  return line_of(buf);
}

std::string final_done(std::string_view key, std::string_view sha256, std::string_view path) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  put(w, "status", uint64_t{0});
  put(w, "x-stream-key", key);
  put(w, "x-stream", "0:0");
  put(w, "sha256", sha256);
  if (!path.empty()) put(w, "path", path);
  w.EndObject();
  return line_of(buf);
}

std::string final_partial(std::string_view key, uint64_t remaining) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  put(w, "status", static_cast<uint64_t>(Status::Partial));
  put(w, "x-stream-key", key);
  put(w, "x-stream", std::to_string(remaining) + ":0");
  put(w, "error", "Partial");
  w.EndObject();
  return line_of(buf);
}

std::string final_error(Status status, std::string_view key, uint64_t missing, std::string_view detail) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  put(w, "status", static_cast<uint64_t>(status));
  put(w, "x-stream-key", key);
  put(w, "x-stream", std::to_string(missing) + ":0");
  put(w, "error", to_string(status));
  if (!detail.empty()) put(w, "detail", detail);
  w.EndObject();
  return line_of(buf);
}

std::string progress_line(std::string_view key, std::string_view route, std::string_view phase, uint64_t bytes,
                          uint64_t total, int percent) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("edgelink");
  w.StartObject();
  w.Key("progress");
  w.StartObject();
  put(w, "x-stream-key", key);
  put(w, "route", route);
  put(w, "phase", phase);
  put(w, "bytes", bytes);
  put(w, "total", total);
  put(w, "percent", static_cast<uint64_t>(percent));
  w.EndObject();
  w.EndObject();
  w.EndObject();
  return line_of(buf);
}

int progress_step(uint64_t bytes, uint64_t total) {
  if (total == 0 || bytes >= total) return 20;
  // 20 * bytes cannot overflow: totals are below 2^63 / ... keep it exact anyway.
  return static_cast<int>(static_cast<unsigned __int128>(bytes) * 20 / total);
}

const char* to_string(KeyState state) {
  switch (state) {
    case KeyState::Receiving: return "receiving";
    case KeyState::Stored: return "stored";
    case KeyState::Pushing: return "pushing";
    case KeyState::Done: return "done";
    case KeyState::Failed: return "failed";
  }
  return "failed";
}

std::string encode_record(const KeyRecord& r) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  put(w, "key", r.key);
  put(w, "app", r.app);
  put(w, "route", r.route);
  put(w, "kind", to_string(r.kind));
  put(w, "name", r.name);
  put(w, "total", r.total);
  put(w, "offset", r.offset);
  put(w, "sha256", r.sha256);
  put(w, "state", to_string(r.state));
  put(w, "created", r.created);
  put(w, "last_activity", r.last_activity);
  put(w, "dir", r.dir);
  put(w, "device", r.device);
  put(w, "file_type", to_string(r.file_type));
  put(w, "endpoint", r.endpoint);
  put(w, "mime_type", r.mime_type);
  put(w, "attributes", r.attributes);
  put(w, "result_sha256", r.result_sha256);
  put(w, "path", r.path);
  put(w, "detail", r.detail);
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

std::optional<KeyRecord> decode_record(std::string_view json) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
  bool ok = true;
  auto text = [&](const char* name, std::string& out) {
    const rapidjson::Value* v = member(doc, name);
    if (v && v->IsString())
      out = std::string(sv(*v));
    else
      ok = false;
  };
  auto number = [&](const char* name, uint64_t& out) {
    const rapidjson::Value* v = member(doc, name);
    if (v && v->IsUint64())
      out = v->GetUint64();
    else
      ok = false;
  };
  KeyRecord r;
  std::string kind, state, file_type;
  text("key", r.key);
  text("app", r.app);
  text("route", r.route);
  text("kind", kind);
  text("name", r.name);
  number("total", r.total);
  number("offset", r.offset);
  text("sha256", r.sha256);
  text("state", state);
  number("created", r.created);
  number("last_activity", r.last_activity);
  text("dir", r.dir);
  text("device", r.device);
  text("file_type", file_type);
  text("endpoint", r.endpoint);
  text("mime_type", r.mime_type);
  text("attributes", r.attributes);
  text("result_sha256", r.result_sha256);
  text("path", r.path);
  text("detail", r.detail);
  if (!ok || !valid_key(r.key) || r.total == 0 || r.offset > r.total) return std::nullopt;
  // A file record names the file it installs: the request's rules hold (no '/', no "..").
  if (kind == "file" && !valid_file_name(r.name)) return std::nullopt;
  if (kind == "file")
    r.kind = UploadKind::File;
  else if (kind == "datastream")
    r.kind = UploadKind::Datastream;
  else if (kind == "device")
    r.kind = UploadKind::Device;
  else
    return std::nullopt;
  bool found = false;
  for (KeyState s : {KeyState::Receiving, KeyState::Stored, KeyState::Pushing, KeyState::Done, KeyState::Failed})
    if (state == to_string(s)) {
      r.state = s;
      found = true;
    }
  if (!found) return std::nullopt;
  if (file_type == "fs")
    r.file_type = DeviceFileType::Fs;
  else if (file_type == "rtstream")
    r.file_type = DeviceFileType::Rtstream;
  else
    return std::nullopt;
  return r;
}

}  // namespace edgelink::uploads

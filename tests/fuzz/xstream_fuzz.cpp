// libFuzzer target for the x-stream lines of spec/xstream.md: the "x-stream" value, the
// stream request line (against a file route, a device route with a file name and an
// endpoint, one with neither, and a datastream route) and the key record (§9). Checks,
// beyond "no crash":
//  - a value parsed is in range, and the same text put into a request line gives the
//    status the value alone predicts (BadRequest 1, TooLarge 3, above the route's
//    maximum 3, else accepted with that total and bufsize);
//  - the input as a file name, a device file name and a sha256 is accepted exactly when
//    §3's rules say so;
//  - a request accepted from the raw input is within its route's rules, a refusal is
//    one of 1, 2, 3, and every reply is one JSON object on one line;
//  - a decoded record is valid, and encodes and decodes to the same text;
//  - progress_step is floor(20 x bytes / total), at most 20.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "edgelink/uploads/xstream_request.hpp"

using namespace edgelink;
using namespace edgelink::uploads;

namespace {

constexpr uint64_t kFileMax = 1 << 20;

const std::vector<UploadRouteConfig>& routes() {
  static const std::vector<UploadRouteConfig> r = [] {
    UploadRouteConfig file;
    file.route = "/upload-file";
    file.max_total_bytes = kFileMax;
    UploadRouteConfig dev;
    dev.route = "/device/mcu1/file";
    dev.kind = UploadKind::Device;
    dev.device = "mcu1";
    dev.max_total_bytes = kMaxDeviceUploadBytes;
    dev.endpoint = "filesink";
    dev.file_name = "upload.bin";
    UploadRouteConfig bare = dev;  // the request must name the file and the endpoint (or use fs)
    bare.route = "/device/mcu2/file";
    bare.device = "mcu2";
    bare.endpoint.clear();
    bare.file_name.clear();
    UploadRouteConfig ds;
    ds.route = "/ds/camera/video";
    ds.kind = UploadKind::Datastream;
    ds.mime_type = "video/mp4";
    return std::vector<UploadRouteConfig>{file, dev, bare, ds};
  }();
  return r;
}

// `s` as a JSON string, any bytes (rapidjson copies non-ASCII as it is and reads it back).
std::string json_string(std::string_view s) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return {buf.GetString(), buf.GetSize()};
}

// One JSON object on one line ending in '\n', with an integer "status".
uint64_t reply_status(const std::string& line) {
  if (line.empty() || line.back() != '\n' || line.find('\n') != line.size() - 1) abort();
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size() - 1);
  if (doc.HasParseError() || !doc.IsObject()) abort();
  auto it = doc.FindMember("status");
  if (it == doc.MemberEnd() || !it->value.IsUint64()) abort();
  return it->value.GetUint64();
}

bool printable_ascii(std::string_view s) {
  for (char ch : s)
    if (ch < 0x20 || ch > 0x7e) return false;
  return true;
}

bool is_hex(char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'); }

const StreamRequest* accepted(const std::optional<std::variant<StreamRequest, Refusal>>& r) {
  if (!r) abort();  // every line built here is a stream request
  return std::get_if<StreamRequest>(&*r);
}

Status refused(const std::optional<std::variant<StreamRequest, Refusal>>& r) {
  if (!r || !std::holds_alternative<Refusal>(*r)) abort();
  return std::get<Refusal>(*r).status;
}

void check_value(std::string_view text) {
  const auto v = parse_xstream_value(text);
  const auto line = parse_stream_request(
      R"({"route":"/upload-file","x-stream":)" + json_string(text) + R"(,"name":"a"})", routes());
  if (const auto* x = std::get_if<XStreamValue>(&v)) {
    if (x->total == 0 || x->total > (uint64_t{1} << 63) || x->bufsize == 0 || x->bufsize > kMaxRequestBufsize) abort();
    if (text.find_first_not_of("0123456789:") != std::string_view::npos) abort();
    if (text.find(':') == std::string_view::npos && x->bufsize != 4096) abort();
    // The canonical form reads back the same.
    const auto again = parse_xstream_value(std::to_string(x->total) + ":" + std::to_string(x->bufsize));
    const auto* y = std::get_if<XStreamValue>(&again);
    if (!y || y->total != x->total || y->bufsize != x->bufsize) abort();
    if (x->total > kFileMax) {
      if (refused(line) != Status::TooLarge) abort();
    } else {
      const StreamRequest* req = accepted(line);
      if (!req || req->total != x->total || req->bufsize != x->bufsize) abort();
    }
  } else {
    const Status s = std::get<Status>(v);
    if (s != Status::BadRequest && s != Status::TooLarge) abort();
    // Too large only for a total of decimal digits.
    if (s == Status::TooLarge) {
      const std::string_view total = text.substr(0, text.find(':'));
      if (total.size() < 19 || total.find_first_not_of("0123456789") != std::string_view::npos) abort();
    }
    if (refused(line) != s) abort();
  }
}

void check_fields(std::string_view text) {
  const std::string j = json_string(text);
  // A file route's name.
  const auto file = parse_stream_request(R"({"route":"/upload-file","x-stream":"10","name":)" + j + "}", routes());
  const StreamRequest* f = accepted(file);
  if ((f != nullptr) != valid_file_name(text)) abort();
  if (f && f->name != text) abort();
  if (!f && refused(file) != Status::BadRequest) abort();
  // A device route's name: 1..128 printable ASCII.
  const auto dev = parse_stream_request(R"({"route":"/device/mcu1/file","x-stream":"10","name":)" + j + "}", routes());
  const StreamRequest* d = accepted(dev);
  const bool dev_ok = !text.empty() && text.size() <= 128 && printable_ascii(text);
  if ((d != nullptr) != dev_ok) abort();
  if (d && (d->name != text || d->endpoint != "filesink" || d->file_type != DeviceFileType::Rtstream)) abort();
  // sha256: 64 hex digits, kept in lower case.
  const auto sha =
      parse_stream_request(R"({"route":"/upload-file","x-stream":"10","name":"a","sha256":)" + j + "}", routes());
  const StreamRequest* s = accepted(sha);
  bool sha_ok = text.size() == 64;
  for (char ch : text) sha_ok = sha_ok && is_hex(ch);
  if ((s != nullptr) != sha_ok) abort();
  if (s) {
    for (size_t i = 0; i < 64; ++i) {
      const char want = text[i] >= 'A' && text[i] <= 'F' ? static_cast<char>(text[i] - 'A' + 'a') : text[i];
      if (s->sha256[i] != want) abort();
    }
  }
  // A key: a resume, whose other fields are not checked (the name here is bad).
  const auto resume =
      parse_stream_request(R"({"route":"/upload-file","x-stream":"10","name":".x","x-stream-key":)" + j + "}", routes());
  const StreamRequest* r = accepted(resume);
  if (!r || r->key != text) abort();
}

void check_request(std::string_view text) {
  const auto r = parse_stream_request(text, routes());
  if (!r) return;
  if (!may_be_stream_request(text)) abort();
  if (const auto* req = std::get_if<StreamRequest>(&*r)) {
    const UploadRouteConfig* route = req->route;
    if (!route || route < routes().data() || route >= routes().data() + routes().size()) abort();
    if (req->total == 0 || req->total > route->max_total_bytes) abort();
    if (req->bufsize == 0 || req->bufsize > kMaxRequestBufsize) abort();
    if (!req->sha256.empty()) {
      if (req->sha256.size() != 64) abort();
      for (char ch : req->sha256)
        if (!is_hex(ch) || (ch >= 'A' && ch <= 'F')) abort();
    }
    if (!req->key) {
      if (route->kind == UploadKind::File && !valid_file_name(req->name)) abort();
      if (route->kind == UploadKind::Device) {
        if (req->name.empty() || req->name.size() > 128 || !printable_ascii(req->name)) abort();
        if (req->file_type == DeviceFileType::Rtstream && req->endpoint.empty()) abort();
      }
      if (!req->attributes.empty()) {
        rapidjson::Document doc;
        doc.Parse(req->attributes.data(), req->attributes.size());
        if (doc.HasParseError() || !doc.IsObject()) abort();
      }
    }
    const std::string key = req->key.value_or("q3JxVb0cT1m2Yk8wZr7e4A");
    const uint32_t bufsize = advised_bufsize(req->bufsize);
    if (bufsize < 512 || bufsize > 65536) abort();
    if (reply_status(negotiation_reply(key, req->total, req->total, bufsize, 0)) != 0) abort();
    if (reply_status(final_partial(key, req->total / 2)) != 10) abort();
    if (reply_status(final_done(key, std::string(64, 'a'), req->name)) != 0) abort();
  } else {
    const Refusal& refusal = std::get<Refusal>(*r);
    if (refusal.status != Status::BadRequest && refusal.status != Status::UnknownRoute &&
        refusal.status != Status::TooLarge)
      abort();
    if (refusal.detail.empty()) abort();
    if (reply_status(refusal_reply(refusal)) != static_cast<uint64_t>(refusal.status)) abort();
    if (refusal.key && reply_status(final_error(refusal.status, *refusal.key, 1, refusal.detail)) !=
                           static_cast<uint64_t>(refusal.status))
      abort();
  }
}

void check_record(std::string_view text) {
  const auto rec = decode_record(text);
  if (!rec) return;
  if (!valid_key(rec->key) || rec->total == 0 || rec->offset > rec->total) abort();
  const std::string once = encode_record(*rec);
  const auto again = decode_record(once);
  if (!again || encode_record(*again) != once) abort();
}

void check_progress(const uint8_t* data, size_t size) {
  if (size < 16) return;
  uint64_t bytes = 0, total = 0;
  std::memcpy(&bytes, data, 8);
  std::memcpy(&total, data + 8, 8);
  const int step = progress_step(bytes, total);
  if (step < 0 || step > 20) abort();
  if (total == 0 || bytes >= total) {
    if (step != 20) abort();
    return;
  }
  // step = floor(20 x bytes / total): step x total <= 20 x bytes < (step + 1) x total.
  const unsigned __int128 b20 = static_cast<unsigned __int128>(bytes) * 20;
  if (static_cast<unsigned __int128>(step) * total > b20 || b20 >= static_cast<unsigned __int128>(step + 1) * total)
    abort();
  if (step == 20) abort();
  if (progress_step(total, total) != 20) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_value(text);
  check_fields(text);
  check_request(text);
  check_record(text);
  check_progress(data, size);
  return 0;
}

// libFuzzer target for the x-stream lines of spec/xstream.md: the "x-stream" value, the
// stream request line (against a file route and two device routes) and the key record.
// Checks, beyond "no crash": an accepted request is within its route's limits; a decoded
// record encodes and decodes to the same text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "edgelink/uploads/xstream_request.hpp"

using namespace edgelink;
using namespace edgelink::uploads;

namespace {

const std::vector<UploadRouteConfig>& routes() {
  static const std::vector<UploadRouteConfig> r = [] {
    UploadRouteConfig file;
    file.route = "/upload-file";
    file.max_total_bytes = 1 << 20;
    UploadRouteConfig dev;
    dev.route = "/device/mcu1/file";
    dev.kind = UploadKind::Device;
    dev.device = "mcu1";
    dev.max_total_bytes = kMaxDeviceUploadBytes;
    dev.endpoint = "filesink";
    dev.file_name = "upload.bin";
    UploadRouteConfig bare = dev;
    bare.route = "/device/mcu2/file";
    bare.endpoint.clear();
    bare.file_name.clear();
    return std::vector<UploadRouteConfig>{file, dev, bare};
  }();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto v = parse_xstream_value(text);
  if (auto* x = std::get_if<XStreamValue>(&v))
    if (x->total == 0 || x->bufsize == 0 || x->bufsize > kMaxRequestBufsize) abort();

  if (auto r = parse_stream_request(text, routes())) {
    if (auto* req = std::get_if<StreamRequest>(&*r)) {
      if (!req->route || req->total == 0 || req->total > req->route->max_total_bytes) abort();
      if (!req->key && req->route->kind == UploadKind::File && !valid_file_name(req->name)) abort();
      (void)negotiation_reply(req->key.value_or("k"), req->total, req->total, advised_bufsize(req->bufsize), 0);
    } else {
      (void)refusal_reply(std::get<Refusal>(*r));
    }
  }

  if (auto rec = decode_record(text)) {
    const std::string once = encode_record(*rec);
    auto again = decode_record(once);
    if (!again || encode_record(*again) != once) abort();
  }
  return 0;
}

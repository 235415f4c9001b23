// libFuzzer target for what an HTTP client and a device hand to the RICREST side of
// device access: copost uri + data (split at the first 0x00), obget uri and /pub data,
// a reply's JSON, and a publish payload. Checks, beyond "no crash": a command frame is
// a JSON object that starts with cmdName and holds no 0x00; a URL element is the path as
// given; accepted /pub options are in range; a reply keeps its bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "edgelink/devices/device_subscriptions.hpp"
#include "edgelink/devices/ricrest_access.hpp"

using namespace edgelink::devices;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t cut = in.find('\0');
  const std::string_view uri = in.substr(0, cut);
  const std::string_view body = cut == std::string_view::npos ? std::string_view() : in.substr(cut + 1);

  const auto copost = translate_copost(uri, body);
  if (const auto* req = std::get_if<CopostRequest>(&copost)) {
    if (req->text.find('\0') != std::string::npos) abort();
    if (req->kind == RequestKind::Url && (!body.empty() || req->text != uri.substr(1))) abort();
    if (req->kind == RequestKind::CommandFrame && req->text.rfind("{\"cmdName\":", 0) != 0) abort();
  }
  (void)parse_obget_uri(uri);
  const auto ask = parse_publish_options(body);
  if (const auto* a = std::get_if<SubscriptionAsk>(&ask))
    if (!(a->rate_hz > 0 && a->rate_hz <= kMaxPublishRateHz)) abort();

  RequestResult r;
  r.error = LinkError::BadReply;
  r.json = std::string(in);
  const auto frame = copost_reply(r);
  if (frame.data != in) abort();

  DeviceSubscriptions subs;
  subs.add(1, "devjson", {}, false);
  (void)subs.route({data, size});
  return 0;
}

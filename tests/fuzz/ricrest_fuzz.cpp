// libFuzzer target for the RICSerial/RICREST decoders and the JSON readers. The input
// is tried as a message and as JSON text. Checks, beyond "no crash": a decoded
// message re-encodes to a fixed point (and to the same bytes where the encoding is
// canonical), parsed notices rebuild to the same meaning, and json_quote'd text
// parses back to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "edgelink/devices/ricrest.hpp"

using namespace edgelink::devices;

namespace {

void check_message(std::span<const uint8_t> input) {
  const auto decoded = decode_message(input);
  const auto* m = std::get_if<RicMessage>(&decoded);
  if (!m) return;
  std::vector<uint8_t> e1;
  if (!encode_message(e1, *m)) {
    // Only what the device itself rejects may be refused: empty or stream-0 blocks.
    const auto* fb = std::get_if<FileBlockElement>(&m->body);
    if (!fb || (!fb->data.empty() && fb->stream_id != kStreamIdAny)) abort();
    return;
  }
  // Canonical forms re-encode byte for byte; text elements may lose bytes after the 0x00.
  const bool canonical = std::holds_alternative<RawPayload>(m->body) ||
                         std::holds_alternative<FileBlockElement>(m->body) ||
                         std::holds_alternative<BodyElement>(m->body) ||
                         std::holds_alternative<CommandFrameElement>(m->body);
  if (canonical && !std::equal(e1.begin(), e1.end(), input.begin(), input.end())) abort();
  const auto again = decode_message(e1);
  const auto* m2 = std::get_if<RicMessage>(&again);
  if (!m2) abort();
  std::vector<uint8_t> e2;
  if (!encode_message(e2, *m2) || e1 != e2) abort();
  if (m2->header.msg_num != m->header.msg_num || m2->header.msg_type != m->header.msg_type ||
      m2->header.protocol != m->header.protocol || m2->body.index() != m->body.index()) {
    abort();
  }
}

void check_json(std::string_view text) {
  const auto parsed = parse_reply(text);
  if (const auto* reply = std::get_if<DeviceReply>(&parsed)) {
    const auto notice = parse_block_notice(*reply);
    if (const auto* n = std::get_if<BlockNotice>(&notice)) {
      // Rebuild the notice the way the device writes it and read it again.
      std::string rebuilt;
      if (n->kind == BlockNoticeKind::Failed && n->stream_id) {
        rebuilt = block_fail_json(*n->stream_id, n->reason_text);
      } else if (n->kind != BlockNoticeKind::Failed && n->kind != BlockNoticeKind::Okto) {
        rebuilt = sokto_json(*n->stream_id, n->position, n->reason_text);
      }
      if (!rebuilt.empty()) {
        const auto r2 = parse_reply(rebuilt);
        const auto* reply2 = std::get_if<DeviceReply>(&r2);
        if (!reply2) abort();
        const auto n2 = parse_block_notice(*reply2);
        const auto* nn = std::get_if<BlockNotice>(&n2);
        if (!nn || nn->kind != n->kind || nn->stream_id != n->stream_id || nn->position != n->position ||
            nn->reason_text != n->reason_text) {
          abort();
        }
      }
    }
    const auto start = parse_ufstart_reply(*reply);
    if (const auto* s = std::get_if<UfStartReply>(&start)) {
      if (s->ok && (s->stream_id == 0 || s->stream_id > kMaxStreamId)) abort();
      if (s->max_block_size == 0 || s->max_block_size > kMaxBlockPayload) abort();
    }
  }
  (void)parse_report(text);

  // Any valid UTF-8 text survives json_quote and the reader.
  const std::string wrapped = "{\"req\":" + json_quote(text) + "}";
  const auto q = parse_reply(wrapped);
  if (const auto* r = std::get_if<DeviceReply>(&q)) {
    if (r->req != text) abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  check_message(input);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_json(text);
  const auto pub = parse_publish(input);
  if (const auto* p = std::get_if<Publish>(&pub)) {
    for (const auto& rec : p->records) {
      if (rec.data.data() < data || rec.data.data() + rec.data.size() > data + size) abort();
    }
  }
  // And as a message payload: URL text rebuilt from the input as a request.
  std::vector<uint8_t> out;
  if (encode_url(out, 1, text)) {
    const auto d = decode_message(out);
    const auto* m = std::get_if<RicMessage>(&d);
    if (!m || std::get<UrlElement>(m->body).url != text) abort();
  } else if (text.find('\0') == std::string_view::npos) {
    abort();
  }
  return 0;
}

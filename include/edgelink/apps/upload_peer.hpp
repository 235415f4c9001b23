#pragma once
// The seam between an app connection and x-stream uploads (spec/xstream.md §2–§3): the
// connection recognises nothing but "a line that may be a stream request"; the upload
// side (uploads::UploadStore) answers it and, when it grants bytes, receives exactly that
// many raw bytes before the connection reads JSON lines again.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace edgelink {

// Cheap test before a JSON parse, on every app line: only a line that spells "x-stream"
// or uses a \u escape (a key may be written "x\u002dstream") can be a stream request.
inline bool may_be_stream_request(std::string_view line) {
  return line.find("x-stream") != std::string_view::npos || line.find("\\u") != std::string_view::npos;
}

// One upload's receiving end of the raw phase.
class RawReceiver {
 public:
  virtual ~RawReceiver() = default;
  // The next raw bytes, in order, never more than granted. False: stop reading the
  // socket until UploadPeer::resume_raw().
  virtual bool on_raw(std::span<const uint8_t> bytes) = 0;
  // The connection ended (EOF, error, eviction, shutdown) before upload_done().
  virtual void on_peer_gone() = 0;
};

// What an upload needs of the connection it arrived on (implemented by AppSession).
class UploadPeer {
 public:
  virtual ~UploadPeer() = default;
  virtual bool connected() const = 0;
  virtual bool hello() const = 0;  // progress lines only after hello (§6)
  // An upload on this connection is between its request and its final reply.
  virtual bool upload_pending() const = 0;
  // A reply or progress line, written after what is queued.
  virtual void send_line(std::string line) = 0;
  // The request is answered without a raw phase: read on as JSON lines.
  // `final_pending`: a final reply is still to come (actions wait for it).
  virtual void answered(bool final_pending) = 0;
  // The request is answered with a grant: the next `bytes` bytes go to `receiver`.
  virtual void start_raw(uint64_t bytes, std::shared_ptr<RawReceiver> receiver) = 0;
  virtual void resume_raw() = 0;
  // The final reply is queued: actions for the app flow again. `close`: the connection is
  // closed once what is queued is written (an error in the raw phase, §3.2).
  virtual void upload_done(bool close) = 0;
};

class StreamRequestHandler {
 public:
  virtual ~StreamRequestHandler() = default;
  // A line of `app` that mentions x-stream. False: not a stream request (the connection
  // treats it as an ordinary line). True: the handler answers through `peer`, now or
  // later, with exactly one of answered(), start_raw() or upload_done(true).
  virtual bool on_stream_request(const std::string& app, std::string_view line, bool upload_port,
                                 std::shared_ptr<UploadPeer> peer) = 0;
};

}  // namespace edgelink

#pragma once
// The seam between an app connection and data streams (spec/datastreams.md §2): the
// connection passes on lines that may be data-stream lines and says when it closes; the
// data-stream side answers, sends inbound streams, and holds the connection's reading
// for back-pressure (§8).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace edgelink {

class DsConnection {
 public:
  virtual ~DsConnection() = default;
  virtual uint64_t connection_id() const = 0;
  virtual bool connected() const = 0;
  virtual void send_line(std::string line) = 0;
  // Bytes queued for the socket and not yet written (an app that does not read).
  virtual size_t queued_bytes() const = 0;
  // While held, the connection's socket is not read (every line waits).
  virtual void hold_reading(bool hold) = 0;
};

class DsHandler {
 public:
  virtual ~DsHandler() = default;
  // False: not a data-stream line (the connection treats it as an ordinary line).
  virtual bool on_ds_line(const std::string& app, std::string_view line, std::shared_ptr<DsConnection> conn) = 0;
  virtual void on_connection_closed(uint64_t connection_id) = 0;
};

}  // namespace edgelink

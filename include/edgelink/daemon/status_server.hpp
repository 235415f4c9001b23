#pragma once
// `edgelink status` talks to the daemon over a Unix socket in persistence_path: the
// daemon writes its status JSON and closes. Local only, permissions of the state
// directory apply; the HTTP API can serve the same JSON later.

#include <functional>
#include <memory>
#include <string>

#include <asio.hpp>

namespace edgelink {

std::string status_socket_path(const std::string& persistence_path);

class StatusServer {
 public:
  StatusServer(asio::io_context& io, std::function<std::string()> status);
  ~StatusServer();
  // Empty on success, else why it could not listen (another edgelink running there).
  std::string open(const std::string& path);
  void close();

 private:
  void accept();
  asio::io_context& io_;
  std::function<std::string()> status_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> acceptor_;
  std::string path_;
};

// Client side, for `edgelink status`: the daemon's JSON, or an error message.
bool fetch_status(const std::string& path, std::string& out);

}  // namespace edgelink

#include "edgelink/daemon/status_server.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include "edgelink/util/log.hpp"

namespace edgelink {

std::string status_socket_path(const std::string& persistence_path) {
  return persistence_path + "/edgelink.sock";
}

StatusServer::StatusServer(asio::io_context& io, std::function<std::string()> status)
    : io_(io), status_(std::move(status)) {}

StatusServer::~StatusServer() { close(); }

std::string StatusServer::open(const std::string& path) {
  using asio::local::stream_protocol;
  asio::error_code ec;
  {
    // A socket file that accepts a connection belongs to a running edgelink.
    stream_protocol::socket probe(io_);
    probe.connect(stream_protocol::endpoint(path), ec);
    if (!ec) return "another edgelink is running with this persistence_path (" + path + " answers)";
  }
  ::unlink(path.c_str());
  auto acceptor = std::make_unique<stream_protocol::acceptor>(io_);
  acceptor->open(stream_protocol(), ec);
  if (!ec) acceptor->bind(stream_protocol::endpoint(path), ec);
  if (!ec) acceptor->listen(16, ec);
  if (ec) return "cannot create the status socket " + path + ": " + ec.message();
  ::chmod(path.c_str(), 0660);
  acceptor_ = std::move(acceptor);
  path_ = path;
  accept();
  return {};
}

void StatusServer::close() {
  if (!acceptor_) return;
  acceptor_.reset();
  ::unlink(path_.c_str());
}

void StatusServer::accept() {
  auto* acceptor = acceptor_.get();
  acceptor->async_accept([this, acceptor](asio::error_code ec, asio::local::stream_protocol::socket socket) {
    if (ec == asio::error::operation_aborted || acceptor_.get() != acceptor) return;
    if (!ec) {
      auto sock = std::make_shared<asio::local::stream_protocol::socket>(std::move(socket));
      auto body = std::make_shared<std::string>(status_());
      asio::async_write(*sock, asio::buffer(*body), [sock, body](asio::error_code, size_t) {});
    }
    accept();
  });
}

bool fetch_status(const std::string& path, std::string& out) {
  asio::io_context io;
  asio::local::stream_protocol::socket sock(io);
  asio::error_code ec;
  sock.connect(asio::local::stream_protocol::endpoint(path), ec);
  if (ec) {
    out = "cannot reach edgelink at " + path + ": " + ec.message() + " (is it running with this config?)";
    return false;
  }
  out.clear();
  char buf[4096];
  for (;;) {
    size_t n = sock.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  if (ec != asio::error::eof) {
    out = "reading the status from " + path + " failed: " + ec.message();
    return false;
  }
  return true;
}

}  // namespace edgelink

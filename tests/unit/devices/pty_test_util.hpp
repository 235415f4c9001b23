#pragma once
// Helpers shared by the device tests that play the Raft device on a real
// pseudo-terminal: opening the master side, and running the loop until a condition.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>

#include <chrono>
#include <functional>
#include <string>

#include <asio.hpp>

namespace edgelink::test {

// The master side of a new pty pair, non-blocking; `slave_path` gets the slave's path.
inline int open_pty_master(std::string& slave_path) {
  const int fd = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::grantpt(fd) == 0);
  REQUIRE(::unlockpt(fd) == 0);
  const char* name = ::ptsname(fd);
  REQUIRE(name != nullptr);
  slave_path = name;
  REQUIRE(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
  return fd;
}

// Runs the loop in short slices until `done` holds (true) or `limit` passes (false).
inline bool run_until(asio::io_context& io, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace edgelink::test

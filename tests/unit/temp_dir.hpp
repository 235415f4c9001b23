#pragma once
// A private directory for files a test writes (keys, secrets, configs); removed at
// scope exit. Shared by the unit tests of every area.

#include <catch2/catch.hpp>

#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace edgelink::test {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/edgelink_test_XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string write(const std::string& name, const std::string& content) const {
    const std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
};

}  // namespace edgelink::test

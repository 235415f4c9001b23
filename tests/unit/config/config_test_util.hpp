#pragma once
// Helpers shared by the config unit tests.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

#include "edgelink/config/config.hpp"

namespace edgelink::test {

inline constexpr const char* kIds = "project_id = \"demo\"\ndevice_id = \"gw-001\"\n";

inline LoadResult load(const std::string& text) { return load_config_string(text, "test.toml"); }

inline std::string all_issues(const std::vector<ConfigIssue>& issues) {
  std::string out;
  for (const auto& i : issues) out += i.to_string() + "\n";
  return out;
}

// A private directory for files the loader must read; removed at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/edgelink_config_test_XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
};

}  // namespace edgelink::test

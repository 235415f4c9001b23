#pragma once
// Helpers shared by the config unit tests.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

#include "edgelink/config/config.hpp"
#include "../temp_dir.hpp"

namespace edgelink::test {

inline constexpr const char* kIds = "project_id = \"demo\"\ndevice_id = \"gw-001\"\n";

inline LoadResult load(const std::string& text) { return load_config_string(text, "test.toml"); }

inline std::string all_issues(const std::vector<ConfigIssue>& issues) {
  std::string out;
  for (const auto& i : issues) out += i.to_string() + "\n";
  return out;
}


}  // namespace edgelink::test

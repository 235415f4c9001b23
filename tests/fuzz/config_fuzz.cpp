// libFuzzer target: load_config_string must never crash, leak or throw on any input,
// and whatever it accepts must print (to_toml) as TOML it accepts again.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "edgelink/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const edgelink::LoadResult result = edgelink::load_config_string(text, "fuzz.toml");
  for (const auto& issue : result.errors) (void)issue.to_string();
  for (const auto& issue : result.unknown_keys) (void)issue.to_string();
  if (!result.config) return 0;

  const edgelink::Config& config = *result.config;
  for (const auto& [name, stream] : config.streams) (void)edgelink::expand_topic(stream.topic, config, name);
  const edgelink::LoadResult again = edgelink::load_config_string(edgelink::to_toml(config), "printed.toml");
  // A printed effective config that does not load back is a to_toml bug.
  if (!again.config || !again.unknown_keys.empty()) std::abort();
  return 0;
}

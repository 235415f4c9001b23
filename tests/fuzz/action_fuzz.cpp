// libFuzzer target: action messages from the broker. Whatever arrives, parse_action
// returns a value; a parsed action re-serialises to one valid JSON line.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "edgelink/actions/action_router.hpp"
#include "edgelink/apps/app_message.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = edgelink::parse_action(in);
  if (auto* a = std::get_if<edgelink::CloudAction>(&r)) {
    std::string line = edgelink::action_line(*a);
    if (line.empty() || line.back() != '\n') std::abort();
    line.pop_back();
    if (line.find('\n') != std::string::npos || !edgelink::is_valid_json(line)) std::abort();
  }
  return 0;
}

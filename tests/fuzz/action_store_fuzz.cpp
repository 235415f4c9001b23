// libFuzzer target: the in-flight actions file read at start. Whatever it holds,
// parse_actions returns; what it accepts survives an encode/parse round trip.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "edgelink/actions/action_store.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = edgelink::parse_actions(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!r.error.empty() && !r.actions.empty()) std::abort();
  auto again = edgelink::parse_actions(edgelink::encode_actions(r.actions));
  if (!again.error.empty() || again.skipped != 0 || again.actions != r.actions) std::abort();
  return 0;
}

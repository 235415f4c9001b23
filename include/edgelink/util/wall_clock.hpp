#pragma once
// Unix milliseconds, for the times the status document shows (`started`, `since`).
// Durations and deadlines use the steady clock instead: the wall clock of a gateway
// without an RTC jumps when NTP first syncs.

#include <chrono>
#include <cstdint>

namespace edgelink {

inline uint64_t unix_ms(std::chrono::system_clock::time_point t = std::chrono::system_clock::now()) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

}  // namespace edgelink

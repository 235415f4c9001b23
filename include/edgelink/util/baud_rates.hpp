#pragma once
// The serial baud rates edgelink supports: the standard rates Linux termios names
// (B9600 ... B4000000); an arbitrary rate would need termios2/BOTHER. Config
// validation and SerialTransport both read this list, so a config that passes `check`
// always opens, and config does not depend on the transport.

#include <algorithm>
#include <array>
#include <cstdint>

namespace edgelink {

inline constexpr std::array<uint32_t, 18> kSupportedBaudRates = {
    9600,    19200,   38400,   57600,   115200,  230400,  460800,  500000,  576000,
    921600,  1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000};

constexpr bool supported_baud(uint32_t baud) {
  return std::find(kSupportedBaudRates.begin(), kSupportedBaudRates.end(), baud) != kSupportedBaudRates.end();
}

}  // namespace edgelink

#pragma once
// What an upload hands to the device side to push a stored file (spec/xstream.md §7.3);
// DeviceHub::push_file() takes it, so the device code needs nothing else of uploads.

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "edgelink/config/config.hpp"

namespace edgelink::uploads {

struct PushJob {
  std::string key;
  std::string device;
  std::string file_name;
  std::string endpoint;
  DeviceFileType file_type = DeviceFileType::Rtstream;
  uint64_t total = 0;
  uint32_t restarts = 3;  // [xstream] device_restarts
};

struct PushCallbacks {
  // Bytes of the stored file at `offset`, exactly out.size() of them; false: unreadable.
  std::function<bool(uint64_t offset, std::span<uint8_t> out)> read;
  std::function<void(uint64_t bytes)> progress;  // bytes the device has taken
  // Once, unless the push's handle is destroyed first. `detail` says why not, e.g.
  // "device mcu1: FileWriteFailed", "device mcu1: offline".
  std::function<void(bool ok, std::string detail)> done;
};

// A stored upload to publish as one byte data stream (xstream.md §7.2); DataStreams takes it.
struct StreamJob {
  std::string key;
  std::string app;
  std::string topic;       // the route's /ds/<topic>
  std::string name;        // "" = none
  std::string mime_type;   // "" = application/octet-stream
  std::string attributes;  // the request's JSON object of strings, or ""
  std::string path;        // the stored file
  uint64_t total = 0;
};

struct StreamCallbacks {
  std::function<void(const std::string& stream_id)> opened;  // the header is queued
  // The trailer is acknowledged (ok), or the stream ended otherwise (shutdown, unreadable).
  std::function<void(bool ok, std::string detail)> done;
};

}  // namespace edgelink::uploads

#pragma once
// Per-stream batches of data points (spec/mqtt.md): a batch is handed on when it holds
// batch_size points or flush_period after its first point, whichever comes first.
// Pure: time comes from an injected clock, batches leave through a sink callback.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "edgelink/apps/app_message.hpp"
#include "edgelink/config/config.hpp"

namespace edgelink {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

struct Batch {
  std::string stream;
  std::string topic;    // the stream's topic, expanded
  std::string payload;  // JSON array, or its LZ4 frame
  uint32_t points = 0;
  int priority = 0;
};

struct StreamCounters {
  uint64_t points = 0;
  uint64_t batches = 0;
  uint64_t bytes = 0;  // payload bytes handed on
};

class StreamBatcher {
 public:
  using Sink = std::function<void(Batch&&)>;
  using Clock = std::function<TimePoint()>;

  StreamBatcher(const Config& config, Sink sink, Clock clock);

  // Appends a point to its stream's batch, creating the stream on first use. Returns
  // false (nothing appended) when the stream is new and max_stream_count is reached.
  bool add(const DataPoint& point);

  // Hands on every batch whose flush_period has passed at `now`.
  void flush_due(TimePoint now);
  // Hands on every open batch (shutdown, reload).
  void flush_all();
  // The earliest flush deadline of an open batch.
  std::optional<TimePoint> next_deadline() const;
  // True once after add() opened a new batch: the caller may need to re-arm its timer.
  bool take_opened() { return std::exchange(opened_, false); }

  // Applies a new config: open batches are handed on first, then streams take their
  // new settings (dynamic streams take the new defaults).
  void reconfigure(const Config& config);

  struct StreamInfo {
    std::string name;
    bool configured;
    uint32_t open_points;
    StreamCounters counters;
  };
  std::vector<StreamInfo> streams() const;

 private:
  struct Stream {
    StreamConfig config;
    std::string topic;  // expanded
    bool configured = false;
    std::string buffer;  // "[" + points joined by ","; "]" added on flush
    uint32_t points = 0;
    TimePoint deadline{};
    size_t last_size = 0;  // capacity hint for the next batch
    StreamCounters counters;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  Stream* create(std::string_view name);
  void configure(Stream& stream, const StreamConfig& config, bool configured);
  void flush(Stream& stream);

  Config identity_;  // project_id and device_id only, for expand_topic()
  StreamConfig defaults_;
  size_t max_streams_;
  Sink sink_;
  Clock clock_;
  bool opened_ = false;
  // Apps send runs of points of one stream: the last stream found skips the hash.
  Stream* last_ = nullptr;
  std::unordered_map<std::string, Stream, Hash, std::equal_to<>> streams_;
};

// LZ4 frame format, as the `/lz4` topic carries it.
std::string lz4_frame_compress(std::string_view data);

}  // namespace edgelink

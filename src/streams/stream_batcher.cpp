#include "edgelink/streams/stream_batcher.hpp"

#include <lz4frame.h>

#include <stdexcept>

namespace edgelink {

StreamBatcher::StreamBatcher(const Config& config, Sink sink, Clock clock)
    : sink_(std::move(sink)), clock_(std::move(clock)) {
  reconfigure(config);
}

void StreamBatcher::configure(Stream& stream, const StreamConfig& config, bool configured) {
  std::string name = stream.config.name;
  stream.config = config;
  stream.config.name = name;
  stream.configured = configured;
  // The loader already put "/lz4" on a compressed stream's default topic; a configured
  // topic is used as written (uplink).
  stream.topic = expand_topic(config.topic, identity_, name);
}

void StreamBatcher::reconfigure(const Config& config) {
  flush_all();
  identity_.project_id = config.project_id;
  identity_.device_id = config.device_id;
  defaults_ = config.default_stream;
  max_streams_ = config.max_stream_count;
  for (auto& [name, stream] : streams_) {
    auto it = config.streams.find(name);
    if (it != config.streams.end())
      configure(stream, it->second, true);
    else
      configure(stream, defaults_, false);
  }
  for (const auto& [name, sc] : config.streams) {
    if (name == kActionStatusStream) continue;  // statuses never go through batches
    if (streams_.find(name) == streams_.end()) {
      Stream& s = streams_[name];
      s.config.name = name;
      configure(s, sc, true);
    }
  }
}

StreamBatcher::Stream* StreamBatcher::create(std::string_view name) {
  if (streams_.size() >= max_streams_) return nullptr;
  Stream& s = streams_[std::string(name)];
  s.config.name = std::string(name);
  configure(s, defaults_, false);
  return &s;
}

bool StreamBatcher::add(const DataPoint& point) {
  Stream* s = last_;
  if (!s || s->config.name != point.stream) {
    auto it = streams_.find(point.stream);
    s = it != streams_.end() ? &it->second : create(point.stream);
    if (!s) return false;
    last_ = s;  // unordered_map nodes stay put; streams are never erased
  }
  if (s->points == 0) {
    s->buffer.clear();
    s->buffer.reserve(s->last_size + point.head.size() + point.tail.size() + 2);
    s->buffer += '[';
    s->deadline = clock_() + s->config.flush_period;
    opened_ = true;
  } else {
    s->buffer += ',';
  }
  s->buffer.append(point.head);
  s->buffer.append(point.tail);
  ++s->points;
  ++s->counters.points;
  if (s->points >= s->config.batch_size) flush(*s);
  return true;
}

void StreamBatcher::flush(Stream& s) {
  if (s.points == 0) return;
  s.buffer += ']';
  s.last_size = s.buffer.size();
  Batch batch;
  batch.stream = s.config.name;
  batch.topic = s.topic;
  batch.points = s.points;
  batch.priority = s.config.priority;
  if (s.config.compression == Compression::Lz4)
    batch.payload = lz4_frame_compress(s.buffer);
  else
    batch.payload = std::move(s.buffer);
  s.buffer = std::string();
  s.points = 0;
  ++s.counters.batches;
  s.counters.bytes += batch.payload.size();
  sink_(std::move(batch));
}

void StreamBatcher::flush_due(TimePoint now) {
  for (auto& [name, s] : streams_)
    if (s.points > 0 && s.deadline <= now) flush(s);
}

void StreamBatcher::flush_all() {
  for (auto& [name, s] : streams_) flush(s);
}

std::optional<TimePoint> StreamBatcher::next_deadline() const {
  std::optional<TimePoint> best;
  for (const auto& [name, s] : streams_)
    if (s.points > 0 && (!best || s.deadline < *best)) best = s.deadline;
  return best;
}

std::vector<StreamBatcher::StreamInfo> StreamBatcher::streams() const {
  std::vector<StreamInfo> out;
  out.reserve(streams_.size());
  for (const auto& [name, s] : streams_) out.push_back({name, s.configured, s.points, s.counters});
  return out;
}

std::string lz4_frame_compress(std::string_view data) {
  LZ4F_preferences_t prefs{};
  prefs.frameInfo.contentSize = data.size();
  std::string out(LZ4F_compressFrameBound(data.size(), &prefs), '\0');
  size_t n = LZ4F_compressFrame(out.data(), out.size(), data.data(), data.size(), &prefs);
  // Only a too-small destination makes this fail, and the bound rules that out.
  if (LZ4F_isError(n)) throw std::logic_error(LZ4F_getErrorName(n));
  out.resize(n);
  return out;
}

}  // namespace edgelink

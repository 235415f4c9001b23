#include <catch2/catch.hpp>
#include <lz4frame.h>

#include "edgelink/apps/app_message.hpp"
#include "edgelink/streams/stream_batcher.hpp"

using namespace edgelink;
using namespace std::chrono_literals;

namespace {

struct Harness {
  Config config;
  std::vector<Batch> out;
  TimePoint now{};
  std::unique_ptr<StreamBatcher> batcher;

  explicit Harness(size_t batch_size = 3, Millis flush = 1000ms) {
    config.project_id = "p";
    config.device_id = "d";
    config.default_stream.topic = "/tenants/{tenant_id}/devices/{device_id}/events/{stream}/jsonarray";
    StreamConfig imu;
    imu.name = "imu";
    imu.topic = config.default_stream.topic;
    imu.batch_size = batch_size;
    imu.flush_period = flush;
    imu.priority = 7;
    config.streams["imu"] = imu;
    config.max_stream_count = 3;
    make();
  }
  void make() {
    batcher = std::make_unique<StreamBatcher>(
        config, [this](Batch&& b) { out.push_back(std::move(b)); }, [this] { return now; });
  }
  bool add(const std::string& line) {
    AppMessage m = parse_app_line(line);
    REQUIRE(std::holds_alternative<DataPoint>(m));
    return batcher->add(std::get<DataPoint>(m));
  }
};

std::string point(const char* stream, int seq, const char* extra = "") {
  return std::string("{\"stream\":\"") + stream + "\",\"sequence\":" + std::to_string(seq) +
         ",\"timestamp\":" + std::to_string(1000 + seq) + extra + "}";
}

}  // namespace

TEST_CASE("a batch is handed on when it reaches batch_size, as a JSON array without the stream key") {
  Harness h(3);
  REQUIRE(h.add(point("imu", 1, ",\"ax\":0.5")));
  REQUIRE(h.add(point("imu", 2)));
  CHECK(h.out.empty());
  REQUIRE(h.add(point("imu", 3, ",\"tag\":{\"a\":[1,2]}")));
  REQUIRE(h.out.size() == 1);
  const Batch& b = h.out[0];
  CHECK(b.stream == "imu");
  CHECK(b.topic == "/tenants/p/devices/d/events/imu/jsonarray");
  CHECK(b.points == 3);
  CHECK(b.priority == 7);
  CHECK(b.payload ==
        "[{\"sequence\":1,\"timestamp\":1001,\"ax\":0.5},{\"sequence\":2,\"timestamp\":1002},"
        "{\"sequence\":3,\"timestamp\":1003,\"tag\":{\"a\":[1,2]}}]");
  CHECK(is_valid_json(b.payload));
  // The next point opens a fresh batch.
  REQUIRE(h.add(point("imu", 4)));
  CHECK(h.out.size() == 1);
}

TEST_CASE("flush_period counts from the batch's first point, not its last") {
  Harness h(100, 1000ms);
  h.now = TimePoint{} + 10s;
  h.add(point("imu", 1));
  REQUIRE(h.batcher->take_opened());
  REQUIRE(h.batcher->next_deadline() == h.now + 1000ms);
  h.now += 900ms;
  h.add(point("imu", 2));
  CHECK_FALSE(h.batcher->take_opened());
  CHECK(h.batcher->next_deadline() == TimePoint{} + 11s);
  h.batcher->flush_due(TimePoint{} + 10s + 999ms);
  CHECK(h.out.empty());
  h.batcher->flush_due(TimePoint{} + 11s);
  REQUIRE(h.out.size() == 1);
  CHECK(h.out[0].points == 2);
  CHECK_FALSE(h.batcher->next_deadline().has_value());
}

TEST_CASE("dynamic streams take the defaults and are limited by max_stream_count") {
  Harness h;
  h.config.default_stream.batch_size = 1;
  h.make();
  REQUIRE(h.add(point("temp", 1)));  // imu + temp
  REQUIRE(h.out.size() == 1);
  CHECK(h.out[0].topic == "/tenants/p/devices/d/events/temp/jsonarray");
  CHECK(h.out[0].priority == 0);
  REQUIRE(h.add(point("hum", 1)));        // 3 streams: the limit
  CHECK_FALSE(h.add(point("extra", 1)));  // a fourth is refused
  CHECK(h.out.size() == 2);
  REQUIRE(h.add(point("temp", 2)));  // known streams still work
  CHECK(h.out.size() == 3);
}

TEST_CASE("flush_all hands on every open batch; empty streams produce nothing") {
  Harness h(100);
  h.add(point("imu", 1));
  h.add(point("temp", 1));
  h.batcher->flush_all();
  CHECK(h.out.size() == 2);
  h.batcher->flush_all();
  CHECK(h.out.size() == 2);
}

TEST_CASE("LZ4 streams publish an LZ4 frame of the array on their topic as configured") {
  Harness h(2);
  h.config.streams["imu"].compression = Compression::Lz4;
  // The loader decides the topic (default + "/lz4", or the configured one as written).
  h.config.streams["imu"].topic = "/tenants/{tenant_id}/devices/{device_id}/events/{stream}/jsonarray/lz4";
  h.make();
  h.add(point("imu", 1));
  h.add(point("imu", 2));
  REQUIRE(h.out.size() == 1);
  CHECK(h.out[0].topic == "/tenants/p/devices/d/events/imu/jsonarray/lz4");
  // Decompress with liblz4's frame API and compare with the plain array.
  LZ4F_dctx* dctx = nullptr;
  REQUIRE(!LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)));
  std::string plain(4096, '\0');
  size_t dst = plain.size(), src = h.out[0].payload.size();
  size_t rc = LZ4F_decompress(dctx, plain.data(), &dst, h.out[0].payload.data(), &src, nullptr);
  LZ4F_freeDecompressionContext(dctx);
  REQUIRE(rc == 0);
  plain.resize(dst);
  CHECK(plain == "[{\"sequence\":1,\"timestamp\":1001},{\"sequence\":2,\"timestamp\":1002}]");
}

TEST_CASE("reconfigure flushes open batches and applies new settings") {
  Harness h(100);
  h.add(point("imu", 1));
  h.config.streams["imu"].batch_size = 1;
  h.config.streams["imu"].topic = "/custom/{stream}";
  h.batcher->reconfigure(h.config);
  REQUIRE(h.out.size() == 1);  // the open batch went out under the old settings
  CHECK(h.out[0].topic == "/tenants/p/devices/d/events/imu/jsonarray");
  h.add(point("imu", 2));
  REQUIRE(h.out.size() == 2);
  CHECK(h.out[1].topic == "/custom/imu");
}

TEST_CASE("counters per stream") {
  Harness h(2);
  for (int i = 1; i <= 5; ++i) h.add(point("imu", i));
  auto streams = h.batcher->streams();
  REQUIRE(streams.size() == 1);
  CHECK(streams[0].counters.points == 5);
  CHECK(streams[0].counters.batches == 2);
  CHECK(streams[0].open_points == 1);
  CHECK(streams[0].configured);
}

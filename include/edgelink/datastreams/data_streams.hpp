#pragma once
// Chunked data streams (spec/datastreams.md): outbound streams written by apps
// (DataStreamWriter's job: buffer, cut chunks, header/chunks/trailer through the outbox
// in order, always a trailer) and inbound streams from the cloud to subscribed apps
// (DataStreamReader's job: route by topic, drop duplicates, end on gaps, limits and
// timeouts). Both sides live in this one component, which the app connections reach
// through DsHandler and the daemon through on_mqtt_message()/on_acked().
//
// Always a trailer (§6.1): before a header is queued, the stream's id and topic are
// written to <persistence_path>/datastreams/open/<id>.json and fsync'd; the record goes
// when the trailer is queued. At start-up each record left gets an AbnormalEnd trailer,
// queued after whatever of the stream the outbox restored from the spool.
//
// Back-pressure (§8): a stream's chunk bytes not yet acknowledged by the broker are
// counted; above max_buffered_bytes_per_stream the writing connection is not read until
// they drop below half of it.

#include <chrono>
#include <deque>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <asio.hpp>

#include "edgelink/apps/ds_peer.hpp"
#include "edgelink/config/config.hpp"
#include "edgelink/datastreams/ds_codec.hpp"
#include "edgelink/uploads/push_job.hpp"
#include "edgelink/util/json_object.hpp"
#include "edgelink/util/log.hpp"

namespace edgelink::datastreams {

struct DataStreamsCallbacks {
  // A QoS 1 publish through the outbox; returns its outbox id (acknowledged by on_acked).
  std::function<uint64_t(std::string topic, std::string payload, int priority)> publish;
};

class DataStreams : public DsHandler {
 public:
  DataStreams(asio::io_context& io, const Config& config, DataStreamsCallbacks callbacks);
  ~DataStreams() override;
  DataStreams(const DataStreams&) = delete;
  DataStreams& operator=(const DataStreams&) = delete;

  // Finds the streams an unclean exit left open. Errors stop the daemon.
  std::vector<std::string> start();
  // Their AbnormalEnd trailers: called once the spool's entries are back in the outbox
  // (or the spool cannot be read), so each trailer follows what is left of its stream.
  void send_leftover_trailers();
  void reload(const Config& config);
  // SIGTERM: every open stream ends with Shutdown (buffered bytes first); inbound ones too.
  void shutdown();

  bool on_ds_line(const std::string& app, std::string_view line, std::shared_ptr<DsConnection> conn) override;
  void on_connection_closed(uint64_t connection_id) override;

  // An MQTT message; true when it was on the inbound topic (then it is handled here).
  bool on_mqtt_message(const std::string& topic, const std::string& payload);
  // The inbound wildcard subscription (topic_in with {topic} as '#').
  std::string subscription() const;
  void on_acked(uint64_t outbox_id);

  // xstream.md §7.2: a stored upload published as one byte stream once a writer slot is
  // free; chunks are read from the file as the outbox takes them. Destroying the handle
  // forgets the job (its callbacks are not called).
  std::shared_ptr<void> publish_file(const uploads::StreamJob& job, uploads::StreamCallbacks callbacks);

  // The status document's "datastreams" (§9).
  void write_status(JsonObject& out) const;

 private:
  struct Writer;
  struct InStream;
  struct Leftover {
    std::string id, mqtt, path;
    int priority = 0;
  };
  struct Reader {
    std::string app;
    uint64_t conn_id = 0;
    std::weak_ptr<DsConnection> conn;
  };

  struct FileJob {
    uint64_t id = 0;
    uploads::StreamJob job;
    uploads::StreamCallbacks callbacks;
  };
  void open(const std::string& app, const OpenLine& o, const std::shared_ptr<DsConnection>& conn);
  // Records the stream, queues its header; nullptr with `why` set when it cannot.
  Writer* start_stream(const Header& h, const std::string& app, std::string& why);
  void start_files();
  void pump_file(Writer& w);
  void write(Writer& w, const WriteLine& line);
  void cut_chunks(Writer& w, bool all);
  void publish_chunk(Writer& w, size_t n);
  void end(const std::string& id, const std::string& reason, const Attributes& extra, bool drop_buffer);
  void arm_idle(Writer& w);
  void update_hold(uint64_t conn_id);
  void subscribe(const std::string& app, const SubscribeLine& s, const std::shared_ptr<DsConnection>& conn);
  void end_in(const std::string& id, const std::string& reason, const Attributes& attributes);
  void drop_in(const char* why);
  void arm_in_idle(InStream& s);
  std::string record_path(const std::string& id) const;
  std::string mqtt_topic(const std::string& topic) const;
  void error(DsConnection& conn, LineError e);

  asio::io_context& io_;
  Config config_;
  DataStreamsCallbacks callbacks_;
  std::string dir_;  // <persistence_path>/datastreams/open
  std::map<std::string, std::unique_ptr<Writer>> writers_;
  std::map<std::string, std::pair<uint64_t, std::chrono::steady_clock::time_point>> ended_;  // id -> (conn, until)
  std::map<uint64_t, std::pair<std::string, size_t>> unacked_;  // outbox id -> (stream id, chunk bytes)
  std::map<std::string, Reader> readers_;                        // topic -> its reader
  std::map<std::string, std::unique_ptr<InStream>> in_streams_;  // active inbound streams
  std::set<std::string> in_ended_;                               // ended inbound ids (later messages dropped)
  std::map<uint64_t, bool> held_;                                // connections held for back-pressure
  bool stopping_ = false;
  std::vector<Leftover> leftovers_;
  std::deque<FileJob> file_queue_;  // waiting for a writer slot
  std::map<uint64_t, uploads::StreamCallbacks> trailer_waiters_;  // outbox id of a file stream's trailer
  uint64_t next_job_ = 1;

  // §9 counters.
  uint64_t bytes_out_ = 0, chunks_out_ = 0, bytes_in_ = 0, chunks_in_ = 0;
  std::map<std::string, uint64_t> ends_out_, ends_in_, errors_, dropped_in_;
  log::RateLimiter limiter_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace edgelink::datastreams

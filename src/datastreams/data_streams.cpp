#include "edgelink/datastreams/data_streams.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "edgelink/uploads/upload_io.hpp"  // read_at
#include "edgelink/util/sha256.hpp"
#include "edgelink/util/wall_clock.hpp"

namespace edgelink::datastreams {
namespace {
constexpr char kLog[] = "datastreams";
using Clock = std::chrono::steady_clock;

// Writes `content` to `path` and fsyncs file and directory (§6.1: before the header).
bool write_durable(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return false;
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) && ::fsync(fd) == 0;
  ::close(fd);
  ok = ok && ::rename(tmp.c_str(), path.c_str()) == 0;
  if (ok) {
    const int dir = ::open(std::filesystem::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }
  return ok;
}

std::string reason_label(const std::string& reason) { return reason.empty() ? "normal" : reason; }

}  // namespace

struct DataStreams::Writer {
  std::string id, app, topic, mqtt;
  bool text = false;
  std::optional<uint64_t> total;
  uint64_t conn_id = 0;
  std::weak_ptr<DsConnection> conn;
  std::string buf;         // written, not cut into a chunk yet
  uint64_t received = 0;   // bytes the app wrote
  uint64_t out = 0;        // bytes in chunks
  uint64_t chunks = 0;
  uint64_t unacked = 0;    // chunk bytes not acknowledged by the broker
  bool holding = false;
  Sha256 sha;
  // A stored upload (xstream.md §7.2) rather than an app's writes.
  bool from_file = false;
  std::string file;
  uint64_t file_pos = 0;
  uint64_t job_id = 0;
  uploads::StreamCallbacks file_callbacks;
  asio::steady_timer chunk_timer, idle_timer;
  Writer(asio::io_context& io) : chunk_timer(io), idle_timer(io) {}
};

struct DataStreams::InStream {
  std::string id, topic;
  bool text = false;
  std::optional<uint64_t> total;
  uint64_t next = 0;
  uint64_t bytes = 0;
  std::vector<uint64_t> versions;  // delivered version per chunk index
  asio::steady_timer idle;
  InStream(asio::io_context& io) : idle(io) {}
};

DataStreams::DataStreams(asio::io_context& io, const Config& config, DataStreamsCallbacks callbacks)
    : io_(io), config_(config), callbacks_(std::move(callbacks)),
      dir_((std::filesystem::path(config.persistence_path) / "datastreams" / "open").string()) {}

DataStreams::~DataStreams() = default;

std::string DataStreams::record_path(const std::string& id) const { return dir_ + "/" + id + ".json"; }

std::string DataStreams::mqtt_topic(const std::string& topic) const {
  std::string t = expand_topic(config_.datastreams.topic, config_);
  return t.substr(0, t.size() - 7) + topic;  // the template ends in "{topic}" (checked by the loader)
}

std::string DataStreams::subscription() const {
  std::string t = expand_topic(config_.datastreams.topic_in, config_);
  return t.substr(0, t.size() - 7) + "#";
}

std::vector<std::string> DataStreams::start() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return {"cannot create " + dir_ + ": " + ec.message()};
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string path = entry.path().string();
    if (entry.path().extension() != ".json") {
      std::filesystem::remove(path, ec);
      continue;
    }
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    rapidjson::Document doc;
    doc.Parse(text.str().c_str());
    if (!doc.IsObject() || !doc.HasMember("stream_id") || !doc["stream_id"].IsString() || !doc.HasMember("mqtt_topic") ||
        !doc["mqtt_topic"].IsString()) {
      log::warn(kLog, "deleting ", path, ": not a readable stream record");
      std::filesystem::remove(path, ec);
      continue;
    }
    Leftover l;
    l.id = doc["stream_id"].GetString();
    l.mqtt = doc["mqtt_topic"].GetString();
    l.priority = doc.HasMember("priority") && doc["priority"].IsInt() ? doc["priority"].GetInt() : 0;
    l.path = path;
    leftovers_.push_back(std::move(l));
  }
  return {};
}

// §6.1: after an unclean exit, once the outbox holds what the spool kept of those streams
// (the trailer goes after it); no bytes/chunks/sha256 (they were not recorded).
void DataStreams::send_leftover_trailers() {
  for (const Leftover& l : std::exchange(leftovers_, {})) {
    callbacks_.publish(l.mqtt, encode_trailer(l.id, kAbnormalEnd, {}), l.priority);
    ++ends_out_[kAbnormalEnd];
    log::warn(kLog, "stream ", l.id, " was left open by the last run: AbnormalEnd trailer sent");
    std::error_code ec;
    std::filesystem::remove(l.path, ec);
  }
}

void DataStreams::reload(const Config& config) {
  const std::string dir = dir_;
  config_ = config;
  dir_ = dir;  // persistence_path changes wait for a restart
}

void DataStreams::error(DsConnection& conn, LineError e) {
  ++errors_[to_string(e.code)];
  conn.send_line(error_line(e));
}

bool DataStreams::on_ds_line(const std::string& app, std::string_view line, std::shared_ptr<DsConnection> conn) {
  auto parsed = parse_ds_line(line);
  if (!parsed) return false;
  if (auto* e = std::get_if<LineError>(&*parsed)) {
    error(*conn, *e);
  } else if (auto* o = std::get_if<OpenLine>(&*parsed)) {
    open(app, *o, conn);
  } else if (auto* s = std::get_if<SubscribeLine>(&*parsed)) {
    subscribe(app, *s, conn);
  } else {
    // write, close, abort: a stream of this connection.
    std::string id;
    if (auto* wl = std::get_if<WriteLine>(&*parsed)) id = wl->stream_id;
    if (auto* cl = std::get_if<CloseLine>(&*parsed)) id = cl->stream_id;
    if (auto* al = std::get_if<AbortLine>(&*parsed)) id = al->stream_id;
    auto it = writers_.find(id);
    if (it == writers_.end() || it->second->conn_id != conn->connection_id()) {
      auto e = ended_.find(id);
      const bool closed = it == writers_.end() && e != ended_.end() && e->second.first == conn->connection_id() &&
                          Clock::now() < e->second.second;
      error(*conn, LineError{closed ? ErrorCode::Closed : ErrorCode::UnknownStream,
                             closed ? "the stream has ended" : "no such stream on this connection", std::nullopt, id});
      return true;
    }
    Writer& w = *it->second;
    if (auto* wl = std::get_if<WriteLine>(&*parsed)) {
      write(w, *wl);
    } else if (auto* c = std::get_if<CloseLine>(&*parsed)) {
      const bool short_ = w.total && w.received < *w.total;
      end(id, short_ ? kIncomplete : "", c->attributes, false);
    } else if (auto* a = std::get_if<AbortLine>(&*parsed)) {
      end(id, a->reason, {}, true);
    }
  }
  return true;
}

void DataStreams::open(const std::string& app, const OpenLine& o, const std::shared_ptr<DsConnection>& conn) {
  const DataStreamsConfig& dc = config_.datastreams;
  if (stopping_) return error(*conn, LineError{ErrorCode::Full, "edgelink is stopping", o.req, std::nullopt});
  if (writers_.size() >= dc.max_writers)
    return error(*conn, LineError{ErrorCode::Full, "max_writers (" + std::to_string(dc.max_writers) +
                                                       ") streams are open",
                                  o.req, std::nullopt});
  Header h;
  h.stream_id = new_stream_id();
  h.timestamp = unix_ms();
  h.topic = o.topic;
  h.text = o.text;
  h.mime_type = o.mime_type;
  h.total_length = o.total_length;
  h.name = o.name;
  h.attributes = o.attributes;
  h.text_meta = o.text_meta;
  h.sender = "app:" + app;
  if (encode_header(h).size() > kMaxHeaderBytes)
    return error(*conn, LineError{ErrorCode::HeaderTooLarge, "the encoded header is over 4096 bytes", o.req,
                                  std::nullopt});
  std::string why;
  Writer* w = start_stream(h, app, why);
  if (!w) return error(*conn, LineError{ErrorCode::Full, why, o.req, std::nullopt});
  w->conn_id = conn->connection_id();
  w->conn = conn;
  conn->send_line(opened_line(o.req, w->id));
  arm_idle(*w);
}

DataStreams::Writer* DataStreams::start_stream(const Header& h, const std::string& app, std::string& why) {
  const DataStreamsConfig& dc = config_.datastreams;
  auto w = std::make_unique<Writer>(io_);
  w->id = h.stream_id;
  w->app = app;
  w->topic = h.topic;
  w->mqtt = mqtt_topic(h.topic);
  w->text = h.text;
  w->total = h.total_length;
  // Always a trailer: the record is durable before the header is queued.
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> jw(buf);
  jw.StartObject();
  jw.Key("stream_id");
  jw.String(w->id.c_str());
  jw.Key("mqtt_topic");
  jw.String(w->mqtt.c_str());
  jw.Key("priority");
  jw.Int(dc.priority);
  jw.EndObject();
  if (!write_durable(record_path(w->id), std::string(buf.GetString(), buf.GetSize()))) {
    log::limited(limiter_, "ds-record", LogLevel::Error, kLog, "cannot write ", record_path(w->id));
    why = "cannot record the stream under persistence_path";
    return nullptr;
  }
  callbacks_.publish(w->mqtt, encode_header(h), dc.priority);
  log::info(kLog, app, ": stream ", w->id, " opened on ", h.topic);
  Writer* raw = w.get();
  writers_[w->id] = std::move(w);
  return raw;
}

std::shared_ptr<void> DataStreams::publish_file(const uploads::StreamJob& job, uploads::StreamCallbacks callbacks) {
  const uint64_t id = next_job_++;
  file_queue_.push_back(FileJob{id, job, std::move(callbacks)});
  asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
    if (!alive.expired()) start_files();
  });
  return std::shared_ptr<void>(new int(0), [this, id, alive = std::weak_ptr<int>(alive_)](int* p) {
    delete p;
    if (alive.expired()) return;
    for (auto it = file_queue_.begin(); it != file_queue_.end(); ++it)
      if (it->id == id) {
        file_queue_.erase(it);
        return;
      }
    for (auto& [sid, w] : writers_)
      if (w->from_file && w->job_id == id) w->file_callbacks = {};
  });
}

// Stored uploads wait for a free writer slot (xstream.md §7.2, max_writers).
void DataStreams::start_files() {
  while (!stopping_ && !file_queue_.empty() && writers_.size() < config_.datastreams.max_writers) {
    FileJob fj = std::move(file_queue_.front());
    file_queue_.pop_front();
    const uploads::StreamJob& j = fj.job;
    Header h;
    h.stream_id = new_stream_id();
    h.timestamp = unix_ms();
    h.topic = j.topic;
    h.mime_type = j.mime_type.empty() ? "application/octet-stream" : j.mime_type;
    h.total_length = j.total;
    if (!j.name.empty()) h.name = j.name;
    if (!j.attributes.empty()) {
      rapidjson::Document doc;
      doc.Parse(j.attributes.c_str());
      if (doc.IsObject())
        for (auto m = doc.MemberBegin(); m != doc.MemberEnd(); ++m)
          if (m->value.IsString()) h.attributes.emplace_back(m->name.GetString(), m->value.GetString());
    }
    h.attributes.emplace_back("x-stream-key", j.key);
    h.sender = "app:" + j.app;
    std::string why;
    Writer* w = start_stream(h, j.app, why);
    if (!w) {
      if (fj.callbacks.done) fj.callbacks.done(false, why);
      continue;
    }
    w->from_file = true;
    w->file = j.path;
    w->job_id = fj.id;
    w->file_callbacks = std::move(fj.callbacks);
    if (w->file_callbacks.opened) w->file_callbacks.opened(w->id);
    pump_file(*w);
  }
}

// Chunks are read from the stored file as the outbox takes them: at most
// max_buffered_bytes_per_stream of it is unacknowledged at a time.
void DataStreams::pump_file(Writer& w) {
  const size_t size = config_.datastreams.chunk_size;
  const uint64_t total = *w.total;
  while (w.file_pos < total && w.unacked < config_.datastreams.max_buffered_bytes_per_stream) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(size, total - w.file_pos));
    w.buf.resize(n);
    if (!uploads::read_at(w.file, w.file_pos, reinterpret_cast<uint8_t*>(w.buf.data()), n)) {
      w.buf.clear();
      log::error(kLog, "stream ", w.id, ": cannot read ", w.file);
      end(w.id, kAbnormalEnd, {}, true);
      return;
    }
    w.file_pos += n;
    w.received += n;
    publish_chunk(w, n);
  }
  if (w.file_pos >= total) end(w.id, "", {}, false);
}

void DataStreams::arm_idle(Writer& w) {
  if (w.from_file) return;  // no app writes to wait for
  w.idle_timer.expires_after(config_.datastreams.idle_timeout);
  w.idle_timer.async_wait([this, id = w.id, alive = std::weak_ptr<int>(alive_)](asio::error_code ec) {
    if (ec || alive.expired() || !writers_.count(id)) return;
    end(id, kTimeout, {}, false);
  });
}

void DataStreams::write(Writer& w, const WriteLine& line) {
  auto conn = w.conn.lock();
  if (line.text != w.text) {
    if (conn)
      error(*conn, LineError{ErrorCode::BadRequest, w.text ? "a text stream takes \"text\"" : "a byte stream takes \"data\"",
                             std::nullopt, w.id});
    return;
  }
  arm_idle(w);
  if (line.decode_failed) return end(w.id, kDecodeFailed, {}, false);
  if (line.bytes.empty()) return;
  if (w.total && w.received + line.bytes.size() > *w.total) return end(w.id, kLengthExceeded, {}, false);
  w.received += line.bytes.size();
  w.buf += line.bytes;
  cut_chunks(w, false);
  if (w.buf.empty()) return;
  // A partial chunk goes out after chunk_delay without a write (§4).
  w.chunk_timer.expires_after(config_.datastreams.chunk_delay);
  w.chunk_timer.async_wait([this, id = w.id, alive = std::weak_ptr<int>(alive_)](asio::error_code ec) {
    if (ec || alive.expired()) return;
    auto it = writers_.find(id);
    if (it != writers_.end()) cut_chunks(*it->second, true);
  });
}

void DataStreams::cut_chunks(Writer& w, bool all) {
  const size_t size = config_.datastreams.chunk_size;
  while (w.buf.size() >= size || (all && !w.buf.empty())) {
    const size_t n = cut_point(w.buf, size, w.text);
    publish_chunk(w, n);
  }
}

void DataStreams::publish_chunk(Writer& w, size_t n) {
  const std::string_view bytes(w.buf.data(), n);
  w.sha.update(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  const uint64_t id = callbacks_.publish(w.mqtt, encode_chunk(w.id, w.chunks, bytes), config_.datastreams.priority);
  unacked_[id] = {w.id, n};
  ++w.chunks;
  w.out += n;
  w.unacked += n;
  ++chunks_out_;
  bytes_out_ += n;
  w.buf.erase(0, n);
  if (!w.from_file && !w.holding && w.unacked > config_.datastreams.max_buffered_bytes_per_stream) {
    w.holding = true;
    w.idle_timer.cancel();  // §6.1: the idle timeout pauses while edgelink holds back reading
    update_hold(w.conn_id);
  }
}

void DataStreams::on_acked(uint64_t outbox_id) {
  if (auto t = trailer_waiters_.find(outbox_id); t != trailer_waiters_.end()) {
    auto cb = std::move(t->second);
    trailer_waiters_.erase(t);
    if (cb.done) cb.done(true, {});
    return;
  }
  auto it = unacked_.find(outbox_id);
  if (it == unacked_.end()) return;
  auto [id, n] = it->second;
  unacked_.erase(it);
  auto w = writers_.find(id);
  if (w == writers_.end()) return;
  Writer& wr = *w->second;
  wr.unacked -= std::min<uint64_t>(wr.unacked, n);
  if (wr.from_file) return pump_file(wr);
  if (wr.holding && wr.unacked <= config_.datastreams.max_buffered_bytes_per_stream / 2) {
    wr.holding = false;
    arm_idle(wr);
    update_hold(wr.conn_id);
  }
}

void DataStreams::update_hold(uint64_t conn_id) {
  bool hold = false;
  std::shared_ptr<DsConnection> conn;
  for (const auto& [id, w] : writers_) {
    if (w->conn_id != conn_id) continue;
    hold = hold || w->holding;
    if (!conn) conn = w->conn.lock();
  }
  if (held_[conn_id] == hold) return;
  held_[conn_id] = hold;
  if (conn) conn->hold_reading(hold);
}

void DataStreams::end(const std::string& id, const std::string& reason, const Attributes& extra, bool drop_buffer) {
  auto it = writers_.find(id);
  if (it == writers_.end()) return;
  Writer& w = *it->second;
  w.chunk_timer.cancel();
  w.idle_timer.cancel();
  if (drop_buffer)
    w.buf.clear();
  else
    cut_chunks(w, true);
  Attributes attrs;
  for (const auto& [k, v] : extra)
    if (k != "bytes" && k != "chunks" && k != "sha256") attrs.emplace_back(k, v);
  attrs.emplace_back("bytes", std::to_string(w.out));
  attrs.emplace_back("chunks", std::to_string(w.chunks));
  attrs.emplace_back("sha256", w.sha.hex());
  const uint64_t trailer = callbacks_.publish(w.mqtt, encode_trailer(w.id, reason, attrs), config_.datastreams.priority);
  std::error_code ec;
  std::filesystem::remove(record_path(w.id), ec);
  if (w.from_file && w.file_callbacks.done) {
    if (reason.empty())
      trailer_waiters_[trailer] = std::move(w.file_callbacks);  // done once the broker has the trailer
    else
      w.file_callbacks.done(false, reason);
  }
  ++ends_out_[reason_label(reason)];
  if (auto conn = w.conn.lock(); conn && conn->connected()) conn->send_line(closed_line(w.id, w.out, w.chunks, reason));
  log::info(kLog, w.app, ": stream ", w.id, " ended (", reason.empty() ? "normal" : reason, "): ", w.out, " bytes in ",
            w.chunks, " chunks");
  const uint64_t conn_id = w.conn_id;
  const bool was_holding = w.holding;
  ended_[id] = {conn_id, Clock::now() + config_.datastreams.idle_timeout};
  writers_.erase(it);
  if (was_holding) update_hold(conn_id);
  if (!file_queue_.empty())
    asio::post(io_, [this, alive = std::weak_ptr<int>(alive_)] {
      if (!alive.expired()) start_files();
    });
  // Forget ended ids past their time.
  for (auto e = ended_.begin(); e != ended_.end();)
    e = Clock::now() >= e->second.second ? ended_.erase(e) : std::next(e);
}

void DataStreams::on_connection_closed(uint64_t conn_id) {
  std::vector<std::string> ids;
  for (const auto& [id, w] : writers_)
    if (w->conn_id == conn_id) ids.push_back(id);
  for (const auto& id : ids) end(id, kAbnormalEnd, {}, false);
  held_.erase(conn_id);
  for (auto r = readers_.begin(); r != readers_.end();) {
    if (r->second.conn_id != conn_id) {
      ++r;
      continue;
    }
    for (auto s = in_streams_.begin(); s != in_streams_.end();) {
      if (s->second->topic == r->first) {
        ++dropped_in_["abandoned"];
        in_ended_.insert(s->first);
        s = in_streams_.erase(s);
      } else {
        ++s;
      }
    }
    r = readers_.erase(r);
  }
}

void DataStreams::shutdown() {
  stopping_ = true;
  std::vector<std::string> ids;
  for (const auto& [id, w] : writers_) ids.push_back(id);
  for (const auto& id : ids) end(id, kShutdown, {}, false);
  std::vector<std::string> in;
  for (const auto& [id, s] : in_streams_) in.push_back(id);
  for (const auto& id : in) end_in(id, kShutdown, {});
}

// ---- inbound ------------------------------------------------------------------------

void DataStreams::subscribe(const std::string& app, const SubscribeLine& s, const std::shared_ptr<DsConnection>& conn) {
  auto it = readers_.find(s.topic);
  if (!s.subscribe) {
    if (it != readers_.end() && it->second.conn_id == conn->connection_id()) {
      std::vector<std::string> ids;
      for (const auto& [id, st] : in_streams_)
        if (st->topic == s.topic) ids.push_back(id);
      for (const auto& id : ids) end_in(id, kCancelled, {});
      readers_.erase(it);
    }
    conn->send_line(subscribed_line(s.req, s.topic, false));
    return;
  }
  if (it != readers_.end())
    return error(*conn, LineError{ErrorCode::HandlerAlreadyRegistered, "the topic already has a reader", s.req,
                                  std::nullopt});
  if (readers_.size() >= config_.datastreams.max_readers)
    return error(*conn, LineError{ErrorCode::Full,
                                  "max_readers (" + std::to_string(config_.datastreams.max_readers) + ") topics are subscribed",
                                  s.req, std::nullopt});
  readers_[s.topic] = Reader{app, conn->connection_id(), conn};
  conn->send_line(subscribed_line(s.req, s.topic, true));
}

void DataStreams::drop_in(const char* why) { ++dropped_in_[why]; }

void DataStreams::arm_in_idle(InStream& s) {
  s.idle.expires_after(config_.datastreams.idle_timeout);
  s.idle.async_wait([this, id = s.id, alive = std::weak_ptr<int>(alive_)](asio::error_code ec) {
    if (ec || alive.expired() || !in_streams_.count(id)) return;
    end_in(id, kTimeout, {});
  });
}

void DataStreams::end_in(const std::string& id, const std::string& reason, const Attributes& attributes) {
  auto it = in_streams_.find(id);
  if (it == in_streams_.end()) return;
  InStream& s = *it->second;
  s.idle.cancel();
  if (auto r = readers_.find(s.topic); r != readers_.end())
    if (auto conn = r->second.conn.lock(); conn && conn->connected()) conn->send_line(rx_close_line(id, reason, attributes));
  ++ends_in_[reason_label(reason)];
  in_ended_.insert(id);
  in_streams_.erase(it);
}

bool DataStreams::on_mqtt_message(const std::string& topic, const std::string& payload) {
  const std::string sub = subscription();
  const std::string prefix = sub.substr(0, sub.size() - 1);
  if (topic.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string routed = topic.substr(prefix.size());
  InMessage msg = parse_inbound(payload);
  if (auto* bad = std::get_if<Invalid>(&msg)) {
    // A chunk whose content is not base64 ends its stream (DecodeFailed).
    if (!bad->stream_id.empty() && in_streams_.count(bad->stream_id)) {
      end_in(bad->stream_id, kDecodeFailed, {});
      return true;
    }
    drop_in("invalid");
    return true;
  }
  if (auto* h = std::get_if<InHeader>(&msg)) {
    auto r = readers_.find(routed);
    if (r == readers_.end()) return drop_in("no_reader"), true;
    if (in_streams_.count(h->header.stream_id)) return drop_in("already_opened"), true;
    size_t active = 0;
    for (const auto& [id, s] : in_streams_) active += s->topic == routed;
    if (active >= config_.datastreams.max_streams_per_topic) return drop_in("busy"), true;
    auto conn = r->second.conn.lock();
    if (!conn || !conn->connected()) return drop_in("no_reader"), true;
    auto s = std::make_unique<InStream>(io_);
    s->id = h->header.stream_id;
    s->topic = routed;
    s->text = h->header.text;
    s->total = h->header.total_length;
    in_ended_.erase(s->id);
    conn->send_line(rx_open_line(*h, routed));
    arm_in_idle(*s);
    in_streams_[s->id] = std::move(s);
    return true;
  }
  if (auto* c = std::get_if<InChunk>(&msg)) {
    auto it = in_streams_.find(c->stream_id);
    if (it == in_streams_.end()) return drop_in("unknown_stream"), true;
    InStream& s = *it->second;
    auto r = readers_.find(s.topic);
    auto conn = r == readers_.end() ? nullptr : r->second.conn.lock();
    if (!conn) return drop_in("unknown_stream"), true;
    if (c->index > s.next) {
      end_in(s.id, kIncomplete, {});
      return true;
    }
    if (s.text && !valid_utf8(c->content)) {
      end_in(s.id, kDecodeFailed, {});
      return true;
    }
    if (c->index < s.next) {
      if (c->version <= s.versions[c->index]) return drop_in("duplicate"), true;
      s.versions[c->index] = c->version;
      conn->send_line(rx_chunk_line(s.id, c->index, c->content, s.text, c->version));
      arm_in_idle(s);
      return true;
    }
    if (s.total && s.bytes + c->content.size() > *s.total) {
      end_in(s.id, kLengthExceeded, {});
      return true;
    }
    s.bytes += c->content.size();
    ++s.next;
    s.versions.push_back(c->version);
    ++chunks_in_;
    bytes_in_ += c->content.size();
    conn->send_line(rx_chunk_line(s.id, c->index, c->content, s.text, std::nullopt));
    arm_in_idle(s);
    // §8: an app that does not read cannot make edgelink buffer without end.
    if (conn->queued_bytes() > config_.datastreams.max_buffered_bytes_per_stream) end_in(s.id, kOverflow, {});
    return true;
  }
  auto& t = std::get<InTrailer>(msg);
  auto it = in_streams_.find(t.stream_id);
  if (it == in_streams_.end()) return drop_in("unknown_stream"), true;
  const InStream& s = *it->second;
  const bool short_ = t.reason.empty() && s.total && s.bytes < *s.total;
  end_in(t.stream_id, short_ ? kIncomplete : t.reason, t.attributes);
  return true;
}

void DataStreams::write_status(JsonObject& out) const {
  auto& a = out.allocator();
  rapidjson::Value writers(rapidjson::kArrayType), readers(rapidjson::kArrayType);
  for (const auto& [id, w] : writers_) {
    rapidjson::Value item(rapidjson::kObjectType);
    JsonObject(item, a).str("stream_id", id).str("app", w->app).str("topic", w->topic).u64("bytes", w->out).u64(
        "chunks", w->chunks);
    writers.PushBack(item, a);
  }
  for (const auto& [topic, r] : readers_) {
    std::string active;
    for (const auto& [id, s] : in_streams_)
      if (s->topic == topic) active = id;
    rapidjson::Value item(rapidjson::kObjectType);
    JsonObject o(item, a);
    o.str("app", r.app).str("topic", topic);
    if (active.empty())
      o.null("stream_id");
    else
      o.str("stream_id", active);
    readers.PushBack(item, a);
  }
  out.add("writers", std::move(writers));
  out.add("readers", std::move(readers));
  out.object("open", [&](JsonObject& o) { o.u64("out", writers_.size()).u64("in", in_streams_.size()); });
  out.object("bytes", [&](JsonObject& o) { o.u64("out", bytes_out_).u64("in", bytes_in_); });
  out.object("chunks", [&](JsonObject& o) { o.u64("out", chunks_out_).u64("in", chunks_in_); });
  auto counts = [](JsonObject& o, const std::map<std::string, uint64_t>& m) {
    for (const auto& [k, v] : m) o.u64(k, v);
  };
  out.object("ends", [&](JsonObject& o) {
    o.object("out", [&](JsonObject& x) { counts(x, ends_out_); });
    o.object("in", [&](JsonObject& x) { counts(x, ends_in_); });
  });
  out.object("errors", [&](JsonObject& o) { counts(o, errors_); });
  out.object("inbound_dropped", [&](JsonObject& o) { counts(o, dropped_in_); });
}

}  // namespace edgelink::datastreams

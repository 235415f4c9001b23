// End-to-end benchmark of edgelink (see bench/README.md; bench/run_bench.sh drives it).
//
//   relay_bench --mode relay   --broker-port P --app-ports A0,A1,... [--duration 10] [--warmup 3]
//   relay_bench --mode ceiling --broker-port P [--streams 4] [--duration 10] [--warmup 3]
//   relay_bench --mode rtt     --broker-port P --app-ports A0 [--actions 1000]
//
// relay:   one TCP client per app port streams pre-rendered data-point lines as fast as
//          the socket takes them; an MQTT subscriber counts the points that come out of
//          edgelink's batches. Reports points/s over the steady window (after warm-up).
// ceiling: a plain Paho async publisher sends pre-built batches of the same points
//          (what edgelink would publish) straight to the broker, QoS 1, with the same
//          in-flight window; the same subscriber counts them. This is what the broker,
//          Paho and the subscriber can do on this machine without edgelink.
// rtt:     an app answers every action with "Completed" at once; actions are published
//          one at a time (QoS 1) and timed from publish to the Completed status at the
//          subscriber. Reports p50/p99/max.
//
// The subscriber subscribes at QoS 0: at QoS 1 the broker would hold every outgoing
// message until the subscriber's PUBACK (at most max_inflight_messages at once) and the
// subscriber would send tens of thousands of PUBACKs a second; that work lands on the
// same two cores as edgelink and would measure the subscriber, not the relay. QoS 0 can
// drop messages if the broker's queue for the subscriber overflows, so every run prints
// sent vs received, which shows any loss.
//
// Results are printed as "result <key> <value>" lines (run_bench.sh reads them); progress
// goes to stderr. --watch NAME=PID (repeatable) reports, over the steady window, the CPU
// a process used, the time its threads were runnable but waited for a CPU (from
// /proc/PID/task/*/schedstat; the same two for its main thread alone), and its peak RSS.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <mqtt/async_client.h>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

uint64_t wall_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  int broker_port = 0;
  std::vector<int> app_ports;
  std::string project = "bench";
  std::string device = "gw-bench";
  int streams = 4;          // ceiling: how many stream topics to publish to
  double duration = 10;     // seconds of load
  double warmup = 3;        // seconds excluded from the rate
  double drain = 5;         // seconds without progress before giving up on stragglers
  int batch = 100;          // points per batch (ceiling)
  int inflight = 100;       // QoS 1 window (ceiling)
  int actions = 1000;       // rtt
  std::string action_name = "bench_ping";
  std::vector<std::pair<std::string, int>> watch;  // name, pid
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "relay_bench: %s\n"
               "usage: relay_bench --mode relay|ceiling|rtt --broker-port P [--host H] [--app-ports A,B,...]\n"
               "       [--project ID] [--device ID] [--streams N] [--duration S] [--warmup S] [--drain S]\n"
               "       [--batch N] [--inflight N] [--actions K] [--action-name NAME] [--watch NAME=PID]...\n",
               why);
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--mode") o.mode = value();
    else if (a == "--host") o.host = value();
    else if (a == "--broker-port") o.broker_port = std::atoi(value().c_str());
    else if (a == "--app-ports") {
      std::stringstream ss(value());
      for (std::string p; std::getline(ss, p, ',');) o.app_ports.push_back(std::atoi(p.c_str()));
    } else if (a == "--project") o.project = value();
    else if (a == "--device") o.device = value();
    else if (a == "--streams") o.streams = std::atoi(value().c_str());
    else if (a == "--duration") o.duration = std::atof(value().c_str());
    else if (a == "--warmup") o.warmup = std::atof(value().c_str());
    else if (a == "--drain") o.drain = std::atof(value().c_str());
    else if (a == "--batch") o.batch = std::atoi(value().c_str());
    else if (a == "--inflight") o.inflight = std::atoi(value().c_str());
    else if (a == "--actions") o.actions = std::atoi(value().c_str());
    else if (a == "--action-name") o.action_name = value();
    else if (a == "--watch") {
      std::string v = value();
      auto eq = v.find('=');
      if (eq == std::string::npos) usage("--watch takes NAME=PID");
      o.watch.emplace_back(v.substr(0, eq), std::atoi(v.c_str() + eq + 1));
    } else usage(("unknown argument " + a).c_str());
  }
  if (o.mode != "relay" && o.mode != "ceiling" && o.mode != "rtt") usage("--mode must be relay, ceiling or rtt");
  if (o.broker_port <= 0) usage("--broker-port is required");
  if ((o.mode == "relay" || o.mode == "rtt") && o.app_ports.empty()) usage("--app-ports is required");
  if (o.mode == "ceiling" && o.streams <= 0) usage("--streams must be > 0");
  if (o.batch <= 0 || o.inflight <= 0 || o.actions <= 0) usage("--batch, --inflight and --actions must be > 0");
  if (o.warmup >= o.duration) usage("--warmup must be shorter than --duration");
  return o;
}

void result(const char* key, double value) { std::printf("result %s %.6g\n", key, value); }
void result(const std::string& key, double value) { result(key.c_str(), value); }

// ---- /proc sampling -------------------------------------------------------------------

// utime + stime of a process, in seconds; negative when it cannot be read.
double cpu_seconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');  // the command name may contain spaces
  if (close == std::string::npos) return -1;
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // Fields after the name start at 3 (state); utime and stime are fields 14 and 15.
  for (int n = 3; n <= 15 && rest >> field; ++n) {
    if (n == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (n == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// A "VmRSS"/"VmHWM" line of /proc/PID/status, in KiB; -1 when absent.
long status_kib(int pid, const char* key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  size_t n = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') return std::atol(line.c_str() + n + 1);
  return -1;
}

// Scheduler statistics of a process (sum over its threads) and of its main thread:
// time on a CPU and time runnable but waiting for one, in seconds. The second number
// tells a busy process from one starved by other work on a shared machine.
struct SchedTimes {
  double run = 0, wait = 0, main_run = 0, main_wait = 0;
};

SchedTimes sched_times(int pid) {
  SchedTimes t;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return t;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(dir + "/" + e->d_name + "/schedstat");
    unsigned long long run = 0, wait = 0;
    if (!(f >> run >> wait)) continue;
    t.run += static_cast<double>(run) / 1e9;
    t.wait += static_cast<double>(wait) / 1e9;
    if (std::atoi(e->d_name) == pid) {
      t.main_run = static_cast<double>(run) / 1e9;
      t.main_wait = static_cast<double>(wait) / 1e9;
    }
  }
  closedir(d);
  return t;
}

struct CpuWindow {
  std::vector<double> start;
  std::vector<SchedTimes> sched;
  Clock::time_point t0;
  void begin(const Options& o) {
    t0 = Clock::now();
    start.clear();
    sched.clear();
    for (auto& [name, pid] : o.watch) {
      start.push_back(cpu_seconds(pid));
      sched.push_back(sched_times(pid));
    }
    start.push_back(cpu_seconds(getpid()));
    sched.push_back(sched_times(getpid()));
  }
  void end(const Options& o) const {
    double wall = seconds_since(t0);
    for (size_t i = 0; i < o.watch.size(); ++i) {
      const auto& [name, pid] = o.watch[i];
      double used = cpu_seconds(pid) - start[i];
      SchedTimes now = sched_times(pid);
      result(o.mode + "_cpu_pct_" + name, 100.0 * used / wall);
      result(o.mode + "_wait_pct_" + name, 100.0 * (now.wait - sched[i].wait) / wall);
      result(o.mode + "_main_cpu_pct_" + name, 100.0 * (now.main_run - sched[i].main_run) / wall);
      result(o.mode + "_main_wait_pct_" + name, 100.0 * (now.main_wait - sched[i].main_wait) / wall);
      result(o.mode + "_vmhwm_kib_" + name, static_cast<double>(status_kib(pid, "VmHWM")));
    }
    result(o.mode + "_cpu_pct_bench", 100.0 * (cpu_seconds(getpid()) - start.back()) / wall);
    result(o.mode + "_wait_pct_bench", 100.0 * (sched_times(getpid()).wait - sched.back().wait) / wall);
  }
};

// ---- sockets ---------------------------------------------------------------------------

int connect_tcp(const std::string& host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Paho C never sets TCP_NODELAY and has no hook for it, so small publishes (actions)
// could wait ~40 ms for a delayed ACK. Set it on every socket of this process that is
// connected to the broker's port.
int nodelay_on_broker_sockets(int broker_port) {
  int changed = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return 0;
  while (dirent* e = readdir(dir)) {
    int fd = std::atoi(e->d_name);
    if (fd <= 2 || fd == dirfd(dir)) continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 || peer.ss_family != AF_INET) continue;
    if (ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port) != broker_port) continue;
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++changed;
  }
  closedir(dir);
  return changed;
}

bool send_all(int fd, const char* p, size_t n, const std::atomic<bool>& abort) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if ((errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) && !abort.load()) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// ---- data ------------------------------------------------------------------------------

constexpr uint32_t kFirstSequence = 1000000000;  // ten digits until 4294967295: fixed width
constexpr uint64_t kBaseTimestamp = 1732180000000;

// One data point line as an app sends it; "%s" is the stream.
std::string point_line(const std::string& stream, uint32_t sequence, uint64_t timestamp) {
  char buf[256];
  int n = std::snprintf(buf, sizeof buf,
                        "{\"stream\":\"%s\",\"sequence\":%u,\"timestamp\":%llu,\"ax\":0.12,\"ay\":-0.3,\"az\":9.81,"
                        "\"label\":\"ok\"}\n",
                        stream.c_str(), sequence, static_cast<unsigned long long>(timestamp));
  return std::string(buf, static_cast<size_t>(n));
}

// The same point as edgelink puts it in a batch: the "stream" member is cut out.
std::string point_object(uint32_t sequence, uint64_t timestamp) {
  char buf[256];
  int n = std::snprintf(buf, sizeof buf,
                        "{\"sequence\":%u,\"timestamp\":%llu,\"ax\":0.12,\"ay\":-0.3,\"az\":9.81,\"label\":\"ok\"}",
                        sequence, static_cast<unsigned long long>(timestamp));
  return std::string(buf, static_cast<size_t>(n));
}

// Points in a batch payload: objects at depth 1 all start with {"sequence", which no
// column value contains, so counting that prefix needs no JSON parse.
uint64_t count_points(std::string_view payload) {
  static constexpr std::string_view kMark = "{\"sequence\"";
  uint64_t n = 0;
  const char* p = payload.data();
  const char* end = p + payload.size();
  while (p < end) {
    const void* hit = std::memchr(p, '{', static_cast<size_t>(end - p));
    if (!hit) break;
    p = static_cast<const char*>(hit);
    if (static_cast<size_t>(end - p) >= kMark.size() && std::memcmp(p, kMark.data(), kMark.size()) == 0) ++n;
    ++p;
  }
  return n;
}

std::string topic_prefix(const Options& o) { return "/tenants/" + o.project + "/devices/" + o.device; }

// ---- subscriber ------------------------------------------------------------------------

class Subscriber {
 public:
  explicit Subscriber(const Options& o)
      : client_("tcp://" + o.host + ":" + std::to_string(o.broker_port), "relay-bench-sub-" + std::to_string(getpid()),
                mqtt::create_options(MQTTVERSION_3_1_1)) {
    client_.set_message_callback([this](mqtt::const_message_ptr m) { on_message(*m); });
    auto opts = mqtt::connect_options_builder().clean_session(true).keep_alive_interval(std::chrono::seconds(30)).finalize();
    client_.connect(opts)->wait();
    nodelay_on_broker_sockets(o.broker_port);
    const std::string prefix = topic_prefix(o);
    client_.subscribe(prefix + "/events/+/jsonarray", 0)->wait();
    client_.subscribe(prefix + "/action/status", 0)->wait();
  }
  ~Subscriber() {
    try {
      client_.disconnect()->wait_for(std::chrono::seconds(2));
    } catch (const std::exception&) {
    }
  }

  uint64_t points() const { return points_.load(std::memory_order_relaxed); }
  uint64_t messages() const { return messages_.load(std::memory_order_relaxed); }

  // rtt: waits until a Completed status for `id` arrives; returns its arrival time.
  bool wait_completed(const std::string& id, std::chrono::milliseconds timeout, Clock::time_point& at) {
    std::unique_lock lock(mutex_);
    bool ok = cv_.wait_for(lock, timeout, [&] { return completed_id_ == id; });
    if (ok) at = completed_at_;
    return ok;
  }

 private:
  void on_message(const mqtt::message& m) {
    const std::string& payload = m.get_payload_str();
    const std::string& topic = m.get_topic();
    messages_.fetch_add(1, std::memory_order_relaxed);
    if (topic.size() >= 10 && topic.compare(topic.size() - 10, 10, "/jsonarray") == 0) {
      points_.fetch_add(count_points(payload), std::memory_order_relaxed);
      return;
    }
    // Action status: [{"sequence":..,"timestamp":..,"action_id":"ID","state":"Completed",...}]
    if (payload.find("\"state\":\"Completed\"") == std::string::npos) return;
    auto pos = payload.find("\"action_id\":\"");
    if (pos == std::string::npos) return;
    pos += 13;
    auto end = payload.find('"', pos);
    if (end == std::string::npos) return;
    auto now = Clock::now();
    {
      std::lock_guard lock(mutex_);
      completed_id_.assign(payload, pos, end - pos);
      completed_at_ = now;
    }
    cv_.notify_all();
  }

  mqtt::async_client client_;
  std::atomic<uint64_t> points_{0};
  std::atomic<uint64_t> messages_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::string completed_id_;
  Clock::time_point completed_at_;
};

// Runs the load for o.duration seconds; `sent` reads how many points left the
// generator so far. Measures the steady window [warmup, duration], prints per-second
// progress on stderr, then waits for stragglers.
void measure(const Options& o, Subscriber& sub, const std::function<uint64_t()>& sent,
             const std::function<void()>& stop_load) {
  auto t0 = Clock::now();
  uint64_t last_recv = 0;
  uint64_t recv_w0 = 0, sent_w0 = 0;
  CpuWindow cpu;
  bool in_window = false;
  for (int tick = 1;; ++tick) {
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(static_cast<int64_t>(tick * 500)));
    double t = seconds_since(t0);
    uint64_t r = sub.points();
    if (tick % 2 == 0) {
      std::fprintf(stderr, "  %s t=%4.1fs  received %8.0f points/s\n", o.mode.c_str(), t, (r - last_recv) / 1.0);
      last_recv = r;
    }
    if (!in_window && t >= o.warmup) {
      in_window = true;
      recv_w0 = r;
      sent_w0 = sent();
      cpu.begin(o);
    }
    if (t >= o.duration) {
      double window = seconds_since(cpu.t0);
      uint64_t sent_w1 = sent();
      cpu.end(o);
      result(o.mode + "_points_per_s", (r - recv_w0) / window);
      result(o.mode + "_offered_points_per_s", (sent_w1 - sent_w0) / window);
      result(o.mode + "_window_s", window);
      break;
    }
  }
  stop_load();
  // Partial batches leave edgelink after flush_period; wait until everything arrived or
  // nothing has moved for o.drain seconds.
  uint64_t total = sent();
  uint64_t seen = sub.points();
  auto last_move = Clock::now();
  while (sub.points() < total && seconds_since(last_move) < o.drain) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (sub.points() != seen) {
      seen = sub.points();
      last_move = Clock::now();
    }
  }
  result(o.mode + "_points_sent", static_cast<double>(total));
  result(o.mode + "_points_received", static_cast<double>(sub.points()));
  std::fprintf(stderr, "  %s: sent %llu points, received %llu\n", o.mode.c_str(),
               static_cast<unsigned long long>(total), static_cast<unsigned long long>(sub.points()));
}

// ---- relay -----------------------------------------------------------------------------

// One app: a big buffer of lines, cut into ~256 KiB chunks on line boundaries, written
// round and round. Before each chunk goes out its sequence numbers are rewritten in
// place (fixed-width ASCII), so sequences keep counting up without re-rendering.
class AppWriter {
 public:
  AppWriter(const Options& o, int port, const std::string& stream) : stream_(stream) {
    constexpr size_t kLines = 20000, kChunkBytes = 256 * 1024;
    const size_t seq_offset = std::string_view("{\"stream\":\"\",\"sequence\":").size() + stream.size();
    uint32_t seq = kFirstSequence;
    for (size_t i = 0; i < kLines; ++i) {
      std::string line = point_line(stream, seq++, kBaseTimestamp + i);
      seq_pos_.push_back(buf_.size() + seq_offset);
      buf_ += line;
      if (buf_.size() - chunk_start() >= kChunkBytes || i + 1 == kLines) chunks_.push_back({buf_.size(), i + 1});
    }
    next_seq_ = seq;
    fd_ = connect_tcp(o.host, port);
    if (fd_ < 0) {
      std::fprintf(stderr, "relay_bench: cannot connect to app port %d: %s\n", port, std::strerror(errno));
      std::exit(1);
    }
    // A stuck send must still see the stop flag now and then.
    timeval tv{0, 200000};
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  ~AppWriter() {
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }

  void start(std::atomic<bool>& stop, std::atomic<bool>& abort) {
    thread_ = std::thread([this, &stop, &abort] { run(stop, abort); });
  }
  uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Chunk {
    size_t end;        // byte offset one past the chunk's last '\n'
    size_t end_line;   // index one past its last line
  };
  size_t chunk_start() const { return chunks_.empty() ? 0 : chunks_.back().end; }

  void run(std::atomic<bool>& stop, std::atomic<bool>& abort) {
    bool first_pass = true;
    while (!stop.load(std::memory_order_relaxed)) {
      size_t begin = 0, first_line = 0;
      for (const Chunk& c : chunks_) {
        if (stop.load(std::memory_order_relaxed)) return;
        if (!first_pass) renumber(first_line, c.end_line);
        if (!send_all(fd_, buf_.data() + begin, c.end - begin, abort)) {
          if (!abort.load()) std::fprintf(stderr, "relay_bench: %s: send failed: %s\n", stream_.c_str(), std::strerror(errno));
          return;
        }
        sent_.fetch_add(c.end_line - first_line, std::memory_order_relaxed);
        begin = c.end;
        first_line = c.end_line;
      }
      first_pass = false;
    }
  }

  void renumber(size_t from, size_t to) {
    char digits[16];
    for (size_t i = from; i < to; ++i) {
      uint32_t v = next_seq_++;
      if (v < kFirstSequence) v = next_seq_ = kFirstSequence;  // wrapped: stay ten digits wide
      for (int d = 9; d >= 0; --d) {
        digits[d] = static_cast<char>('0' + v % 10);
        v /= 10;
      }
      std::memcpy(buf_.data() + seq_pos_[i], digits, 10);
    }
  }

  std::string stream_;
  std::string buf_;
  std::vector<size_t> seq_pos_;
  std::vector<Chunk> chunks_;
  uint32_t next_seq_ = kFirstSequence;
  int fd_ = -1;
  std::thread thread_;
  std::atomic<uint64_t> sent_{0};
};

int run_relay(const Options& o) {
  Subscriber sub(o);
  std::vector<std::unique_ptr<AppWriter>> apps;
  for (size_t i = 0; i < o.app_ports.size(); ++i)
    apps.push_back(std::make_unique<AppWriter>(o, o.app_ports[i], "s" + std::to_string(i)));
  std::atomic<bool> stop{false}, abort{false};
  for (auto& a : apps) a->start(stop, abort);
  auto sent = [&] {
    uint64_t n = 0;
    for (auto& a : apps) n += a->sent();
    return n;
  };
  measure(o, sub, sent, [&] {
    stop = true;
    for (auto& a : apps) a->join();
  });
  return 0;
}

// ---- ceiling ---------------------------------------------------------------------------

struct PublishListener : mqtt::iaction_listener {
  std::atomic<int> in_flight{0};
  std::atomic<uint64_t> failures{0};
  std::mutex mutex;
  std::condition_variable cv;
  void done() {
    {
      std::lock_guard lock(mutex);
      in_flight.fetch_sub(1);
    }
    cv.notify_one();
  }
  void on_success(const mqtt::token&) override { done(); }
  void on_failure(const mqtt::token&) override {
    failures.fetch_add(1);
    done();
  }
};

// Paho refuses a publish (MQTTASYNC_MAX_BUFFERED_MESSAGES, -12) once max_buffered_messages
// publishes wait in its command queue, even while connected; the default is 100, so a
// window above 100 needs more room.
mqtt::create_options publisher_create_options(int inflight) {
  mqtt::create_options co(MQTTVERSION_3_1_1);
  co.set_max_buffered_messages(std::max(100, inflight + 8));
  return co;
}

mqtt::connect_options publisher_options(int inflight) {
  return mqtt::connect_options_builder()
      .clean_session(true)
      .keep_alive_interval(std::chrono::seconds(30))
      .max_inflight(inflight)
      .finalize();
}

// State the ceiling's publisher process shares with the measuring process.
struct CeilingShared {
  std::atomic<uint64_t> sent{0};      // points handed to Paho
  std::atomic<uint64_t> failures{0};  // publishes Paho reported failed
  std::atomic<bool> go{false};        // the subscriber is ready
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};    // the publisher gave up (connect or publish error)
};

// The publisher: pre-built batches, one Paho async client, a window of in-flight QoS 1
// publishes refilled as PUBACKs arrive. Runs in its own process (see run_ceiling).
int ceiling_publisher(const Options& o, CeilingShared& shared) {
  // Batches exactly as edgelink builds them: "[" + point objects joined by "," + "]".
  constexpr int kBatchesPerStream = 64;
  std::vector<std::string> topics;
  std::vector<std::vector<std::string>> batches(static_cast<size_t>(o.streams));
  uint32_t seq = kFirstSequence;
  for (int s = 0; s < o.streams; ++s) {
    topics.push_back(topic_prefix(o) + "/events/s" + std::to_string(s) + "/jsonarray");
    for (int b = 0; b < kBatchesPerStream; ++b) {
      std::string payload = "[";
      for (int p = 0; p < o.batch; ++p) {
        if (p) payload += ',';
        payload += point_object(seq, kBaseTimestamp + seq % 100000);
        ++seq;
      }
      payload += ']';
      batches[static_cast<size_t>(s)].push_back(std::move(payload));
    }
  }
  mqtt::async_client pub("tcp://" + o.host + ":" + std::to_string(o.broker_port),
                         "relay-bench-pub-" + std::to_string(getpid()), publisher_create_options(o.inflight));
  pub.connect(publisher_options(o.inflight))->wait();
  nodelay_on_broker_sockets(o.broker_port);
  while (!shared.go.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));

  PublishListener listener;
  for (size_t i = 0; !shared.stop.load(std::memory_order_relaxed);) {
    {
      std::unique_lock lock(listener.mutex);
      if (!listener.cv.wait_for(lock, std::chrono::milliseconds(200),
                                [&] { return listener.in_flight.load() < o.inflight; }))
        continue;
      listener.in_flight.fetch_add(1);
    }
    size_t s = i % topics.size();
    const std::string& payload = batches[s][(i / topics.size()) % kBatchesPerStream];
    pub.publish(topics[s], payload.data(), payload.size(), 1, false, nullptr, listener);
    shared.sent.fetch_add(static_cast<uint64_t>(o.batch), std::memory_order_relaxed);
    ++i;
  }
  {
    std::unique_lock lock(listener.mutex);
    listener.cv.wait_for(lock, std::chrono::seconds(10), [&] { return listener.in_flight.load() == 0; });
  }
  shared.failures = listener.failures.load();
  pub.disconnect()->wait_for(std::chrono::seconds(5));
  return 0;
}

int run_ceiling(const Options& o) {
  // Paho C runs one receive thread for all clients of a process: a publisher next to
  // the subscriber would wait for the subscriber's message handling before it sees its
  // PUBACKs. edgelink has its own process, so the ceiling's publisher gets one too.
  // Fork before any Paho client exists (Paho's threads and locks do not survive fork).
  void* mem = mmap(nullptr, sizeof(CeilingShared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::runtime_error("mmap failed");
  auto& shared = *new (mem) CeilingShared;
  pid_t child = fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    int rc = 1;
    try {
      rc = ceiling_publisher(o, shared);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "relay_bench: ceiling publisher: %s\n", e.what());
    }
    if (rc != 0) shared.failed = true;
    std::fflush(nullptr);
    _exit(rc);
  }
  Options watched = o;
  watched.watch.emplace_back("publisher", static_cast<int>(child));
  int status = 0;
  {
    Subscriber sub(o);
    shared.go = true;
    measure(watched, sub, [&] { return shared.sent.load(); }, [&] {
      shared.stop = true;
      waitpid(child, &status, 0);
    });
  }
  result("ceiling_publish_failures", static_cast<double>(shared.failures.load()));
  if (shared.failed.load() || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "relay_bench: the ceiling publisher failed\n");
    return 1;
  }
  return 0;
}

// ---- rtt -------------------------------------------------------------------------------

// The app: answers every action line with a Completed status, at once.
class Responder {
 public:
  Responder(const Options& o) {
    fd_ = connect_tcp(o.host, o.app_ports.front());
    if (fd_ < 0) {
      std::fprintf(stderr, "relay_bench: cannot connect to app port %d: %s\n", o.app_ports.front(), std::strerror(errno));
      std::exit(1);
    }
    thread_ = std::thread([this] { run(); });
  }
  ~Responder() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }

 private:
  void run() {
    std::string in;
    char buf[4096];
    uint32_t seq = 0;
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = in.find('\n')) != std::string::npos) {
        std::string_view line(in.data(), nl);
        auto pos = line.find("\"action_id\":\"");
        if (pos != std::string_view::npos) {
          pos += 13;
          auto end = line.find('"', pos);
          std::string id(line.substr(pos, end - pos));
          std::string reply = "{\"stream\":\"action_status\",\"sequence\":" + std::to_string(++seq) +
                              ",\"timestamp\":" + std::to_string(wall_ms()) + ",\"action_id\":\"" + id +
                              "\",\"state\":\"Completed\",\"progress\":100,\"errors\":[]}\n";
          std::atomic<bool> never{false};
          if (!send_all(fd_, reply.data(), reply.size(), never)) return;
        }
        in.erase(0, nl + 1);
      }
    }
  }
  int fd_ = -1;
  std::thread thread_;
};

int run_rtt(const Options& o) {
  Subscriber sub(o);
  Responder app(o);
  mqtt::async_client pub("tcp://" + o.host + ":" + std::to_string(o.broker_port),
                         "relay-bench-act-" + std::to_string(getpid()), mqtt::create_options(MQTTVERSION_3_1_1));
  pub.connect(publisher_options(o.inflight))->wait();
  nodelay_on_broker_sockets(o.broker_port);
  // Give edgelink a moment to register the app connection.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  const std::string topic = topic_prefix(o) + "/actions";
  const int warmup = std::min(50, o.actions / 10 + 1);
  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(o.actions));
  int lost = 0;
  const std::string run_tag = std::to_string(getpid());
  for (int k = 0; k < warmup + o.actions; ++k) {
    std::string id = "b" + run_tag + "-" + std::to_string(k);
    std::string payload = "{\"action_id\":\"" + id + "\",\"name\":\"" + o.action_name + "\",\"payload\":\"{}\"}";
    auto t0 = Clock::now();
    pub.publish(topic, payload.data(), payload.size(), 1, false);
    Clock::time_point t1;
    if (!sub.wait_completed(id, std::chrono::seconds(2), t1)) {
      ++lost;
      continue;
    }
    if (k >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) {
    if (ms.empty()) return -1.0;
    size_t i = static_cast<size_t>(p * static_cast<double>(ms.size() - 1) + 0.5);
    return ms[std::min(i, ms.size() - 1)];
  };
  result("rtt_actions", static_cast<double>(ms.size()));
  result("rtt_lost", lost);
  result("rtt_p50_ms", pct(0.50));
  result("rtt_p99_ms", pct(0.99));
  result("rtt_max_ms", ms.empty() ? -1.0 : ms.back());
  std::fprintf(stderr, "  rtt: %zu actions, p50 %.3f ms, p99 %.3f ms, max %.3f ms, lost %d\n", ms.size(), pct(0.5),
               pct(0.99), ms.empty() ? -1.0 : ms.back(), lost);
  try {
    pub.disconnect()->wait_for(std::chrono::seconds(2));
  } catch (const std::exception&) {
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    if (o.mode == "relay") return run_relay(o);
    if (o.mode == "ceiling") return run_ceiling(o);
    return run_rtt(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "relay_bench: %s\n", e.what());
    return 1;
  }
}

// End-to-end benchmark of edgelink (see bench/README.md; bench/run_bench.sh drives it).
//
//   relay_bench --mode relay   --broker-port P --app-ports A0,A1,... [--duration 10] [--warmup 3]
//   relay_bench --mode ceiling --broker-port P [--streams 4] [--duration 10] [--warmup 3]
//   relay_bench --mode rtt     --broker-port P --app-ports A0 [--actions 1000]
//   relay_bench --mode fill    --app-ports A0,A1,... --points 1000000 [--rate 0] [--drain 5]
//   relay_bench --mode drain   --broker-port P --app-ports A0,A1,... --backlog 1000000 [--rate 20000]
//                              [--resume-pid PID] [--duration 180] [--warmup 0] [--drain 30]
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
//          --no-subscriber (relay): no MQTT connection at all (the broker is down and
//          edgelink spools everything); the rate is what edgelink read from the apps.
// fill:    sends exactly --points points over the app ports (sequences from 1e9), at
//          --rate points/s (0: as fast as edgelink reads them), and exits: the backlog,
//          sent while the broker is down (bench/spool_bench.sh). Gives up when edgelink
//          reads nothing for --drain seconds.
// drain:   the broker is back: subscribes, starts a live load of --rate points/s
//          (sequences from 3e9, wall-clock timestamps), SIGCONTs --resume-pid, and runs
//          until all --backlog backlog points have arrived. Reports the drain time and
//          rate, duplicates, and the live points' rate and latency during the drain.
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
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
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
#include <unordered_map>
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
  bool no_subscriber = false;  // relay: the broker is down, count what the apps sent
  uint64_t points = 1000000;   // fill: points to send, split over the app ports
  uint64_t backlog = 1000000;  // drain: backlog points expected at the subscriber
  double rate = -1;            // drain: live points/s (default 20000); fill: points/s (default 0, unpaced)
  int resume_pid = 0;          // drain: SIGCONT this process once the subscriber is ready
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "relay_bench: %s\n"
               "usage: relay_bench --mode relay|ceiling|rtt|fill|drain --broker-port P [--host H] [--app-ports A,B,...]\n"
               "       [--project ID] [--device ID] [--streams N] [--duration S] [--warmup S] [--drain S]\n"
               "       [--batch N] [--inflight N] [--actions K] [--action-name NAME] [--watch NAME=PID]...\n"
               "       [--no-subscriber] [--points N] [--backlog N] [--rate R] [--resume-pid PID]\n",
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
    else if (a == "--no-subscriber") o.no_subscriber = true;
    else if (a == "--points") o.points = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--backlog") o.backlog = std::strtoull(value().c_str(), nullptr, 10);
    else if (a == "--rate") o.rate = std::atof(value().c_str());
    else if (a == "--resume-pid") o.resume_pid = std::atoi(value().c_str());
    else if (a == "--watch") {
      std::string v = value();
      auto eq = v.find('=');
      if (eq == std::string::npos) usage("--watch takes NAME=PID");
      o.watch.emplace_back(v.substr(0, eq), std::atoi(v.c_str() + eq + 1));
    } else usage(("unknown argument " + a).c_str());
  }
  if (o.mode != "relay" && o.mode != "ceiling" && o.mode != "rtt" && o.mode != "fill" && o.mode != "drain")
    usage("--mode must be relay, ceiling, rtt, fill or drain");
  if (o.broker_port <= 0 && o.mode != "fill") usage("--broker-port is required");
  if (o.mode != "ceiling" && o.app_ports.empty()) usage("--app-ports is required");
  if (o.mode == "fill" && o.points == 0) usage("--points must be > 0");
  if (o.rate < 0) o.rate = o.mode == "drain" ? 20000 : 0;
  if (o.mode == "drain" && o.backlog == 0) usage("--backlog must be > 0");
  if (o.mode == "ceiling" && o.streams <= 0) usage("--streams must be > 0");
  if (o.batch <= 0 || o.inflight <= 0 || o.actions <= 0) usage("--batch, --inflight and --actions must be > 0");
  if (o.warmup >= o.duration) usage("--warmup must be shorter than --duration");
  return o;
}

void result(const char* key, double value) { std::printf("result %s %.10g\n", key, value); }
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

// ---- backlog / live classification (drain mode) ----------------------------------------

// Points the fill mode sends start at kFirstSequence (the backlog); the drain mode's live
// points start here, so a point's sequence tells which of the two it is.
constexpr uint64_t kLiveSequence = 3000000000;

uint64_t parse_digits(const char*& p, const char* end) {
  uint64_t v = 0;
  while (p < end && *p >= '0' && *p <= '9') v = v * 10 + static_cast<uint64_t>(*p++ - '0');
  return v;
}

// Counts every point by kind, finds duplicates (a bit per sequence and stream), backlog
// points that arrive after a later one of the same stream, and the latency of live points
// (arrival minus the wall-clock timestamp the generator wrote, 1 ms resolution). Runs on
// Paho's callback thread; the atomics are read by the main thread while it runs.
class Tracker {
 public:
  explicit Tracker(uint64_t backlog_expected) : expected_(backlog_expected), latency_all_(kMaxMs + 1), latency_drain_(kMaxMs + 1) {}

  void start(Clock::time_point t0) {
    std::lock_guard lock(mutex_);
    t0_ = t0;
    started_ = true;
  }

  // Returns the points in the batch, duplicates included.
  uint64_t on_batch(const std::string& topic, const std::string& payload) {
    static constexpr std::string_view kSeq = "{\"sequence\":";
    static constexpr std::string_view kTs = "\"timestamp\":";
    auto now = Clock::now();
    const uint64_t now_ms = wall_ms();
    std::lock_guard lock(mutex_);
    auto ev = topic.rfind("/events/");
    auto ja = topic.rfind("/jsonarray");
    std::string stream = ev != std::string::npos && ja != std::string::npos && ja > ev + 8
                             ? topic.substr(ev + 8, ja - ev - 8)
                             : topic;
    Stream& st = streams_[stream];
    const size_t slot =
        started_ ? static_cast<size_t>(std::max(0.0, std::chrono::duration<double>(now - t0_).count()) / kSlotS) : 0;
    if (slot >= live_per_s_.size()) {
      live_per_s_.resize(slot + 1);
      backlog_per_s_.resize(slot + 1);
    }
    const char* p = payload.data();
    const char* end = p + payload.size();
    uint64_t nb = 0, nl = 0, points = 0;
    while (p < end) {
      const char* hit = static_cast<const char*>(std::memchr(p, '{', static_cast<size_t>(end - p)));
      if (!hit) break;
      p = hit + 1;
      if (static_cast<size_t>(end - hit) < kSeq.size() || std::memcmp(hit, kSeq.data(), kSeq.size()) != 0) continue;
      ++points;
      p = hit + kSeq.size();
      uint64_t seq = parse_digits(p, end);
      if (seq >= kLiveSequence) {
        uint64_t ts = 0;
        std::string_view rest(p, static_cast<size_t>(end - p));
        auto t = rest.find(kTs);
        if (t != std::string_view::npos) {
          const char* q = p + t + kTs.size();
          ts = parse_digits(q, end);
        }
        if (!mark(st.live, seq - kLiveSequence)) {
          ++live_dups_;
          continue;
        }
        ++nl;
        uint64_t ms = ts && now_ms > ts ? now_ms - ts : 0;
        ms = std::min<uint64_t>(ms, kMaxMs);
        ++latency_all_[ms];
        const uint64_t b = backlog.load(std::memory_order_relaxed);
        if (b > 0 && b < expected_) {
          ++latency_drain_[ms];
          ++live_during_drain_;
        }
      } else {
        const uint64_t i = seq >= kFirstSequence ? seq - kFirstSequence : seq;
        if (!mark(st.backlog, i)) {
          ++backlog_dups_;
          continue;
        }
        if (st.any && i < st.backlog_max) ++reordered_;
        st.backlog_max = std::max(st.backlog_max, i);
        st.any = true;
        ++nb;
      }
    }
    if (nb) {
      if (!first_backlog_set_) {
        first_backlog_ = now;
        first_backlog_set_ = true;
      }
      last_backlog_ = now;
      backlog_per_s_[slot] += nb;
      backlog.fetch_add(nb, std::memory_order_relaxed);
    }
    if (nl) {
      if (!first_live_set_) {
        first_live_ = now;
        first_live_set_ = true;
      }
      live_per_s_[slot] += nl;
      live.fetch_add(nl, std::memory_order_relaxed);
    }
    return points;
  }

  std::atomic<uint64_t> backlog{0};  // distinct backlog points received
  std::atomic<uint64_t> live{0};     // distinct live points received

  struct Report {
    uint64_t backlog_dups, live_dups, reordered, live_during_drain;
    bool have_backlog, have_live;
    double first_backlog_s, last_backlog_s, first_live_s;  // since start()
    std::vector<uint64_t> live_per_s, backlog_per_s;  // points per kSlotS slot
    std::vector<uint64_t> latency_all, latency_drain;
  };
  Report report() {
    std::lock_guard lock(mutex_);
    auto since = [&](Clock::time_point t) { return std::chrono::duration<double>(t - t0_).count(); };
    return Report{backlog_dups_, live_dups_, reordered_, live_during_drain_, first_backlog_set_, first_live_set_,
                  since(first_backlog_), since(last_backlog_), since(first_live_), live_per_s_, backlog_per_s_,
                  latency_all_, latency_drain_};
  }

 private:
  static constexpr uint64_t kMaxMs = 60000;

 public:
  static constexpr double kSlotS = 0.25;  // live_per_s / backlog_per_s: points per slot of this many seconds

 private:
  struct Stream {
    std::vector<uint64_t> backlog, live;  // bitsets by sequence offset
    uint64_t backlog_max = 0;
    bool any = false;
  };
  // Sets bit i; false when it was set already (a duplicate).
  static bool mark(std::vector<uint64_t>& bits, uint64_t i) {
    if (i / 64 >= bits.size()) bits.resize(std::max<size_t>(i / 64 + 1, bits.size() * 2));
    uint64_t& w = bits[i / 64];
    const uint64_t m = uint64_t{1} << (i % 64);
    if (w & m) return false;
    w |= m;
    return true;
  }

  const uint64_t expected_;
  std::mutex mutex_;
  Clock::time_point t0_{};
  bool started_ = false;
  std::unordered_map<std::string, Stream> streams_;
  uint64_t backlog_dups_ = 0, live_dups_ = 0, reordered_ = 0, live_during_drain_ = 0;
  bool first_backlog_set_ = false, first_live_set_ = false;
  Clock::time_point first_backlog_{}, last_backlog_{}, first_live_{};
  std::vector<uint64_t> live_per_s_, backlog_per_s_;
  std::vector<uint64_t> latency_all_, latency_drain_;
};

// ---- subscriber ------------------------------------------------------------------------

class Subscriber {
 public:
  explicit Subscriber(const Options& o, Tracker* tracker = nullptr)
      : tracker_(tracker),
        client_("tcp://" + o.host + ":" + std::to_string(o.broker_port), "relay-bench-sub-" + std::to_string(getpid()),
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
      points_.fetch_add(tracker_ ? tracker_->on_batch(topic, payload) : count_points(payload),
                        std::memory_order_relaxed);
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

  Tracker* tracker_;
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
void measure(const Options& o, const std::function<uint64_t()>& received, const std::function<uint64_t()>& sent,
             const std::function<void()>& stop_load) {
  auto t0 = Clock::now();
  uint64_t last_recv = 0;
  uint64_t recv_w0 = 0, sent_w0 = 0;
  CpuWindow cpu;
  bool in_window = false;
  uint64_t last_sent = 0;
  auto sent_moved = Clock::now();
  for (int tick = 1;; ++tick) {
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(static_cast<int64_t>(tick * 500)));
    double t = seconds_since(t0);
    uint64_t r = received();
    if (uint64_t s = sent(); s != last_sent) {
      last_sent = s;
      sent_moved = Clock::now();
    }
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
      // The generator could not write for this long at the end of the window: edgelink
      // stopped reading the apps (back-pressure). Half a second or more is a stall.
      const double idle = seconds_since(sent_moved);
      result(o.mode + "_sender_idle_s", idle);
      if (idle >= 1)
        std::fprintf(stderr, "relay_bench: %s: nothing could be sent for the last %.1f s: edgelink stopped reading\n",
                     o.mode.c_str(), idle);
      break;
    }
  }
  stop_load();
  // Partial batches leave edgelink after flush_period; wait until everything arrived or
  // nothing has moved for o.drain seconds.
  uint64_t total = sent();
  uint64_t seen = received();
  auto last_move = Clock::now();
  while (received() < total && seconds_since(last_move) < o.drain) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (received() != seen) {
      seen = received();
      last_move = Clock::now();
    }
  }
  result(o.mode + "_points_sent", static_cast<double>(total));
  result(o.mode + "_points_received", static_cast<double>(received()));
  std::fprintf(stderr, "  %s: sent %llu points, received %llu\n", o.mode.c_str(),
               static_cast<unsigned long long>(total), static_cast<unsigned long long>(received()));
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
  // --no-subscriber: the broker is down (everything goes to edgelink's spool); the rate
  // is what edgelink took from the apps' sockets (offered; TCP back-pressure).
  // The subscriber checks every stream's order and counts duplicates (the Tracker: a
  // little more work per point than the ceiling's plain count).
  Tracker tracker(0);
  std::unique_ptr<Subscriber> sub;
  if (!o.no_subscriber) sub = std::make_unique<Subscriber>(o, &tracker);
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
  std::function<uint64_t()> received = sent;
  if (sub) received = [&] { return sub->points(); };
  measure(o, received, sent, [&] {
    stop = true;
    // A writer blocked in send() because edgelink no longer reads gives up after 3 s.
    std::atomic<bool> joined{false};
    std::thread guard([&] {
      for (int i = 0; i < 60 && !joined.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      abort = true;
    });
    for (auto& a : apps) a->join();
    joined = true;
    guard.join();
  });
  if (sub) {
    const Tracker::Report r = tracker.report();
    // Points that arrived after a later point of their own stream.
    result("relay_reordered_points", static_cast<double>(r.reordered));
    result("relay_duplicate_points", static_cast<double>(r.backlog_dups));
  }
  return 0;
}

// ---- fill and drain (the spool benchmark, bench/spool_bench.sh) ------------------------

// fill: sends exactly o.points points, split over the app ports (stream s<i>, sequences
// from kFirstSequence), as fast as edgelink reads them, then closes the connections.
// Meant to run while the broker is down, so everything goes to edgelink's spool.
int run_fill(const Options& o) {
  const size_t apps = o.app_ports.size();
  std::vector<int> fds;
  for (int port : o.app_ports) {
    int fd = connect_tcp(o.host, port);
    if (fd < 0) {
      std::fprintf(stderr, "relay_bench: cannot connect to app port %d: %s\n", port, std::strerror(errno));
      return 1;
    }
    fds.push_back(fd);
  }
  for (int fd : fds) {
    timeval tv{0, 200000};  // a blocked send still sees `failed` now and then
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  std::atomic<uint64_t> sent{0};
  std::atomic<bool> failed{false};
  auto t0 = Clock::now();
  const double per_app = o.rate / static_cast<double>(apps);  // 0: as fast as edgelink reads
  std::vector<std::thread> threads;
  for (size_t a = 0; a < apps; ++a) {
    const uint64_t n = o.points / apps + (a < o.points % apps ? 1 : 0);
    threads.emplace_back([&, a, n] {
      const std::string stream = "s" + std::to_string(a);
      std::string buf;
      for (uint64_t i = 0; i < n && !failed.load();) {
        uint64_t k = std::min<uint64_t>(2000, n - i);
        if (per_app > 0) {
          const auto due = static_cast<uint64_t>(seconds_since(t0) * per_app);
          if (due <= i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            continue;
          }
          k = std::min(k, due - i);
        }
        buf.clear();
        for (uint64_t j = 0; j < k; ++j, ++i)
          buf += point_line(stream, static_cast<uint32_t>(kFirstSequence + i), kBaseTimestamp + i);
        if (!send_all(fds[a], buf.data(), buf.size(), failed)) {
          if (!failed.load()) std::fprintf(stderr, "relay_bench: %s: send failed: %s\n", stream.c_str(), std::strerror(errno));
          failed = true;
          return;
        }
        sent.fetch_add(k, std::memory_order_relaxed);
      }
    });
  }
  uint64_t last = 0, progress = 0;
  auto moved = Clock::now();
  bool stalled = false;
  for (int tick = 1;; ++tick) {
    bool done = sent.load() >= o.points || failed.load();
    if (!done) std::this_thread::sleep_until(t0 + std::chrono::milliseconds(100 * tick));
    const uint64_t now = sent.load();
    if (now != progress) {
      progress = now;
      moved = Clock::now();
    } else if (!done && seconds_since(moved) > o.drain) {
      std::fprintf(stderr, "relay_bench: fill: edgelink has read nothing for %.0f s (%llu of %llu points sent); giving up\n",
                   o.drain, static_cast<unsigned long long>(now), static_cast<unsigned long long>(o.points));
      stalled = true;
      failed = true;
      done = true;
    }
    if (tick % 10 == 0 || done) {
      std::fprintf(stderr, "  fill t=%4.1fs  sent %9llu points (%8.0f points/s)\n", seconds_since(t0),
                   static_cast<unsigned long long>(now), static_cast<double>(now - last));
      last = now;
    }
    if (done) break;
  }
  for (auto& t : threads) t.join();
  const double secs = seconds_since(t0) - (stalled ? o.drain : 0);
  for (int fd : fds) ::close(fd);
  result("fill_points_sent", static_cast<double>(sent.load()));
  result("fill_stalled", stalled ? 1 : 0);
  result("fill_s", secs);
  result("fill_points_per_s", static_cast<double>(sent.load()) / secs);
  return failed.load() ? 1 : 0;
}

// One app of the drain mode's live load: o.rate / apps points/s, paced in 5 ms steps;
// sequences from kLiveSequence, timestamps the wall clock (ms) when the line was
// written, so the subscriber can time each point. A send blocked by edgelink's
// back-pressure delays the following points, and that delay shows in their latency.
class LiveWriter {
 public:
  LiveWriter(const Options& o, int port, std::string stream, double rate) : stream_(std::move(stream)), rate_(rate) {
    fd_ = connect_tcp(o.host, port);
    if (fd_ < 0) {
      std::fprintf(stderr, "relay_bench: cannot connect to app port %d: %s\n", port, std::strerror(errno));
      std::exit(1);
    }
    timeval tv{0, 200000};
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  ~LiveWriter() {
    join();
    if (fd_ >= 0) ::close(fd_);
  }
  void start(std::atomic<bool>& stop) {
    thread_ = std::thread([this, &stop] { run(stop); });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }

 private:
  void run(std::atomic<bool>& stop) {
    const auto t0 = Clock::now();
    std::string buf;
    uint64_t n = 0;
    for (int tick = 1; !stop.load(std::memory_order_relaxed); ++tick) {
      const auto target = static_cast<uint64_t>(seconds_since(t0) * rate_);
      if (target > n) {
        buf.clear();
        const uint64_t ms = wall_ms();
        for (; n < target; ++n) buf += point_line(stream_, static_cast<uint32_t>(kLiveSequence + n), ms);
        if (!send_all(fd_, buf.data(), buf.size(), stop)) {
          if (!stop.load()) std::fprintf(stderr, "relay_bench: live %s: send failed: %s\n", stream_.c_str(), std::strerror(errno));
          return;
        }
        sent_.store(n, std::memory_order_relaxed);
      }
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(5 * tick));
    }
  }
  std::string stream_;
  double rate_;
  int fd_ = -1;
  std::thread thread_;
  std::atomic<uint64_t> sent_{0};
};

double percentile_ms(const std::vector<uint64_t>& hist, double p) {
  uint64_t total = 0;
  for (uint64_t c : hist) total += c;
  if (total == 0) return -1;
  const auto rank = static_cast<uint64_t>(p * static_cast<double>(total - 1));
  uint64_t seen = 0;
  for (size_t ms = 0; ms < hist.size(); ++ms) {
    seen += hist[ms];
    if (seen > rank) return static_cast<double>(ms);
  }
  return static_cast<double>(hist.size() - 1);
}

double max_ms(const std::vector<uint64_t>& hist) {
  for (size_t ms = hist.size(); ms-- > 0;)
    if (hist[ms]) return static_cast<double>(ms);
  return -1;
}

// drain: the broker has just come back with o.backlog points in edgelink's spool. The
// subscriber attaches, the live load starts, then edgelink is resumed (SIGCONT to
// --resume-pid: the script stopped it before starting the broker, so that it cannot
// publish before the subscriber listens). Runs until every backlog point has arrived,
// or the backlog made no progress for o.drain seconds, or o.duration seconds passed.
int run_drain(const Options& o) {
  Tracker tracker(o.backlog);
  Subscriber sub(o, &tracker);
  std::vector<std::unique_ptr<LiveWriter>> live;
  const double per_app = o.rate / static_cast<double>(o.app_ports.size());
  for (size_t i = 0; i < o.app_ports.size(); ++i)
    live.push_back(std::make_unique<LiveWriter>(o, o.app_ports[i], "s" + std::to_string(i), per_app));
  auto live_sent = [&] {
    uint64_t n = 0;
    for (auto& w : live) n += w->sent();
    return n;
  };
  std::atomic<bool> stop{false};
  CpuWindow cpu;
  const auto t0 = Clock::now();
  tracker.start(t0);
  cpu.begin(o);
  if (o.resume_pid > 0 && ::kill(o.resume_pid, SIGCONT) != 0)
    std::fprintf(stderr, "relay_bench: SIGCONT %d: %s\n", o.resume_pid, std::strerror(errno));
  if (o.rate > 0)
    for (auto& w : live) w->start(stop);

  std::vector<std::pair<double, uint64_t>> sent_at;  // (t, live points sent), every 100 ms
  uint64_t last_b = 0, last_l = 0, progress_b = 0;
  auto last_progress = Clock::now();
  bool complete = false;
  for (int tick = 1;; ++tick) {
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(100 * tick));
    const double t = seconds_since(t0);
    const uint64_t b = tracker.backlog.load(), l = tracker.live.load();
    sent_at.emplace_back(t, live_sent());
    if (tick % 10 == 0) {
      std::fprintf(stderr, "  drain t=%5.1fs  backlog %8llu (+%7llu/s)  live +%6llu/s (offered %6llu total)\n", t,
                   static_cast<unsigned long long>(b), static_cast<unsigned long long>(b - last_b),
                   static_cast<unsigned long long>(l - last_l), static_cast<unsigned long long>(sent_at.back().second));
      last_b = b;
      last_l = l;
    }
    if (b >= o.backlog) {
      complete = true;
      break;
    }
    if (b != progress_b) {
      progress_b = b;
      last_progress = Clock::now();
    }
    // Before the first point the wait includes edgelink's reconnect; allow for it.
    const double patience = b == 0 ? o.drain + 5 : o.drain;
    if (seconds_since(last_progress) > patience) {
      std::fprintf(stderr, "relay_bench: drain: no backlog point for %.0f s; giving up\n", patience);
      break;
    }
    if (t > o.duration) {
      std::fprintf(stderr, "relay_bench: drain: not complete after %.0f s; giving up\n", o.duration);
      break;
    }
  }
  const double t_end = seconds_since(t0);
  stop = true;
  for (auto& w : live) w->join();
  cpu.end(o);
  // Live stragglers: partial batches leave edgelink after flush_period.
  const uint64_t total_live = live_sent();
  {
    uint64_t seen = tracker.live.load();
    auto moved = Clock::now();
    while (tracker.live.load() < total_live && seconds_since(moved) < 5) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (tracker.live.load() != seen) {
        seen = tracker.live.load();
        moved = Clock::now();
      }
    }
  }
  Tracker::Report r = tracker.report();
  const uint64_t backlog = tracker.backlog.load();
  auto sent_near = [&](double t) {
    uint64_t v = 0;
    for (auto& [at, n] : sent_at)
      if (at <= t) v = n;
    return v;
  };
  result("drain_complete", complete ? 1 : 0);
  result("drain_backlog_expected", static_cast<double>(o.backlog));
  result("drain_backlog_received", static_cast<double>(backlog));
  result("drain_backlog_missing", static_cast<double>(o.backlog > backlog ? o.backlog - backlog : 0));
  result("drain_backlog_duplicates", static_cast<double>(r.backlog_dups));
  result("drain_backlog_reordered", static_cast<double>(r.reordered));
  result("drain_run_s", t_end);
  if (r.have_backlog) {
    const double span = r.last_backlog_s - r.first_backlog_s;
    result("drain_first_backlog_s", r.first_backlog_s);
    result("drain_last_backlog_s", r.last_backlog_s);
    result("drain_backlog_points_per_s", span > 0 ? static_cast<double>(backlog) / span : 0);
    result("drain_backlog_points_per_s_from_resume",
           r.last_backlog_s > 0 ? static_cast<double>(backlog) / r.last_backlog_s : 0);
    // Live load while the backlog drained: [first backlog point, last backlog point].
    const double offered = static_cast<double>(sent_near(r.last_backlog_s) - sent_near(r.first_backlog_s));
    if (span > 0) {
      result("drain_live_offered_per_s", offered / span);
      result("drain_live_received_per_s", static_cast<double>(r.live_during_drain) / span);
    }
    // Whole 250 ms slots inside the drain window: the slowest and fastest for live
    // points, as points/s.
    const double slot = Tracker::kSlotS;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (auto s = static_cast<size_t>(std::ceil(r.first_backlog_s / slot));
         static_cast<double>(s + 1) * slot <= r.last_backlog_s; ++s) {
      uint64_t v = s < r.live_per_s.size() ? r.live_per_s[s] : 0;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    if (lo != UINT64_MAX) {
      result("drain_live_min_per_s", static_cast<double>(lo) / slot);
      result("drain_live_max_per_s", static_cast<double>(hi) / slot);
    }
  }
  if (r.have_live) result("drain_first_live_s", r.first_live_s);
  result("drain_live_sent", static_cast<double>(total_live));
  result("drain_live_received", static_cast<double>(tracker.live.load()));
  result("drain_live_duplicates", static_cast<double>(r.live_dups));
  result("drain_live_during_drain", static_cast<double>(r.live_during_drain));
  result("drain_live_p50_ms", percentile_ms(r.latency_drain, 0.50));
  result("drain_live_p99_ms", percentile_ms(r.latency_drain, 0.99));
  result("drain_live_max_ms", max_ms(r.latency_drain));
  result("drain_live_all_p50_ms", percentile_ms(r.latency_all, 0.50));
  result("drain_live_all_p99_ms", percentile_ms(r.latency_all, 0.99));
  result("drain_live_all_max_ms", max_ms(r.latency_all));
  std::fprintf(stderr, "  drain: backlog %llu of %llu (%llu duplicates), live sent %llu received %llu\n",
               static_cast<unsigned long long>(backlog), static_cast<unsigned long long>(o.backlog),
               static_cast<unsigned long long>(r.backlog_dups), static_cast<unsigned long long>(total_live),
               static_cast<unsigned long long>(tracker.live.load()));
  return complete ? 0 : 1;
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
    measure(watched, [&] { return sub.points(); }, [&] { return shared.sent.load(); }, [&] {
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
    if (o.mode == "fill") return run_fill(o);
    if (o.mode == "drain") return run_drain(o);
    return run_rtt(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "relay_bench: %s\n", e.what());
    return 1;
  }
}

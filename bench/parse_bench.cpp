// Micro-benchmark of the app-protocol hot path: LineFramer + parse_app_line over
// realistic data-point lines. Prints lines/s and MB/s, and counts heap allocations
// made while parsing (the data-point path must make none).
//
//   parse_bench [lines=200000] [passes=10] [chunk_bytes=65536]
//
// The same generated lines are framed and parsed `passes` times; the best pass is
// reported (the box is shared, so the best pass is the least disturbed one).

#include "edgelink/apps/app_message.hpp"
#include "edgelink/apps/line_framer.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>
#include <ctime>
#include <string>
#include <variant>

namespace {

std::atomic<uint64_t> g_allocations{0};

// CPU time of this thread: on a shared box wall time mostly measures the neighbours.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

// Counting allocator for this executable only, to prove the hot path does not allocate.
void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

int main(int argc, char** argv) {
  using edgelink::LineFramer;
  const size_t count = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200000;
  const int passes = argc > 2 ? std::atoi(argv[2]) : 10;
  const size_t chunk = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 65536;
  if (count == 0 || passes <= 0 || chunk == 0) {
    std::fprintf(stderr, "usage: parse_bench [lines>0] [passes>0] [chunk_bytes>0]\n");
    return 2;
  }

  // Varied numbers so the branch predictor cannot memorise one line.
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> accel(-2.0, 2.0);
  const char* streams[] = {"imu", "gps", "can_raw", "battery-1"};
  const char* labels[] = {"ok", "warn", "moving fast", "idle"};
  std::string data;
  data.reserve(count * 100);
  uint64_t ts = 1732180000123;
  char buf[256];
  for (size_t i = 0; i < count; ++i) {
    ts += rng() % 20;
    const int n = std::snprintf(buf, sizeof buf,
                                "{\"stream\":\"%s\",\"sequence\":%zu,\"timestamp\":%llu,\"ax\":%.4f,\"ay\":%.4f,"
                                "\"label\":\"%s\"}\n",
                                streams[i % 4], i, static_cast<unsigned long long>(ts), accel(rng), accel(rng),
                                labels[rng() % 4]);
    data.append(buf, static_cast<size_t>(n));
  }

  LineFramer framer(1 << 20);
  uint64_t points = 0, errors = 0, checksum = 0;
  double best = 1e300, total = 0, best_cpu = 1e300;
  const uint64_t allocations_before = g_allocations.load();
  for (int pass = 0; pass < passes; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = cpu_seconds();
    // Feed in socket-sized chunks so lines split across reads go through the buffer.
    for (size_t off = 0; off < data.size(); off += chunk) {
      std::string_view input(data.data() + off, std::min(chunk, data.size() - off));
      for (;;) {
        const auto r = framer.next(input);
        if (r.status == LineFramer::Status::NeedMore) break;
        input.remove_prefix(r.consumed);
        if (r.status != LineFramer::Status::Line) continue;
        const auto msg = edgelink::parse_app_line(r.line);
        if (const auto* p = std::get_if<edgelink::DataPoint>(&msg)) {
          ++points;
          checksum += p->sequence + p->head.size() + p->tail.size();
        } else {
          ++errors;
        }
      }
    }
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, t);
    best_cpu = std::min(best_cpu, cpu_seconds() - cpu_start);
    total += t;
  }
  const uint64_t allocations = g_allocations.load() - allocations_before;

  const double lines = static_cast<double>(count), bytes = static_cast<double>(data.size());
  std::printf("lines: %zu x %d passes  avg line: %.1f bytes  chunk: %zu bytes\n", count, passes, bytes / lines, chunk);
  std::printf("points: %llu  errors: %llu  (checksum %llu)\n", static_cast<unsigned long long>(points),
              static_cast<unsigned long long>(errors), static_cast<unsigned long long>(checksum));
  std::printf("best pass (wall): %.2f M lines/s  %.1f MB/s\n", lines / best / 1e6, bytes / best / 1e6);
  std::printf("best pass (cpu):  %.2f M lines/s  %.1f MB/s  %.0f ns/line\n", lines / best_cpu / 1e6,
              bytes / best_cpu / 1e6, best_cpu / lines * 1e9);
  std::printf("mean (wall):      %.2f M lines/s  %.1f MB/s\n", lines * passes / total / 1e6, bytes * passes / total / 1e6);
  std::printf("heap allocations while parsing: %llu (framer buffering of split lines included)\n",
              static_cast<unsigned long long>(allocations));
  return errors == 0 && points == count * static_cast<uint64_t>(passes) ? 0 : 1;
}

#include "edgelink/uploads/upload_io.hpp"

#include <catch2/catch.hpp>
#include <openssl/sha.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../temp_dir.hpp"

using namespace edgelink::uploads;

namespace {

std::vector<uint8_t> pattern(size_t n) {
  std::mt19937 rng(3);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

std::string sha256_hex(const uint8_t* p, size_t n) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(p, n, md);
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs the loop until the worker has run everything queued so far and its completions
// have run: a marker job queued last completes last.
void settle(asio::io_context& io, UploadIo& disk) {
  bool done = false;
  disk.run([] {}, [&done] { done = true; });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done && std::chrono::steady_clock::now() < until) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  REQUIRE(done);
}

}  // namespace

TEST_CASE("a part file: appends, syncs at multiples of sync_bytes, SHA-256, reopen at an offset", "[uploads]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);
  const std::string path = dir.path + "/k.part";
  const auto data = pattern(50000);

  PartPtr part;
  int open_error = -1;
  disk.open(path, 0, 4096, [&](PartPtr p, int e) {
    part = std::move(p);
    open_error = e;
  });
  settle(io, disk);
  REQUIRE(open_error == 0);
  REQUIRE(part);

  std::vector<PartProgress> seen;
  size_t at = 0;
  for (size_t n : {1u, 4095u, 7000u, 3u, 20000u}) {
    disk.append(part, std::vector<uint8_t>(data.begin() + at, data.begin() + at + n),
                [&](PartProgress p) { seen.push_back(p); });
    at += n;
  }
  settle(io, disk);
  REQUIRE(seen.size() == 5);
  for (const auto& p : seen) {
    CHECK(p.error == 0);
    CHECK(p.synced % 4096 == 0);
    CHECK(p.synced <= p.written);
  }
  CHECK(seen.back().written == at);
  CHECK(seen.back().synced == at / 4096 * 4096);

  std::string sha;
  PartProgress end;
  disk.finish(part, [&](PartProgress p, std::string s) {
    end = p;
    sha = std::move(s);
  });
  settle(io, disk);
  CHECK(end.synced == at);
  CHECK(sha == sha256_hex(data.data(), at));

  // Reopened at an offset: cut there, the prefix hashed again, the rest appended.
  part.reset();
  disk.open(path, 10000, 4096, [&](PartPtr p, int e) {
    part = std::move(p);
    open_error = e;
  });
  settle(io, disk);
  REQUIRE(open_error == 0);
  disk.append(part, std::vector<uint8_t>(data.begin() + 10000, data.end()), [](PartProgress) {});
  disk.finish(part, [&](PartProgress p, std::string s) {
    end = p;
    sha = std::move(s);
  });
  settle(io, disk);
  CHECK(end.written == data.size());
  CHECK(sha == sha256_hex(data.data(), data.size()));
  CHECK(slurp(path) == std::string(data.begin(), data.end()));

  // An offset beyond what the file holds is an error, not zeros.
  part.reset();
  disk.open(path, data.size() + 1, 4096, [&](PartPtr p, int e) {
    part = std::move(p);
    open_error = e;
  });
  settle(io, disk);
  CHECK(open_error != 0);
  CHECK_FALSE(part);
}

TEST_CASE("records, install, remove, read_at, keys", "[uploads]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);
  int error = -1;
  disk.save(dir.path + "/r.json", "{\"a\":1}", true, [&](int e) { error = e; });
  settle(io, disk);
  CHECK(error == 0);
  CHECK(slurp(dir.path + "/r.json") == "{\"a\":1}");
  disk.save(dir.path + "/r.json", "{\"a\":2}", false, [&](int e) { error = e; });
  settle(io, disk);
  CHECK(slurp(dir.path + "/r.json") == "{\"a\":2}");
  disk.save(dir.path + "/no/such/dir/r.json", "x", true, [&](int e) { error = e; });
  settle(io, disk);
  CHECK(error != 0);

  const std::string part = dir.write("k.part", "hello world");
  std::string path, why;
  disk.install(part, dir.path + "/out/sub", "f.bin", [&](std::string p, std::string e) {
    path = std::move(p);
    why = std::move(e);
  });
  settle(io, disk);
  CHECK(why.empty());
  CHECK(path == dir.path + "/out/sub/f.bin");
  CHECK(slurp(path) == "hello world");
  std::vector<uint8_t> five(5);
  CHECK(read_at(path, 6, five.data(), five.size()));
  CHECK(std::string(five.begin(), five.end()) == "world");
  CHECK_FALSE(read_at(path, 7, five.data(), five.size()));  // short

  bool removed = false;
  disk.remove({path, dir.path + "/missing"}, [&] { removed = true; });
  settle(io, disk);
  CHECK(removed);
  CHECK_FALSE(read_at(path, 0, five.data(), 1));

  const std::string a = random_key(), b = random_key();
  CHECK(a.size() == 22);
  CHECK(a != b);
  CHECK(a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == std::string::npos);
}

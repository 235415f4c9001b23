#include "edgelink/uploads/upload_io.hpp"

#include <catch2/catch.hpp>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <fstream>
#include <functional>
#include <random>
#include <set>
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

std::vector<uint8_t> slice(const std::vector<uint8_t>& v, size_t from, size_t n) {
  return std::vector<uint8_t>(v.begin() + static_cast<ptrdiff_t>(from), v.begin() + static_cast<ptrdiff_t>(from + n));
}

// OpenSSL's one-shot SHA-256, as lowercase hex.
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

std::string sha256_hex(const std::vector<uint8_t>& v) { return sha256_hex(v.data(), v.size()); }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

uint64_t size_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_size);
}

// Runs the loop until the worker has run everything queued so far and its completions
// have run: jobs run in call order and completions are posted in that order, so a marker
// job queued last completes last.
void settle(asio::io_context& io, UploadIo& disk) {
  bool done = false;
  disk.run([] {}, [&done] { done = true; });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done && std::chrono::steady_clock::now() < until) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  REQUIRE(done);
}

// A part as open() hands it over: the file and the SHA-256 of its prefix, which the
// caller goes on updating with the bytes it appends (UploadStore does so as they arrive).
struct Opened {
  PartPtr part;
  Sha256 sha;
  int error = -1;
  void append(UploadIo& disk, std::vector<uint8_t> bytes, std::function<void(PartProgress)> done = [](PartProgress) {}) {
    sha.update(bytes.data(), bytes.size());
    disk.append(part, std::move(bytes), std::move(done));
  }
};

Opened open_part(asio::io_context& io, UploadIo& disk, const std::string& path, uint64_t offset,
                 uint64_t sync_bytes = 4096) {
  Opened o;
  bool called = false;
  disk.open(path, offset, sync_bytes, [&](PartPtr p, Sha256 prefix, int e) {
    o.part = std::move(p);
    o.sha = std::move(prefix);
    o.error = e;
    called = true;
  });
  settle(io, disk);
  REQUIRE(called);
  return o;
}

PartProgress finish_part(asio::io_context& io, UploadIo& disk, const PartPtr& part) {
  PartProgress f;
  bool called = false;
  disk.finish(part, [&](PartProgress p) {
    f = p;
    called = true;
  });
  settle(io, disk);
  REQUIRE(called);
  return f;
}

}  // namespace

TEST_CASE("Sha256: the FIPS 180-2 vectors, fed whole or in pieces", "[uploads][upload_io]") {
  Sha256 empty;
  CHECK(empty.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 abc;
  abc.update(reinterpret_cast<const uint8_t*>("abc"), 3);
  CHECK(abc.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(abc.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");  // hex() again
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  Sha256 pieces;
  for (size_t at = 0; at < two_blocks.size(); at += 5)
    pieces.update(reinterpret_cast<const uint8_t*>(two_blocks.data()) + at, std::min<size_t>(5, two_blocks.size() - at));
  CHECK(pieces.hex() == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // More after hex() (a partial grant): the hash of everything so far.
  const auto data = pattern(100000);
  Sha256 grow;
  grow.update(data.data(), 40000);
  CHECK(grow.hex() == sha256_hex(data.data(), 40000));
  grow.update(data.data() + 40000, 0);
  grow.update(data.data() + 40000, 60000);
  CHECK(grow.hex() == sha256_hex(data));
  // A moved hash goes on where it was.
  Sha256 moved(std::move(grow));
  moved.update(reinterpret_cast<const uint8_t*>("x"), 1);
  std::vector<uint8_t> plus = data;
  plus.push_back('x');
  CHECK(moved.hex() == sha256_hex(plus));
  Sha256 assigned;
  assigned = std::move(moved);
  CHECK(assigned.hex() == sha256_hex(plus));
}

TEST_CASE("UploadIo: a new part holds the bytes appended; its hash is theirs", "[uploads][upload_io]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);

  auto abc = open_part(io, disk, dir.path + "/abc.part", 0);
  REQUIRE(abc.error == 0);
  REQUIRE(abc.part);
  CHECK(abc.sha.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");  // no prefix
  abc.append(disk, {'a', 'b', 'c'});
  const auto f = finish_part(io, disk, abc.part);
  CHECK(f.written == 3);
  CHECK(f.synced == 3);
  CHECK(f.error == 0);
  CHECK(slurp(dir.path + "/abc.part") == "abc");
  CHECK(abc.sha.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  // Nothing written: an empty file.
  auto empty = open_part(io, disk, dir.path + "/empty.part", 0);
  REQUIRE(empty.part);
  empty.append(disk, {});
  const auto e = finish_part(io, disk, empty.part);
  CHECK(e.written == 0);
  CHECK(e.synced == 0);
  CHECK(size_of(dir.path + "/empty.part") == 0);
}

TEST_CASE("UploadIo: appends sync at every multiple of sync_bytes, finish syncs the rest", "[uploads][upload_io]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);
  const std::string path = dir.path + "/k.part";
  const auto data = pattern(50000);

  auto o = open_part(io, disk, path, 0, 4096);
  REQUIRE(o.error == 0);
  REQUIRE(o.part);

  // Odd pieces: one that lands exactly on a boundary (1 + 4095), one that crosses several.
  const std::vector<size_t> pieces = {1, 4095, 7000, 3, 0, 20000, 4097, 1, 8191, 3};
  std::vector<PartProgress> seen;
  size_t at = 0;
  for (size_t n : pieces) {
    o.append(disk, slice(data, at, n), [&seen](PartProgress p) { seen.push_back(p); });
    at += n;
  }
  settle(io, disk);
  REQUIRE(seen.size() == pieces.size());
  size_t written = 0;
  for (size_t i = 0; i < seen.size(); ++i) {
    written += pieces[i];
    INFO("after piece " << i << " (" << pieces[i] << " bytes), " << written << " written");
    CHECK(seen[i].error == 0);
    CHECK(seen[i].written == written);
    CHECK(seen[i].synced % 4096 == 0);
    CHECK(seen[i].synced == written / 4096 * 4096);  // every boundary reached is synced
  }
  CHECK(seen[1].synced == 4096);
  CHECK(size_of(path) == at);

  const auto f = finish_part(io, disk, o.part);
  CHECK(f.error == 0);
  CHECK(f.written == at);
  CHECK(f.synced == at);  // all of it after finish
  const std::string content = slurp(path);
  CHECK(content == std::string(data.begin(), data.begin() + static_cast<ptrdiff_t>(at)));
  CHECK(o.sha.hex() == sha256_hex(data.data(), at));
  CHECK(sha256_hex(reinterpret_cast<const uint8_t*>(content.data()), content.size()) == o.sha.hex());
}

TEST_CASE("UploadIo: a part takes more bytes after finish (a partial grant)", "[uploads][upload_io]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);
  const auto data = pattern(10000);
  auto o = open_part(io, disk, dir.path + "/k.part", 0, 4096);
  REQUIRE(o.part);
  o.append(disk, slice(data, 0, 6000));
  CHECK(finish_part(io, disk, o.part).synced == 6000);
  CHECK(o.sha.hex() == sha256_hex(data.data(), 6000));
  PartProgress p;
  o.append(disk, slice(data, 6000, 4000), [&p](PartProgress q) { p = q; });
  settle(io, disk);
  CHECK(p.written == 10000);
  CHECK(p.synced == 8192);  // boundaries stay at multiples of sync_bytes from the start of the file
  const auto f = finish_part(io, disk, o.part);
  CHECK(f.synced == 10000);
  CHECK(o.sha.hex() == sha256_hex(data));
  CHECK(slurp(dir.path + "/k.part") == std::string(data.begin(), data.end()));
}

TEST_CASE("UploadIo: reopened at an offset, the part is cut there and its prefix hashed again",
          "[uploads][upload_io]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);
  const std::string path = dir.path + "/k.part";
  const auto data = pattern(3000000);  // more than the 1 MiB the prefix is read in
  {
    auto o = open_part(io, disk, path, 0, 65536);
    REQUIRE(o.part);
    o.append(disk, slice(data, 0, 2500000));
    PartProgress closed;
    disk.close(o.part, [&closed](PartProgress p) { closed = p; });
    settle(io, disk);
    CHECK(closed.written == 2500000);
    CHECK(closed.synced == 2500000);  // close syncs
    CHECK(closed.error == 0);
  }
  REQUIRE(size_of(path) == 2500000);

  // The record said 2162688 (33 x 65536) durable bytes: what is past them goes, and the
  // hash the caller goes on with is that of the prefix.
  const uint64_t offset = 2162688;
  auto o = open_part(io, disk, path, offset, 65536);
  REQUIRE(o.error == 0);
  REQUIRE(o.part);
  CHECK(size_of(path) == offset);
  CHECK(o.sha.hex() == sha256_hex(data.data(), offset));
  auto f = finish_part(io, disk, o.part);
  CHECK(f.written == offset);
  CHECK(f.synced == offset);

  // The rest appended gives the whole file and its hash.
  std::vector<PartProgress> seen;
  o.append(disk, slice(data, offset, 5000), [&seen](PartProgress p) { seen.push_back(p); });
  o.append(disk, slice(data, offset + 5000, data.size() - offset - 5000), [&seen](PartProgress p) { seen.push_back(p); });
  settle(io, disk);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].written == offset + 5000);
  CHECK(seen[0].synced == offset);
  CHECK(seen[1].written == data.size());
  CHECK(seen[1].synced == data.size() / 65536 * 65536);
  f = finish_part(io, disk, o.part);
  CHECK(f.written == data.size());
  CHECK(f.synced == data.size());
  CHECK(o.sha.hex() == sha256_hex(data));
  CHECK(slurp(path) == std::string(data.begin(), data.end()));

  // offset == size keeps it all; offset 0 starts it again.
  o.part.reset();
  auto whole = open_part(io, disk, path, data.size(), 65536);
  REQUIRE(whole.part);
  CHECK(whole.sha.hex() == sha256_hex(data));
  CHECK(size_of(path) == data.size());
  whole.part.reset();
  auto again = open_part(io, disk, path, 0, 65536);
  REQUIRE(again.part);
  CHECK(size_of(path) == 0);
  CHECK(again.sha.hex() == sha256_hex(nullptr, 0));
}

TEST_CASE("UploadIo: open fails past the end of the file and where it cannot create it", "[uploads][upload_io]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);
  const std::string path = dir.write("k.part", "0123456789");

  // The record promised more bytes than the file holds: an error, not zeros.
  auto beyond = open_part(io, disk, path, 11, 4096);
  CHECK(beyond.error != 0);
  CHECK_FALSE(beyond.part);
  CHECK(slurp(path) == "0123456789");  // left alone

  // A new file with an offset: it holds nothing.
  auto fresh = open_part(io, disk, dir.path + "/new.part", 1, 4096);
  CHECK(fresh.error != 0);
  CHECK_FALSE(fresh.part);

  auto nodir = open_part(io, disk, dir.path + "/no/such/dir/k.part", 0, 4096);
  CHECK(nodir.error == ENOENT);
  CHECK_FALSE(nodir.part);

  // At the file's size exactly: fine.
  auto at_end = open_part(io, disk, path, 10, 4096);
  CHECK(at_end.error == 0);
  REQUIRE(at_end.part);
  CHECK(at_end.sha.hex() == sha256_hex(reinterpret_cast<const uint8_t*>("0123456789"), 10));
}

TEST_CASE("UploadIo: completions run on the loop in call order", "[uploads][upload_io]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);
  std::vector<int> order;
  auto o = open_part(io, disk, dir.path + "/k.part", 0, 4096);
  REQUIRE(o.part);
  for (int i = 0; i < 20; ++i) {
    if (i % 3 == 0)
      disk.save(dir.path + "/r" + std::to_string(i) + ".json", "{}", i % 2 == 0, [&order, i](int) { order.push_back(i); });
    else
      disk.append(o.part, std::vector<uint8_t>(static_cast<size_t>(i * 100), 'x'),
                  [&order, i](PartProgress) { order.push_back(i); });
  }
  // Nothing runs before the loop does.
  CHECK(order.empty());
  settle(io, disk);
  REQUIRE(order.size() == 20);
  for (int i = 0; i < 20; ++i) CHECK(order[static_cast<size_t>(i)] == i);
}

TEST_CASE("UploadIo: save writes through a temporary and a rename, durable or not", "[uploads][upload_io]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);
  const std::string path = dir.path + "/r.json";
  int error = -1;
  disk.save(path, "{\"a\":1}", true, [&error](int e) { error = e; });
  settle(io, disk);
  CHECK(error == 0);
  CHECK(slurp(path) == "{\"a\":1}");
  CHECK_FALSE(exists(path + ".tmp"));

  error = -1;
  disk.save(path, "{\"a\":2}", false, [&error](int e) { error = e; });
  settle(io, disk);
  CHECK(error == 0);
  CHECK(slurp(path) == "{\"a\":2}");
  CHECK_FALSE(exists(path + ".tmp"));

  // Shorter content replaces all of the old.
  disk.save(path, "{}", true, [&error](int e) { error = e; });
  settle(io, disk);
  CHECK(slurp(path) == "{}");

  // Bytes of any value, including NUL.
  const std::string binary("a\0b\xff\n", 5);
  disk.save(path, binary, false, [&error](int e) { error = e; });
  settle(io, disk);
  CHECK(slurp(path) == binary);

  error = 0;
  disk.save(dir.path + "/no/such/dir/r.json", "x", true, [&error](int e) { error = e; });
  settle(io, disk);
  CHECK(error == ENOENT);
  error = 0;
  disk.save(dir.path + "/no/such/dir/r.json", "x", false, [&error](int e) { error = e; });
  settle(io, disk);
  CHECK(error == ENOENT);
  // No completion is fine.
  disk.save(dir.path + "/quiet.json", "q", false, nullptr);
  settle(io, disk);
  CHECK(slurp(dir.path + "/quiet.json") == "q");
}

TEST_CASE("UploadIo: install moves a part into its directory, created as needed", "[uploads][upload_io]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);
  const std::string part = dir.write("k.part", "hello world");
  std::string path = "unset", why = "unset";
  disk.install(part, dir.path + "/out/sub", "f.bin", [&](std::string p, std::string e) {
    path = std::move(p);
    why = std::move(e);
  });
  settle(io, disk);
  CHECK(why.empty());
  CHECK(path == dir.path + "/out/sub/f.bin");
  CHECK(slurp(path) == "hello world");
  CHECK_FALSE(exists(part));  // moved, not copied

  // A file of the same name is replaced.
  const std::string second = dir.write("k2.part", "second");
  disk.install(second, dir.path + "/out/sub", "f.bin", [&](std::string p, std::string e) {
    path = std::move(p);
    why = std::move(e);
  });
  settle(io, disk);
  CHECK(why.empty());
  CHECK(path == dir.path + "/out/sub/f.bin");
  CHECK(slurp(path) == "second");

  // A part that is not there: an error text and no path.
  disk.install(dir.path + "/missing.part", dir.path + "/out", "g.bin", [&](std::string p, std::string e) {
    path = std::move(p);
    why = std::move(e);
  });
  settle(io, disk);
  CHECK(path.empty());
  CHECK_FALSE(why.empty());
  CHECK_FALSE(exists(dir.path + "/out/g.bin"));

  // A directory that cannot be made (a file is in the way).
  const std::string third = dir.write("k3.part", "third");
  dir.write("blocker", "x");
  disk.install(third, dir.path + "/blocker/sub", "h.bin", [&](std::string p, std::string e) {
    path = std::move(p);
    why = std::move(e);
  });
  settle(io, disk);
  CHECK(path.empty());
  CHECK_FALSE(why.empty());
  CHECK(slurp(third) == "third");  // the part stays for a retry
}

TEST_CASE("UploadIo: remove, read_at", "[uploads][upload_io]") {
  edgelink::test::TempDir dir;
  asio::io_context io;
  UploadIo disk(io);
  const std::string a = dir.write("a.part", "hello world");
  const std::string b = dir.write("a.json", "{}");

  std::vector<uint8_t> five(5);
  CHECK(read_at(a, 0, five.data(), five.size()));
  CHECK(std::string(five.begin(), five.end()) == "hello");
  CHECK(read_at(a, 6, five.data(), five.size()));
  CHECK(std::string(five.begin(), five.end()) == "world");
  CHECK_FALSE(read_at(a, 7, five.data(), five.size()));   // short
  CHECK_FALSE(read_at(a, 100, five.data(), five.size()));  // past the end
  CHECK(read_at(a, 11, five.data(), 0));                   // nothing asked, nothing missing
  CHECK_FALSE(read_at(dir.path + "/missing", 0, five.data(), 1));

  // A large read in one call.
  const auto data = pattern(300000);
  const std::string big = dir.write("big.part", std::string(data.begin(), data.end()));
  std::vector<uint8_t> out(200000);
  CHECK(read_at(big, 99999, out.data(), out.size()));
  CHECK(out == slice(data, 99999, 200000));

  bool removed = false;
  disk.remove({a, b, dir.path + "/missing"}, [&removed] { removed = true; });
  settle(io, disk);
  CHECK(removed);
  CHECK_FALSE(exists(a));
  CHECK_FALSE(exists(b));
  CHECK_FALSE(read_at(a, 0, five.data(), 1));
  CHECK(exists(big));
}

TEST_CASE("random_key: 22 characters of base64url, a new one each time", "[uploads][upload_io]") {
  std::set<std::string> keys;
  for (int i = 0; i < 1000; ++i) {
    const std::string k = random_key();
    REQUIRE(k.size() == 22);
    CHECK(k.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == std::string::npos);
    keys.insert(k);
  }
  CHECK(keys.size() == 1000);
  // 128 bits in 22 characters: the last one carries 2 bits, so it is one of A, Q, g, w.
  for (const auto& k : keys) CHECK(std::string("AQgw").find(k.back()) != std::string::npos);
  CHECK(random_key() != random_key());
}

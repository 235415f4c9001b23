#pragma once
// The disk side of uploads (spec/xstream.md §9), on a worker thread of its own so the
// event loop never waits for write(2), fdatasync(2) or a rename: every call queues a job
// and its completion is posted back to the io_context, in call order.
//
// A PartFile is the bytes of one key being received: its descriptor, and how much of it
// is written and how much is durable (fdatasync'd). After open() it is touched only by
// worker jobs, so it needs no lock. The SHA-256 (§9: computed as the bytes arrive) is
// the caller's Sha256, updated on the event loop as bytes arrive, in parallel with the
// worker's writes and syncs: on a 2-core gateway hashing on the worker would add its
// time to every write.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>

#include "edgelink/util/sha256.hpp"

namespace edgelink::uploads {

struct PartFile;
using PartPtr = std::shared_ptr<PartFile>;

using edgelink::Sha256;  // util/sha256.hpp; data streams hash their content too

struct PartProgress {
  uint64_t written = 0;  // bytes in the file
  uint64_t synced = 0;   // bytes known durable
  int error = 0;         // errno of the first failed write or sync; the part takes no more bytes
};

class UploadIo {
 public:
  explicit UploadIo(asio::io_context& io);
  ~UploadIo();  // runs what is queued, then joins; completions not yet run are dropped
  UploadIo(const UploadIo&) = delete;
  UploadIo& operator=(const UploadIo&) = delete;

  // Opens `path` (created when missing), cuts it to `offset` bytes (a shorter file is an
  // error: the record promised more than is there) and hashes that prefix again (§9),
  // for the caller to go on with. The part fdatasyncs at every multiple of `sync_bytes`.
  void open(std::string path, uint64_t offset, uint64_t sync_bytes,
            std::function<void(PartPtr, Sha256 prefix, int error)> done);
  // Writes at the end; fdatasync when sync_bytes more are written since the last one.
  void append(PartPtr part, std::vector<uint8_t> bytes, std::function<void(PartProgress)> done);
  // fdatasync now.
  void finish(PartPtr part, std::function<void(PartProgress)> done);
  // fdatasync and close (a connection ended mid-way).
  void close(PartPtr part, std::function<void(PartProgress)> done);

  // Writes `content` to `path` through a temporary file and a rename. `durable`: the
  // temporary is fdatasync'd first and the directory fsync'd after, so the new content
  // survives a power loss; otherwise only the rename is atomic (an older content may come
  // back after a power loss, never a torn one). 0 or errno.
  void save(std::string path, std::string content, bool durable, std::function<void(int error)> done);
  // Unlinks each path (missing ones are fine).
  void remove(std::vector<std::string> paths, std::function<void()> done);
  // Moves `part` to `dir`/`name` (dir created as needed), replacing a file there
  // atomically, and fsyncs `dir`; across filesystems: copy, fsync, rename, delete the
  // part. Returns the final path, or an error text.
  void install(std::string part, std::string dir, std::string name,
               std::function<void(std::string path, std::string error)> done);
  // Any other job (start-up scans).
  void run(std::function<void()> job, std::function<void()> done);

 private:
  void submit(std::function<std::function<void()>()> job);
  void loop();

  asio::io_context& io_;
  std::mutex mutex_;
  std::condition_variable cv_;
  // Each job runs on the worker and returns the completion to post to the loop.
  std::deque<std::function<std::function<void()>()>> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

// Bytes of `path` at `offset` (on the caller's thread: device pushes read ~500 bytes at a
// time from a file the page cache holds). False on a short read or an error.
bool read_at(const std::string& path, uint64_t offset, uint8_t* out, size_t len);
// 16 random bytes as 22 characters of base64url (a key, §3.1).
std::string random_key();

}  // namespace edgelink::uploads

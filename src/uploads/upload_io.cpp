#include "edgelink/uploads/upload_io.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <utility>

namespace edgelink::uploads {

struct PartFile {
  int fd = -1;
  uint64_t sync_bytes = 1 << 20;
  PartProgress progress;
  ~PartFile() {
    if (fd >= 0) ::close(fd);
  }
};


namespace {

bool write_all(int fd, const uint8_t* p, size_t n, int& error) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      error = errno;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void sync_part(PartFile& part) {
  if (part.progress.error || part.progress.synced == part.progress.written) return;
  if (::fdatasync(part.fd) != 0) {
    part.progress.error = errno;
    return;
  }
  part.progress.synced = part.progress.written;
}

int fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

int save_file(const std::string& path, const std::string& content, bool durable) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return errno;
  int error = 0;
  write_all(fd, reinterpret_cast<const uint8_t*>(content.data()), content.size(), error);
  if (!error && durable && ::fdatasync(fd) != 0) error = errno;
  ::close(fd);
  if (!error && ::rename(tmp.c_str(), path.c_str()) != 0) error = errno;
  if (error) {
    ::unlink(tmp.c_str());
    return error;
  }
  return durable ? fsync_dir(parent_of(path)) : 0;
}

// Across filesystems: a copy next to the destination, synced, then renamed over it.
std::string copy_across(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".part";
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return std::string("cannot open ") + from + ": " + std::strerror(errno);
  const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    const int e = errno;
    ::close(in);
    return "cannot create " + tmp + ": " + std::strerror(e);
  }
  std::vector<uint8_t> buf(1 << 20);
  int error = 0;
  for (;;) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error = errno;
    if (n <= 0) break;
    if (!write_all(out, buf.data(), static_cast<size_t>(n), error)) break;
  }
  if (!error && ::fsync(out) != 0) error = errno;
  ::close(in);
  ::close(out);
  if (!error && ::rename(tmp.c_str(), to.c_str()) != 0) error = errno;
  if (error) {
    ::unlink(tmp.c_str());
    return "cannot copy to " + to + ": " + std::strerror(error);
  }
  ::unlink(from.c_str());
  return {};
}

}  // namespace


UploadIo::UploadIo(asio::io_context& io) : io_(io), thread_([this] { loop(); }) {}

UploadIo::~UploadIo() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void UploadIo::submit(std::function<std::function<void()>()> job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void UploadIo::loop() {
  for (;;) {
    std::function<std::function<void()>()> job;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    auto completion = job();
    if (completion) asio::post(io_, std::move(completion));
  }
}

void UploadIo::open(std::string path, uint64_t offset, uint64_t sync_bytes,
                    std::function<void(PartPtr, Sha256, int)> done) {
  submit([path = std::move(path), offset, sync_bytes, done = std::move(done)]() -> std::function<void()> {
    auto part = std::make_shared<PartFile>();
    part->sync_bytes = sync_bytes;
    auto sha = std::make_shared<Sha256>();
    int error = 0;
    part->fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (part->fd < 0) error = errno;
    struct stat st {};
    if (!error && ::fstat(part->fd, &st) != 0) error = errno;
    if (!error && static_cast<uint64_t>(st.st_size) < offset) error = EIO;
    if (!error && ::ftruncate(part->fd, static_cast<off_t>(offset)) != 0) error = errno;
    // §9: after a resume the durable prefix is read again for the hash.
    std::vector<uint8_t> buf(1 << 20);
    uint64_t pos = 0;
    while (!error && pos < offset) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), offset - pos));
      const ssize_t n = ::pread(part->fd, buf.data(), want, static_cast<off_t>(pos));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error = n < 0 ? errno : EIO;
        break;
      }
      sha->update(buf.data(), static_cast<size_t>(n));
      pos += static_cast<uint64_t>(n);
    }
    if (!error && ::lseek(part->fd, static_cast<off_t>(offset), SEEK_SET) < 0) error = errno;
    part->progress.written = part->progress.synced = offset;
    if (error) part.reset();
    return [done, part, sha, error] { done(part, std::move(*sha), error); };
  });
}

void UploadIo::append(PartPtr part, std::vector<uint8_t> bytes, std::function<void(PartProgress)> done) {
  submit([part = std::move(part), bytes = std::move(bytes), done = std::move(done)]() -> std::function<void()> {
    PartProgress& p = part->progress;
    // Synced at every multiple of sync_bytes (§9): the durable offsets a resume gets.
    const uint8_t* data = bytes.data();
    size_t left = bytes.size();
    while (left > 0 && !p.error) {
      const uint64_t boundary = (p.written / part->sync_bytes + 1) * part->sync_bytes;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, boundary - p.written));
      if (!write_all(part->fd, data, n, p.error)) break;
      p.written += n;
      data += n;
      left -= n;
      if (p.written == boundary) sync_part(*part);
    }
    return [done, p] { done(p); };
  });
}

void UploadIo::finish(PartPtr part, std::function<void(PartProgress)> done) {
  submit([part = std::move(part), done = std::move(done)]() -> std::function<void()> {
    sync_part(*part);
    return [done, p = part->progress] { done(p); };
  });
}

void UploadIo::close(PartPtr part, std::function<void(PartProgress)> done) {
  submit([part = std::move(part), done = std::move(done)]() -> std::function<void()> {
    sync_part(*part);
    ::close(part->fd);
    part->fd = -1;
    return [done, p = part->progress] { done(p); };
  });
}

void UploadIo::save(std::string path, std::string content, bool durable, std::function<void(int)> done) {
  submit([path = std::move(path), content = std::move(content), durable,
          done = std::move(done)]() -> std::function<void()> {
    const int error = save_file(path, content, durable);
    if (!done) return {};
    return [done, error] { done(error); };
  });
}

void UploadIo::remove(std::vector<std::string> paths, std::function<void()> done) {
  submit([paths = std::move(paths), done = std::move(done)]() -> std::function<void()> {
    for (const auto& p : paths) ::unlink(p.c_str());
    return done;
  });
}

void UploadIo::install(std::string part, std::string dir, std::string name,
                       std::function<void(std::string, std::string)> done) {
  submit([part = std::move(part), dir = std::move(dir), name = std::move(name),
          done = std::move(done)]() -> std::function<void()> {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    const std::string to = dir + "/" + name;
    std::string error;
    if (ec) {
      error = "cannot create " + dir + ": " + ec.message();
    } else if (::rename(part.c_str(), to.c_str()) != 0) {
      error = errno == EXDEV ? copy_across(part, to) : "cannot move the upload to " + to + ": " + std::strerror(errno);
    }
    if (error.empty()) {
      if (const int e = fsync_dir(dir)) error = "cannot sync " + dir + ": " + std::strerror(e);
    }
    return [done, to, error] { done(error.empty() ? to : std::string(), error); };
  });
}

void UploadIo::run(std::function<void()> job, std::function<void()> done) {
  submit([job = std::move(job), done = std::move(done)]() -> std::function<void()> {
    job();
    return done;
  });
}

bool read_at(const std::string& path, uint64_t offset, uint8_t* out, size_t len) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t got = 0;
  while (got < len) {
    const ssize_t n = ::pread(fd, out + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return got == len;
}

std::string random_key() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    // The kernel's generator, should OpenSSL's ever fail.
    const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    const bool ok = fd >= 0 && ::read(fd, bytes, sizeof bytes) == static_cast<ssize_t>(sizeof bytes);
    if (fd >= 0) ::close(fd);
    if (!ok) throw std::runtime_error("no random bytes for an upload key");
  }
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string key;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      key += alphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0) key += alphabet[(acc << (6 - bits)) & 63];
  return key;
}

}  // namespace edgelink::uploads

#pragma once
// An incremental SHA-256 (libcrypto), for uploads (xstream.md §9) and data-stream
// trailers (datastreams.md §3).

#include <cstddef>
#include <cstdint>
#include <string>

namespace edgelink {

// An incremental SHA-256 (libcrypto).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&& other) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const uint8_t* data, size_t len);
  // Lowercase hex of everything so far; more may be added afterwards.
  std::string hex() const;

 private:
  void* ctx_;  // EVP_MD_CTX
};

}  // namespace edgelink

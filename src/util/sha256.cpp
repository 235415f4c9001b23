#include "edgelink/util/sha256.hpp"

#include <openssl/evp.h>

#include <stdexcept>
#include <utility>

namespace edgelink {
namespace {
std::string to_hex(const unsigned char* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}
}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("libcrypto cannot make a SHA-256 context");
}
Sha256::~Sha256() {
  if (ctx_) EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
}
Sha256::Sha256(Sha256&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}
Sha256& Sha256::operator=(Sha256&& other) noexcept {
  std::swap(ctx_, other.ctx_);
  return *this;
}
void Sha256::update(const uint8_t* data, size_t len) {
  if (ctx_ && len) EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, len);
}

std::string Sha256::hex() const {
  if (!ctx_) return {};
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  std::string out;
  if (copy && EVP_MD_CTX_copy_ex(copy, static_cast<EVP_MD_CTX*>(ctx_)) == 1 && EVP_DigestFinal_ex(copy, md, &len) == 1)
    out = to_hex(md, len);
  EVP_MD_CTX_free(copy);
  return out;
}

}  // namespace edgelink

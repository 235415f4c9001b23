#pragma once
// JWT checks for device requests (spec/http-api.md §4.8): compact JWS, alg EdDSA,
// Ed25519 signature by the configured public key, exp required, nbf honoured, both
// with 10 s of leeway, sub = the device id of the path. edgelink only verifies tokens.
// Pure: the time is passed in. Fuzzed by tests/fuzz/jwt_fuzz.cpp.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <openssl/types.h>  // forward declarations only

namespace edgelink::http {

enum class AuthResult { Ok, Missing, BadPrefix, Invalid, SubjectInvalid };

// The exact 401 reply texts (RTIO); "" for Ok.
const char* auth_reply_text(AuthResult result);

// Longer tokens are refused before anything is decoded.
inline constexpr size_t kMaxJwtBytes = 8 * 1024;
// Clock skew allowed on exp and nbf.
inline constexpr std::chrono::seconds kJwtLeeway{10};

// Holds one Ed25519 public key. Move-only; a config reload builds a new one and
// replaces the old (the HTTP server keeps it in a unique_ptr).
class JwtVerifier {
 public:
  // A PEM SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----", `openssl pkey -pubout`)
  // holding an Ed25519 key. On failure: nullptr and `error` says why, for an operator
  // ("cannot read PATH: No such file or directory", "PATH: a RSA key, not an Ed25519
  // public key", ...).
  static std::unique_ptr<JwtVerifier> from_pem_file(const std::string& path, std::string& error);
  // As above; `error` has no path ("a RSA key, not an Ed25519 public key").
  static std::unique_ptr<JwtVerifier> from_pem(std::string_view pem, std::string& error);

  // `authorization_header`: the header's value, nullptr when the request has none.
  AuthResult check(const std::string* authorization_header, std::string_view device_id,
                   std::chrono::system_clock::time_point now) const;

  JwtVerifier(JwtVerifier&&) noexcept = default;
  JwtVerifier& operator=(JwtVerifier&&) noexcept = default;
  ~JwtVerifier();

 private:
  struct KeyFree {
    void operator()(EVP_PKEY* key) const;
  };
  using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;
  explicit JwtVerifier(KeyPtr key);

  KeyPtr key_;
};

}  // namespace edgelink::http

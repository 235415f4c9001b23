// libFuzzer target for the JWT checks of spec/http-api.md §4.8. The input is the
// Authorization header as sent, and again with "Bearer " put in front. Checks, beyond
// "no crash": the prefix decides Missing/BadPrefix and nothing else does; oversized
// tokens are refused; a token accepted for one subject is refused for another.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "edgelink/http/jwt.hpp"

using namespace edgelink::http;

namespace {

// A throwaway key pair made for this target (`openssl genpkey -algorithm Ed25519 |
// openssl pkey -pubout`); its private half signed tests/fuzz/corpus/jwt and is gone.
constexpr const char* kPublicPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEA+QNyAt+ppPjJpoDEWgWOqfmEsEHsfy/3aX8MBstJDW8=\n"
    "-----END PUBLIC KEY-----\n";
// {"alg":"EdDSA","typ":"JWT"}.{"sub":"mcu1","exp":4102444800} (2100-01-01), by that key.
constexpr const char* kValidToken =
    "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtY3UxIiwiZXhwIjo0MTAyNDQ0ODAwfQ."
    "MIl7f54ezgVy1FIcsD7FaoC-I2BNb8XSfEOmhAuRbxDGdEdrrbITyGMS9VX7Lu9vmZtodKLHyWIOi_tNr2WxBg";

const std::chrono::system_clock::time_point kNow{std::chrono::seconds(1732180000)};

const JwtVerifier& verifier() {
  static const std::unique_ptr<JwtVerifier> v = [] {
    std::string error;
    auto made = JwtVerifier::from_pem(kPublicPem, error);
    if (!made) abort();
    // A target whose key cannot verify anything would fuzz only the refusals.
    const std::string header = std::string("Bearer ") + kValidToken;
    if (made->check(&header, "mcu1", kNow) != AuthResult::Ok) abort();
    return made;
  }();
  return *v;
}

void check(const std::string& header) {
  const AuthResult r = verifier().check(&header, "mcu1", kNow);
  const bool bearer = header.starts_with("Bearer ");
  if (r == AuthResult::Missing) abort();
  if ((r == AuthResult::BadPrefix) != !bearer) abort();
  if (bearer && header.size() - 7 > kMaxJwtBytes && r != AuthResult::Invalid) abort();
  if (r == AuthResult::Ok && verifier().check(&header, "mcu2", kNow) != AuthResult::SubjectInvalid) abort();
  if (r == AuthResult::SubjectInvalid && verifier().check(&header, "mcu1", kNow) != AuthResult::SubjectInvalid) {
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  check(input);
  check("Bearer " + input);
  if (verifier().check(nullptr, "mcu1", kNow) != AuthResult::Missing) abort();
  return 0;
}

#include "edgelink/http/jwt.hpp"

#include <catch2/catch.hpp>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "edgelink/http/base64.hpp"
#include "../temp_dir.hpp"

using namespace edgelink::http;
using edgelink::test::TempDir;
using namespace std::string_literals;
using std::chrono::seconds;
using std::chrono::system_clock;

namespace {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;

Key ed25519_key() {
  Key k(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  REQUIRE(k);
  return k;
}

std::string public_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  REQUIRE(PEM_write_bio_PUBKEY(bio.get(), key) == 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string private_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string ed25519_sign(EVP_PKEY* key, std::string_view message) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key) == 1);
  unsigned char sig[64];
  size_t len = sizeof sig;
  REQUIRE(EVP_DigestSign(ctx.get(), sig, &len, reinterpret_cast<const unsigned char*>(message.data()),
                         message.size()) == 1);
  REQUIRE(len == 64);
  return std::string(reinterpret_cast<const char*>(sig), len);
}

constexpr const char* kHeader = R"({"alg":"EdDSA","typ":"JWT"})";
const system_clock::time_point kNow{seconds(1732180000)};
constexpr long long kNowSecs = 1732180000;

std::string claims_with_exp(long long exp, const std::string& sub = "mcu1") {
  return R"({"sub":")" + sub + R"(","exp":)" + std::to_string(exp) + "}";
}

// A compact JWS over the given JSON texts.
std::string make_token(EVP_PKEY* key, std::string_view header, std::string_view claims) {
  const std::string signing_input = base64url_encode_raw(header) + "." + base64url_encode_raw(claims);
  return signing_input + "." + base64url_encode_raw(ed25519_sign(key, signing_input));
}

// A token of the two segments exactly as given, signed as given.
std::string signed_segments(EVP_PKEY* key, const std::string& header_segment, const std::string& claims_segment) {
  const std::string signing_input = header_segment + "." + claims_segment;
  return signing_input + "." + base64url_encode_raw(ed25519_sign(key, signing_input));
}

struct Fixture {
  Key key = ed25519_key();
  std::unique_ptr<JwtVerifier> verifier;
  Fixture() {
    std::string error;
    verifier = JwtVerifier::from_pem(public_pem(key.get()), error);
    REQUIRE(verifier);
    CHECK(error.empty());
  }
  std::string token(std::string_view claims, std::string_view header = kHeader) const {
    return make_token(key.get(), header, claims);
  }
  AuthResult check_header(const std::string& value, std::string_view device = "mcu1",
                          system_clock::time_point now = kNow) const {
    return verifier->check(&value, device, now);
  }
  AuthResult check(const std::string& token, std::string_view device = "mcu1",
                   system_clock::time_point now = kNow) const {
    return check_header("Bearer " + token, device, now);
  }
};


}  // namespace

TEST_CASE("auth_reply_text gives RTIO's 401 texts", "[http]") {
  CHECK(std::string(auth_reply_text(AuthResult::Missing)) == "Missing or malformed Authorization header\n");
  CHECK(std::string(auth_reply_text(AuthResult::BadPrefix)) == "Invalid Authorization header\n");
  CHECK(std::string(auth_reply_text(AuthResult::Invalid)) == "Invalid or expired JWT\n");
  CHECK(std::string(auth_reply_text(AuthResult::SubjectInvalid)) == "JWT subject invalid\n");
  CHECK(std::string(auth_reply_text(AuthResult::Ok)).empty());
}

TEST_CASE("JwtVerifier accepts a valid EdDSA token for the device", "[http]") {
  Fixture f;
  CHECK(f.check(f.token(claims_with_exp(kNowSecs + 300))) == AuthResult::Ok);
  // Other claims and header members are ignored.
  CHECK(f.check(f.token(R"({"iss":"x","aud":["a"],"iat":1,"sub":"mcu1","exp":1732180300,"extra":{"a":[1]}})",
                        R"({"typ":"JWT","kid":"k1","alg":"EdDSA"})")) == AuthResult::Ok);
  CHECK(f.check(f.token(claims_with_exp(kNowSecs + 300)), "mcu1", kNow) == AuthResult::Ok);
  // A fractional exp is a number too.
  CHECK(f.check(f.token(R"({"sub":"mcu1","exp":1732180000.5})")) == AuthResult::Ok);
}

TEST_CASE("JwtVerifier: the Authorization header must be present and start with \"Bearer \"", "[http]") {
  Fixture f;
  const std::string good = f.token(claims_with_exp(kNowSecs + 300));
  CHECK(f.verifier->check(nullptr, "mcu1", kNow) == AuthResult::Missing);
  CHECK(f.check_header("bearer " + good) == AuthResult::BadPrefix);
  CHECK(f.check_header("BEARER " + good) == AuthResult::BadPrefix);
  CHECK(f.check_header("Bearer" + good) == AuthResult::BadPrefix);
  CHECK(f.check_header("Bearer") == AuthResult::BadPrefix);
  CHECK(f.check_header("") == AuthResult::BadPrefix);
  CHECK(f.check_header(" Bearer " + good) == AuthResult::BadPrefix);
  CHECK(f.check_header("Basic dXNlcjpwYXNz") == AuthResult::BadPrefix);
  // The prefix is right, the token is not.
  CHECK(f.check_header("Bearer ") == AuthResult::Invalid);
  CHECK(f.check_header("Bearer  " + good) == AuthResult::Invalid);
  CHECK(f.check_header("Bearer " + good + " ") == AuthResult::Invalid);
}

TEST_CASE("JwtVerifier: exp is required, numeric, with 10 s of leeway", "[http]") {
  Fixture f;
  CHECK(f.check(f.token(claims_with_exp(kNowSecs - 9))) == AuthResult::Ok);
  CHECK(f.check(f.token(claims_with_exp(kNowSecs - 10))) == AuthResult::Ok);
  CHECK(f.check(f.token(claims_with_exp(kNowSecs - 11))) == AuthResult::Invalid);
  // now ≤ exp + 10 s exactly: one nanosecond later is too late.
  const std::string at_edge = f.token(claims_with_exp(kNowSecs - 10));
  CHECK(f.check(at_edge, "mcu1", kNow + std::chrono::nanoseconds(1)) == AuthResult::Invalid);
  CHECK(f.check(f.token(R"({"sub":"mcu1","exp":1732179990.5})"), "mcu1", kNow + std::chrono::milliseconds(500)) ==
        AuthResult::Ok);
  CHECK(f.check(f.token(R"({"sub":"mcu1","exp":1732179990.5})"), "mcu1", kNow + std::chrono::milliseconds(501)) ==
        AuthResult::Invalid);
  CHECK(f.check(f.token(R"({"sub":"mcu1"})")) == AuthResult::Invalid);
  for (const char* claims : {R"({"sub":"mcu1","exp":"1732180300"})", R"({"sub":"mcu1","exp":null})",
                             R"({"sub":"mcu1","exp":true})", R"({"sub":"mcu1","exp":[1732180300]})"}) {
    INFO(claims);
    CHECK(f.check(f.token(claims)) == AuthResult::Invalid);
  }
  // Far-future and huge values do not overflow.
  CHECK(f.check(f.token(R"({"sub":"mcu1","exp":1e300})")) == AuthResult::Ok);
  CHECK(f.check(f.token(R"({"sub":"mcu1","exp":18446744073709551615})")) == AuthResult::Ok);
  CHECK(f.check(f.token(R"({"sub":"mcu1","exp":-1e300})")) == AuthResult::Invalid);
  CHECK(f.check(f.token(R"({"sub":"mcu1","exp":-1})")) == AuthResult::Invalid);
  // The last of repeated members counts.
  CHECK(f.check(f.token(R"({"sub":"mcu1","exp":1732180300,"exp":1})")) == AuthResult::Invalid);
  CHECK(f.check(f.token(R"({"sub":"mcu1","exp":1,"exp":1732180300})")) == AuthResult::Ok);
}

TEST_CASE("JwtVerifier: nbf, when present, is numeric and not more than 10 s ahead", "[http]") {
  Fixture f;
  auto claims = [](std::string nbf) { return R"({"sub":"mcu1","exp":1732180300,"nbf":)" + nbf + "}"; };
  CHECK(f.check(f.token(claims(std::to_string(kNowSecs + 11)))) == AuthResult::Invalid);
  CHECK(f.check(f.token(claims(std::to_string(kNowSecs + 10)))) == AuthResult::Ok);
  CHECK(f.check(f.token(claims(std::to_string(kNowSecs + 9)))) == AuthResult::Ok);
  CHECK(f.check(f.token(claims(std::to_string(kNowSecs - 100)))) == AuthResult::Ok);
  CHECK(f.check(f.token(claims(std::to_string(kNowSecs + 10))), "mcu1", kNow - std::chrono::nanoseconds(1)) ==
        AuthResult::Invalid);
  CHECK(f.check(f.token(claims("\"1732180000\""))) == AuthResult::Invalid);
  CHECK(f.check(f.token(claims("null"))) == AuthResult::Invalid);
  CHECK(f.check(f.token(claims("1e300"))) == AuthResult::Invalid);
}

TEST_CASE("JwtVerifier: the header's alg must be the string EdDSA", "[http]") {
  Fixture f;
  const std::string claims = claims_with_exp(kNowSecs + 300);
  for (const char* header : {R"({"alg":"HS256","typ":"JWT"})", R"({"alg":"none"})", R"({"typ":"JWT"})",
                             R"({"alg":"eddsa"})", R"({"alg":"Ed25519"})", R"({"alg":null})", R"({"alg":["EdDSA"]})",
                             R"({"Alg":"EdDSA"})", R"({"alg":"EdDSA","alg":"none"})", R"(["EdDSA"])", R"("EdDSA")",
                             "", "{", R"({"alg":"EdDSA"} x)"}) {
    INFO(header);
    CHECK(f.check(f.token(claims, header)) == AuthResult::Invalid);
  }
  CHECK(f.check(f.token(claims, R"({"alg":"none","alg":"EdDSA"})")) == AuthResult::Ok);
  // An unsigned token ("alg":"none", empty signature).
  const std::string unsigned_token =
      base64url_encode_raw(R"({"alg":"none"})") + "." + base64url_encode_raw(claims) + ".";
  CHECK(f.check(unsigned_token) == AuthResult::Invalid);
}

TEST_CASE("JwtVerifier: the signature must be by the configured key over the token as sent", "[http]") {
  Fixture f;
  const std::string claims = claims_with_exp(kNowSecs + 300);
  Key other = ed25519_key();
  CHECK(f.check(make_token(other.get(), kHeader, claims)) == AuthResult::Invalid);

  // Claims replaced, signature kept.
  const std::string good = f.token(claims);
  const size_t dot1 = good.find('.');
  const size_t dot2 = good.rfind('.');
  const std::string tampered = good.substr(0, dot1 + 1) + base64url_encode_raw(claims_with_exp(kNowSecs + 300, "mcu2")) +
                               good.substr(dot2);
  CHECK(f.check(tampered, "mcu2") == AuthResult::Invalid);

  // One bit of the signature flipped.
  std::string sig = *base64url_decode_raw(good.substr(dot2 + 1));
  sig[10] = static_cast<char>(sig[10] ^ 0x01);
  CHECK(f.check(good.substr(0, dot2 + 1) + base64url_encode_raw(sig)) == AuthResult::Invalid);
  // A signature that is not 64 bytes.
  CHECK(f.check(good.substr(0, dot2 + 1) + base64url_encode_raw(sig.substr(0, 63))) == AuthResult::Invalid);
  CHECK(f.check(good.substr(0, dot2 + 1) + base64url_encode_raw(sig + "x")) == AuthResult::Invalid);
}

TEST_CASE("JwtVerifier: exactly three base64url segments without padding", "[http]") {
  Fixture f;
  const std::string good = f.token(claims_with_exp(kNowSecs + 300));
  REQUIRE(f.check(good) == AuthResult::Ok);
  const size_t dot1 = good.find('.');
  const size_t dot2 = good.rfind('.');
  const std::string h = good.substr(0, dot1);
  const std::string c = good.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string s = good.substr(dot2 + 1);
  REQUIRE(s.size() == 86);  // 64 bytes, unpadded

  CHECK(f.check(h + "." + c) == AuthResult::Invalid);
  CHECK(f.check(h + "." + c + "." + s + "." + s) == AuthResult::Invalid);
  CHECK(f.check(h + "." + c + "." + s + ".") == AuthResult::Invalid);
  CHECK(f.check(good + "==") == AuthResult::Invalid);  // padded signature
  CHECK(f.check(h + "." + c + "=." + s) == AuthResult::Invalid);
  // Padded segments, even when the signature covers them as sent.
  const std::string padded_header = base64_encode(R"({"alg":"EdDSA","xy":1})");
  REQUIRE(padded_header.back() == '=');
  CHECK(f.check(signed_segments(f.key.get(), padded_header, c)) == AuthResult::Invalid);
  CHECK(f.check(signed_segments(f.key.get(), padded_header.substr(0, padded_header.find('=')), c)) ==
        AuthResult::Ok);
  const std::string padded_claims = base64_encode(claims_with_exp(kNowSecs + 300) + " ");
  REQUIRE(padded_claims.back() == '=');
  CHECK(f.check(signed_segments(f.key.get(), h, padded_claims)) == AuthResult::Invalid);
  CHECK(f.check("") == AuthResult::Invalid);
  CHECK(f.check("..") == AuthResult::Invalid);
  CHECK(f.check("not-a-token") == AuthResult::Invalid);

  // The standard alphabet in place of the URL-safe one is not base64url.
  std::string std_alphabet = s;
  for (char& ch : std_alphabet) ch = ch == '-' ? '+' : ch == '_' ? '/' : ch;
  if (std_alphabet != s) CHECK(f.check(h + "." + c + "." + std_alphabet) == AuthResult::Invalid);
}

TEST_CASE("JwtVerifier: sub must be a string equal to the device id", "[http]") {
  Fixture f;
  CHECK(f.check(f.token(claims_with_exp(kNowSecs + 300, "mcu2"))) == AuthResult::SubjectInvalid);
  CHECK(f.check(f.token(claims_with_exp(kNowSecs + 300, "MCU1"))) == AuthResult::SubjectInvalid);
  CHECK(f.check(f.token(claims_with_exp(kNowSecs + 300, ""))) == AuthResult::SubjectInvalid);
  CHECK(f.check(f.token(claims_with_exp(kNowSecs + 300)), "mcu2") == AuthResult::SubjectInvalid);
  CHECK(f.check(f.token(R"({"exp":1732180300})")) == AuthResult::Invalid);
  CHECK(f.check(f.token(R"({"sub":1,"exp":1732180300})")) == AuthResult::Invalid);
  CHECK(f.check(f.token(R"({"sub":null,"exp":1732180300})")) == AuthResult::Invalid);
  CHECK(f.check(f.token(R"({"sub":["mcu1"],"exp":1732180300})")) == AuthResult::Invalid);
  // A NUL inside the subject makes it another subject.
  CHECK(f.check(f.token(R"({"sub":"mcu1\u0000","exp":1732180300})")) == AuthResult::SubjectInvalid);
  // An expired token for another device is Invalid, not SubjectInvalid.
  CHECK(f.check(f.token(claims_with_exp(kNowSecs - 100, "mcu2"))) == AuthResult::Invalid);
}

TEST_CASE("JwtVerifier: claims must be one JSON object", "[http]") {
  Fixture f;
  for (const std::string& claims : {R"(["mcu1"])"s, R"("x")"s, ""s, R"({"sub":"mcu1","exp":1732180300} {})"s,
                                   "{\"sub\":\"mcu1\",\"exp\":1732180300}\0"s, R"({"sub":"mcu1","exp":1e400})"s}) {
    INFO(claims);
    CHECK(f.check(f.token(claims)) == AuthResult::Invalid);
  }
}

TEST_CASE("JwtVerifier refuses tokens over 8 KiB before decoding", "[http]") {
  Fixture f;
  const std::string base = R"({"sub":"mcu1","exp":1732180300,"pad":")";
  // Grow the claims until the whole token is just at, then just over, the bound.
  auto token_of = [&](size_t pad) { return f.token(base + std::string(pad, 'x') + "\"}"); };
  // Unpadded base64url of n bytes is (4n + 2) / 3 characters: solve for the claims size.
  const size_t fixed = token_of(0).size() - (4 * (base.size() + 2) + 2) / 3;
  size_t pad = 0;
  while (fixed + (4 * (base.size() + pad + 3) + 2) / 3 <= kMaxJwtBytes) ++pad;
  const std::string at_limit = token_of(pad);
  REQUIRE(at_limit.size() <= kMaxJwtBytes);
  CHECK(f.check(at_limit) == AuthResult::Ok);
  const std::string over = token_of(pad + 1);
  REQUIRE(over.size() > kMaxJwtBytes);
  CHECK(f.check(over) == AuthResult::Invalid);
}

TEST_CASE("JwtVerifier refuses a header nested deeper than anything sensible without crashing", "[http]") {
  Fixture f;
  const std::string deep = std::string(5000, '[') + std::string(5000, ']');
  CHECK(f.check(f.token(claims_with_exp(kNowSecs + 300), deep)) == AuthResult::Invalid);
}

TEST_CASE("JwtVerifier loads an Ed25519 public key and says what is wrong with anything else", "[http]") {
  std::string error;
  Key ed = ed25519_key();
  CHECK(JwtVerifier::from_pem(public_pem(ed.get()), error));

  Key rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024)));
  REQUIRE(rsa);
  CHECK_FALSE(JwtVerifier::from_pem(public_pem(rsa.get()), error));
  CHECK(error == "the key is an RSA key, not an Ed25519 public key");

  Key ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  REQUIRE(ec);
  CHECK_FALSE(JwtVerifier::from_pem(public_pem(ec.get()), error));
  CHECK(error == "the key is an EC key, not an Ed25519 public key");

  Key ed448(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED448"));
  REQUIRE(ed448);
  CHECK_FALSE(JwtVerifier::from_pem(public_pem(ed448.get()), error));
  CHECK(error == "the key is an ED448 key, not an Ed25519 public key");

  CHECK_FALSE(JwtVerifier::from_pem(private_pem(ed.get()), error));
  CHECK(error ==
        "the key is a private key, not a public key (write the public one with `openssl pkey -in KEY -pubout`)");

  for (const std::string& garbage : {""s, "hello"s, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"s,
                                    std::string(3000, '\0')}) {
    CHECK_FALSE(JwtVerifier::from_pem(garbage, error));
    CHECK(error == "the key is not a PEM public key (expected \"-----BEGIN PUBLIC KEY-----\", as `openssl pkey "
                   "-pubout` writes)");
  }
}

TEST_CASE("JwtVerifier::from_pem_file names the file in its errors", "[http]") {
  TempDir dir;
  std::string error;
  Key ed = ed25519_key();
  const std::string good = dir.write("k.pub", public_pem(ed.get()));
  auto verifier = JwtVerifier::from_pem_file(good, error);
  REQUIRE(verifier);
  const std::string claims = claims_with_exp(kNowSecs + 300);
  const std::string header = "Bearer " + make_token(ed.get(), kHeader, claims);
  CHECK(verifier->check(&header, "mcu1", kNow) == AuthResult::Ok);

  CHECK_FALSE(JwtVerifier::from_pem_file(dir.path + "/missing.pub", error));
  CHECK(error == "cannot read " + dir.path + "/missing.pub: No such file or directory");

  CHECK_FALSE(JwtVerifier::from_pem_file(dir.path, error));
  CHECK(error == "cannot read " + dir.path + ": Is a directory");

  Key rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024)));
  REQUIRE(rsa);
  const std::string rsa_path = dir.write("rsa.pub", public_pem(rsa.get()));
  CHECK_FALSE(JwtVerifier::from_pem_file(rsa_path, error));
  CHECK(error == rsa_path + " is an RSA key, not an Ed25519 public key");

  const std::string junk = dir.write("junk.pub", "not a key\n");
  CHECK_FALSE(JwtVerifier::from_pem_file(junk, error));
  CHECK(error == junk + " is not a PEM public key (expected \"-----BEGIN PUBLIC KEY-----\", as `openssl pkey "
                        "-pubout` writes)");

  const std::string big = dir.write("big.pub", std::string(1024 * 1024 + 1, 'x'));
  CHECK_FALSE(JwtVerifier::from_pem_file(big, error));
  CHECK(error == big + " is larger than 1 MiB, not a PEM public key");
}

TEST_CASE("JwtVerifier can be moved and replaced, as on a config reload", "[http]") {
  Fixture f;
  Key second = ed25519_key();
  std::string error;
  auto replacement = JwtVerifier::from_pem(public_pem(second.get()), error);
  REQUIRE(replacement);
  const std::string claims = claims_with_exp(kNowSecs + 300);
  const std::string old_token = "Bearer " + f.token(claims);
  const std::string new_token = "Bearer " + make_token(second.get(), kHeader, claims);
  JwtVerifier moved = std::move(*replacement);
  CHECK(moved.check(&new_token, "mcu1", kNow) == AuthResult::Ok);
  CHECK(moved.check(&old_token, "mcu1", kNow) == AuthResult::Invalid);
  *f.verifier = std::move(moved);
  CHECK(f.verifier->check(&new_token, "mcu1", kNow) == AuthResult::Ok);
}

TEST_CASE("JwtVerifier accepts a token made with the openssl command line as in §7 item 6", "[http]") {
  // Made with `openssl genpkey -algorithm Ed25519`, `openssl pkey -pubout` and
  // `openssl pkeyutl -sign -rawin`, base64url by `openssl base64 -A | tr '+/' '-_' | tr -d '='`.
  const std::string pem =
      "-----BEGIN PUBLIC KEY-----\n"
      "MCowBQYDK2VwAyEA+QNyAt+ppPjJpoDEWgWOqfmEsEHsfy/3aX8MBstJDW8=\n"
      "-----END PUBLIC KEY-----\n";
  // {"alg":"EdDSA","typ":"JWT"}.{"sub":"mcu1","exp":4102444800}
  const std::string header =
      "Bearer eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtY3UxIiwiZXhwIjo0MTAyNDQ0ODAwfQ."
      "MIl7f54ezgVy1FIcsD7FaoC-I2BNb8XSfEOmhAuRbxDGdEdrrbITyGMS9VX7Lu9vmZtodKLHyWIOi_tNr2WxBg";
  std::string error;
  const auto verifier = JwtVerifier::from_pem(pem, error);
  REQUIRE(verifier);
  CHECK(verifier->check(&header, "mcu1", kNow) == AuthResult::Ok);
  CHECK(verifier->check(&header, "mcu2", kNow) == AuthResult::SubjectInvalid);
  CHECK(verifier->check(&header, "mcu1", system_clock::time_point{seconds(4102444811)}) == AuthResult::Invalid);
}

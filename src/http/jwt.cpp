#include "edgelink/http/jwt.hpp"

#include "edgelink/http/base64.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <rapidjson/document.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace edgelink::http {

namespace {

constexpr std::string_view kBearer = "Bearer ";
constexpr size_t kEd25519SignatureBytes = 64;
// A public key PEM is a few hundred bytes; a larger file is not one.
constexpr size_t kMaxPemFileBytes = 1024 * 1024;

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// A public key never asks for a passphrase; OpenSSL's default callback would prompt on
// the terminal if anything did.
int no_passphrase(char*, int, int, void*) { return 0; }

const char* article(const char* word) { return std::strchr("AEFHILMNORSX", word[0]) ? "an" : "a"; }

// The key in `pem`, or nullptr and a phrase that follows the key's name in `why`
// ("is not a PEM public key ...").
EVP_PKEY* load_key(std::string_view pem, std::string& why) {
  EVP_PKEY* key = nullptr;
  if (pem.size() <= INT_MAX) {
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (bio) key = PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr);
  }
  // Failed parses leave entries on this thread's OpenSSL error queue; nobody reads them.
  ERR_clear_error();
  if (key == nullptr) {
    if (pem.find("PRIVATE KEY-----") != std::string_view::npos) {
      why = "is a private key, not a public key (write the public one with `openssl pkey -in KEY -pubout`)";
    } else if (pem.find("-----BEGIN CERTIFICATE") != std::string_view::npos) {
      why = "is a certificate, not a public key (`openssl x509 -in CERT -pubkey -noout` prints its key)";
    } else {
      why = "is not a PEM public key (expected \"-----BEGIN PUBLIC KEY-----\", as `openssl pkey -pubout` writes)";
    }
    return nullptr;
  }
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519) {
    const char* type = EVP_PKEY_get0_type_name(key);
    why = type == nullptr || *type == '\0' ? std::string("is not an Ed25519 public key")
                                            : std::string("is ") + article(type) + " " + type +
                                                  " key, not an Ed25519 public key";
    EVP_PKEY_free(key);
    return nullptr;
  }
  return key;
}

// Where `now` lies relative to `t` (Unix seconds, possibly fractional): -1 before,
// 0 at, 1 after. Whole seconds and nanoseconds are compared apart so that integer
// times compare exactly, whatever the size of the Unix time.
int compare(std::chrono::system_clock::time_point now, double t) {
  using namespace std::chrono;
  if (t >= 9.2e18) return -1;  // beyond int64 seconds (or a huge exp): always later
  if (t <= -9.2e18) return 1;
  const double whole = std::floor(t);
  const auto t_secs = static_cast<int64_t>(whole);
  const double t_nanos = (t - whole) * 1e9;
  const auto since = duration_cast<nanoseconds>(now.time_since_epoch());
  const auto now_secs = floor<seconds>(since);
  const auto now_nanos = static_cast<double>((since - now_secs).count());
  if (now_secs.count() != t_secs) return now_secs.count() < t_secs ? -1 : 1;
  if (now_nanos != t_nanos) return now_nanos < t_nanos ? -1 : 1;
  return 0;
}

// One JSON object. Raw NUL ends RapidJSON's input early, so it is refused first.
bool parse_object(std::string_view text, rapidjson::Document& doc) {
  if (text.find('\0') != std::string_view::npos) return false;
  // Iterative: the header is parsed before the signature is checked, so its nesting
  // depth is an attacker's choice.
  // Not full precision: RapidJSON 1.1's full-precision strtod has undefined behaviour
  // on some inputs (see ricrest_access.cpp); exp/nbf do not need the last bit.
  doc.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  return !doc.HasParseError() && doc.IsObject();
}

// RFC 7515 §5.2 allows either refusing repeated names or taking the last; the last is
// what Go's JSON does, so a token means the same here as to RTIO.
const rapidjson::Value* member(const rapidjson::Value& object, std::string_view name) {
  const rapidjson::Value* found = nullptr;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (std::string_view(it->name.GetString(), it->name.GetStringLength()) == name) found = &it->value;
  }
  return found;
}

bool is_string(const rapidjson::Value* v, std::string_view text) {
  return v != nullptr && v->IsString() && std::string_view(v->GetString(), v->GetStringLength()) == text;
}

}  // namespace

const char* auth_reply_text(AuthResult result) {
  switch (result) {
    case AuthResult::Ok: return "";
    case AuthResult::Missing: return "Missing or malformed Authorization header\n";
    case AuthResult::BadPrefix: return "Invalid Authorization header\n";
    case AuthResult::Invalid: return "Invalid or expired JWT\n";
    case AuthResult::SubjectInvalid: return "JWT subject invalid\n";
  }
  return "";
}

void JwtVerifier::KeyFree::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }

JwtVerifier::JwtVerifier(KeyPtr key) : key_(std::move(key)) {}
JwtVerifier::~JwtVerifier() = default;

std::unique_ptr<JwtVerifier> JwtVerifier::from_pem(std::string_view pem, std::string& error) {
  std::string why;
  KeyPtr key(load_key(pem, why));
  if (!key) {
    error = "the key " + why;
    return nullptr;
  }
  return std::unique_ptr<JwtVerifier>(new JwtVerifier(std::move(key)));
}

std::unique_ptr<JwtVerifier> JwtVerifier::from_pem_file(const std::string& path, std::string& error) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  std::string pem;
  char buf[4096];
  while (pem.size() <= kMaxPemFileBytes) {
    const size_t n = std::fread(buf, 1, sizeof buf, file.get());
    pem.append(buf, n);
    if (n < sizeof buf) break;
  }
  if (std::ferror(file.get())) {  // e.g. a directory: EISDIR
    error = "cannot read " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  if (pem.size() > kMaxPemFileBytes) {
    error = path + " is larger than 1 MiB, not a PEM public key";
    return nullptr;
  }
  std::string why;
  KeyPtr key(load_key(pem, why));
  if (!key) {
    error = path + " " + why;
    return nullptr;
  }
  return std::unique_ptr<JwtVerifier>(new JwtVerifier(std::move(key)));
}

AuthResult JwtVerifier::check(const std::string* authorization_header, std::string_view device_id,
                              std::chrono::system_clock::time_point now) const {
  if (authorization_header == nullptr) return AuthResult::Missing;
  std::string_view token = *authorization_header;
  if (!token.starts_with(kBearer)) return AuthResult::BadPrefix;
  token.remove_prefix(kBearer.size());
  if (token.size() > kMaxJwtBytes) return AuthResult::Invalid;

  const size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return AuthResult::Invalid;
  const size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return AuthResult::Invalid;
  }
  const auto header_json = base64url_decode_raw(token.substr(0, dot1));
  const auto claims_json = base64url_decode_raw(token.substr(dot1 + 1, dot2 - dot1 - 1));
  const auto signature = base64url_decode_raw(token.substr(dot2 + 1));
  if (!header_json || !claims_json || !signature || signature->size() != kEd25519SignatureBytes) {
    return AuthResult::Invalid;
  }

  // The algorithm comes from the key, never from the token; `alg` must still say so,
  // which keeps "none" and HMAC tokens out whatever else happens.
  rapidjson::Document header;
  if (!parse_object(*header_json, header) || !is_string(member(header, "alg"), "EdDSA")) return AuthResult::Invalid;

  // Nothing in the claims is read before the signature holds.
  const std::string_view signed_part = token.substr(0, dot2);
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  // Ed25519 hashes internally: no digest, and the one-shot EVP_DigestVerify.
  const bool verified =
      ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature->data()), signature->size(),
                       reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size()) == 1;
  ERR_clear_error();
  if (!verified) return AuthResult::Invalid;

  rapidjson::Document claims;
  if (!parse_object(*claims_json, claims)) return AuthResult::Invalid;
  const rapidjson::Value* exp = member(claims, "exp");
  if (exp == nullptr || !exp->IsNumber()) return AuthResult::Invalid;
  if (compare(now, exp->GetDouble() + static_cast<double>(kJwtLeeway.count())) > 0) return AuthResult::Invalid;
  if (const rapidjson::Value* nbf = member(claims, "nbf")) {
    if (!nbf->IsNumber()) return AuthResult::Invalid;
    if (compare(now, nbf->GetDouble() - static_cast<double>(kJwtLeeway.count())) < 0) return AuthResult::Invalid;
  }
  const rapidjson::Value* sub = member(claims, "sub");
  if (sub == nullptr || !sub->IsString()) return AuthResult::Invalid;
  if (std::string_view(sub->GetString(), sub->GetStringLength()) != device_id) return AuthResult::SubjectInvalid;
  return AuthResult::Ok;
}

}  // namespace edgelink::http

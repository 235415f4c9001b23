#include "edgelink/http/base64.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace edgelink::http;
using namespace std::string_literals;

namespace {

// Every byte value, so both alphabets are exercised end to end.
std::string all_bytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) s += static_cast<char>(i);
  return s;
}

}  // namespace

TEST_CASE("base64_encode follows the RFC 4648 test vectors", "[http]") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode("fooba") == "Zm9vYmE=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode("world") == "d29ybGQ=");
  CHECK(base64_encode("\xfb\xff\xbf"s) == "+/+/");
  CHECK(base64_encode("\0\0"s) == "AAA=");
}

TEST_CASE("base64_decode reverses base64_encode for every byte and length", "[http]") {
  const std::string bytes = all_bytes();
  for (size_t n = 0; n <= bytes.size(); n += 1 + n / 16) {
    const std::string part = bytes.substr(bytes.size() - n);
    const auto decoded = base64_decode(base64_encode(part));
    REQUIRE(decoded.has_value());
    CHECK(*decoded == part);
  }
}

TEST_CASE("base64_decode accepts what Go's StdEncoding accepts", "[http]") {
  CHECK(base64_decode("") == ""s);
  CHECK(base64_decode("aGVsbG8=") == "hello"s);
  CHECK(base64_decode("Zg==") == "f"s);
  CHECK(base64_decode("Zm8=") == "fo"s);
  CHECK(base64_decode("+/+/") == "\xfb\xff\xbf"s);
  // Line breaks are skipped anywhere, even between the two pad characters.
  CHECK(base64_decode("aGVs\r\nbG8=") == "hello"s);
  CHECK(base64_decode("Zg=\n=") == "f"s);
  CHECK(base64_decode("\n") == ""s);
  CHECK(base64_decode("Zg==\n") == "f"s);
  // Non-zero bits after the last byte: Go is not strict by default.
  CHECK(base64_decode("Zh==") == "f"s);
  CHECK(base64_decode("Zm9=") == "fo"s);
}

TEST_CASE("base64_decode refuses what Go's StdEncoding refuses", "[http]") {
  CHECK_FALSE(base64_decode("aGVsbG8"));     // padding missing
  CHECK_FALSE(base64_decode("Zg="));         // one '=' short
  CHECK_FALSE(base64_decode("Zg"));
  CHECK_FALSE(base64_decode("Z"));
  CHECK_FALSE(base64_decode("Z==="));        // '=' after one character
  CHECK_FALSE(base64_decode("===="));
  CHECK_FALSE(base64_decode("="));
  CHECK_FALSE(base64_decode("Zg==Zg=="));    // data after padding
  CHECK_FALSE(base64_decode("Zg==\nZg=="));
  CHECK_FALSE(base64_decode("Z=g="));        // '=' inside
  CHECK_FALSE(base64_decode("Zm9v Zm9v"));   // space is not skipped
  CHECK_FALSE(base64_decode("Zm9v\tZm9v"));
  CHECK_FALSE(base64_decode("Zm-_"));        // URL-safe alphabet
  CHECK_FALSE(base64_decode("Zm9\0"s));
  CHECK_FALSE(base64_decode("Zm\x80v"));
}

TEST_CASE("base64_decode refuses a bad character at any place of a long input", "[http]") {
  // Whole quanta are decoded four characters at a time; each place of a quantum counts.
  std::string bytes;
  for (int i = 0; i < 300; ++i) bytes += static_cast<char>(i * 7);
  const std::string good = base64_encode(bytes);
  REQUIRE(base64_decode(good) == bytes);
  for (size_t at : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{201}, size_t{202}, good.size() - 3}) {
    for (char bad : {'-', '_', ' ', '\0', '\x80', '\xff', '='}) {
      std::string text = good;
      text[at] = bad;
      INFO("at " << at << " char " << int(static_cast<unsigned char>(bad)));
      CHECK_FALSE(base64_decode(text));
    }
  }
  // Line breaks anywhere are still skipped, as Go does.
  std::string broken = good;
  broken.insert(101, "\r\n");
  broken.insert(7, "\n");
  CHECK(base64_decode(broken) == bytes);
}

TEST_CASE("base64_append appends the encoding", "[http]") {
  std::string out = "x:";
  base64_append(out, "foob");
  CHECK(out == "x:Zm9vYg==");
  base64_append(out, "");
  CHECK(out == "x:Zm9vYg==");
}

TEST_CASE("base64url raw encodes with '-' and '_' and without padding", "[http]") {
  CHECK(base64url_encode_raw("") == "");
  CHECK(base64url_encode_raw("f") == "Zg");
  CHECK(base64url_encode_raw("fo") == "Zm8");
  CHECK(base64url_encode_raw("foo") == "Zm9v");
  CHECK(base64url_encode_raw("\xfb\xff\xbf"s) == "-_-_");
  CHECK(base64url_encode_raw(R"({"alg":"EdDSA","typ":"JWT"})") == "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9");
  const std::string bytes = all_bytes();
  for (size_t n = 0; n <= bytes.size(); n += 1 + n / 16) {
    const std::string part = bytes.substr(0, n);
    const auto decoded = base64url_decode_raw(base64url_encode_raw(part));
    REQUIRE(decoded.has_value());
    CHECK(*decoded == part);
  }
}

TEST_CASE("base64url_decode_raw refuses padding, the standard alphabet and impossible lengths", "[http]") {
  CHECK(base64url_decode_raw("") == ""s);
  CHECK(base64url_decode_raw("Zg") == "f"s);
  CHECK(base64url_decode_raw("Zh") == "f"s);  // trailing bits, as Go's RawURLEncoding
  CHECK(base64url_decode_raw("-_-_") == "\xfb\xff\xbf"s);
  CHECK_FALSE(base64url_decode_raw("Zg=="));
  CHECK_FALSE(base64url_decode_raw("Zm8="));
  CHECK_FALSE(base64url_decode_raw("Z"));
  CHECK_FALSE(base64url_decode_raw("Zm9vZ"));
  CHECK_FALSE(base64url_decode_raw("+/+/"));
  CHECK_FALSE(base64url_decode_raw("Zm9v\nZm9v"));
  CHECK_FALSE(base64url_decode_raw("Zm.v"));
}

#include "edgelink/http/base64.hpp"

#include <array>
#include <cstdint>

namespace edgelink::http {

namespace {

constexpr std::string_view kStd = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr uint8_t kBad = 0xFF;

constexpr std::array<uint8_t, 256> make_table(std::string_view alphabet) {
  std::array<uint8_t, 256> t{};
  for (auto& v : t) v = kBad;
  for (size_t i = 0; i < alphabet.size(); ++i) t[static_cast<uint8_t>(alphabet[i])] = static_cast<uint8_t>(i);
  return t;
}
constexpr std::array<uint8_t, 256> kStdValue = make_table(kStd);
constexpr std::array<uint8_t, 256> kUrlValue = make_table(kUrl);

std::string encode(std::string_view bytes, std::string_view alphabet, bool pad) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) << 16 |
                       static_cast<uint32_t>(static_cast<uint8_t>(bytes[i + 1])) << 8 |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    out += alphabet[v >> 6 & 63];
    out += alphabet[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest == 0) return out;
  uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) << 16;
  if (rest == 2) v |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[i + 1])) << 8;
  out += alphabet[v >> 18 & 63];
  out += alphabet[v >> 12 & 63];
  if (rest == 2) out += alphabet[v >> 6 & 63];
  if (pad) out.append(3 - rest, '=');
  return out;
}

// Decodes characters that are all in the alphabet; `text.size() % 4` is 0, 2 or 3.
std::optional<std::string> decode_digits(std::string_view text, const std::array<uint8_t, 256>& table) {
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const uint8_t v = table[static_cast<uint8_t>(c)];
    if (v == kBad) return std::nullopt;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>(acc >> bits & 0xFF);
    }
  }
  return out;
}

}  // namespace

std::string base64_encode(std::string_view bytes) { return encode(bytes, kStd, true); }

std::string base64url_encode_raw(std::string_view bytes) { return encode(bytes, kUrl, false); }

std::optional<std::string> base64_decode(std::string_view text) {
  // Go skips line breaks anywhere, even between the two '='; dropping them first
  // gives the same result as its quantum-by-quantum scan.
  std::string compact;
  if (text.find_first_of("\r\n") != std::string_view::npos) {
    compact.reserve(text.size());
    for (const char c : text)
      if (c != '\r' && c != '\n') compact += c;
    text = compact;
  }
  if (text.size() % 4 != 0) return std::nullopt;
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = text.size() >= 2 && text[text.size() - 2] == '=' ? 2 : 1;
  // Any other '=' is caught as a character outside the alphabet.
  return decode_digits(text.substr(0, text.size() - pad), kStdValue);
}

std::optional<std::string> base64url_decode_raw(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  return decode_digits(text, kUrlValue);
}

}  // namespace edgelink::http

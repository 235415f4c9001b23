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

// Two output characters per 12 input bits: half the lookups of a per-character table.
using PairTable = std::array<std::array<char, 2>, 4096>;
constexpr PairTable make_pairs(std::string_view alphabet) {
  PairTable t{};
  for (size_t i = 0; i < t.size(); ++i) t[i] = {alphabet[i >> 6], alphabet[i & 63]};
  return t;
}
constexpr PairTable kStdPairs = make_pairs(kStd);
constexpr PairTable kUrlPairs = make_pairs(kUrl);

void encode_into(std::string& out, std::string_view bytes, std::string_view alphabet, const PairTable& pairs,
                 bool pad) {
  const size_t whole = bytes.size() / 3;
  const size_t rest = bytes.size() - whole * 3;
  const size_t start = out.size();
  out.resize(start + whole * 4 + (rest == 0 ? 0 : pad ? 4 : rest + 1));
  char* o = out.data() + start;
  const auto* in = reinterpret_cast<const uint8_t*>(bytes.data());
  for (size_t k = 0; k < whole; ++k, in += 3, o += 4) {
    const uint32_t v = uint32_t{in[0]} << 16 | uint32_t{in[1]} << 8 | in[2];
    const auto& hi = pairs[v >> 12];
    const auto& lo = pairs[v & 0xFFF];
    o[0] = hi[0];
    o[1] = hi[1];
    o[2] = lo[0];
    o[3] = lo[1];
  }
  if (rest == 0) return;
  uint32_t v = uint32_t{in[0]} << 16;
  if (rest == 2) v |= uint32_t{in[1]} << 8;
  *o++ = alphabet[v >> 18 & 63];
  *o++ = alphabet[v >> 12 & 63];
  if (rest == 2) *o++ = alphabet[v >> 6 & 63];
  if (pad)
    for (size_t k = rest; k < 3; ++k) *o++ = '=';
}

// Decodes characters that are all in the alphabet; `text.size() % 4` is 0, 2 or 3 (1
// gives no byte). Whole quanta first, four lookups and one check each.
std::optional<std::string> decode_digits(std::string_view text, const std::array<uint8_t, 256>& table) {
  std::string out(text.size() / 4 * 3 + 2, '\0');
  char* o = out.data();
  const auto* in = reinterpret_cast<const uint8_t*>(text.data());
  const size_t whole = text.size() / 4;
  for (size_t k = 0; k < whole; ++k, in += 4, o += 3) {
    const uint32_t a = table[in[0]], b = table[in[1]], c = table[in[2]], d = table[in[3]];
    if (((a | b | c | d) & 0xC0) != 0) return std::nullopt;  // a digit has 6 bits, kBad all 8
    const uint32_t v = a << 18 | b << 12 | c << 6 | d;
    o[0] = static_cast<char>(v >> 16);
    o[1] = static_cast<char>(v >> 8 & 0xFF);
    o[2] = static_cast<char>(v & 0xFF);
  }
  uint32_t acc = 0;
  int bits = 0;
  for (size_t k = whole * 4; k < text.size(); ++k, ++in) {
    const uint8_t v = table[*in];
    if (v == kBad) return std::nullopt;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      *o++ = static_cast<char>(acc >> bits & 0xFF);
    }
  }
  out.resize(static_cast<size_t>(o - out.data()));
  return out;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  encode_into(out, bytes, kStd, kStdPairs, true);
  return out;
}

void base64_append(std::string& out, std::string_view bytes) { encode_into(out, bytes, kStd, kStdPairs, true); }

std::string base64url_encode_raw(std::string_view bytes) {
  std::string out;
  encode_into(out, bytes, kUrl, kUrlPairs, false);
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  // Go skips line breaks anywhere, even between the two '='; dropping them first
  // gives the same result as its quantum-by-quantum scan.
  std::string compact;
  // (find_first_of would look each character up in "\r\n" with a call of its own.)
  if (text.find('\r') != std::string_view::npos || text.find('\n') != std::string_view::npos) {
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

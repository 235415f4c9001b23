#pragma once
// The single-pass JSON validator behind parse_app_line and is_valid_json: RFC 8259
// grammar plus well-formed UTF-8, no DOM, no allocation. Header-only so the scanner
// inlines into the hot path (a data point is a few dozen tokens).

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

// The hot path calls string() and number() a dozen times per line; compilers do not
// inline them on their own (they sit next to the recursive value()).
#if defined(__GNUC__)
#define EDGELINK_JSON_INLINE [[gnu::always_inline]] inline
#else
#define EDGELINK_JSON_INLINE inline
#endif

namespace edgelink::json {

static_assert(std::endian::native == std::endian::little, "the SWAR string scan assumes little-endian loads");

// Containers nest at most this deep (a top-level object or array is level 1). Deeper
// input is invalid: it bounds the scanner's recursion, and no app needs more.
inline constexpr int kMaxDepth = 64;

// String bytes that leave the fast loop: '"', '\\', control characters and non-ASCII.
constexpr std::array<bool, 256> make_string_stop() {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = c < 0x20 || c == '"' || c == '\\' || c >= 0x80;
  return t;
}
inline constexpr std::array<bool, 256> kStringStop = make_string_stop();

inline bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
inline bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

inline int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Single-pass validator over [p_, end_). Every method starts at the first byte of its
// token, advances p_ past it and returns false on the first invalid byte (p_ then
// points near the error, which is what error messages report). p_ is public because
// callers that track members (parse_app_line) walk the top level themselves.
class Scanner {
 public:
  Scanner(const char* begin, const char* end) : p_(begin), end_(end) {}

  const char* p_;
  const char* const end_;

  bool at_end() const { return p_ >= end_; }
  int peek() const { return p_ < end_ ? static_cast<unsigned char>(*p_) : -1; }
  void skip_ws() {
    while (p_ < end_ && is_ws(static_cast<unsigned char>(*p_))) ++p_;
  }
  bool consume(char c) {
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }

  bool value(int depth) {
    switch (peek()) {
      case '{': return object(depth + 1);
      case '[': return array(depth + 1);
      case '"': {
        bool escaped = false;
        return string(escaped);
      }
      case 't': return literal("true", 4);
      case 'f': return literal("false", 5);
      case 'n': return literal("null", 4);
      default: return number();
    }
  }

  // At '"'. Sets `escaped` when the string holds a backslash escape.
  EDGELINK_JSON_INLINE bool string(bool& escaped) {
    ++p_;
    for (;;) {
      skip_plain_string_bytes();
      while (p_ < end_ && !kStringStop[static_cast<unsigned char>(*p_)]) ++p_;
      if (p_ >= end_) return false;
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return true;
      }
      if (c == '\\') {
        escaped = true;
        if (!escape()) return false;
      } else if (c < 0x20) {
        return false;  // raw control characters must be escaped
      } else if (!utf8_sequence()) {
        return false;
      }
    }
  }

  EDGELINK_JSON_INLINE bool number() {
    consume('-');
    if (at_end()) return false;
    if (*p_ == '0') {
      ++p_;
    } else if (is_digit(static_cast<unsigned char>(*p_))) {
      skip_digits();
    } else {
      return false;
    }
    if (consume('.')) {
      if (!skip_digits()) return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (!consume('+')) consume('-');
      if (!skip_digits()) return false;
    }
    return true;
  }

 private:
  // Eight bytes at a time while none needs a closer look (SWAR: a byte is flagged when
  // < 0x20, '"', '\\' or >= 0x80). Borrows only flag bytes above a truly flagged
  // one, so the lowest flag is exact.
  EDGELINK_JSON_INLINE void skip_plain_string_bytes() {
    constexpr uint64_t kOnes = 0x0101010101010101ULL;
    constexpr uint64_t kHigh = 0x8080808080808080ULL;
    while (end_ - p_ >= 8) {
      uint64_t x;
      std::memcpy(&x, p_, 8);
      const uint64_t quote = x ^ (kOnes * '"');
      const uint64_t backslash = x ^ (kOnes * '\\');
      const uint64_t stop = (((x - kOnes * 0x20) & ~x) | ((quote - kOnes) & ~quote) |
                             ((backslash - kOnes) & ~backslash) | x) &
                            kHigh;
      if (stop != 0) {
        p_ += __builtin_ctzll(stop) / 8;
        return;
      }
      p_ += 8;
    }
  }

  bool skip_digits() {
    const char* start = p_;
    while (p_ < end_ && is_digit(static_cast<unsigned char>(*p_))) ++p_;
    return p_ != start;
  }

  bool literal(const char* text, size_t n) {
    if (static_cast<size_t>(end_ - p_) < n || std::memcmp(p_, text, n) != 0) return false;
    p_ += n;
    return true;
  }

  bool object(int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;
    skip_ws();
    if (consume('}')) return true;
    for (;;) {
      if (peek() != '"') return false;
      bool escaped = false;
      if (!string(escaped)) return false;
      skip_ws();
      if (!consume(':')) return false;
      skip_ws();
      if (!value(depth)) return false;
      skip_ws();
      if (consume('}')) return true;
      if (!consume(',')) return false;
      skip_ws();
    }
  }

  bool array(int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;
    skip_ws();
    if (consume(']')) return true;
    for (;;) {
      if (!value(depth)) return false;
      skip_ws();
      if (consume(']')) return true;
      if (!consume(',')) return false;
      skip_ws();
    }
  }

  bool hex4(unsigned& out) {
    if (end_ - p_ < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = hex_value(static_cast<unsigned char>(p_[i]));
      if (h < 0) return false;
      v = (v << 4) | static_cast<unsigned>(h);
    }
    p_ += 4;
    out = v;
    return true;
  }

  // At '\\'. A \u escape must denote a Unicode scalar value: a high surrogate must be
  // followed by an escaped low one, and a lone low surrogate is rejected (strict JSON
  // decoders downstream, e.g. the broker-side consumers, refuse them).
  bool escape() {
    ++p_;
    if (at_end()) return false;
    switch (*p_++) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': return true;
      case 'u': break;
      default: return false;
    }
    unsigned cp = 0;
    if (!hex4(cp)) return false;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
    if (cp < 0xD800 || cp > 0xDBFF) return true;
    if (!consume('\\') || !consume('u')) return false;
    unsigned low = 0;
    if (!hex4(low)) return false;
    return low >= 0xDC00 && low <= 0xDFFF;
  }

  // At a byte >= 0x80. Well-formed UTF-8 (RFC 3629 table): no overlongs, no UTF-16
  // surrogates, nothing above U+10FFFF.
  bool utf8_sequence() {
    const auto* s = reinterpret_cast<const unsigned char*>(p_);
    const size_t left = static_cast<size_t>(end_ - p_);
    const unsigned char c = s[0];
    auto cont = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
      return i < left && s[i] >= lo && s[i] <= hi;
    };
    size_t n = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = cont(1) ? 2 : 0;
    } else if (c >= 0xE0 && c <= 0xEF) {
      const unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
      const unsigned char hi = c == 0xED ? 0x9F : 0xBF;
      n = cont(1, lo, hi) && cont(2) ? 3 : 0;
    } else if (c >= 0xF0 && c <= 0xF4) {
      const unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
      const unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;
      n = cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
    }
    p_ += n;
    return n != 0;
  }
};

}  // namespace edgelink::json

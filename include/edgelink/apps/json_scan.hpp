#pragma once
// The single-pass JSON validator behind parse_app_line and is_valid_json: RFC 8259
// grammar plus well-formed UTF-8, no DOM, no allocation. Header-only so the scanner
// inlines into the hot path (a data point is a few dozen tokens).

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

inline bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
inline bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

inline int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// SWAR helpers over eight bytes loaded little-endian (the byte at the lowest address is
// the low byte). Each returns bit 7 of every byte it flags. Adding to bytes masked to
// 7 bits never carries into the next byte, so every flag is exact.
namespace swar {

inline constexpr uint64_t kOnes = 0x0101010101010101ULL;
inline constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7FULL;
inline constexpr uint64_t kHigh = 0x8080808080808080ULL;

// Bytes a string scan must stop at: '"', '\\', < 0x20 and >= 0x80. XOR with 0x02 maps
// exactly the control characters and '"' below 0x21, so one add tests both.
EDGELINK_JSON_INLINE uint64_t string_stops(uint64_t x) {
  const uint64_t low = x & kLow7;
  const uint64_t not_control_or_quote = (low ^ (kOnes * 0x02)) + kOnes * (0x80 - 0x21);  // bit 7 set: not one
  const uint64_t not_backslash = (low ^ (kOnes * '\\')) + kLow7;                          // bit 7 set: byte != '\\'
  return (~(not_control_or_quote & not_backslash) | x) & kHigh;
}

// Bytes that are not '0'..'9'.
EDGELINK_JSON_INLINE uint64_t non_digits(uint64_t x) {
  const uint64_t low = x & kLow7;
  const uint64_t above_nine = low + kOnes * (0x80 - ':');  // bit 7 set: byte >= ':'
  const uint64_t from_zero = low + kOnes * (0x80 - '0');   // bit 7 set: byte >= '0'
  return (above_nine | ~from_zero | x) & kHigh;
}

// Index of the first flagged byte; `flags` is not 0.
EDGELINK_JSON_INLINE unsigned first(uint64_t flags) { return static_cast<unsigned>(__builtin_ctzll(flags)) / 8; }

// The value of the decimal digits in the first n (1..8) bytes of x. Shifting them to the
// top leaves zero bytes below as leading zeros; then neighbouring bytes, 16-bit and
// 32-bit lanes are merged by multiply and shift (the lower lane is the more significant).
EDGELINK_JSON_INLINE uint64_t digits_value(uint64_t x, unsigned n) {
  uint64_t v = (x & (kOnes * 0x0F)) << (8 * (8 - n));
  v = ((v * (1 + (10 << 8))) >> 8) & 0x00FF00FF00FF00FFULL;
  v = ((v * (1 + (100 << 16))) >> 16) & 0x0000FFFF0000FFFFULL;
  return (v * (1 + (10000ULL << 32))) >> 32;
}

inline constexpr uint64_t kPow10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

}  // namespace swar

// Single-pass validator over [p_, end_). Every method starts at the first byte of its
// token, advances p_ past it and returns false on the first invalid byte (p_ then
// points near the error, which is what error messages report). p_ is public because
// callers that track members (parse_app_line) walk the top level themselves.
//
// The token methods are forced inline and hand rare work (nested containers, escapes,
// non-ASCII) to out-of-line methods on a copy of the scanner: as long as a scanner's
// address never escapes, the compiler keeps p_ in a register instead of storing it
// after every byte it consumes.
class Scanner {
 public:
  Scanner(const char* begin, const char* end) : p_(begin), end_(end), begin_(begin) {}

  const char* p_;
  const char* const end_;

  bool at_end() const { return p_ >= end_; }
  EDGELINK_JSON_INLINE int peek() const { return p_ < end_ ? static_cast<unsigned char>(*p_) : -1; }
  // Members are usually not separated by blanks: one compare decides.
  EDGELINK_JSON_INLINE void skip_ws() {
    if (p_ < end_ && static_cast<unsigned char>(*p_) <= ' ') {
      while (p_ < end_ && is_ws(static_cast<unsigned char>(*p_))) ++p_;
    }
  }
  EDGELINK_JSON_INLINE bool consume(char c) {
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

  // value() with strings and numbers, the common members, scanned inline.
  EDGELINK_JSON_INLINE bool member_value(int depth) {
    const int c = peek();
    if (c == '"') {
      bool escaped = false;
      return string(escaped);
    }
    if (c == '-' || is_digit(static_cast<unsigned char>(c))) return number();
    return on_copy([depth](Scanner& t) { return t.value(depth); });
  }

  // At '"'. Sets `escaped` when the string holds a backslash escape.
  EDGELINK_JSON_INLINE bool string(bool& escaped) {
    ++p_;
    for (;;) {
      const uint64_t x = load8(p_);
      const uint64_t stops = swar::string_stops(x);
      if (stops == 0) {
        p_ += 8;
        continue;
      }
      const unsigned i = swar::first(stops);
      p_ += i;
      // From x, not *p_: p_ may be end_, where load8 supplied a zero byte.
      const unsigned char c = static_cast<unsigned char>(x >> (8 * i));
      if (c == '"') {
        ++p_;
        return true;
      }
      if (c == '\\') {
        escaped = true;
        if (!on_copy([](Scanner& t) { return t.escape(); })) return false;
      } else if (c < 0x20) {
        return false;  // raw control characters must be escaped (or the input ended)
      } else if (!on_copy([](Scanner& t) { return t.utf8_sequence(); })) {
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
    return number_rest();
  }

  // At a digit: number() that also tells whether the token is a plain unsigned integer
  // (no fraction or exponent) that fits 64 bits, and its value.
  EDGELINK_JSON_INLINE bool unsigned_number(uint64_t& out, bool& is_uint) {
    uint64_t v = 0;
    const char* const start = p_;
    if (*p_ == '0') {
      ++p_;
    } else {
      // Up to 19 digits always fit; 20 may; more never do.
      unsigned n = 0;
      for (;;) {
        const uint64_t x = load8(p_);
        const uint64_t flags = swar::non_digits(x);
        const unsigned k = flags == 0 ? 8 : swar::first(flags);
        if (k != 0 && n + k <= 19) v = v * swar::kPow10[k] + swar::digits_value(x, k);
        n += k;
        p_ += k;
        if (k != 8) break;
      }
      if (n > 19 && !wide_unsigned(start, p_, v)) {
        is_uint = false;
        return number_rest();
      }
    }
    if (p_ < end_ && (*p_ == '.' || (*p_ | 0x20) == 'e')) {
      is_uint = false;
      return number_rest();
    }
    is_uint = true;
    out = v;
    return true;
  }

 private:
  const char* const begin_;

  template <typename Step>
  EDGELINK_JSON_INLINE bool on_copy(Step step) {
    Scanner copy(*this);
    const bool ok = step(copy);
    p_ = copy.p_;
    return ok;
  }

  // Eight bytes from p (p <= end_); past end_ they read as zero, which every SWAR scan
  // stops at.
  EDGELINK_JSON_INLINE uint64_t load8(const char* p) const {
    uint64_t x;
    if (end_ - p >= 8) [[likely]] {
      std::memcpy(&x, p, 8);
      return x;
    }
    return load_tail(begin_, p, end_);
  }

  static uint64_t load_tail(const char* begin, const char* p, const char* end) {
    const auto left = static_cast<unsigned>(end - p);
    if (left == 0) return 0;
    uint64_t x = 0;
    if (end - begin >= 8) {
      // The last eight bytes of the input, shifted down so p's byte comes first.
      std::memcpy(&x, end - 8, 8);
      return x >> (8 * (8 - left));
    }
    std::memcpy(&x, p, left);
    return x;
  }

  // After the integer part: an optional fraction and exponent.
  EDGELINK_JSON_INLINE bool number_rest() {
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (!skip_digits()) return false;
    }
    if (p_ < end_ && (*p_ | 0x20) == 'e') {
      ++p_;
      if (!consume('+')) consume('-');
      if (!skip_digits()) return false;
    }
    return true;
  }

  EDGELINK_JSON_INLINE bool skip_digits() {
    const char* const start = p_;
    for (;;) {
      const uint64_t flags = swar::non_digits(load8(p_));
      if (flags != 0) {
        p_ += swar::first(flags);
        return p_ != start;
      }
      p_ += 8;
    }
  }

  // The digits [start, p_) when there are more than 19: fits 64 bits only when there
  // are exactly 20 and the value is at most UINT64_MAX.
  static bool wide_unsigned(const char* start, const char* end, uint64_t& out) {
    if (end - start != 20) return false;
    uint64_t v = 0;
    for (const char* q = start; q != end; ++q) {
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, static_cast<uint64_t>(*q - '0'), &v)) {
        return false;
      }
    }
    out = v;
    return true;
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
      if (!member_value(depth)) return false;
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
      if (!member_value(depth)) return false;
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

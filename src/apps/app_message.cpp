#include "edgelink/apps/app_message.hpp"

#include <rapidjson/document.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstring>

namespace edgelink {

const char* to_string(AppErrorCode code) {
  switch (code) {
    case AppErrorCode::BadJson: return "BadJson";
    case AppErrorCode::NotAnObject: return "NotAnObject";
    case AppErrorCode::MissingField: return "MissingField";
    case AppErrorCode::BadField: return "BadField";
    case AppErrorCode::LineTooLong: return "LineTooLong";
    case AppErrorCode::UnknownStream: return "UnknownStream";
    case AppErrorCode::Overloaded: return "Overloaded";
  }
  return "Unknown";
}

namespace {

static_assert(std::endian::native == std::endian::little, "the SWAR string scan assumes little-endian loads");

// Containers nest at most this deep (the top-level object is level 1). Deeper input is
// BadJson: it bounds the scanner's recursion, and no app needs more.
constexpr int kMaxDepth = 64;

constexpr size_t kMaxStreamBytes = 64;

// String bytes that leave the fast loop: '"', '\\', control characters and non-ASCII.
constexpr std::array<bool, 256> make_string_stop() {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = c < 0x20 || c == '"' || c == '\\' || c >= 0x80;
  return t;
}
constexpr std::array<bool, 256> kStringStop = make_string_stop();

constexpr std::array<bool, 256> make_stream_char() {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  }
  return t;
}
constexpr std::array<bool, 256> kStreamChar = make_stream_char();

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
// points near the error, which is what error messages report).
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
  bool string(bool& escaped) {
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

  bool number() {
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
  void skip_plain_string_bytes() {
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

// Top-level keys the data-point rules care about.
enum class Key { Other, Stream, Sequence, Timestamp, Edgelink };

inline Key classify(std::string_view name) {
  switch (name.size()) {
    case 6: return std::memcmp(name.data(), "stream", 6) == 0 ? Key::Stream : Key::Other;
    case 8:
      if (std::memcmp(name.data(), "sequence", 8) == 0) return Key::Sequence;
      return std::memcmp(name.data(), "edgelink", 8) == 0 ? Key::Edgelink : Key::Other;
    case 9: return std::memcmp(name.data(), "timestamp", 9) == 0 ? Key::Timestamp : Key::Other;
    default: return Key::Other;
  }
}

// A key with escapes ("str\u0065am") names the same member as its decoded form. The
// key has already been validated; only short ASCII results can match, so decode into
// a small buffer and give up on anything else.
Key classify_escaped(std::string_view raw) {
  char buf[16];
  size_t n = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '\\') {
      const char e = raw[++i];
      if (e == 'u') {
        unsigned cp = 0;
        for (int k = 1; k <= 4; ++k) cp = (cp << 4) | static_cast<unsigned>(hex_value(static_cast<unsigned char>(raw[i + k])));
        i += 4;
        if (cp >= 0x80) return Key::Other;
        c = static_cast<char>(cp);
      } else {
        static constexpr std::string_view kFrom = "\"\\/bfnrt";
        static constexpr std::string_view kTo = "\"\\/\b\f\n\r\t";
        c = kTo[kFrom.find(e)];
      }
    }
    if (n == sizeof buf) return Key::Other;
    buf[n++] = c;
  }
  return classify(std::string_view(buf, n));
}

// A number token that is a plain unsigned integer (no sign, fraction or exponent) no
// larger than `max`.
bool parse_unsigned(std::string_view token, uint64_t max, uint64_t& out) {
  if (token.empty() || token.size() > 20) return false;
  uint64_t v = 0;
  for (const char ch : token) {
    if (!is_digit(static_cast<unsigned char>(ch))) return false;
    const uint64_t d = static_cast<uint64_t>(ch - '0');
    if (v > (max - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

AppError error(AppErrorCode code, std::string field, std::string message) {
  return AppError{code, std::move(field), std::move(message)};
}

AppError bad_json(const char* begin, const char* at) {
  return error(AppErrorCode::BadJson, "",
               "line is not valid JSON (RFC 8259, UTF-8, nesting at most " + std::to_string(kMaxDepth) +
                   " deep): error at byte offset " + std::to_string(at - begin));
}

constexpr const char* kStreamMessage =
    "data point needs a 'stream': a string of 1..64 letters, digits, '_' or '-' (no escapes)";
constexpr const char* kSequenceMessage = "data point needs an unsigned 32-bit 'sequence'";
constexpr const char* kTimestampMessage = "data point needs an unsigned 64-bit 'timestamp' (milliseconds)";

// For error messages: at most 64 bytes of an app-supplied name, cut on a UTF-8 boundary.
std::string clip(std::string_view s) {
  if (s.size() <= 64) return std::string(s);
  size_t n = 64;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n)) + "...";
}

AppMessage parse_control(std::string_view line) {
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  if (doc.HasParseError() || !doc.IsObject()) return error(AppErrorCode::BadJson, "", "control line is not valid JSON");
  const rapidjson::Value& commands = doc.MemberBegin()->value;
  if (!commands.IsObject() || commands.MemberCount() == 0) {
    return error(AppErrorCode::BadField, "edgelink",
                 "'edgelink' must be an object of commands, e.g. {\"edgelink\":{\"hello\":{\"errors\":true}}}");
  }
  ControlLine control;
  for (const auto& cmd : commands.GetObject()) {
    const std::string_view name(cmd.name.GetString(), cmd.name.GetStringLength());
    if (name != "hello") {
      return error(AppErrorCode::BadField, "edgelink",
                   "unknown control command '" + clip(name) + "'; the known command is 'hello'");
    }
    if (!cmd.value.IsObject()) {
      return error(AppErrorCode::BadField, "edgelink", "'hello' takes an object of options, e.g. {\"errors\":true}");
    }
    control.hello = true;
    for (const auto& opt : cmd.value.GetObject()) {
      const std::string_view opt_name(opt.name.GetString(), opt.name.GetStringLength());
      if (opt_name != "errors") {
        return error(AppErrorCode::BadField, "edgelink",
                     "unknown 'hello' option '" + clip(opt_name) + "'; the known option is 'errors'");
      }
      if (!opt.value.IsBool()) {
        return error(AppErrorCode::BadField, "edgelink", "'hello' option 'errors' must be true or false");
      }
      control.hello_errors = opt.value.GetBool();
    }
  }
  return control;
}

// Rare (one per action step), so a DOM is fine here. The scanner has already validated
// the line and read sequence/timestamp.
AppMessage parse_action_status(std::string_view line, uint32_t sequence, uint64_t timestamp) {
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  // Valid JSON RapidJSON still refuses: numbers beyond double range (1e400).
  if (doc.HasParseError() || !doc.IsObject()) {
    return error(AppErrorCode::BadJson, "", "action status holds a number out of range");
  }
  ActionStatus status;
  status.sequence = sequence;
  status.timestamp = timestamp;

  auto id_it = doc.FindMember("action_id");
  if (id_it == doc.MemberEnd()) id_it = doc.FindMember("id");
  if (id_it == doc.MemberEnd()) {
    return error(AppErrorCode::MissingField, "action_id", "action status needs an 'action_id' (or 'id') string");
  }
  const rapidjson::Value& id = id_it->value;
  const std::string id_field(id_it->name.GetString(), id_it->name.GetStringLength());
  if (id.IsString() && id.GetStringLength() > 0) {
    status.action_id.assign(id.GetString(), id.GetStringLength());
  } else if (id.IsUint64()) {
    // Some uplink apps send numeric ids; the broker side always sees a string.
    status.action_id = std::to_string(id.GetUint64());
  } else {
    return error(AppErrorCode::BadField, id_field, "'" + id_field + "' must be a non-empty string");
  }

  const auto state_it = doc.FindMember("state");
  if (state_it == doc.MemberEnd()) {
    return error(AppErrorCode::MissingField, "state", "action status needs a 'state' string, e.g. \"Progress\"");
  }
  if (!state_it->value.IsString() || state_it->value.GetStringLength() == 0) {
    return error(AppErrorCode::BadField, "state", "'state' must be a non-empty string, e.g. \"Progress\"");
  }
  status.state.assign(state_it->value.GetString(), state_it->value.GetStringLength());

  const auto progress_it = doc.FindMember("progress");
  if (progress_it != doc.MemberEnd()) {
    const rapidjson::Value& p = progress_it->value;
    const double v = p.IsNumber() ? p.GetDouble() : -1.0;
    if (!p.IsNumber() || !(v >= 0.0 && v <= 100.0)) {
      return error(AppErrorCode::BadField, "progress", "'progress' must be a number from 0 to 100");
    }
    status.progress = static_cast<int>(std::lround(v));
  }

  const auto errors_it = doc.FindMember("errors");
  if (errors_it != doc.MemberEnd()) {
    if (!errors_it->value.IsArray()) {
      return error(AppErrorCode::BadField, "errors", "'errors' must be an array of strings");
    }
    for (const auto& e : errors_it->value.GetArray()) {
      if (!e.IsString()) return error(AppErrorCode::BadField, "errors", "'errors' must be an array of strings");
      status.errors.emplace_back(e.GetString(), e.GetStringLength());
    }
  }
  return status;
}

}  // namespace

bool is_valid_json(std::string_view text) {
  Scanner s(text.data(), text.data() + text.size());
  s.skip_ws();
  if (!s.value(0)) return false;
  s.skip_ws();
  return s.at_end();
}

AppMessage parse_app_line(std::string_view line) {
  const char* const begin = line.data();
  Scanner s(begin, begin + line.size());
  s.skip_ws();
  if (s.at_end()) return error(AppErrorCode::BadJson, "", "empty line; expected one JSON object");
  if (s.peek() != '{') {
    if (is_valid_json(line)) return error(AppErrorCode::NotAnObject, "", "line must be a JSON object, e.g. {\"stream\":...}");
    return bad_json(begin, s.p_);
  }

  const char* const obj_begin = s.p_;
  const char* obj_end = nullptr;  // one past the closing '}'
  DataPoint point;
  bool have_stream = false, have_sequence = false, have_timestamp = false, have_edgelink = false;
  size_t members = 0;
  // Where the "stream" member sits, to cut it out with one adjacent comma.
  const char* stream_key = nullptr;
  const char* stream_end = nullptr;
  const char* stream_prev_comma = nullptr;
  const char* stream_next_key = nullptr;  // after the comma that follows it
  const char* prev_comma = nullptr;
  // The first semantic error wins, but only if the whole line turns out to be JSON;
  // kept as plain pointers so the valid path allocates nothing.
  AppErrorCode err_code = AppErrorCode::BadField;
  const char* err_field = nullptr;
  const char* err_message = nullptr;
  auto fail = [&](AppErrorCode code, const char* field, const char* message) {
    if (err_field == nullptr) {
      err_code = code;
      err_field = field;
      err_message = message;
    }
  };

  ++s.p_;
  s.skip_ws();
  if (!s.consume('}')) {
    for (;;) {
      if (s.peek() != '"') return bad_json(begin, s.p_);
      const char* const key_begin = s.p_;
      bool key_escaped = false;
      if (!s.string(key_escaped)) return bad_json(begin, s.p_);
      const std::string_view key(key_begin + 1, static_cast<size_t>(s.p_ - key_begin - 2));
      const Key kind = key_escaped ? classify_escaped(key) : classify(key);
      s.skip_ws();
      if (!s.consume(':')) return bad_json(begin, s.p_);
      s.skip_ws();
      const char* const value_begin = s.p_;
      ++members;

      switch (kind) {
        case Key::Stream: {
          if (have_stream) fail(AppErrorCode::BadField, "stream", "duplicate key");
          have_stream = true;
          bool escaped = false;
          const bool is_string = s.peek() == '"';
          if (!(is_string ? s.string(escaped) : s.value(1))) return bad_json(begin, s.p_);
          const std::string_view v(value_begin + 1, is_string ? static_cast<size_t>(s.p_ - value_begin - 2) : 0);
          bool ok = is_string && !escaped && !v.empty() && v.size() <= kMaxStreamBytes;
          for (size_t i = 0; ok && i < v.size(); ++i) ok = kStreamChar[static_cast<unsigned char>(v[i])];
          if (!ok) fail(AppErrorCode::BadField, "stream", kStreamMessage);
          point.stream = v;
          stream_key = key_begin;
          stream_end = s.p_;
          stream_prev_comma = prev_comma;
          break;
        }
        case Key::Sequence:
        case Key::Timestamp: {
          const bool seq = kind == Key::Sequence;
          bool& have = seq ? have_sequence : have_timestamp;
          if (have) fail(AppErrorCode::BadField, seq ? "sequence" : "timestamp", "duplicate key");
          have = true;
          const int c = s.peek();
          const bool is_number = c == '-' || (c >= '0' && c <= '9');
          if (!(is_number ? s.number() : s.value(1))) return bad_json(begin, s.p_);
          uint64_t v = 0;
          const std::string_view token(value_begin, static_cast<size_t>(s.p_ - value_begin));
          if (!is_number || !parse_unsigned(token, seq ? UINT32_MAX : UINT64_MAX, v)) {
            fail(AppErrorCode::BadField, seq ? "sequence" : "timestamp", seq ? kSequenceMessage : kTimestampMessage);
          } else if (seq) {
            point.sequence = static_cast<uint32_t>(v);
          } else {
            point.timestamp = v;
          }
          break;
        }
        case Key::Edgelink:
          have_edgelink = true;
          [[fallthrough]];
        case Key::Other:
          if (!s.value(1)) return bad_json(begin, s.p_);
          break;
      }

      s.skip_ws();
      if (s.peek() == ',') {
        prev_comma = s.p_;
        ++s.p_;
        s.skip_ws();
        if (kind == Key::Stream) stream_next_key = s.p_;
        continue;
      }
      if (!s.consume('}')) return bad_json(begin, s.p_);
      obj_end = s.p_;
      break;
    }
  } else {
    obj_end = s.p_;
  }
  s.skip_ws();
  if (!s.at_end()) return bad_json(begin, s.p_);

  if (members == 1 && have_edgelink) return parse_control(line);
  if (err_field != nullptr) return error(err_code, err_field, err_message);
  if (!have_stream) return error(AppErrorCode::MissingField, "stream", kStreamMessage);
  if (!have_sequence) return error(AppErrorCode::MissingField, "sequence", kSequenceMessage);
  if (!have_timestamp) return error(AppErrorCode::MissingField, "timestamp", kTimestampMessage);

  if (point.stream == "action_status") return parse_action_status(line, point.sequence, point.timestamp);

  // Cut "stream" out: with the comma before it when it is not first, else with the
  // comma after it (and the blanks up to the next key), so head + tail stays a valid
  // object.
  const char* cut_begin = stream_key;
  const char* cut_end = stream_end;
  if (stream_prev_comma != nullptr) {
    cut_begin = stream_prev_comma;
  } else if (stream_next_key != nullptr) {
    cut_end = stream_next_key;
  }
  point.head = std::string_view(obj_begin, static_cast<size_t>(cut_begin - obj_begin));
  point.tail = std::string_view(cut_end, static_cast<size_t>(obj_end - cut_end));
  return point;
}

}  // namespace edgelink

#include "edgelink/apps/app_message.hpp"

#include "edgelink/apps/json_scan.hpp"

#include <rapidjson/document.h>

#include <array>
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

using json::hex_value;
using json::is_digit;
using json::kMaxDepth;
using json::Scanner;

constexpr size_t kMaxStreamBytes = 64;

constexpr std::array<bool, 256> make_stream_char() {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  }
  return t;
}
constexpr std::array<bool, 256> kStreamChar = make_stream_char();

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
  rapidjson::Document parsed;
  parsed.Parse(line.data(), line.size());
  const rapidjson::Document& doc = parsed;  // const iterators: no C++20 reversed == ambiguity
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
    status.has_progress = true;
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
          if (!(is_string ? s.string(escaped) : s.member_value(1))) return bad_json(begin, s.p_);
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
          // The value is read while it is validated: a plain unsigned integer or a BadField.
          uint64_t v = 0;
          bool is_uint = false;
          if (is_digit(static_cast<unsigned char>(s.peek()))) {
            if (!s.unsigned_number(v, is_uint)) return bad_json(begin, s.p_);
          } else if (!s.member_value(1)) {
            return bad_json(begin, s.p_);
          }
          if (!is_uint || (seq && v > UINT32_MAX)) {
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
          if (!s.member_value(1)) return bad_json(begin, s.p_);
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

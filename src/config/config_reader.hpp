#pragma once
// Internal to the config loader: typed reads of toml++ nodes. Every problem becomes a
// ConfigIssue with the node's position instead of stopping at the first one.

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <toml++/toml.h>

#include "edgelink/config/config.hpp"

namespace edgelink::config_detail {

inline constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
// Caps a duration so seconds * 1000 never overflows; nothing sensible waits longer.
inline constexpr double kMaxDurationSeconds = 10.0 * 365 * 24 * 3600;

// Reads a whole regular file. Non-regular files (FIFOs, directories) are refused so a
// typo cannot block start-up forever. On failure `error` holds the reason.
bool read_regular_file(const std::string& path, size_t max_bytes, std::string& out, std::string& error);
bool check_readable(const std::string& path, std::string& error);
// The stream name rule of app-protocol.md; app names follow it too so they can be
// used as metric labels and bare TOML keys.
bool valid_name(std::string_view name);
// Untrusted text inside a message: quoted, control characters escaped, length capped.
std::string quote(std::string_view s);
// A path component: bare when it is a plain name, quoted otherwise.
std::string key_part(std::string_view key);
const char* type_name(const toml::node& n);
std::string float_text(double v);
std::string range_text(int64_t min, int64_t max);
bool iequals(std::string_view a, std::string_view b);
// "127.0.0.1:17917" or "[::1]:17917" -> host (without brackets), port and whether the
// address is loopback. false for anything else, host names included.
bool split_bind(const std::string& bind, std::string& host, uint16_t& port, bool& loopback);

// toml++ 3.3 reaches __builtin_unreachable (undefined behaviour) when it tests some
// non-ASCII characters for whitespace (is_non_ascii_horizontal_whitespace, e.g. U+0145
// where a key or a value may start). TOML 1.0 allows non-ASCII text only inside strings
// and comments, so anything else is an error anyway: the loader looks for it first and
// says so, before toml++ sees the text. The one place inside a string where toml++ also
// tests for whitespace is after a line-ending backslash in a multi-line basic string.
struct StrayByte {
  int line = 0, column = 0;  // 1-based; columns count characters
  const char* what = nullptr;
};
std::optional<StrayByte> stray_non_ascii(std::string_view text);

template <class T>
void assign(T& target, std::optional<T> value) {
  if (value) target = std::move(*value);
}

class ValueReader {
 public:
  ValueReader(std::string file, LoadResult& result) : file_(std::move(file)), result_(result) {}

  void error(const toml::source_region& where, std::string message) {
    result_.errors.push_back({file_, static_cast<int>(where.begin.line),
                              static_cast<int>(where.begin.column), std::move(message)});
  }
  void error(const toml::node& n, std::string message) { error(n.source(), std::move(message)); }
  void error_nopos(std::string message) { result_.errors.push_back({file_, 0, 0, std::move(message)}); }

  void unknown(const toml::key& key, const std::string& where) {
    const auto& pos = key.source().begin;
    result_.unknown_keys.push_back({file_, static_cast<int>(pos.line), static_cast<int>(pos.column),
                                    "unknown key '" + std::string(key.str()) + "' " + where});
  }
  void warn(const toml::key& key, std::string message) {
    const auto& pos = key.source().begin;
    result_.warnings.push_back({file_, static_cast<int>(pos.line), static_cast<int>(pos.column), std::move(message)});
  }
  void warn(const toml::node& n, std::string message) {
    const auto& pos = n.source().begin;
    result_.warnings.push_back({file_, static_cast<int>(pos.line), static_cast<int>(pos.column), std::move(message)});
  }
  void missing(const toml::node& table, const std::string& path) {
    error(table, path + ": required key is missing");
  }

  const toml::table* table_value(const toml::node& n, const std::string& path) {
    if (const auto* t = n.as_table()) return t;
    error(n, path + ": must be a table, got " + type_name(n));
    return nullptr;
  }

  std::optional<std::string> string_value(const toml::node& n, const std::string& path,
                                          bool allow_empty = false) {
    const auto* s = n.as_string();
    if (!s) {
      error(n, path + ": must be a string, got " + type_name(n));
      return std::nullopt;
    }
    const std::string& v = s->get();
    // Values end up in C APIs (paths, Paho); an embedded NUL would silently truncate.
    if (v.find('\0') != std::string::npos) {
      error(n, path + ": must not contain NUL characters");
      return std::nullopt;
    }
    if (!allow_empty && v.empty()) {
      error(n, path + ": must be a non-empty string");
      return std::nullopt;
    }
    return v;
  }

  std::optional<int64_t> int_value(const toml::node& n, const std::string& path, int64_t min,
                                   int64_t max) {
    const auto* i = n.as_integer();
    if (!i) {
      error(n, path + ": must be an integer " + range_text(min, max) + ", got " + type_name(n));
      return std::nullopt;
    }
    const int64_t v = i->get();
    if (v < min || v > max) {
      error(n, path + ": must be an integer " + range_text(min, max) + ", got " + std::to_string(v));
      return std::nullopt;
    }
    return v;
  }

  template <class T>
  std::optional<T> int_as(const toml::node& n, const std::string& path, int64_t min, int64_t max) {
    auto v = int_value(n, path, min, max);
    if (!v) return std::nullopt;
    return static_cast<T>(*v);
  }

  // Integer or float seconds, stored as milliseconds.
  std::optional<Millis> duration_value(const toml::node& n, const std::string& path,
                                       bool allow_zero = false) {
    const std::string expected = std::string("must be a number of seconds ") +
                                 (allow_zero ? ">= 0" : "> 0") + " (at most 10 years)";
    double seconds = 0;
    std::string got;
    if (const auto* i = n.as_integer()) {
      seconds = static_cast<double>(i->get());
      got = std::to_string(i->get());
    } else if (const auto* f = n.as_floating_point()) {
      seconds = f->get();
      got = float_text(seconds);
    } else {
      error(n, path + ": " + expected + ", got " + type_name(n));
      return std::nullopt;
    }
    if (!std::isfinite(seconds) || seconds < 0 || seconds > kMaxDurationSeconds) {
      error(n, path + ": " + expected + ", got " + got);
      return std::nullopt;
    }
    const auto ms = static_cast<int64_t>(std::llround(seconds * 1000.0));
    if (!allow_zero && ms <= 0) {
      error(n, path + ": " + expected + " (1 ms resolution), got " + got);
      return std::nullopt;
    }
    return Millis{ms};
  }

  std::optional<bool> bool_value(const toml::node& n, const std::string& path) {
    if (const auto* b = n.as_boolean()) return b->get();
    error(n, path + ": must be a boolean (true or false), got " + type_name(n));
    return std::nullopt;
  }

  template <class E>
  std::optional<E> enum_value(const toml::node& n, const std::string& path,
                              std::initializer_list<std::pair<const char*, E>> choices) {
    std::string names;
    for (const auto& [name, value] : choices) names += (names.empty() ? "\"" : ", \"") + std::string(name) + "\"";
    const auto* s = n.as_string();
    if (s) {
      for (const auto& [name, value] : choices)
        if (iequals(s->get(), name)) return value;
    }
    error(n, path + ": must be one of " + names + ", got " + (s ? quote(s->get()) : type_name(n)));
    return std::nullopt;
  }

  // An identifier that becomes a topic level.
  std::optional<std::string> id_value(const toml::node& n, const std::string& path) {
    auto v = string_value(n, path);
    if (v && v->find_first_of("/+#") != std::string::npos) {
      error(n, path + ": must not contain '/', '+' or '#' (it becomes an MQTT topic level), got " +
                   quote(*v));
      return std::nullopt;
    }
    return v;
  }

  // Topic templates: only known placeholders; publish topics must not hold wildcards.
  // {rtio_device_id} is known only where an RTIO device's message is published.
  std::optional<std::string> topic_value(const toml::node& n, const std::string& path,
                                         bool allow_stream, bool allow_wildcards, bool allow_rtio = false) {
    auto v = string_value(n, path);
    if (!v) return v;
    bool ok = true;
    for (size_t i = v->find('{'); i != std::string::npos && ok; i = v->find('{', i + 1)) {
      const size_t end = v->find('}', i);
      const std::string_view name =
          end == std::string::npos ? std::string_view(*v).substr(i) : std::string_view(*v).substr(i, end - i + 1);
      if (name == "{tenant_id}" || name == "{device_id}" || (allow_stream && name == "{stream}") ||
          (allow_rtio && name == "{rtio_device_id}"))
        continue;
      error(n, path + ": unknown placeholder " + quote(name) + "; expected {tenant_id}, {device_id}" +
                   (allow_stream ? " or {stream}" : "") + (allow_rtio ? " or {rtio_device_id}" : ""));
      ok = false;
    }
    if (ok && !allow_wildcards && v->find_first_of("+#") != std::string::npos) {
      error(n, path + ": a publish topic must not contain the MQTT wildcards '+' or '#'");
      ok = false;
    }
    return ok ? v : std::nullopt;
  }

 protected:
  std::string file_;
  LoadResult& result_;
};

}  // namespace edgelink::config_detail

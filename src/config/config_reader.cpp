// Helpers of the config loader (see config_reader.hpp).

#include "config_reader.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace edgelink::config_detail {

bool read_regular_file(const std::string& path, size_t max_bytes, std::string& out,
                       std::string& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    error = std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    error = S_ISDIR(st.st_mode) ? std::strerror(EISDIR) : "not a regular file";
    ::close(fd);
    return false;
  }
  out.clear();
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      error = "file is larger than " + std::to_string(max_bytes) + " bytes";
      ::close(fd);
      return false;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

bool check_readable(const std::string& path, std::string& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    error = std::strerror(errno);
    return false;
  }
  struct stat st {};
  const bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  if (!ok) error = S_ISDIR(st.st_mode) ? std::strerror(EISDIR) : "not a regular file";
  ::close(fd);
  return ok;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-';
}

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), is_name_char);
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  const size_t limit = 64;
  for (size_t i = 0; i < s.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > limit) out += "...";
  return out + "\"";
}

std::string key_part(std::string_view key) { return valid_name(key) ? std::string(key) : quote(key); }

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

std::string float_text(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string range_text(int64_t min, int64_t max) {
  if (max == kInt64Max) return min == 1 ? "> 0" : ">= " + std::to_string(min);
  return std::to_string(min) + ".." + std::to_string(max);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::optional<StrayByte> stray_non_ascii(std::string_view text) {
  enum class State { Normal, Comment, Basic, Literal, MultiBasic, MultiLiteral };
  State state = State::Normal;
  int line = 1, column = 0;
  auto at = [&](size_t i, std::string_view s) { return text.substr(i, s.size()) == s; };
  const size_t start = at(0, "\xEF\xBB\xBF") ? 3 : 0;  // a UTF-8 byte order mark is allowed
  for (size_t i = start; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c & 0xC0) != 0x80) ++column;  // columns count characters, not bytes
    if (c == '\n') {
      ++line;
      column = 0;
      if (state == State::Comment || state == State::Basic || state == State::Literal) state = State::Normal;
      continue;
    }
    switch (state) {
      case State::Normal:
        if (c >= 0x80) return StrayByte{line, column, "a non-ASCII character outside a string or comment"};
        if (c == '#') state = State::Comment;
        else if (at(i, "\"\"\"")) state = State::MultiBasic, i += 2, column += 2;
        else if (at(i, "'''")) state = State::MultiLiteral, i += 2, column += 2;
        else if (c == '"') state = State::Basic;
        else if (c == '\'') state = State::Literal;
        break;
      case State::Comment:
        break;
      case State::Basic:
        if (c == '\\') ++i, ++column;
        else if (c == '"') state = State::Normal;
        break;
      case State::Literal:
        if (c == '\'') state = State::Normal;
        break;
      case State::MultiBasic:
        if (c == '\\') {
          size_t j = i + 1;
          while (j < text.size() && (text[j] == ' ' || text[j] == '\t')) ++j;
          if (j < text.size() && (text[j] == '\n' || text[j] == '\r')) {
            // A line-ending backslash: toml++ skips the whitespace that follows.
            while (j < text.size() && std::isspace(static_cast<unsigned char>(text[j]))) ++j;
            if (j < text.size() && static_cast<unsigned char>(text[j]) >= 0x80)
              return StrayByte{line, column, "a non-ASCII character right after a line-ending backslash"};
          } else {
            ++i, ++column;  // an escape: skip the escaped character
          }
        } else if (at(i, "\"\"\"")) {
          state = State::Normal;
          i += 2, column += 2;
          while (i + 1 < text.size() && text[i + 1] == '"') ++i, ++column;  // up to two more quotes are content
        }
        break;
      case State::MultiLiteral:
        if (at(i, "'''")) {
          state = State::Normal;
          i += 2, column += 2;
          while (i + 1 < text.size() && text[i + 1] == '\'') ++i, ++column;
        }
        break;
    }
  }
  return std::nullopt;
}

// "127.0.0.1:17917" or "[::1]:17917": an address literal and a port. Host names are
// refused: what a listener binds to should not depend on a resolver at start-up.
bool split_bind(const std::string& bind, std::string& host, uint16_t& port, bool& loopback) {
  std::string port_text;
  if (!bind.empty() && bind.front() == '[') {
    const auto close = bind.find(']');
    if (close == std::string::npos || close + 1 >= bind.size() || bind[close + 1] != ':') return false;
    host = bind.substr(1, close - 1);
    port_text = bind.substr(close + 2);
    std::array<unsigned char, 16> a{};
    if (::inet_pton(AF_INET6, host.c_str(), a.data()) != 1) return false;
    static constexpr std::array<unsigned char, 16> kLoop{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    loopback = a == kLoop;
  } else {
    const auto colon = bind.rfind(':');
    if (colon == std::string::npos) return false;
    host = bind.substr(0, colon);
    port_text = bind.substr(colon + 1);
    std::array<unsigned char, 4> a{};
    if (::inet_pton(AF_INET, host.c_str(), a.data()) != 1) return false;
    loopback = a[0] == 127;
  }
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  const unsigned long p = std::stoul(port_text);
  if (p < 1 || p > 65535) return false;
  port = static_cast<uint16_t>(p);
  return true;
}

}  // namespace edgelink::config_detail

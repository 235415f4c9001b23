// [rtio] (spec/http-api.md §6.1): the RTIO device-access server's listener, timeouts,
// device ids and secrets ([rtio.devices] and secrets_file) and the device services.

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include "config_loader.hpp"
#include "edgelink/rtio/rtio_codec.hpp"

namespace edgelink::config_detail {
namespace {

// The secrets file is a short list; anything bigger is a wrong path.
constexpr size_t kMaxSecretsFileBytes = 1u << 20;

bool id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

// A UUID's 36 characters, case and layout not enforced (RTIO does not either).
bool valid_rtio_id(std::string_view id) {
  return id.size() == rtio::kDeviceIdBytes && std::all_of(id.begin(), id.end(), id_char);
}

constexpr const char* kIdRule = "must be 36 letters, digits or '-' (a UUID)";

// Empty when fine, else why. Never quotes the secret itself: messages end up in logs.
std::string secret_problem(std::string_view secret) {
  if (secret.size() < rtio::kMinSecretBytes || secret.size() > rtio::kMaxSecretBytes)
    return "must be 24..64 printable ASCII characters, got " + std::to_string(secret.size()) + " bytes";
  for (const char ch : secret) {
    const auto c = static_cast<unsigned char>(ch);
    // A device sends "<id>:<secret>" as ASCII; spaces and control characters would not
    // survive config files and shells intact.
    if (c < 0x21 || c > 0x7E) return "must be 24..64 printable ASCII characters (0x21..0x7E; no spaces)";
  }
  return {};
}

// What is wrong with an id, without showing it.
std::string id_shape(std::string_view id) {
  if (id.size() != rtio::kDeviceIdBytes) return std::to_string(id.size()) + " characters";
  for (size_t i = 0; i < id.size(); ++i) {
    if (!id_char(id[i])) return "a character not allowed at position " + std::to_string(i + 1);
  }
  return "a valid id";
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

}  // namespace

void Loader::load_rtio(const toml::table& t, RtioConfig& r) {
  r.enabled = true;
  const toml::node* devices = nullptr;
  const toml::node* secrets = nullptr;
  const toml::key* secrets_key = nullptr;
  const toml::node* services = nullptr;
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    const std::string path = "rtio." + key_part(key);
    if (key == "bind") {
      bool loopback = true;
      listen_value(v, path, 17017, r.bind, r.host, r.port, loopback);
    } else if (key == "secrets_file") {
      secrets = &v;
      secrets_key = &k;
    } else if (key == "verify_timeout") {
      assign(r.verify_timeout, timeout_value(v, path));
    } else if (key == "service_timeout") {
      assign(r.service_timeout, timeout_value(v, path));
    } else if (key == "max_connections") {
      assign(r.max_connections, int_as<uint32_t>(v, path, 1, 4096));
    } else if (key == "devices") {
      devices = &v;
    } else if (key == "device_services") {
      services = &v;
    } else {
      unknown(k, "in [rtio]");
    }
  }
  // Inline devices first, so an id given twice is reported against the file's line.
  if (devices) {
    if (const auto* dt = table_value(*devices, "rtio.devices")) load_rtio_devices(*dt, r);
  }
  if (secrets) load_rtio_secrets_file(*secrets, *secrets_key, r);
  if (services) load_rtio_services(*services, r);
}

void Loader::load_rtio_devices(const toml::table& t, RtioConfig& r) {
  for (auto&& [k, v] : t) {
    const std::string id(k.str());
    const std::string path = "rtio.devices." + key_part(id);
    bool ok = valid_rtio_id(id);
    if (ok)
      rtio_ids_.push_back({id, k.source(), {}});
    else
      error(k.source(), path + ": device id " + kIdRule + ", got " + quote(id));
    auto secret = string_value(v, path);
    if (!secret) continue;
    if (const std::string why = secret_problem(*secret); !why.empty()) {
      error(v, path + ": the secret " + why);
      ok = false;
    }
    if (ok) r.devices[id] = std::move(*secret);
  }
}

// Lines "<device id>:<secret>", split at the first ':'. Blank lines and lines starting
// with '#' are skipped; after the secret only whitespace and a '#' comment may follow.
// A '#' inside the secret is part of it (secrets may hold any printable character), so a
// comment needs whitespace before it. Errors sit on the secrets_file key and name
// FILE:LINE; they never echo a secret.
void Loader::load_rtio_secrets_file(const toml::node& v, const toml::key& k, RtioConfig& r) {
  const std::string path = "rtio.secrets_file";
  const auto file = string_value(v, path);
  if (!file) return;
  r.secrets_file = *file;
  std::string text, why;
  if (!read_regular_file(*file, kMaxSecretsFileBytes, text, why)) {
    error(v, path + ": cannot read " + quote(*file) + ": " + why);
    return;
  }
  struct stat st {};
  if (::stat(file->c_str(), &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    warn(k, path + ": " + quote(*file) + " is readable by group or others (mode " + mode +
                "); it holds device secrets: chmod 600 it");
  }

  std::map<std::string, size_t> first_line;  // id -> line, for duplicates within the file
  size_t line_no = 0;
  size_t at = 0;
  while (at < text.size()) {
    ++line_no;
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + at, end - at);
    at = end + 1;
    const std::string where = path + ": " + *file + ":" + std::to_string(line_no) + ": ";

    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
    while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
    while (!line.empty() && is_space(line.back())) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    size_t token_end = 0;
    while (token_end < line.size() && !is_space(line[token_end])) ++token_end;
    const std::string_view entry = line.substr(0, token_end);
    std::string_view rest = line.substr(token_end);
    while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);

    const size_t colon = entry.find(':');
    if (colon == std::string_view::npos) {
      error(v, where + "expected \"<device id>:<secret>\"");
      continue;
    }
    const std::string id(entry.substr(0, colon));
    const std::string_view secret = entry.substr(colon + 1);
    if (!valid_rtio_id(id)) {
      // Not quoted: a line with the secret first would put the secret in the log.
      error(v, where + "the device id before the first ':' " + kIdRule + ", got " + id_shape(id));
      continue;
    }
    if (!rest.empty() && rest.front() != '#') {
      error(v, where + "unexpected text after the secret of " + quote(id) +
                   " (a secret has no spaces; a comment starts with '#')");
      continue;
    }
    if (const std::string problem = secret_problem(secret); !problem.empty()) {
      error(v, where + "the secret of " + quote(id) + " " + problem);
      continue;
    }
    if (const auto dup = first_line.find(id); dup != first_line.end()) {
      error(v, where + "device id " + quote(id) + " is already on line " + std::to_string(dup->second));
      continue;
    }
    first_line[id] = line_no;
    // Given in [rtio.devices] as well (all of those were read before the file): the error
    // sits on that entry and names this line.
    bool inline_too = false;
    for (const RtioIdSite& s : rtio_ids_) {
      if (s.id != id || !s.file_line.empty()) continue;
      error(s.where, "rtio.devices." + key_part(id) + ": device id is also in rtio.secrets_file (" + *file + ":" +
                         std::to_string(line_no) + "); give each id once");
      inline_too = true;
    }
    if (inline_too) continue;
    r.devices[id] = std::string(secret);
    r.file_devices.insert(id);
    rtio_ids_.push_back({id, v.source(), *file + ":" + std::to_string(line_no)});
  }
}

// A device service's uri: 5..128 bytes, and neither it nor its CRC-32 already taken. The
// device sends only the digest (§6.4), so two uris with one digest could not be told apart.
std::optional<std::string> Loader::service_uri(const toml::node& v, const std::string& path,
                                               const std::vector<ServiceUriSite>& seen) {
  auto uri = string_value(v, path);
  if (!uri) return uri;
  if (uri->size() < 5 || uri->size() > 128) {
    error(v, path + ": must be 5..128 bytes, got " + std::to_string(uri->size()) + " (" + quote(*uri) + ")");
    return std::nullopt;
  }
  const uint32_t digest = rtio::crc32(*uri);
  for (const ServiceUriSite& other : seen) {
    if (other.uri == *uri) {
      error(v, path + ": " + quote(*uri) + " is already " + other.path + ".uri");
      return std::nullopt;
    }
    if (rtio::crc32(other.uri) == digest) {
      error(v, path + ": " + quote(*uri) + " has the same CRC-32 (" + hex32(digest) + ") as " + other.path + ".uri " +
                   quote(other.uri) + "; the device sends only the digest, so they cannot be told apart");
      return std::nullopt;
    }
  }
  return uri;
}

void Loader::load_rtio_services(const toml::node& n, RtioConfig& r) {
  const std::string path = "rtio.device_services";
  const auto* arr = n.as_array();
  if (!arr) {
    error(n, path + ": must be an array of tables ([[rtio.device_services]] with uri and topic), got " +
                 type_name(n));
    return;
  }
  std::vector<ServiceUriSite> seen;
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::node& el = *arr->get(i);
    const std::string epath = path + "[" + std::to_string(i) + "]";
    const auto* et = el.as_table();
    if (!et) {
      error(el, epath + ": must be a table with uri and topic, got " + type_name(el));
      continue;
    }
    RtioServiceConfig s;
    bool ok = true;
    for (auto&& [k, v] : *et) {
      const std::string key(k.str());
      const std::string kpath = epath + "." + key_part(key);
      if (key == "uri") {
        auto uri = service_uri(v, kpath, seen);
        if (uri) seen.push_back({*uri, epath});
        ok = ok && uri.has_value();
        assign(s.uri, std::move(uri));
      } else if (key == "topic") {
        auto topic = topic_value(v, kpath, false, false, true);
        ok = ok && topic.has_value();
        assign(s.topic, std::move(topic));
      } else {
        unknown(k, "in " + epath);
      }
    }
    if (!et->contains("uri")) missing(*et, epath + ".uri");
    if (!et->contains("topic")) missing(*et, epath + ".topic");
    if (ok && !s.uri.empty() && !s.topic.empty()) r.services.push_back(std::move(s));
  }
}

// After the whole file: the HTTP API's first path segment names either a [devices.X]
// device or an RTIO device, so one name cannot be both.
void Loader::check_rtio(const Config& c) {
  for (const RtioIdSite& s : rtio_ids_) {
    if (!device_names_.count(s.id) && !c.devices.count(s.id)) continue;
    const std::string owner = s.file_line.empty() ? "rtio.devices." + key_part(s.id)
                                                  : "rtio.secrets_file: " + s.file_line;
    error(s.where, owner + ": RTIO device id " + quote(s.id) + " is also the name of [devices." + key_part(s.id) +
                       "]; an HTTP request could not tell which device it is for");
  }
}

}  // namespace edgelink::config_detail
